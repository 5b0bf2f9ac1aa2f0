//! The secret scan: every command and error path at `-vv` with `RUST_LOG=trace`, faults on,
//! against sandboxes and hostile servers whose webhook codes are canaries. stdout, stderr and
//! every file roster writes are searched for each canary after undoing percent-encoding and
//! `\u` escapes, in any letter case. The one place a code is printed by design is the
//! `webhook URL:` line of `roster sandbox serve` (the sandbox's own local credential, already
//! in the user's state file); that line is checked to be the only one.

use std::path::Path;

use crate::support::{Run, Workspace};

/// Codes used below. Mixed case, so a case-changing echo is caught too.
const CANARY: &str = "CanaryQ7x9Zp";
const WRONG: &str = "WrongCanary5Hk";
const ODD: &str = "OddCanary3Mv";

/// `text` with `%XX` and `\uXXXX` escapes undone (repeatedly, for double encoding), lower-cased.
fn normalise(text: &str) -> String {
    let mut s = text.to_owned();
    for _ in 0..3 {
        let pct = percent_decode(&s);
        let uni = unicode_unescape(&pct);
        if uni == s {
            break;
        }
        s = uni;
    }
    s.to_lowercase()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unicode_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("\\u") {
        out.push_str(&rest[..at]);
        let hex = rest.get(at + 2..at + 6);
        match hex
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)
        {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 6..];
            }
            None => {
                out.push_str("\\u");
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn leaks(text: &str) -> Vec<&'static str> {
    let t = normalise(text);
    [CANARY, WRONG, ODD]
        .into_iter()
        .filter(|c| t.contains(&c.to_lowercase()))
        .collect()
}

fn assert_clean(what: &str, r: &Run) {
    let found = leaks(&r.stdout)
        .into_iter()
        .chain(leaks(&r.stderr))
        .collect::<Vec<_>>();
    assert!(
        found.is_empty(),
        "{what}: {found:?} leaked:\n{}",
        r.transcript()
    );
}

/// Every file under `dir` except the state files given (which hold the codes by design).
fn assert_files_clean(dir: &Path, except: &[&str]) {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            if except.contains(&name.as_str()) {
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            assert!(leaks(&text).is_empty(), "file {name} holds a canary");
        }
    }
}

/// The example portal with the canary code, a non-admin canary webhook, and faults on.
fn canary_portal(ws: &Workspace, name: &str, faults: &str) {
    let state = ws
        .read("portal.yaml")
        .replace("sandboxcode0001", CANARY)
        .replace(
            "rate_limit: { burst: 50, per_second: 2 }",
            &format!("rate_limit: {{ burst: 50, per_second: 2 }}\n  faults: {faults}"),
        );
    ws.write(name, &state);
}

