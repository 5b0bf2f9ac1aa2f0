//! OAuth 2.0, the second way the Bitrix24 client authenticates (besides incoming webhooks):
//! the validated configuration, the current tokens, the single-flight refresh and the token
//! file that keeps refreshed tokens between runs.
//!
//! Calls go to `{client_endpoint}{method}.json` with the access token in the JSON body's `auth`
//! field (the client puts it there, `Client::call_once`). The token is refreshed only after the
//! portal answers HTTP 401 `expired_token` (never on a timer or before a call: Bitrix24 may block
//! apps that do), by one request at a time: every request that failed with an older token waits
//! for that one refresh and is then sent again with the new token. Refresh tokens rotate (and
//! may be one-time), so a second refresh with the same token could fail and must never race.
//!
//! Across processes: roster runs that share a token file refresh one at a time too. A refresh
//! takes an exclusive `flock` on the sidecar `.NAME.lock` next to the token file (opened with
//! `O_NOFOLLOW`: never through a symlink planted at that name), waiting up to [`LOCK_WAIT`];
//! then it reads the token file again. When the file holds an access token this run has not
//! used, another run has refreshed meanwhile: its tokens are taken and nothing is sent to the
//! OAuth server. Otherwise roster refreshes and writes the file before letting the lock go.
//!
//! Every token and the client secret is a `Secret`: none appears in a message or log line, and
//! `OAuth::scrub` masks all of them, old and new, in text from the network.
//!
//! No environment reading here: the shell fills `OAuthConfig`. Files: the token file only.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::{debug, info, warn};

use super::webhook::{MIN_CODE_LEN, Secret, redact, scrub_secret, scrub_webhook_urls, secure_url};

/// The environment variables and flag the shell reads `OAuthConfig` from; named in messages.
pub const ENV_ACCESS_TOKEN: &str = "ROSTER_OAUTH_ACCESS_TOKEN";
pub const ENV_REFRESH_TOKEN: &str = "ROSTER_OAUTH_REFRESH_TOKEN";
pub const ENV_CLIENT_ID: &str = "ROSTER_OAUTH_CLIENT_ID";
pub const ENV_CLIENT_SECRET: &str = "ROSTER_OAUTH_CLIENT_SECRET";
pub const ENV_SERVER: &str = "ROSTER_OAUTH_SERVER";
pub const ENV_TOKEN_FILE: &str = "ROSTER_OAUTH_TOKEN_FILE";
pub const FLAG_TOKEN_FILE: &str = "--oauth-token-file";

/// How long a refresh waits for another roster run that is refreshing the same token file.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The OAuth server when neither `ROSTER_OAUTH_SERVER` nor a saved `server_endpoint` names one
/// (the docs' and CRest's server; PHPSDK's "west" default).
pub const DEFAULT_SERVER: &str = "https://oauth.bitrix.info";

/// What the shell collected for OAuth, unvalidated: every field as the user gave it, `None`
/// when not given. An empty value counts as not given (a CI secret that is not defined
/// expands to an empty string). The REST endpoint (`client_endpoint`) is `--portal`.
#[derive(Debug, Clone, Default)]
pub struct OAuthConfig {
    /// `ROSTER_OAUTH_ACCESS_TOKEN`.
    pub access_token: Option<Secret>,
    /// `ROSTER_OAUTH_REFRESH_TOKEN`.
    pub refresh_token: Option<Secret>,
    /// `ROSTER_OAUTH_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `ROSTER_OAUTH_CLIENT_SECRET`.
    pub client_secret: Option<Secret>,
    /// `ROSTER_OAUTH_SERVER`: the OAuth server's base URL, e.g. `https://oauth.bitrix.info`.
    pub server: Option<String>,
    /// `--oauth-token-file` / `ROSTER_OAUTH_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
}

impl OAuthConfig {
    /// The same with empty values taken as not given.
    fn given(&self) -> OAuthConfig {
        let secret = |s: &Option<Secret>| s.clone().filter(|s| !s.expose().is_empty());
        let text = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        OAuthConfig {
            access_token: secret(&self.access_token),
            refresh_token: secret(&self.refresh_token),
            client_id: text(&self.client_id),
            client_secret: secret(&self.client_secret),
            server: text(&self.server),
            token_file: self
                .token_file
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
        }
    }
}

