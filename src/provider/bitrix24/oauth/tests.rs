//! Tests of OAuth: configuration, the token file, scrubbing, the single-flight refresh, and the
//! client end to end against a small loopback server playing both the portal (401
//! `expired_token` for an old token) and the OAuth server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;

use super::*;
use crate::model::GroupId;
use crate::provider::FetchError;
use crate::provider::bitrix24::{Auth, Client, Options};

// Mixed case, so an echo that changes the case is caught too.
const ACCESS: &str = "AccessCanary0001";
const REFRESH: &str = "RefreshCanary001";
const SECRET: &str = "ClientSecretCanary";
const NEW_ACCESS: &str = "NewAccessCanary2";
const NEW_REFRESH: &str = "NewRefreshCanary2";
const FILE_ACCESS: &str = "FileAccessCanary";
const FILE_REFRESH: &str = "FileRefreshCanary";
const ALL: [&str; 7] = [
    ACCESS,
    REFRESH,
    SECRET,
    NEW_ACCESS,
    NEW_REFRESH,
    FILE_ACCESS,
    FILE_REFRESH,
];

const PORTAL: &str = "https://acme.bitrix24.com/rest/";

fn config() -> OAuthConfig {
    OAuthConfig {
        access_token: Some(Secret::new(ACCESS)),
        refresh_token: Some(Secret::new(REFRESH)),
        client_id: Some("local.roster0001".into()),
        client_secret: Some(Secret::new(SECRET)),
        server: None,
        token_file: None,
    }
}

/// The canaries `text` contains, in any letter case.
fn leaks(text: &str) -> Vec<&'static str> {
    let t = text.to_lowercase();
    ALL.into_iter()
        .filter(|c| t.contains(&c.to_lowercase()))
        .collect()
}

fn refused(endpoint: &str, config: &OAuthConfig) -> String {
    let e = OAuth::new(endpoint, config).unwrap_err().to_string();
    assert!(leaks(&e).is_empty(), "{e}");
    e
}

#[test]
fn validates_the_endpoint_like_a_webhook() {
    let ok = |url: &str, want: &str| {
        let o = OAuth::new(url, &config()).unwrap();
        assert_eq!(o.current().endpoint, want, "{url}");
        assert_eq!(o.current().url("batch"), format!("{want}batch.json"));
    };
    ok(PORTAL, PORTAL);
    ok("HTTPS://ACME.bitrix24.com/rest", PORTAL);
    ok(
        "https://acme.example/bitrix/rest/",
        "https://acme.example/bitrix/rest/",
    );
    ok("http://127.0.0.1:8080/rest/", "http://127.0.0.1:8080/rest/");
    ok("http://[::1]:9/rest/", "http://[::1]:9/rest/");
    for (bad, why) in [
        ("http://acme.bitrix24.com/rest/", "clear text"),
        ("http://10.0.0.1/rest/", "clear text"),
        ("ftp://acme/rest/", "scheme"),
        ("https://acme/api/", "must end in /rest/"),
        ("https://acme/rest/?x=1", "query"),
        ("https://u:p@acme/rest/", "user:password@"),
        ("acme/rest/", "no scheme"),
    ] {
        let e = refused(bad, &config());
        assert!(e.contains(why), "{bad}: {e}");
        assert!(e.contains("https://HOST/rest/"), "{bad}: {e}");
    }
}

#[test]
fn names_the_missing_piece() {
    let without = |f: fn(&mut OAuthConfig)| {
        let mut c = config();
        f(&mut c);
        refused(PORTAL, &c)
    };
    let e = without(|c| c.access_token = None);
    assert!(
        e.starts_with("OAuth needs ROSTER_OAUTH_ACCESS_TOKEN (or a token file holding one: --oauth-token-file / ROSTER_OAUTH_TOKEN_FILE)"),
        "{e}"
    );
    let e = without(|c| c.client_id = None);
    assert!(e.starts_with("OAuth needs ROSTER_OAUTH_CLIENT_ID"), "{e}");
    let e = without(|c| c.client_id = Some(String::new()));
    assert!(e.starts_with("OAuth needs ROSTER_OAUTH_CLIENT_ID"), "{e}");
    let e = without(|c| c.client_secret = None);
    assert!(
        e.starts_with("OAuth needs ROSTER_OAUTH_CLIENT_SECRET"),
        "{e}"
    );
    // Without a refresh token, nothing can be refreshed, so the client id and secret are not
    // needed: the access token works until it expires.
    let mut c = config();
    c.refresh_token = None;
    c.client_id = None;
    c.client_secret = None;
    assert!(OAuth::new(PORTAL, &c).is_ok());
}