#[test]
fn no_command_or_error_path_reveals_a_webhook_code() {
    let ws = Workspace::with_example_portal();
    canary_portal(
        &ws,
        "faulty.yaml",
        "{ seed: 7, rate_503: 0.2, rate_500: 0.1, rate_lost: 0.2 }",
    );
    canary_portal(&ws, "calm.yaml", "{ seed: 1 }");
    ws.write(
        "broken.yaml",
        "version: 1\ngroups:\n  - id: 0\n    members: [x]\n",
    );
    ws.write("unknown-group.yaml", "version: 1\ngroups:\n  - id: 999\n");
    ws.write(
        "empty-all.yaml",
        "version: 1\ngroups:\n  - id: 15\n  - id: 27\n",
    );
    let trace = [("RUST_LOG", "trace")];
    let run = |args: &[&str]| ws.roster_with_env(&[args, &["-vv"]].concat(), &trace);

    let served = ws.serve("calm.yaml");
    let url = served.url.clone();
    assert!(url.contains(CANARY), "serve prints the canary URL: {url}");
    let wrong = url.replace(CANARY, WRONG);
    let closed = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}/rest/1/{CANARY}/")
    };
    let silent = format!(
        "http://127.0.0.1:{}/rest/1/{CANARY}/",
        crate::support::silent_listener()
    );
    let portal = |u: &str| format!("--portal={u}");
    let cases: Vec<(&str, Run)> = vec![
        ("validate", run(&["validate", "groups.yaml"])),
        ("validate broken", run(&["validate", "broken.yaml"])),
        (
            "plan faulty sandbox",
            run(&["plan", "groups.yaml", "--portal=sandbox:faulty.yaml"]),
        ),
        (
            "plan json faulty sandbox",
            run(&[
                "plan",
                "groups.yaml",
                "--portal=sandbox:faulty.yaml",
                "--format=json",
            ]),
        ),
        (
            "apply faulty sandbox",
            run(&[
                "apply",
                "groups.yaml",
                "--portal=sandbox:faulty.yaml",
                "--auto-approve",
            ]),
        ),
        (
            "apply without terminal",
            run(&["apply", "groups.yaml", &portal(&url)]),
        ),
        ("plan served", run(&["plan", "groups.yaml", &portal(&url)])),
        (
            "apply served",
            run(&["apply", "groups.yaml", &portal(&url), "--auto-approve"]),
        ),
        (
            "plan over the limit",
            run(&["plan", "empty-all.yaml", &portal(&url)]),
        ),
        ("wrong code", run(&["plan", "groups.yaml", &portal(&wrong)])),
        (
            "unknown group",
            run(&["plan", "unknown-group.yaml", &portal(&url)]),
        ),
        (
            "closed port",
            run(&["plan", "groups.yaml", &portal(&closed)]),
        ),
        (
            "no answer",
            run(&["plan", "groups.yaml", &portal(&silent), "--timeout=1"]),
        ),
        (
            "env portal",
            ws.roster_with_env(
                &["plan", "groups.yaml", "-vv"],
                &[("RUST_LOG", "trace"), ("ROSTER_PORTAL", &url)],
            ),
        ),
        // Usage errors that would echo the URL.
        ("url as the file", run(&["plan", &url, &portal(&url)])),
        (
            "url as a stray argument",
            run(&["plan", "groups.yaml", &url, &portal(&url)]),
        ),
        (
            "url as another flag's value",
            run(&["plan", "groups.yaml", "--rate-limit", &url]),
        ),
        (
            "url as --timeout",
            run(&["plan", "groups.yaml", &portal(&url), "--timeout", &url]),
        ),
        ("url as a subcommand", run(&[&url])),
        // Odd and refused addresses.
        (
            "two code-like segments",
            run(&["plan", "groups.yaml", &portal(&format!("{url}{ODD}/"))]),
        ),
        (
            "user:password",
            run(&[
                "plan",
                "groups.yaml",
                &portal(&format!(
                    "https://u:{CANARY}@example.invalid/rest/1/{CANARY}/"
                )),
            ]),
        ),
        (
            "bad user id",
            run(&[
                "plan",
                "groups.yaml",
                &portal(&format!("https://example.invalid/rest/x/{CANARY}/")),
            ]),
        ),
        (
            "clear text to a remote host",
            run(&[
                "plan",
                "groups.yaml",
                &portal(&format!("http://example.invalid/rest/1/{CANARY}/")),
            ]),
        ),
        (
            "percent-encoded path",
            run(&[
                "plan",
                "groups.yaml",
                &portal(&format!("https://example.invalid/rest%2F1%2F{CANARY}/")),
            ]),
        ),
        ("broken state file", {
            ws.write(
                "bad-state.yaml",
                &format!("webhooks:\n  - {{ user: 1, code: {CANARY}, extra: {CANARY} }}\n"),
            );
            run(&["plan", "groups.yaml", "--portal=sandbox:bad-state.yaml"])
        }),
        (
            "serve a broken state file",
            run(&["sandbox", "serve", "--state", "bad-state.yaml"]),
        ),
        (
            "generate",
            run(&["sandbox", "generate", "--out", "gen", "--groups", "3"]),
        ),
    ];
    assert!(
        cases
            .iter()
            .any(|(_, r)| r.stderr.contains("TRACE") || r.stderr.contains("DEBUG")),
        "the runs log at -vv"
    );
    for (what, r) in &cases {
        assert_clean(what, r);
    }
    drop(served);
    assert_files_clean(
        ws.dir.path(),
        &["portal.yaml", "faulty.yaml", "calm.yaml", "bad-state.yaml"],
    );
}