/// Why the OAuth configuration was refused. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error(
        "invalid Bitrix24 REST endpoint {shown}: {why} (for OAuth, --portal is https://HOST/rest/)"
    )]
    Endpoint { shown: String, why: &'static str },
    #[error("invalid {ENV_SERVER} {shown}: {why} (expected e.g. {DEFAULT_SERVER})")]
    Server { shown: String, why: &'static str },
    #[error("OAuth needs {0}")]
    Missing(String),
    /// A secret that cannot be right (too short, spaces): `name` says where it came from.
    #[error("{name} {why}")]
    BadValue { name: String, why: &'static str },
    #[error("token file {path}: {why}")]
    TokenFile { path: String, why: String },
}

/// The portal's answer to a call refused the token: how the client reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 401 `expired_token`: refresh and send again.
    Expired,
    /// 401 `invalid_token`: the portal does not know the token. Not refreshed (PHPSDK does not
    /// either): a token it never issued will not become valid.
    Invalid,
}

/// Read a 401 answer's `error` code (any letter case, as PHPSDK matches it).
pub(crate) fn refusal(status: Option<u16>, code: &str) -> Option<Refusal> {
    if status != Some(401) {
        return None;
    }
    if code.eq_ignore_ascii_case("expired_token") {
        Some(Refusal::Expired)
    } else if code.eq_ignore_ascii_case("invalid_token") {
        Some(Refusal::Invalid)
    } else {
        None
    }
}

/// The token a request is sent with, and which refresh produced it.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub generation: u64,
    pub access: Secret,
    /// `client_endpoint`: `https://HOST/rest/`.
    pub endpoint: String,
}

impl Current {
    /// The URL of a method call: `{client_endpoint}{method}.json`. Holds no secret.
    pub fn url(&self, method: &str) -> String {
        format!("{}{method}.json", self.endpoint)
    }

    /// `body` with the access token in its top-level `auth` field (for `batch` too: the portal
    /// copies it into every command). Contains the secret: hand it to the HTTP client only,
    /// never to a log line (`batch` logs its body before this).
    pub fn sign(&self, body: &Value) -> Value {
        let mut body = body.clone();
        if let Value::Object(map) = &mut body {
            map.insert(
                "auth".into(),
                Value::String(self.access.expose().to_owned()),
            );
        }
        body
    }
}

/// The tokens in use.
#[derive(Debug)]
struct Tokens {
    /// 0 for the tokens roster started with, +1 per refresh.
    generation: u64,
    access: Secret,
    refresh: Option<Secret>,
    endpoint: String,
    /// The OAuth server's base, without a trailing slash.
    server: String,
    /// The last token response (or the token file as read): written back, updated, after a
    /// refresh, so fields roster does not use (`member_id`, `scope`, `expires`…) are kept.
    saved: Map<String, Value>,
}

/// OAuth credentials, validated, and the state of their refreshes.
pub struct OAuth {
    client_id: Option<String>,
    client_secret: Option<Secret>,
    /// `ROSTER_OAUTH_SERVER`, validated: always used when given.
    server_override: Option<String>,
    token_file: Option<PathBuf>,
    /// How long to wait for the token file's lock ([`LOCK_WAIT`]; shorter in tests).
    lock_wait: Duration,
    tokens: Mutex<Tokens>,
    /// Held while a refresh is under way; holds why refreshing failed, once it has.
    gate: tokio::sync::Mutex<Option<String>>,
    /// Every secret seen in this run: the client secret, and every access and refresh token,
    /// old ones included (an answer may quote a token that has since been replaced).
    secrets: RwLock<Vec<Secret>>,
    refreshes: AtomicU64,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OAuth({})", self.display())
    }
}

/// `https://HOST/…/rest/`, normalised (lower-case scheme and host, one trailing slash). The
/// reason is safe to show.
fn rest_endpoint(url: &str) -> Result<String, &'static str> {
    let (parsed, authority) = secure_url(url)?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("a query or fragment does not belong in the REST endpoint");
    }
    let segments: Vec<&str> = parsed.path_segments().ok_or("no path")?.collect();
    let segments = match segments.split_last() {
        Some((&"", init)) => init,
        _ => &segments[..],
    };
    if segments.last() != Some(&"rest") {
        return Err("the path must end in /rest/");
    }
    Ok(format!(
        "{}://{authority}/{}/",
        parsed.scheme(),
        segments.join("/")
    ))
}