#[test]
fn refuses_values_that_cannot_be_credentials_without_showing_them() {
    let with = |f: fn(&mut OAuthConfig)| {
        let mut c = config();
        f(&mut c);
        refused(PORTAL, &c)
    };
    let e = with(|c| c.access_token = Some(Secret::new(format!("{ACCESS}\n"))));
    assert!(
        e.starts_with("ROSTER_OAUTH_ACCESS_TOKEN must be printable"),
        "{e}"
    );
    let e = with(|c| c.refresh_token = Some(Secret::new("short")));
    assert!(
        e.starts_with("ROSTER_OAUTH_REFRESH_TOKEN is too short"),
        "{e}"
    );
    let e = with(|c| c.client_secret = Some(Secret::new("        ")));
    assert!(
        e.starts_with("ROSTER_OAUTH_CLIENT_SECRET must be printable"),
        "{e}"
    );
    // Empty is not given (an undefined CI secret expands to ""): the message says it is missing.
    let e = with(|c| c.client_secret = Some(Secret::new("")));
    assert!(
        e.starts_with("OAuth needs ROSTER_OAUTH_CLIENT_SECRET"),
        "{e}"
    );
    let e = with(|c| c.access_token = Some(Secret::new("")));
    assert!(
        e.starts_with("OAuth needs ROSTER_OAUTH_ACCESS_TOKEN"),
        "{e}"
    );
    let e = with(|c| c.client_id = Some("local 1".into()));
    assert!(
        e.starts_with("ROSTER_OAUTH_CLIENT_ID must be printable"),
        "{e}"
    );
    let e = with(|c| c.server = Some(format!("http://oauth.example/{SECRET}")));
    assert!(
        e.starts_with("invalid ROSTER_OAUTH_SERVER http://oauth.example/…"),
        "{e}"
    );
}