/// OAuth canaries: the access token, the refresh token and the client secret.
const ACCESS_CANARY: &str = "AccessCanary8Rt2Wq";
const REFRESH_CANARY: &str = "RefreshCanary4Jn6Lx";
const SECRET_CANARY: &str = "SecretCanary9Pd3Kv";

/// The OAuth paths at `-vv` with `RUST_LOG=trace`: an expired token refreshed (whose new
/// tokens are canaries too, once known), a revoked refresh token, an unknown access token and a
/// wrong client secret. Outputs and every file but the state and token files are searched.
#[test]
fn no_oauth_path_reveals_a_token() {
    let ws = Workspace::with_example_portal();
    let oauth = |revoked: bool| {
        format!(
            "{}oauth:
  clients:
    - {{ client_id: local.canary, client_secret: {SECRET_CANARY} }}
  tokens:
    - {{ access_token: {ACCESS_CANARY}, user: 1, expires_at: 1 }}
  refresh_tokens:
    - {{ refresh_token: {REFRESH_CANARY}, client_id: local.canary, user: 1, revoked: {revoked} }}
",
            ws.read("portal.yaml")
        )
    };
    ws.write("fresh.yaml", &oauth(false));
    ws.write("revoked.yaml", &oauth(true));
    let env = |access: &'static str, secret: &'static str, server: &str| {
        vec![
            ("RUST_LOG", "trace".to_owned()),
            ("ROSTER_OAUTH_SERVER", server.to_owned()),
            ("ROSTER_OAUTH_ACCESS_TOKEN", access.to_owned()),
            ("ROSTER_OAUTH_REFRESH_TOKEN", REFRESH_CANARY.to_owned()),
            ("ROSTER_OAUTH_CLIENT_ID", "local.canary".to_owned()),
            ("ROSTER_OAUTH_CLIENT_SECRET", secret.to_owned()),
        ]
    };
    let mut cases: Vec<(&str, Run)> = Vec::new();
    let mut fresh_tokens = Vec::new();
    for (what, state, access, secret) in [
        ("refreshed", "fresh.yaml", ACCESS_CANARY, SECRET_CANARY),
        ("revoked", "revoked.yaml", ACCESS_CANARY, SECRET_CANARY),
        (
            "unknown token",
            "fresh.yaml",
            "UnknownAccess7Ty",
            SECRET_CANARY,
        ),
        (
            "wrong secret",
            "revoked.yaml",
            ACCESS_CANARY,
            "WrongSecret5Gh2",
        ),
    ] {
        let served = ws.serve(state);
        let endpoint = served.url.replace("1/sandboxcode0001/", "");
        let file = format!("--oauth-token-file={}", ws.path("tokens.json").display());
        let _ = std::fs::remove_file(ws.path("tokens.json"));
        let run = ws.roster_with_env(
            &[
                "apply",
                "groups.yaml",
                &format!("--portal={endpoint}"),
                &file,
                "--auto-approve",
                "-vv",
            ],
            &env(access, secret, endpoint.trim_end_matches("/rest/"))
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        );
        if let Ok(text) = std::fs::read_to_string(ws.path("tokens.json")) {
            let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
            for key in ["access_token", "refresh_token"] {
                fresh_tokens.push(saved[key].as_str().unwrap().to_lowercase());
            }
            std::fs::remove_file(ws.path("tokens.json")).unwrap();
        }
        drop(served);
        cases.push((what, run));
    }
    assert!(
        !fresh_tokens.is_empty(),
        "the refreshed run kept its new tokens"
    );
    let canaries: Vec<String> = [
        ACCESS_CANARY,
        REFRESH_CANARY,
        SECRET_CANARY,
        "WrongSecret5Gh2",
        "UnknownAccess7Ty",
    ]
    .iter()
    .map(|c| c.to_lowercase())
    .chain(fresh_tokens)
    .collect();
    for (what, r) in &cases {
        let text = normalise(&format!("{}\n{}", r.stdout, r.stderr));
        for c in &canaries {
            assert!(
                !text.contains(c),
                "{what}: a token leaked:\n{}",
                r.transcript()
            );
        }
    }
    assert!(cases[0].1.code == 0, "{}", cases[0].1.transcript());
    for (_, r) in &cases[1..] {
        assert_eq!(r.code, 1, "{}", r.transcript());
    }
    let mut stack = vec![ws.dir.path().to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if ["portal.yaml", "fresh.yaml", "revoked.yaml"].contains(&name.as_str()) {
                continue;
            }
            let text = normalise(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            for c in &canaries {
                assert!(!text.contains(c), "file {name} holds a token");
            }
        }
    }
}

