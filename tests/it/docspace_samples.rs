//! ONLYOFFICE's own sample client for "Remove members from a group" against the DocSpace
//! sandbox, run as a real Python (`requests`) and Node (`fetch`) process over loopback.
//!
//! SMP `ONLYOFFICE/docspace-samples` (commit f159efff)
//! `api-backend/{python,nodejs}/samples/remove-members-from-group`: `DELETE
//! /api/2.0/group/{groupId}/members` with the JSON body `{"members":[uuid]}`, the key sent RAW in
//! `Authorization` (no `Bearer `), 200 (Python) or any 2xx (Node) taken as success, the outcome
//! printed. The scripts under `tests/samples/docspace/` reproduce that request; the test
//! substitutes only the portal URL, the key and the two placeholder IDs the sample tells its
//! user to replace.
//!
//! Because the sample sends its key raw, an `sk-` API key gets 401 there (reference §3: a raw
//! key falls to the cookie scheme); a personal access token, which is accepted raw, is what makes
//! the sample work. Both are asserted.
//!
//! Python with `requests` is required (CI has it): its absence fails the tests. Node is
//! optional: without it (or without a global `fetch`, Node < 18) its test says why on stderr
//! and checks nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::docspace_conformance::{ADA, ADMIN_KEY, DESIGNERS, Env, NOBODY, TED, UMA, env, portal};

/// The placeholders of the sample, each replaced once.
const HOST: &str = "https://yourportal.onlyoffice.com";
const KEY: &str = "your_api_key";
const GROUP: &str = "c652dba3-210e-436d-b264-df5ceda0a48e";
const MEMBER: &str = "4c65a238-ca50-4374-b904-0d51d4c1822b";

/// Ada's personal access token in the test portal.
const TOKEN: &str = "pat-ada";

#[derive(Debug, Clone, Copy)]
enum Lang {
    Python,
    Node,
}

impl Lang {
    fn file(self) -> &'static str {
        match self {
            Lang::Python => "remove_members_from_group.py",
            Lang::Node => "remove_members_from_group.js",
        }
    }
    fn program(self) -> &'static str {
        match self {
            Lang::Python => "python3",
            Lang::Node => "node",
        }
    }
}

/// The sample's text with its constants replaced; each placeholder must occur exactly once,
/// so a sample that drifts from the expected shape fails loudly.
fn substituted(lang: Lang, base_url: &str, key: &str, group: &str, member: &str) -> String {
    let path = crate::support::repo("tests/samples/docspace").join(lang.file());
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (placeholder, value) in [
        (HOST, base_url),
        (KEY, key),
        (GROUP, group),
        (MEMBER, member),
    ] {
        let quoted = format!("'{placeholder}'");
        assert_eq!(
            text.matches(&quoted).count(),
            1,
            "{} should have {quoted} once",
            path.display()
        );
        text = text.replace(&quoted, &format!("'{value}'"));
    }
    text
}

/// Run the sample against the sandbox; its stdout. Fails the test if the program cannot run,
/// exits non-zero or takes more than 30 s.
async fn run(lang: Lang, e: &Env, key: &str, group: &str, member: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script: PathBuf = dir.path().join(lang.file());
    std::fs::write(
        &script,
        substituted(lang, &e.sb.base_url(), key, group, member),
    )
    .unwrap();
    let program = lang.program();
    let work = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(&script)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env("NO_PROXY", "127.0.0.1")
            .output()
    });
    let out = tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .unwrap_or_else(|_| panic!("{program} {} took over 30 s", lang.file()))
        .unwrap()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n{stdout}\n{stderr}",
        lang.file(),
        out.status
    );
    stdout
}