#[test]
fn the_oauth_server_is_the_override_else_the_saved_server_endpoint_else_the_default() {
    let server = |o: &OAuth| o.tokens.lock().unwrap().server.clone();
    assert_eq!(
        server(&OAuth::new(PORTAL, &config()).unwrap()),
        "https://oauth.bitrix.info"
    );
    let mut c = config();
    c.server = Some("https://oauth.bitrix24.tech/".into());
    assert_eq!(
        server(&OAuth::new(PORTAL, &c).unwrap()),
        "https://oauth.bitrix24.tech"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    write_private(
        &file,
        &json!({"access_token": FILE_ACCESS, "refresh_token": FILE_REFRESH,
                "server_endpoint": "https://oauth.bitrix24.tech/rest/"}),
    );
    let mut c = config();
    c.token_file = Some(file.clone());
    assert_eq!(
        server(&OAuth::new(PORTAL, &c).unwrap()),
        "https://oauth.bitrix24.tech"
    );
    c.server = Some("http://127.0.0.1:9".into());
    assert_eq!(
        server(&OAuth::new(PORTAL, &c).unwrap()),
        "http://127.0.0.1:9"
    );
}

#[test]
fn the_portal_string_decides_between_webhook_and_oauth() {
    let auth = Auth::parse(PORTAL, &config()).unwrap();
    assert!(matches!(auth, Auth::OAuth(_)), "{auth:?}");
    assert_eq!(auth.display(), "https://acme.bitrix24.com/rest/ (OAuth)");
    // A webhook URL wins over any OAuth settings.
    let auth = Auth::parse("https://acme.bitrix24.com/rest/1/code1234/", &config()).unwrap();
    assert!(matches!(auth, Auth::Webhook(_)), "{auth:?}");
    let e = Auth::parse(PORTAL, &OAuthConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("OAuth needs ROSTER_OAUTH_ACCESS_TOKEN"),
        "{e}"
    );
    let e = Auth::parse("https://acme.bitrix24.com/rest/1/", &config())
        .unwrap_err()
        .to_string();
    assert!(e.contains("USER_ID/CODE"), "{e}");
    // Nothing secret in Debug.
    let auth = Auth::parse(PORTAL, &config()).unwrap();
    assert!(leaks(&format!("{auth:?} {:?}", config())).is_empty());
}

/// A JSON file with mode 0600, as roster writes it.
fn write_private(path: &std::path::Path, v: &Value) {
    write_token_file(path, v.as_object().unwrap()).unwrap();
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn a_token_file_takes_precedence_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let mut c = config();
    c.token_file = Some(file.clone());
    // No file yet: the environment's tokens.
    let o = OAuth::new(PORTAL, &c).unwrap();
    assert_eq!(o.current().access.expose(), ACCESS);
    write_private(
        &file,
        &json!({"access_token": FILE_ACCESS, "refresh_token": FILE_REFRESH,
                "client_endpoint": PORTAL, "member_id": "m1"}),
    );
    let o = OAuth::new(PORTAL, &c).unwrap();
    assert_eq!(o.current().access.expose(), FILE_ACCESS);
    assert_eq!(
        o.tokens.lock().unwrap().refresh.as_ref().unwrap().expose(),
        FILE_REFRESH
    );
    // The environment's tokens, now unused, are still scrubbed.
    assert_eq!(o.scrub(&format!("{ACCESS} {REFRESH}")), "*** ***");
    // Unused environment values too short to be tokens are not masked: they could be
    // ordinary answer text.
    let mut short = c.clone();
    short.access_token = Some(Secret::new("K"));
    let o = OAuth::new(PORTAL, &short).unwrap();
    assert_eq!(o.scrub(r#"{"ROLE":"K"}"#), r#"{"ROLE":"K"}"#);
    // With a token file the environment's tokens are not needed at all.
    c.access_token = None;
    c.refresh_token = None;
    assert_eq!(
        OAuth::new(PORTAL, &c).unwrap().current().access.expose(),
        FILE_ACCESS
    );
}

#[test]
fn a_bad_token_file_is_refused_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let mut c = config();
    c.token_file = Some(file.clone());
    let check = |content: &str, want: &str| {
        std::fs::write(&file, content).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = refused(PORTAL, &c);
        assert!(e.starts_with("token file "), "{e}");
        assert!(e.contains(want), "{content}: {e}");
    };
    check(
        &format!("{{\"access_token\": \"{FILE_ACCESS}"),
        "not valid JSON",
    );
    check(&format!("[\"{FILE_ACCESS}\"]"), "not a JSON object");
    check(
        &format!("{{\"refresh_token\": \"{FILE_REFRESH}\"}}"),
        "it has no access_token; delete it",
    );
    check(
        "{\"access_token\": 12345678}",
        "access_token is not a string",
    );
    check(
        &format!("{{\"access_token\": \"{FILE_ACCESS}\", \"refresh_token\": \"x y z 123\"}}"),
        "its refresh_token must be printable ASCII",
    );
    check(
        &format!(
            "{{\"access_token\": \"{FILE_ACCESS}\", \"client_endpoint\": \"https://other.bitrix24.com/rest/\"}}"
        ),
        "it holds tokens for https://other.bitrix24.com/rest/, not for --portal https://acme.bitrix24.com/rest/; if the portal moved, pass --portal=https://other.bitrix24.com/rest/",
    );
    check(
        &format!(
            "{{\"access_token\": \"{FILE_ACCESS}\", \"server_endpoint\": \"http://evil.example/rest/\"}}"
        ),
        "its server_endpoint is not usable",
    );
}

/// A token file others can read is an error, not a warning: the refresh token in it (valid
/// for 180 days) may already be copied, so carrying on would hide that; ssh refuses private
/// keys for the same reason.
#[cfg(unix)]
#[test]
fn a_token_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    write_private(&file, &json!({"access_token": FILE_ACCESS}));
    let mut c = config();
    c.token_file = Some(file.clone());
    for m in [0o644, 0o640, 0o604, 0o620] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
        let e = refused(PORTAL, &c);
        assert!(
            e.contains(&format!("other users may read or change it (mode {m:04o})")),
            "{e}"
        );
        assert!(e.contains(&format!("chmod 600 {}", file.display())), "{e}");
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(OAuth::new(PORTAL, &c).is_ok());
}

#[cfg(unix)]
#[test]
fn the_token_file_is_written_atomically_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    // An existing file others could read is replaced by a private one.
    std::fs::write(&file, "old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let v =
        json!({"access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH, "expires": 1773850553});
    write_private(&file, &v);
    assert_eq!(mode(&file), 0o600);
    let back: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(back, v);
    // Nothing left behind: the temporary file was renamed into place.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["tokens.json"]);
    // A symlink planted at the name is replaced, not followed.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "untouched").unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    write_private(&file, &v);
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn scrubs_every_secret_in_any_spelling() {
    let o = OAuth::new(PORTAL, &config()).unwrap();
    let check = |text: &str, want: &str| assert_eq!(o.scrub(text), want, "{text}");
    check(&format!("token {ACCESS} x"), "token *** x");
    check("ACCESSCANARY0001 refreshcanary001", "*** ***");
    check(&format!("secret={SECRET}&"), "secret=***&");
    // Percent-encoded (once, twice, partly) and JSON-escaped.
    check("%41%63cessCanary0001", "***");
    check("%2541ccessCanary0001", "***");
    check(r#"{"auth":"\u0041ccessCanary0001"}"#, r#"{"auth":"***"}"#);
    check("Refresh%43anary001!", "***!");
    // Webhook paths too, as for a webhook client.
    check("/rest/1/abcd1234efgh/", "/rest/1/***/");
    // Untouched otherwise.
    check("ROLE K USER_ID 1", "ROLE K USER_ID 1");
}

/// A refresh request's form fields.
type RefreshForm = BTreeMap<String, String>;

/// The fake on the other side: a portal that accepts one access token and says the others
/// have expired, and an OAuth server that answers refreshes as configured.
struct Fake {
    /// The access token the portal accepts; any in `expired` gets 401 `expired_token`, any
    /// other 401 `invalid_token`.
    valid: Mutex<String>,
    expired: Mutex<Vec<String>>,
    /// Requests with an expired token wait here until this many have arrived, so they are all
    /// refused before any refresh is answered.
    together: tokio::sync::Barrier,
    /// Each portal request: (method, the `auth` it carried).
    calls: Mutex<Vec<(String, String)>>,
    /// What `/oauth/token/` answers, and every form it received with its query string.
    answer: Mutex<(u16, Value)>,
    refreshes: Mutex<Vec<(RefreshForm, Option<String>)>>,
    refreshed: AtomicUsize,
    /// When set, the OAuth server is a rotating one, as Bitrix24's can be: each refresh token
    /// works once (then `invalid_grant`), and each refresh issues `RotatedAccessNNNN` /
    /// `RotatedRefreshNNNN`, the new access token becoming the one the portal accepts. Holds
    /// the refresh tokens spent so far.
    one_time: Mutex<Option<Vec<String>>>,
}

impl Fake {
    fn new(together: usize) -> Arc<Fake> {
        Arc::new(Fake {
            valid: Mutex::new(NEW_ACCESS.into()),
            expired: Mutex::new(vec![ACCESS.into(), FILE_ACCESS.into()]),
            together: tokio::sync::Barrier::new(together),
            calls: Mutex::new(Vec::new()),
            answer: Mutex::new((
                200,
                json!({"access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH,
                       "expires": 1773854153, "expires_in": 3600,
                       "client_endpoint": "will be set", "server_endpoint": "will be set",
                       "domain": "oauth.example", "member_id": "m1", "scope": "sonet",
                       "status": "L", "user_id": 1}),
            )),
            refreshes: Mutex::new(Vec::new()),
            refreshed: AtomicUsize::new(0),
            one_time: Mutex::new(None),
        })
    }
}

async fn portal(
    State(fake): State<Arc<Fake>>,
    UrlPath(method): UrlPath<String>,
    axum::Json(body): axum::Json<Value>,
) -> (StatusCode, axum::Json<Value>) {
    let auth = body["auth"].as_str().unwrap_or_default().to_owned();
    fake.calls
        .lock()
        .unwrap()
        .push((method.clone(), auth.clone()));
    let expired = fake.expired.lock().unwrap().contains(&auth);
    if expired {
        fake.together.wait().await;
        // The portal's message quotes nothing, but a hostile one might: echo the token.
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"error": "expired_token", "error_description": format!("The access token provided has expired ({auth})")}),
            ),
        );
    }
    if auth != *fake.valid.lock().unwrap() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"error": "invalid_token", "error_description": format!("Unable to get application by token {auth}")}),
            ),
        );
    }
    // Each command answered as its method would be, for a group whose only member is its owner.
    let cmds: Vec<(String, String)> = body["cmd"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let result: serde_json::Map<String, Value> = cmds
        .into_iter()
        .map(|(n, cmd)| {
            let answer = if cmd.starts_with("socialnetwork.api.workgroup.get") {
                json!({"ID": 1, "NAME": "G", "OWNER_ID": 1, "MEMBERS": [1], "MODERATOR_MEMBERS": [], "INVITED_MEMBERS": []})
            } else {
                json!([{"USER_ID": "1", "ROLE": "A"}])
            };
            (n, answer)
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(
            json!({"result": {"result": result, "result_error": [], "result_total": [], "result_next": [], "result_time": []}, "time": {}}),
        ),
    )
}

async fn token(
    State(fake): State<Arc<Fake>>,
    RawQuery(query): RawQuery,
    Form(form): Form<BTreeMap<String, String>>,
) -> (StatusCode, axum::Json<Value>) {
    let used = form.get("refresh_token").cloned().unwrap_or_default();
    fake.refreshes.lock().unwrap().push((form, query));
    let n = fake.refreshed.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(spent) = fake.one_time.lock().unwrap().as_mut() {
        if spent.contains(&used) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({"error": "invalid_grant", "error_description": "The refresh token was already used"}),
                ),
            );
        }
        spent.push(used);
        let access = format!("RotatedAccess{n:04}");
        let old = std::mem::replace(&mut *fake.valid.lock().unwrap(), access.clone());
        fake.expired.lock().unwrap().push(old);
        return (
            StatusCode::OK,
            axum::Json(
                json!({"access_token": access, "refresh_token": format!("RotatedRefresh{n:04}")}),
            ),
        );
    }
    let (status, body) = fake.answer.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
}