/// DocSpace API keys and personal access tokens are secrets like the webhook code: never in
/// output, logs at `-vv` with `RUST_LOG=trace`, errors or files roster writes, under faults,
/// with the right key, a wrong key and a token.
#[test]
fn no_docspace_path_reveals_a_key_or_token() {
    const KEY: &str = "sk-ca11ab1ec0de5ec7e7000000000000000000000000000000000000000000c0de";
    const WRONG_KEY: &str = "sk-bad0bad0bad0ca11ab1e0000000000000000000000000000000000000000beef";
    const TOKEN: &str = "TokenCanary8Rq2Wx5LmPz";
    let ws = Workspace {
        dir: tempfile::tempdir().unwrap(),
    };
    let example = std::fs::read_to_string(crate::support::repo("examples/docspace-sandbox.yaml"))
        .unwrap()
        .replace(
            "sk-5a4d0c0ffee00000000000000000000000000000000000000000000000000001",
            KEY,
        )
        .replace(
            "docspace:\n",
            "docspace:\n  faults: { seed: 3, rate_500: 0.05, rate_lost: 0.05, rate_truncated: 0.05, rate_429: 0.02 }\n",
        );
    let state = format!(
        "{example}  tokens:\n    - {{ user: 0a0d0000-0000-4000-8000-000000000001, token: {TOKEN} }}\n"
    );
    assert!(state.contains(KEY));
    ws.write("docs.yaml", &state);
    std::fs::copy(
        crate::support::repo("examples/docspace.yaml"),
        ws.path("docspace.yaml"),
    )
    .unwrap();
    let portal = "--portal=sandbox:docs.yaml";
    let mut runs: Vec<(&str, Run)> = Vec::new();
    for (what, args, key) in [
        ("plan", vec!["plan", "docspace.yaml", portal, "-vv"], KEY),
        (
            "json plan",
            vec!["plan", "docspace.yaml", portal, "--format", "json", "-vv"],
            KEY,
        ),
        (
            "apply",
            vec!["apply", "docspace.yaml", portal, "--auto-approve", "-vv"],
            KEY,
        ),
        (
            "wrong key",
            vec!["plan", "docspace.yaml", portal, "-vv"],
            WRONG_KEY,
        ),
        (
            "token",
            vec!["apply", "docspace.yaml", portal, "--auto-approve", "-vv"],
            TOKEN,
        ),
    ] {
        let run = ws.roster_with_env(
            &args,
            &[("RUST_LOG", "trace"), ("ROSTER_DOCS_API_KEY", key)],
        );
        runs.push((what, run));
    }
    assert_eq!(runs[3].1.code, 1, "{}", runs[3].1.transcript());
    assert!(
        runs[3].1.stderr.contains("401"),
        "{}",
        runs[3].1.transcript()
    );
    for (what, r) in &runs {
        let text = normalise(&format!("{}\n{}", r.stdout, r.stderr));
        for secret in [KEY, WRONG_KEY, TOKEN] {
            let s = secret.to_lowercase();
            // The whole secret, and any 16 characters of it (a cut or partly masked echo).
            assert!(
                !text.contains(&s),
                "{what}: {secret} leaked:\n{}",
                r.transcript()
            );
            let chars: Vec<char> = s.chars().collect();
            for w in chars
                .windows(16)
                .filter(|w| w.iter().any(|c| !"0-sk".contains(*c)))
            {
                let piece: String = w.iter().collect();
                assert!(
                    !text.contains(&piece),
                    "{what}: part of {secret} ({piece}) leaked:\n{}",
                    r.transcript()
                );
            }
        }
    }
    let mut stack = vec![ws.dir.path().to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name == "docs.yaml" {
                continue;
            }
            let text = normalise(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            for secret in [KEY, WRONG_KEY, TOKEN] {
                assert!(
                    !text.contains(&secret.to_lowercase()),
                    "file {name} holds a secret"
                );
            }
        }
    }
}