/// Whether `portal` has the shape of an OAuth REST endpoint (`https://HOST/rest/`, nothing
/// after `rest`) rather than a webhook (`…/rest/USER_ID/CODE/`).
pub(crate) fn is_endpoint_shaped(portal: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(portal) else {
        return false;
    };
    let Some(segments) = url.path_segments() else {
        return false;
    };
    let segments: Vec<&str> = segments.collect();
    let segments = match segments.split_last() {
        Some((&"", init)) => init,
        _ => &segments[..],
    };
    segments.last() == Some(&"rest")
}

/// The OAuth server's base (`https://oauth.bitrix.info`, no trailing slash), validated.
fn server_base(url: &str) -> Result<String, &'static str> {
    let (parsed, authority) = secure_url(url)?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("a query or fragment does not belong in the OAuth server's address");
    }
    let path = parsed.path().trim_end_matches('/');
    Ok(format!("{}://{authority}{path}", parsed.scheme()))
}

/// A token response's `server_endpoint` (`https://oauth.bitrix.info/rest/`) minus `/rest/`, as
/// the JS SDK derives the OAuth server.
fn server_from_endpoint(server_endpoint: &str) -> Result<String, &'static str> {
    let trimmed = server_endpoint.trim_end_matches('/');
    let base = trimmed
        .strip_suffix("/rest")
        .ok_or("server_endpoint does not end in /rest/")?;
    server_base(base)
}

/// A secret's value must be one word of printable ASCII, at least `MIN_CODE_LEN` long: answers
/// are scrubbed of it, and a short one could be ordinary answer text (as for webhook codes).
fn check_secret(s: &Secret) -> Result<(), &'static str> {
    let v = s.expose();
    if v.is_empty() {
        Err("is empty")
    } else if !v.bytes().all(|b| b.is_ascii_graphic()) {
        Err("must be printable ASCII without spaces (check for a stray newline or quote)")
    } else if v.len() < MIN_CODE_LEN {
        Err("is too short to be a Bitrix24 credential (at least 8 characters)")
    } else {
        Ok(())
    }
}

/// `check_secret` for a value from the environment variable `name`.
fn check_env_secret(name: &str, s: &Secret) -> Result<(), OAuthError> {
    check_secret(s).map_err(|why| OAuthError::BadValue {
        name: name.to_owned(),
        why,
    })
}

/// A token file as read: the whole JSON object.
#[derive(Debug)]
struct FileTokens {
    map: Map<String, Value>,
    access: Secret,
    refresh: Option<Secret>,
}

/// Read the token file, or `None` if there is none. Refused: a file others can read or write
/// (it holds a refresh token, valid for 180 days), anything but a JSON object with a string
/// `access_token`. Messages never quote the file's content.
fn read_token_file(path: &Path) -> Result<Option<FileTokens>, OAuthError> {
    let fail = |why: String| OAuthError::TokenFile {
        path: path.display().to_string(),
        why,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(format!("cannot read it: {e}"))),
    };
    check_private(path).map_err(fail)?;
    // Parse to a `Value` first: serde_json's syntax errors give a position, never content.
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("not valid JSON ({e}); delete it to start again from {ENV_ACCESS_TOKEN} and {ENV_REFRESH_TOKEN}")))?;
    let Value::Object(map) = value else {
        return Err(fail("not a JSON object".into()));
    };
    let text = |key: &str| -> Result<Option<Secret>, OAuthError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(Secret::new(s.clone()))),
            Some(_) => Err(fail(format!("{key} is not a string"))),
        }
    };
    let access = text("access_token")?.ok_or_else(|| {
        fail(format!(
            "it has no access_token; delete it to start again from {ENV_ACCESS_TOKEN} and {ENV_REFRESH_TOKEN}"
        ))
    })?;
    let refresh = text("refresh_token")?;
    for key in ["client_endpoint", "server_endpoint"] {
        if map.get(key).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(fail(format!("{key} is not a string")));
        }
    }
    Ok(Some(FileTokens {
        map,
        access,
        refresh,
    }))
}