/// Serve `fake` on loopback: the portal at `/rest/`, the OAuth server at `/oauth/token/`.
/// Returns the base URL.
async fn serve(fake: Arc<Fake>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    {
        let mut answer = fake.answer.lock().unwrap();
        if answer.1.get("client_endpoint").is_some() {
            answer.1["client_endpoint"] = json!(format!("{base}/rest/"));
            answer.1["server_endpoint"] = json!(format!("{base}/rest/"));
        }
    }
    let app = Router::new()
        .route("/rest/{method}", post(portal))
        .route("/oauth/token/", post(token))
        .with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn config_for(base: &str) -> OAuthConfig {
    OAuthConfig {
        server: Some(base.to_owned()),
        ..config()
    }
}

fn http() -> reqwest::Client {
    // As `Client::new` does: rustls needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Many callers refused at once with the same token: exactly one refresh request goes out,
/// and every caller goes on with the new token. A caller whose token is already outdated does
/// not refresh at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_expiries_make_one_refresh() {
    let fake = Fake::new(1);
    let base = serve(fake.clone()).await;
    let o = Arc::new(OAuth::new(&format!("{base}/rest/"), &config_for(&base)).unwrap());
    let http = http();
    let callers = (0..16).map(|_| {
        let (o, http) = (o.clone(), http.clone());
        tokio::spawn(async move { o.refresh_after(0, &http).await })
    });
    for r in futures_util::future::join_all(callers).await {
        r.unwrap().unwrap();
    }
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(o.refreshes(), 1);
    let now = o.current();
    assert_eq!((now.generation, now.access.expose()), (1, NEW_ACCESS));
    // Late: the token it used is already replaced.
    o.refresh_after(0, &http).await.unwrap();
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    // The request: a form POST, secrets in the body only.
    let (form, query) = fake.refreshes.lock().unwrap()[0].clone();
    assert_eq!(query, None);
    let want: BTreeMap<String, String> = [
        ("grant_type", "refresh_token"),
        ("client_id", "local.roster0001"),
        ("client_secret", SECRET),
        ("refresh_token", REFRESH),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(form, want);
    // Old and new tokens are all scrubbed now.
    assert_eq!(
        o.scrub(&format!("{ACCESS} {REFRESH} {NEW_ACCESS} {NEW_REFRESH}")),
        "*** *** *** ***"
    );
}

/// A refused refresh fails every caller with the same message, sent once: nobody tries the
/// used-up refresh token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_refresh_fails_everybody_once() {
    let fake = Fake::new(1);
    *fake.answer.lock().unwrap() = (
        400,
        json!({"error": "invalid_grant", "error_description": format!("Invalid refresh token {REFRESH}")}),
    );
    let base = serve(fake.clone()).await;
    let o = Arc::new(OAuth::new(&format!("{base}/rest/"), &config_for(&base)).unwrap());
    let http = http();
    let callers = (0..8).map(|_| {
        let (o, http) = (o.clone(), http.clone());
        tokio::spawn(async move { o.refresh_after(0, &http).await })
    });
    let errors: Vec<String> = futures_util::future::join_all(callers)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap_err())
        .collect();
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    assert!(errors.iter().all(|e| *e == errors[0]), "{errors:?}");
    let e = &errors[0];
    assert!(leaks(e).is_empty(), "{e}");
    assert!(
        e.starts_with(&format!(
            "cannot refresh the OAuth access token: the OAuth server {base} refused (HTTP 400, invalid_grant: Invalid refresh token ***); the refresh token has expired (they last 180 days), was revoked, or was already used"
        )),
        "{e}"
    );
    assert!(
        e.contains("authorise roster again and set ROSTER_OAUTH_ACCESS_TOKEN and ROSTER_OAUTH_REFRESH_TOKEN to the new tokens"),
        "{e}"
    );
    assert_eq!(o.current().generation, 0);
}