/// Python 3 with `requests` must be there: CI has both, so a missing one is a failure.
fn require_python() {
    let out = Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for the DocSpace sample tests (CI has it): {e}")
        });
    assert!(
        out.status.success(),
        "python3 lacks the `requests` package needed for the DocSpace sample tests \
         (`pip install requests`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why Node cannot run the sample here, if it cannot (no `node`, or no global `fetch`).
fn node_missing() -> Option<String> {
    match Command::new("node")
        .args(["-e", "process.exit(typeof fetch === 'function' ? 0 : 3)"])
        .output()
    {
        Err(e) => Some(format!("`node` cannot be run ({e})")),
        Ok(o) if o.status.code() == Some(3) => {
            Some("this `node` has no global fetch (Node 18 or later is needed)".into())
        }
        Ok(o) if !o.status.success() => Some(format!(
            "`node` failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Ok(_) => None,
    }
}

fn members(e: &Env) -> Vec<String> {
    e.group(DESIGNERS).unwrap().1
}

const ROUTE: &str = "DELETE /api/2.0/group/{id}/members";

// SMP remove-members-from-group (Python): with a raw personal access token the sample gets 200
// and the member is gone from the state file.
#[tokio::test]
async fn python_sample_removes_the_member() {
    require_python();
    let e = env(&portal()).await;
    assert_eq!(members(&e), [UMA, ADA, TED]);
    let out = run(Lang::Python, &e, TOKEN, DESIGNERS, UMA).await;
    assert_eq!(out, format!("removed ['{UMA}'] from group {DESIGNERS}\n"));
    assert_eq!(members(&e), [ADA, TED]);
    assert_eq!(e.group(DESIGNERS).unwrap().0, None, "Uma was the manager");
    let s = e.sb.stats();
    assert_eq!((s.http_requests, s.route(ROUTE).executed), (1, 1));
}

// SRV `{id:guid}` route constraint (TST "InvalidIdFormat_NotFound"): the sample's own
// placeholder style of id ("10001" in SMP manage-groups) gets 404 with no body.
#[tokio::test]
async fn python_sample_with_a_non_uuid_group_gets_404() {
    require_python();
    let e = env(&portal()).await;
    let before = e.text();
    let out = run(Lang::Python, &e, TOKEN, "10001", UMA).await;
    assert_eq!(out, "failed: HTTP 404: \n");
    assert_eq!(e.text(), before);
}

// Reference §6 (TST "NonExistingUserInMembers_SilentlyIgnored"): an unknown user is a silent
// no-op, 200, nothing changes.
#[tokio::test]
async fn python_sample_with_an_unknown_user_is_a_noop() {
    require_python();
    let e = env(&portal()).await;
    let before = e.text();
    let out = run(Lang::Python, &e, TOKEN, DESIGNERS, NOBODY).await;
    assert_eq!(
        out,
        format!("removed ['{NOBODY}'] from group {DESIGNERS}\n")
    );
    assert_eq!(e.text(), before, "the state file is untouched");
}

// Reference §3 (TST *_Anonymous_Unauthorized): a wrong key gets 401 with an empty body; and the
// sample's raw `Authorization: sk-…` (no "Bearer ") is refused 401 even for a valid API key.
#[tokio::test]
async fn python_sample_with_a_wrong_or_raw_api_key_gets_401() {
    require_python();
    let e = env(&portal()).await;
    let before = e.text();
    for key in ["not-a-key", ADMIN_KEY] {
        let out = run(Lang::Python, &e, key, DESIGNERS, UMA).await;
        assert_eq!(out, "failed: HTTP 401: \n", "{key:.6}…");
    }
    assert_eq!(e.text(), before);
    // The same key with "Bearer " is accepted (what roster's client sends).
    let r = e
        .http
        .delete(e.url(&format!("/api/2.0/group/{DESIGNERS}/members")))
        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
        .json(&serde_json::json!({"members": [UMA]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// SMP remove-members-from-group (Node `fetch`): the same request with `res.ok` as success.
#[tokio::test]
async fn node_sample_removes_the_member_and_gets_404_for_a_bad_id() {
    if let Some(why) = node_missing() {
        eprintln!("SKIPPED node_sample_removes_the_member_and_gets_404_for_a_bad_id: {why}");
        return;
    }
    let e = env(&portal()).await;
    let out = run(Lang::Node, &e, TOKEN, DESIGNERS, UMA).await;
    assert_eq!(out, format!("removed [\"{UMA}\"] from group {DESIGNERS}\n"));
    assert_eq!(members(&e), [ADA, TED]);
    let out = run(Lang::Node, &e, TOKEN, "10001", ADA).await;
    assert_eq!(out, "failed: HTTP 404: \n");
    let out = run(Lang::Node, &e, ADMIN_KEY, DESIGNERS, ADA).await;
    assert_eq!(out, "failed: HTTP 401: \n");
    assert_eq!(members(&e), [ADA, TED]);
}

#[test]
fn substitution_replaces_each_placeholder_once() {
    for lang in [Lang::Python, Lang::Node] {
        let text = substituted(lang, "http://127.0.0.1:9", TOKEN, DESIGNERS, UMA);
        for placeholder in [HOST, KEY, GROUP, MEMBER] {
            assert!(
                !text.contains(placeholder),
                "{placeholder} left in {lang:?}"
            );
        }
        assert!(text.contains("'http://127.0.0.1:9'"));
        assert!(Path::new(&crate::support::repo("tests/samples/docspace")).exists());
    }
}