/// A token file must be private to its owner, as ssh insists for private keys: a refresh token
/// others can read may already be copied (so warning and carrying on would not help), and one
/// others can write could point roster at another server.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot read its permissions: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "other users may read or change it (mode {:04o}), and it holds a refresh token; run `chmod 600 {}` (and authorise roster again if someone else may have read it)",
            mode & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), String> {
    Ok(())
}

/// Write `map` to `path` atomically: a temporary file in the same directory, created with mode
/// 0600, written, synced, then renamed over `path` (which replaces a symlink there rather than
/// following it); then the directory is synced so the rename survives a crash. A reader sees
/// the old file or the new one, never a part.
fn write_token_file(path: &Path, map: &Map<String, Value>) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".roster-oauth-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    let mut text = serde_json::to_string_pretty(map).map_err(std::io::Error::other)?;
    text.push('\n');
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The lock file of the token file `path`: `.NAME.lock` in the same directory.
fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tokens".to_owned());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    dir.join(format!(".{name}.lock"))
}

/// Open (creating it, mode 0600) the lock file at `path`, never through a symlink there.
fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::other("it is a symbolic link"));
    }
    options.open(path).map_err(|e| {
        // O_NOFOLLOW on a symlink fails with ELOOP: say so plainly.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            std::io::Error::other("it is a symbolic link; roster does not follow one there")
        } else {
            e
        }
    })
}