#[tokio::test]
async fn refresh_failures_say_what_to_do() {
    let fail = |status: u16, answer: Value| async move {
        let fake = Fake::new(1);
        *fake.answer.lock().unwrap() = (status, answer);
        let base = serve(fake).await;
        let o = OAuth::new(&format!("{base}/rest/"), &config_for(&base)).unwrap();
        let e = o.refresh_after(0, &http()).await.unwrap_err();
        assert!(leaks(&e).is_empty(), "{e}");
        e
    };
    let e = fail(400, json!({"error": "invalid_client"})).await;
    assert!(
        e.contains("ROSTER_OAUTH_CLIENT_ID or ROSTER_OAUTH_CLIENT_SECRET is wrong"),
        "{e}"
    );
    let e = fail(200, json!({"error": "wrong_client"})).await;
    assert!(e.contains("(HTTP 200, wrong_client)"), "{e}");
    let e = fail(
        401,
        json!({"error": "NOT_INSTALLED", "error_description": "Application not installed"}),
    )
    .await;
    assert!(
        e.contains("NOT_INSTALLED: Application not installed); authorise roster again"),
        "{e}"
    );
    let e = fail(502, json!({"nothing": NEW_ACCESS})).await;
    assert!(
        e.contains("answered HTTP 502 without an access_token"),
        "{e}"
    );
    let e = fail(200, json!({"access_token": "x"})).await;
    assert!(e.contains("tokens roster cannot use"), "{e}");
    // No server listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let o = OAuth::new(PORTAL, &config_for(&closed)).unwrap();
    let e = o.refresh_after(0, &http()).await.unwrap_err();
    assert!(e.contains("cannot connect to the OAuth server"), "{e}");
    assert!(e.contains("the refresh token was not used"), "{e}");
    // No refresh token: nothing is sent.
    let mut c = config();
    c.refresh_token = None;
    let o = OAuth::new(PORTAL, &c).unwrap();
    let e = o.refresh_after(0, &http()).await.unwrap_err();
    assert!(
        e.starts_with("the OAuth access token has expired and roster has no refresh token"),
        "{e}"
    );
    assert_eq!(o.refreshes(), 0);
}

fn client(auth: OAuth) -> Client {
    Client::new(
        auth,
        Options {
            rate: None,
            concurrency: 4,
            timeout: Duration::from_secs(10),
            ..Options::default()
        },
    )
    .unwrap()
}

/// Log lines of every crate at every level, captured for this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Capture every log line of this thread, at every level, while the guard lives.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    // Other tests, on other threads, may have hit the client's log sites before this
    // subscriber existed; recompute their interest so none stays switched off.
    tracing::callsite::rebuild_interest_cache();
    (log, guard)
}

/// Refreshed tokens that cannot be kept are warned about (the run goes on: it has them in
/// memory), without showing them.
#[tokio::test]
async fn refreshed_tokens_that_cannot_be_kept_are_warned_about() {
    let (log, _guard) = capture();
    let fake = Fake::new(1);
    let base = serve(fake.clone()).await;
    let o = OAuth::new(&format!("{base}/rest/"), &config_for(&base)).unwrap();
    o.refresh_after(0, &http()).await.unwrap();
    assert_eq!(o.current().access.expose(), NEW_ACCESS);
    let log = log.text();
    assert!(
        log.contains("the new refresh token is kept nowhere (--oauth-token-file / ROSTER_OAUTH_TOKEN_FILE is not set)"),
        "{log}"
    );
    assert!(leaks(&log).is_empty(), "{log}");
}

/// A token file in a directory that does not exist cannot be locked (nor written): the
/// refresh fails before the refresh token is spent, and says so.
#[tokio::test]
async fn a_token_file_that_cannot_be_locked_spends_nothing() {
    let fake = Fake::new(1);
    let base = serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("tokens.json");
    let o = OAuth::new(
        &format!("{base}/rest/"),
        &OAuthConfig {
            token_file: Some(missing.clone()),
            ..config_for(&base)
        },
    )
    .unwrap();
    let e = o.refresh_after(0, &http()).await.unwrap_err();
    assert!(
        e.starts_with(&format!(
            "cannot refresh the OAuth access token: cannot lock the token file {} with {}",
            missing.display(),
            missing.with_file_name(".tokens.json.lock").display()
        )),
        "{e}"
    );
    assert!(e.ends_with("the refresh token was not used"), "{e}");
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 0);
}

/// A token file both OAuth states start from, and the two states (as two roster processes
/// would hold them: separate in-process single flights, one file).
fn two_runs(base: &str, file: &std::path::Path) -> (Arc<OAuth>, Arc<OAuth>) {
    write_private(
        file,
        &json!({"access_token": FILE_ACCESS, "refresh_token": FILE_REFRESH,
                "client_endpoint": format!("{base}/rest/")}),
    );
    let config = OAuthConfig {
        token_file: Some(file.to_owned()),
        ..config_for(base)
    };
    let run = || Arc::new(OAuth::new(&format!("{base}/rest/"), &config).unwrap());
    (run(), run())
}

/// F3: two runs sharing a token file, both refused as expired at once, against an OAuth server
/// that refuses a spent refresh token: one refresh; the other run takes the tokens the first
/// saved (no request of its own), and both go on with the same token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runs_sharing_a_token_file_refresh_once() {
    let fake = Fake::new(1);
    *fake.one_time.lock().unwrap() = Some(Vec::new());
    let base = serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (a, b) = two_runs(&base, &file);
    let http = http();
    let refresh = |o: &Arc<OAuth>| {
        let (o, http) = (o.clone(), http.clone());
        tokio::spawn(async move { o.refresh_after(0, &http).await })
    };
    let (ra, rb) = (refresh(&a), refresh(&b));
    ra.await.unwrap().unwrap();
    rb.await.unwrap().unwrap();
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(a.refreshes() + b.refreshes(), 1);
    for o in [&a, &b] {
        let now = o.current();
        assert_eq!(
            (now.generation, now.access.expose()),
            (1, "RotatedAccess0001")
        );
        assert_eq!(
            o.tokens.lock().unwrap().refresh.as_ref().unwrap().expose(),
            "RotatedRefresh0001"
        );
        // What the other run saved is a secret here too.
        assert_eq!(o.scrub("RotatedAccess0001 RotatedRefresh0001"), "*** ***");
    }
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["access_token"], "RotatedAccess0001");
    // The lock file stays, private, holding the last holder's pid.
    let lock = dir.path().join(".tokens.json.lock");
    #[cfg(unix)]
    assert_eq!(mode(&lock), 0o600);
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        std::process::id().to_string()
    );
    // Both expire again: again one refresh, with the rotated refresh token.
    let (ra, rb) = (refresh(&a), refresh(&b));
    ra.await.unwrap().unwrap();
    rb.await.unwrap().unwrap();
    // `refresh` was spawned with generation 0, already outdated: nothing sent.
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    let again = |o: &Arc<OAuth>| {
        let (o, http) = (o.clone(), http.clone());
        tokio::spawn(async move { o.refresh_after(1, &http).await })
    };
    let (ra, rb) = (again(&a), again(&b));
    ra.await.unwrap().unwrap();
    rb.await.unwrap().unwrap();
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 2);
    assert_eq!(
        fake.refreshes.lock().unwrap()[1].0["refresh_token"],
        "RotatedRefresh0001"
    );
    assert_eq!(a.current().access.expose(), "RotatedAccess0002");
    assert_eq!(b.current().access.expose(), "RotatedAccess0002");
}

/// The same through two clients reading groups: both batches are refused as expired before
/// either refresh is answered; every group is read by both, with one refresh in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_sharing_a_token_file_both_succeed() {
    let fake = Fake::new(2);
    *fake.one_time.lock().unwrap() = Some(Vec::new());
    let base = serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (a, b) = two_runs(&base, &file);
    let (a, b) = (
        client(Arc::into_inner(a).unwrap()),
        client(Arc::into_inner(b).unwrap()),
    );
    let groups = [GroupId::Num(1), GroupId::Num(2)];
    let (sa, sb) = tokio::join!(a.fetch(&groups, &|_| {}), b.fetch(&groups, &|_| {}));
    assert_eq!(sa.unwrap().groups.len(), 2);
    assert_eq!(sb.unwrap().groups.len(), 2);
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(a.counters().refreshes + b.counters().refreshes, 1);
}