/// Take the exclusive lock on the token file `path`'s lock file, waiting up to `wait` for
/// another roster run to let it go (polling: a `flock` wait cannot be bounded or cancelled).
/// Held while the returned file is open. The lock file is left in place afterwards, holding
/// the last holder's pid.
async fn lock_token_file(path: &Path, wait: Duration) -> Result<std::fs::File, String> {
    use std::io::{Read as _, Seek as _, Write as _};
    let lock = lock_path(path);
    let cannot = |e: &dyn std::fmt::Display| {
        format!(
            "cannot refresh the OAuth access token: cannot lock the token file {} with {} ({e}); the refresh token was not used",
            path.display(),
            lock.display()
        )
    };
    let mut file = open_lock(&lock).map_err(|e| cannot(&e))?;
    let started = tokio::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                let left = wait.saturating_sub(started.elapsed());
                tokio::time::sleep(left.min(Duration::from_millis(25))).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let by = match text.trim().parse::<u32>() {
                    Ok(pid) => format!(" (process {pid})"),
                    Err(_) => String::new(),
                };
                return Err(format!(
                    "cannot refresh the OAuth access token: another roster run{by} has been refreshing the tokens in {} for {} s and still holds {}; the refresh token was not used: try again once that run has finished",
                    path.display(),
                    wait.as_secs(),
                    lock.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(cannot(&e)),
        }
    }
    // Ours now: record who holds it, for the message above. Best effort.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

impl OAuth {
    /// Validate OAuth credentials for the REST endpoint `endpoint` (`--portal`,
    /// `https://HOST/rest/`; `http://` only for loopback). Reads the token file if one is
    /// configured and exists: its tokens take precedence over `config`'s (refresh tokens
    /// rotate, so the environment's are stale after the first refresh), and it must be for the
    /// same endpoint. Needs an access token; with a refresh token also the client id and
    /// secret. Nothing is connected to.
    pub fn new(endpoint: &str, config: &OAuthConfig) -> Result<OAuth, OAuthError> {
        let config = &config.given();
        let endpoint = rest_endpoint(endpoint).map_err(|why| OAuthError::Endpoint {
            shown: redact(endpoint),
            why,
        })?;
        let file = match &config.token_file {
            Some(p) => read_token_file(p)?,
            None => None,
        };
        let path = || {
            config
                .token_file
                .as_deref()
                .unwrap_or(Path::new(""))
                .display()
                .to_string()
        };
        let (access, refresh, saved) = match file {
            Some(f) => {
                let check = |key: &str, s: &Secret| {
                    check_secret(s).map_err(|why| OAuthError::TokenFile {
                        path: path(),
                        why: format!("its {key} {why}"),
                    })
                };
                check("access_token", &f.access)?;
                if let Some(r) = &f.refresh {
                    check("refresh_token", r)?;
                }
                info!(
                    file = %path(),
                    "using the OAuth tokens saved in the token file (they take precedence over {ENV_ACCESS_TOKEN} and {ENV_REFRESH_TOKEN})"
                );
                (f.access, f.refresh, f.map)
            }
            None => {
                let access = config.access_token.clone().ok_or_else(|| {
                    OAuthError::Missing(format!(
                        "{ENV_ACCESS_TOKEN} (or a token file holding one: {FLAG_TOKEN_FILE} / {ENV_TOKEN_FILE}); for a webhook, --portal is https://HOST/rest/USER_ID/CODE/"
                    ))
                })?;
                check_env_secret(ENV_ACCESS_TOKEN, &access)?;
                if let Some(r) = &config.refresh_token {
                    check_env_secret(ENV_REFRESH_TOKEN, r)?;
                }
                (access, config.refresh_token.clone(), Map::new())
            }
        };
        if let Some(saved_endpoint) = saved.get("client_endpoint").and_then(Value::as_str) {
            let theirs = rest_endpoint(saved_endpoint).map_err(|why| OAuthError::TokenFile {
                path: path(),
                why: format!("its client_endpoint is not usable: {why}"),
            })?;
            if theirs != endpoint {
                return Err(OAuthError::TokenFile {
                    path: path(),
                    why: format!(
                        "it holds tokens for {theirs}, not for --portal {endpoint}; if the portal moved, pass --portal={theirs}, else use another token file"
                    ),
                });
            }
        }
        let client_id = config.client_id.clone();
        if let Some(id) = &client_id
            && !id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(OAuthError::BadValue {
                name: ENV_CLIENT_ID.into(),
                why: "must be printable ASCII without spaces (check for a stray newline or quote)",
            });
        }
        if let Some(s) = &config.client_secret {
            check_env_secret(ENV_CLIENT_SECRET, s)?;
        }
        if refresh.is_some() {
            if client_id.is_none() {
                return Err(OAuthError::Missing(format!(
                    "{ENV_CLIENT_ID} to refresh the access token (the application's client_id, from its settings in Bitrix24)"
                )));
            }
            if config.client_secret.is_none() {
                return Err(OAuthError::Missing(format!(
                    "{ENV_CLIENT_SECRET} to refresh the access token (the application's client_secret, from its settings in Bitrix24)"
                )));
            }
        }
        let server_override = match &config.server {
            Some(s) => Some(server_base(s).map_err(|why| OAuthError::Server {
                shown: redact(s),
                why,
            })?),
            None => None,
        };
        let server = match (&server_override, saved.get("server_endpoint")) {
            (Some(s), _) => s.clone(),
            (None, Some(Value::String(e))) => {
                server_from_endpoint(e).map_err(|why| OAuthError::TokenFile {
                    path: path(),
                    why: format!("its server_endpoint is not usable: {why}"),
                })?
            }
            _ => DEFAULT_SERVER.to_owned(),
        };
        let mut secrets = vec![access.clone()];
        secrets.extend(refresh.clone());
        secrets.extend(config.client_secret.clone());
        // The environment's tokens too, when the file's replaced them: a portal or server
        // could still quote them. Only plausible ones: masking a short one would corrupt
        // answers (a role `K`).
        let plausible = |s: &Option<Secret>| s.clone().filter(|s| check_secret(s).is_ok());
        secrets.extend(plausible(&config.access_token));
        secrets.extend(plausible(&config.refresh_token));
        Ok(OAuth {
            client_id,
            client_secret: config.client_secret.clone(),
            server_override,
            token_file: config.token_file.clone(),
            lock_wait: LOCK_WAIT,
            tokens: Mutex::new(Tokens {
                generation: 0,
                access,
                refresh,
                endpoint,
                server,
                saved,
            }),
            gate: tokio::sync::Mutex::new(None),
            secrets: RwLock::new(secrets),
            refreshes: AtomicU64::new(0),
        })
    }

    /// The token to send a request with now.
    pub(crate) fn current(&self) -> Current {
        let t = self.tokens.lock().expect("tokens lock");
        Current {
            generation: t.generation,
            access: t.access.clone(),
            endpoint: t.endpoint.clone(),
        }
    }

    /// The REST endpoint, safe for messages and logs.
    pub fn display(&self) -> String {
        format!(
            "{} (OAuth)",
            self.tokens.lock().expect("tokens lock").endpoint
        )
    }

    /// Refresh requests sent to the OAuth server so far (failed ones included).
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// `text` with every secret of this run (access and refresh tokens, old and new, and the
    /// client secret) masked as `***` in any letter case, percent-encoded or JSON-escaped; then
    /// anything that looks like a webhook path masked too.
    pub fn scrub(&self, text: &str) -> String {
        let secrets = self.secrets.read().expect("secrets lock");
        let mut out = text.to_owned();
        for s in secrets.iter() {
            out = scrub_secret(&out, s);
        }
        scrub_webhook_urls(&out)
    }

    /// What to do when the tokens cannot be refreshed.
    fn reauthorise(&self) -> String {
        match &self.token_file {
            Some(f) => format!(
                "authorise roster again, then write the new access_token and refresh_token into {f}, or delete {f} (while it exists it takes precedence over {ENV_ACCESS_TOKEN} and {ENV_REFRESH_TOKEN}) and set those variables",
                f = f.display()
            ),
            None => format!(
                "authorise roster again and set {ENV_ACCESS_TOKEN} and {ENV_REFRESH_TOKEN} to the new tokens (and {FLAG_TOKEN_FILE} / {ENV_TOKEN_FILE}, so that refreshed tokens are kept)"
            ),
        }
    }

    /// The message for a portal that says the access token is unknown (401 `invalid_token`).
    pub(crate) fn invalid_token(&self, description: &str) -> String {
        let said = if description.is_empty() {
            String::new()
        } else {
            format!(" ({description})")
        };
        format!(
            "the portal does not accept the OAuth access token (invalid_token{said}): it was revoked, is for another portal or application, or is mistyped; {}",
            self.reauthorise()
        )
    }

    /// The message for a portal that says the access token expired although roster has just
    /// refreshed it.
    pub(crate) fn expired_again(&self) -> String {
        format!(
            "the portal says the OAuth access token has expired, also right after roster refreshed it; check that the OAuth server ({}) belongs to this portal, or {}",
            self.tokens.lock().expect("tokens lock").server,
            self.reauthorise()
        )
    }

    /// After a request sent with the token of generation `used` was refused as expired: make
    /// sure a newer token exists. Single flight: the first caller refreshes while the others
    /// wait; a caller whose token is already outdated returns at once and sends again with the
    /// current one. Once refreshing has failed it fails for everybody with the same message
    /// (safe to show: secrets scrubbed), and nothing is sent again.
    pub(crate) async fn refresh_after(
        &self,
        used: u64,
        http: &reqwest::Client,
    ) -> Result<(), String> {
        let mut gate = self.gate.lock().await;
        if let Some(failed) = gate.as_ref() {
            return Err(failed.clone());
        }
        if self.current().generation != used {
            return Ok(());
        }
        let result = self.refresh_shared(http).await;
        if let Err(e) = &result {
            *gate = Some(e.clone());
        }
        result
    }

    /// A refresh that other roster runs sharing the token file cannot race: under the file's
    /// lock, take the tokens another run saved meanwhile, else refresh and save (still
    /// holding the lock). Without a token file, just refresh.
    async fn refresh_shared(&self, http: &reqwest::Client) -> Result<(), String> {
        let Some(path) = &self.token_file else {
            return self.refresh(http).await;
        };
        let _lock = lock_token_file(path, self.lock_wait).await?;
        if self.adopt_saved(path)? {
            return Ok(());
        }
        self.refresh(http).await
    }

    /// Whether the token file at `path` holds tokens another run refreshed (an access token
    /// this run has never held); if so they are taken, as a new generation. A file that is
    /// gone, or holds a token this run has held, changes nothing. Called with the lock held.
    fn adopt_saved(&self, path: &Path) -> Result<bool, String> {
        let cannot = |e: OAuthError| format!("cannot refresh the OAuth access token: {e}");
        let Some(file) = read_token_file(path).map_err(cannot)? else {
            return Ok(false);
        };
        let held = {
            let secrets = self.secrets.read().expect("secrets lock");
            secrets.iter().any(|s| s.expose() == file.access.expose())
        };
        if held {
            return Ok(false);
        }
        // Scrubbed from now on, whatever happens next.
        {
            let mut secrets = self.secrets.write().expect("secrets lock");
            secrets.push(file.access.clone());
            secrets.extend(file.refresh.clone());
        }
        let bad = |why: String| {
            cannot(OAuthError::TokenFile {
                path: path.display().to_string(),
                why,
            })
        };
        for (key, s) in [
            ("access_token", Some(&file.access)),
            ("refresh_token", file.refresh.as_ref()),
        ] {
            if let Some(s) = s {
                check_secret(s).map_err(|why| bad(format!("its {key} {why}")))?;
            }
        }
        let mut t = self.tokens.lock().expect("tokens lock");
        if let Some(e) = file.map.get("client_endpoint").and_then(Value::as_str) {
            let theirs = rest_endpoint(e)
                .map_err(|why| bad(format!("its client_endpoint is not usable: {why}")))?;
            if theirs != t.endpoint {
                return Err(bad(format!(
                    "another roster run saved tokens for {theirs} in it, not for {}; use a token file of its own for each portal",
                    t.endpoint
                )));
            }
        }
        if self.server_override.is_none()
            && let Some(e) = file.map.get("server_endpoint").and_then(Value::as_str)
        {
            match server_from_endpoint(e) {
                Ok(s) => t.server = s,
                Err(why) => debug!("ignoring the token file's server_endpoint: {why}"),
            }
        }
        t.access = file.access;
        if file.refresh.is_some() {
            t.refresh = file.refresh;
        }
        t.saved = file.map;
        t.generation += 1;
        info!(
            generation = t.generation,
            file = %path.display(),
            "another roster run has refreshed the OAuth tokens; using the ones it saved"
        );
        Ok(true)
    }

    /// One refresh: ask the OAuth server, take the new tokens, save them.
    async fn refresh(&self, http: &reqwest::Client) -> Result<(), String> {
        let (refresh, server) = {
            let t = self.tokens.lock().expect("tokens lock");
            (t.refresh.clone(), t.server.clone())
        };
        let Some(refresh) = refresh else {
            return Err(format!(
                "the OAuth access token has expired and roster has no refresh token to renew it ({ENV_REFRESH_TOKEN} or the token file); {}",
                self.reauthorise()
            ));
        };
        let (Some(client_id), Some(client_secret)) = (&self.client_id, &self.client_secret) else {
            // `new` requires both with a refresh token.
            return Err(format!(
                "the OAuth access token has expired and {ENV_CLIENT_ID} / {ENV_CLIENT_SECRET} are not set to refresh it"
            ));
        };
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let url = format!("{server}/oauth/token/");
        debug!(%server, "refreshing the OAuth access token");
        // A form body, not the documented query string: it keeps the secrets out of URLs
        // (and so out of proxies' logs), as the JS SDK does.
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose()),
            ("refresh_token", refresh.expose()),
        ];
        let cannot = "cannot refresh the OAuth access token";
        let response = http.post(&url).form(&form).send().await.map_err(|e| {
            let (connect, timeout) = (e.is_connect(), e.is_timeout());
            let text = self.scrub(&super::describe_reqwest(e));
            if connect {
                format!(
                    "{cannot}: cannot connect to the OAuth server {server}: {text}; try again later (the refresh token was not used)"
                )
            } else if timeout {
                format!(
                    "{cannot}: no answer from the OAuth server {server} in time; it may have refreshed the tokens anyway, which uses up the refresh token: if the next run fails with invalid_grant, {}",
                    self.reauthorise()
                )
            } else {
                format!(
                    "{cannot}: the connection to the OAuth server {server} failed ({text}); if the next run fails with invalid_grant, {}",
                    self.reauthorise()
                )
            }
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| {
            format!(
                "{cannot}: the OAuth server's answer (HTTP {status}) was cut off ({}); if the next run fails with invalid_grant, {}",
                self.scrub(&super::describe_reqwest(e)),
                self.reauthorise()
            )
        })?;
        // Nothing of the raw answer is shown or logged: on success it holds the new tokens.
        let answer: Option<Map<String, Value>> = match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        };
        let Some(mut answer) = answer else {
            return Err(format!(
                "{cannot}: the OAuth server {server} answered HTTP {status} with something other than a JSON object; check {ENV_SERVER}"
            ));
        };
        let new_access = answer
            .get("access_token")
            .and_then(Value::as_str)
            .map(Secret::new);
        let new_refresh = answer
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(Secret::new);
        // Known as secrets before anything else is done with the answer.
        {
            let mut secrets = self.secrets.write().expect("secrets lock");
            secrets.extend(new_access.clone().filter(|s| !s.expose().is_empty()));
            secrets.extend(new_refresh.clone().filter(|s| !s.expose().is_empty()));
        }
        if let Some(code) = answer.get("error") {
            let code = match code {
                Value::String(s) => self.scrub(s),
                other => self.scrub(&other.to_string()),
            };
            let description = answer
                .get("error_description")
                .and_then(Value::as_str)
                .map(|d| format!(": {}", self.scrub(d)))
                .unwrap_or_default();
            let advice = match code.as_str() {
                "invalid_grant" => format!(
                    "the refresh token has expired (they last 180 days), was revoked, or was already used (by another roster run, or a copy of this one's tokens); {}",
                    self.reauthorise()
                ),
                "invalid_client" | "wrong_client" => format!(
                    "{ENV_CLIENT_ID} or {ENV_CLIENT_SECRET} is wrong; compare them with the application's settings in Bitrix24"
                ),
                _ => self.reauthorise(),
            };
            return Err(format!(
                "{cannot}: the OAuth server {server} refused (HTTP {status}, {code}{description}); {advice}"
            ));
        }
        let Some(new_access) = new_access.filter(|_| status == 200) else {
            return Err(format!(
                "{cannot}: the OAuth server {server} answered HTTP {status} without an access_token; check {ENV_SERVER}"
            ));
        };
        if check_secret(&new_access).is_err()
            || new_refresh
                .as_ref()
                .is_some_and(|r| check_secret(r).is_err())
        {
            return Err(format!(
                "{cannot}: the OAuth server {server} answered with tokens roster cannot use (empty, too short or with spaces)"
            ));
        }
        let saved = {
            let mut t = self.tokens.lock().expect("tokens lock");
            t.access = new_access;
            match new_refresh {
                Some(r) => t.refresh = Some(r),
                // Keep the old one: better than none, though it may be used up.
                None => {
                    warn!("the OAuth server's answer has no new refresh_token; keeping the old one")
                }
            }
            if let Some(e) = answer.get("client_endpoint").and_then(Value::as_str) {
                match rest_endpoint(e) {
                    Ok(e) if e != t.endpoint => {
                        info!(from = %t.endpoint, to = %e, "the OAuth server gives a new REST endpoint for the portal; using it");
                        t.endpoint = e;
                    }
                    Ok(_) => {}
                    Err(why) => warn!(
                        "ignoring the client_endpoint in the OAuth server's answer ({why}); staying with {}",
                        t.endpoint
                    ),
                }
            }
            if self.server_override.is_none()
                && let Some(e) = answer.get("server_endpoint").and_then(Value::as_str)
            {
                match server_from_endpoint(e) {
                    Ok(s) => t.server = s,
                    Err(why) => debug!("ignoring the server_endpoint in the token answer: {why}"),
                }
            }
            t.generation += 1;
            // Written back complete, whatever the answer left out.
            answer.insert("access_token".into(), t.access.expose().into());
            if let Some(r) = &t.refresh {
                answer.insert("refresh_token".into(), r.expose().into());
            }
            answer.insert("client_endpoint".into(), t.endpoint.clone().into());
            t.saved = answer;
            info!(
                generation = t.generation,
                "refreshed the OAuth access token"
            );
            t.saved.clone()
        };
        match &self.token_file {
            Some(path) => {
                if let Err(e) = write_token_file(path, &saved) {
                    warn!(
                        "refreshed the OAuth tokens but cannot save them to {} ({}); this run goes on, but the next one may find its refresh token used up: then {}",
                        path.display(),
                        self.scrub(&e.to_string()),
                        self.reauthorise()
                    );
                } else {
                    debug!(file = %path.display(), "saved the refreshed OAuth tokens");
                }
            }
            None => warn!(
                "refreshed the OAuth access token, but the new refresh token is kept nowhere ({FLAG_TOKEN_FILE} / {ENV_TOKEN_FILE} is not set) and Bitrix24 may have retired the one in {ENV_REFRESH_TOKEN}; set a token file so that the next run can refresh"
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