/// The other run saved tokens meanwhile (the file holds an access token this run never
/// held): taken without a request; a file holding this run's own token is refreshed as usual.
#[tokio::test]
async fn tokens_another_run_saved_are_taken_without_a_refresh() {
    let fake = Fake::new(1);
    let base = serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (o, _) = two_runs(&base, &file);
    write_private(
        &file,
        &json!({"access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH,
                "client_endpoint": format!("{base}/rest/"), "member_id": "m1"}),
    );
    o.refresh_after(0, &http()).await.unwrap();
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 0);
    let now = o.current();
    assert_eq!((now.generation, now.access.expose()), (1, NEW_ACCESS));
    assert_eq!(o.scrub(&format!("{NEW_ACCESS} {NEW_REFRESH}")), "*** ***");
    // The token it took expires too: the file still holds it, so this run refreshes.
    o.refresh_after(1, &http()).await.unwrap();
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(
        fake.refreshes.lock().unwrap()[0].0["refresh_token"],
        NEW_REFRESH
    );
    // Tokens saved for another portal are refused, not taken.
    let (o, _) = two_runs(&base, &file);
    write_private(
        &file,
        &json!({"access_token": "OtherPortalAccess1", "client_endpoint": "https://other.example/rest/"}),
    );
    let e = o.refresh_after(0, &http()).await.unwrap_err();
    assert!(
        e.contains("another roster run saved tokens for https://other.example/rest/ in it"),
        "{e}"
    );
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
}

/// A run that holds the lock for longer than `LOCK_WAIT`: the waiting run gives up with a
/// clear error naming the holder, spending nothing. (Paused clock: the 30 s pass at once.)
#[tokio::test(start_paused = true)]
async fn a_lock_held_too_long_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    // Nobody listens there: a refresh request would fail differently.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (o, _) = two_runs(&closed, &file);
    let lock = dir.path().join(".tokens.json.lock");
    let holder = std::fs::File::create(&lock).unwrap();
    holder.lock().unwrap();
    std::fs::write(&lock, "4242\n").unwrap();
    let started = tokio::time::Instant::now();
    let e = o.refresh_after(0, &http()).await.unwrap_err();
    assert!(started.elapsed() >= LOCK_WAIT);
    assert_eq!(
        e,
        format!(
            "cannot refresh the OAuth access token: another roster run (process 4242) has been refreshing the tokens in {} for 30 s and still holds {}; the refresh token was not used: try again once that run has finished",
            file.display(),
            lock.display()
        )
    );
    assert_eq!(o.refreshes(), 0);
    drop(holder);
}

/// A symlink planted at the lock's name is never followed (nor is its target created).
#[cfg(unix)]
#[tokio::test]
async fn a_symlink_at_the_locks_name_is_refused() {
    let fake = Fake::new(1);
    let base = serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (o, _) = two_runs(&base, &file);
    let target = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, dir.path().join(".tokens.json.lock")).unwrap();
    let e = o.refresh_after(0, &http()).await.unwrap_err();
    assert!(e.contains("it is a symbolic link"), "{e}");
    assert!(!target.exists());
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 0);
}

/// End to end: four batches in flight are all refused as expired; one refresh, each batch sent
/// again with the new token, every group read; the token file rewritten (0600) with the new
/// tokens and the answer's other fields; not one secret in the trace-level log.
#[tokio::test]
async fn a_client_refreshes_once_for_all_requests_in_flight() {
    let (log, _guard) = capture();

    let fake = Fake::new(4);
    let base = serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    write_private(
        &file,
        &json!({"access_token": FILE_ACCESS, "refresh_token": FILE_REFRESH,
                "client_endpoint": format!("{base}/rest/")}),
    );
    let c = client(
        OAuth::new(
            &format!("{base}/rest/"),
            &OAuthConfig {
                token_file: Some(file.clone()),
                ..config_for(&base)
            },
        )
        .unwrap(),
    );
    let groups: Vec<GroupId> = (1..=200).map(GroupId::Num).collect();
    let state = c.fetch(&groups, &|_| {}).await.unwrap();
    assert_eq!(state.groups.len(), 200);
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    let counters = c.counters();
    assert_eq!(
        (counters.requests, counters.retries, counters.refreshes),
        (8, 4, 1)
    );
    // The file's refresh token was the one used, not the environment's.
    assert_eq!(
        fake.refreshes.lock().unwrap()[0].0["refresh_token"],
        FILE_REFRESH
    );
    let calls = fake.calls.lock().unwrap().clone();
    let with = |t: &str| {
        calls
            .iter()
            .filter(|(m, a)| m == "batch.json" && a == t)
            .count()
    };
    assert_eq!((with(FILE_ACCESS), with(NEW_ACCESS)), (4, 4), "{calls:?}");
    // The token file holds the new tokens, privately.
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["access_token"], NEW_ACCESS);
    assert_eq!(saved["refresh_token"], NEW_REFRESH);
    assert_eq!(saved["client_endpoint"], format!("{base}/rest/"));
    assert_eq!(saved["member_id"], "m1");
    assert_eq!(saved["expires"], 1773854153);
    // The next run starts from the file.
    let next = OAuth::new(
        &format!("{base}/rest/"),
        &OAuthConfig {
            token_file: Some(file.clone()),
            ..config_for(&base)
        },
    )
    .unwrap();
    assert_eq!(next.current().access.expose(), NEW_ACCESS);

    drop(_guard);
    let log = log.text();
    assert!(log.contains("refreshed the OAuth access token"), "{log}");
    assert!(log.contains("batch body"), "the body is logged: {log}");
    assert!(
        leaks(&log).is_empty(),
        "{:?} in the log:\n{log}",
        leaks(&log)
    );
}

/// A refused refresh ends the run at once through the breaker: every request fails with the
/// cause, and nothing is sent after it.
#[tokio::test]
async fn a_refused_refresh_fails_the_run_once() {
    let fake = Fake::new(4);
    *fake.answer.lock().unwrap() = (
        400,
        json!({"error": "invalid_grant", "error_description": "Refresh token expired"}),
    );
    let base = serve(fake.clone()).await;
    let c = client(OAuth::new(&format!("{base}/rest/"), &config_for(&base)).unwrap());
    let groups: Vec<GroupId> = (1..=200).map(GroupId::Num).collect();
    let err = c.fetch(&groups, &|_| {}).await.unwrap_err();
    let FetchError::RunWide { cause, unread } = &err else {
        panic!("{err}");
    };
    assert_eq!(*unread, 200);
    assert!(
        cause.starts_with("cannot refresh the OAuth access token: the OAuth server"),
        "{cause}"
    );
    assert!(
        cause.contains("invalid_grant: Refresh token expired"),
        "{cause}"
    );
    assert!(cause.contains("authorise roster again"), "{cause}");
    assert!(leaks(&err.to_string()).is_empty(), "{err}");
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(c.counters().requests, 4, "no request sent again");
}

/// A token refused as expired again right after the refresh: a clear error, not a loop.
#[tokio::test]
async fn expired_again_after_a_refresh_is_not_retried() {
    let fake = Fake::new(1);
    fake.expired.lock().unwrap().push(NEW_ACCESS.into());
    let base = serve(fake.clone()).await;
    let c = client(OAuth::new(&format!("{base}/rest/"), &config_for(&base)).unwrap());
    let err = c
        .fetch(&[GroupId::Num(1)], &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("the portal says the OAuth access token has expired, also right after roster refreshed it"),
        "{err}"
    );
    assert!(leaks(&err).is_empty(), "{err}");
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(fake.calls.lock().unwrap().len(), 2);
}

/// `invalid_token`: the portal does not know the token; no refresh, a clear error.
#[tokio::test]
async fn an_unknown_token_is_reported_not_refreshed() {
    let fake = Fake::new(1);
    fake.expired.lock().unwrap().clear();
    let base = serve(fake.clone()).await;
    let c = client(OAuth::new(&format!("{base}/rest/"), &config_for(&base)).unwrap());
    let err = c
        .fetch(&[GroupId::Num(1)], &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("the portal does not accept the OAuth access token (invalid_token (Unable to get application by token ***))"),
        "{err}"
    );
    assert!(err.contains("authorise roster again"), "{err}");
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 0);
    assert_eq!(c.counters().refreshes, 0);
}

/// Writes are sent again after a refresh (an expired token means the portal did nothing), with
/// the new token in the body's `auth`, at the top level of the batch.
#[tokio::test]
async fn a_write_is_sent_again_with_the_new_token() {
    use crate::model::{Role, UserId};
    use crate::plan::Change;
    let fake = Fake::new(1);
    let base = serve(fake.clone()).await;
    let c = client(OAuth::new(&format!("{base}/rest/"), &config_for(&base)).unwrap());
    let changes = [(
        GroupId::Num(1),
        Change::Remove {
            user: UserId::Num(1),
            role: Role::Member,
        },
    )];
    let stop = crate::provider::CancellationToken::new();
    let _ = c
        .execute(&changes, &Default::default(), &|_| {}, &stop)
        .await;
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls[..2],
        [
            ("batch.json".to_owned(), ACCESS.to_owned()),
            ("batch.json".to_owned(), NEW_ACCESS.to_owned())
        ]
    );
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
}

/// F10: a refused refresh during apply is told in full once, by the first change it failed;
/// every other change says so briefly instead of repeating the whole advice.
#[tokio::test]
async fn a_refused_refresh_is_told_in_full_once_in_the_report() {
    use crate::model::{OpStatus, Role, UserId};
    use crate::plan::Change;
    let fake = Fake::new(1);
    *fake.answer.lock().unwrap() = (
        400,
        json!({"error": "invalid_grant", "error_description": "Refresh token expired"}),
    );
    let base = serve(fake.clone()).await;
    let c = client(OAuth::new(&format!("{base}/rest/"), &config_for(&base)).unwrap());
    // 120 groups: three batches, sent concurrently or refused before sending.
    let changes: Vec<(GroupId, Change)> = (1..=120)
        .map(|g| {
            (
                GroupId::Num(g),
                Change::Remove {
                    user: UserId::Num(2),
                    role: Role::Member,
                },
            )
        })
        .collect();
    let stop = crate::provider::CancellationToken::new();
    let statuses = c
        .execute(&changes, &Default::default(), &|_| {}, &stop)
        .await;
    assert_eq!(statuses.len(), 120);
    let OpStatus::Failed { error } = &statuses[0] else {
        panic!("{:?}", statuses[0]);
    };
    assert!(
        error.contains("cannot refresh the OAuth access token: the OAuth server"),
        "{error}"
    );
    assert!(error.contains("authorise roster again"), "{error}");
    for s in &statuses[1..] {
        assert_eq!(
            *s,
            OpStatus::Failed {
                error: "the OAuth refresh failed (see above)".into()
            }
        );
    }
    assert_eq!(fake.refreshed.load(Ordering::SeqCst), 1);
}
