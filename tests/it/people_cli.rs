//! Issue 7's promises as a user meets them: the real binary against the sandbox, with people
//! named by e-mail and groups by name; unknown and ambiguous references; invitations; owner
//! transfer; a non-admin webhook; OAuth with an expired token.

use crate::support::{Workspace, sandbox_stats};

const PORTAL: &str = "--portal=sandbox:portal.yaml";

/// The quick start: the plan names people by e-mail and groups by name, shows the dismissed
/// user and the pending invitation and request, and counts none of them as changes.
#[test]
fn the_quick_start_plan_shows_people_and_groups_by_name() {
    let ws = Workspace::with_example_portal();
    let run = ws.roster(&["plan", "groups.yaml", PORTAL]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let out = &run.stdout;
    for want in [
        "\"Marketing\" (#15)",
        "\"Engineering\" (#27)",
        "\"Sales\" (#42)",
        "di@example.com (#22)",
        "ivy@example.com (#50)",
        "inactive: not added",
        "jo@example.com (#60)",
        "invited, pending acceptance",
        "hal@example.com (#40)",
        "ed@example.com (#23)",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // Ivy, Jo and Hal are not changes; the summary says so.
    let json = ws.roster(&["plan", "groups.yaml", PORTAL, "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.transcript());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["format_version"], "1");
    assert_eq!(v["summary"]["pending"], 3, "{}", json.stdout);
    assert_eq!(v["summary"]["add"], 2, "{}", json.stdout);
    assert_eq!(v["summary"]["invite"], 1, "{}", json.stdout);
    let pending: Vec<&serde_json::Value> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["entries"].as_array().unwrap())
        .filter(|e| e["action"] == "pending")
        .collect();
    assert_eq!(pending.len(), 3, "{}", json.stdout);
    assert!(
        pending
            .iter()
            .any(|e| e["user"] == 50 && e["email"] == "ivy@example.com"),
        "{}",
        json.stdout
    );
}

/// Unknown and ambiguous references are errors at their place in the file; the other groups are
/// still planned and shown; the run exits 1 and apply sends nothing.
#[test]
fn unresolvable_references_are_errors_at_their_position() {
    let ws = Workspace::with_example_portal();
    // Two users share one address; the portal compares e-mails case-insensitively.
    let state = ws.read("portal.yaml").replace(
        "  - { id: 60, email: jo@example.com,",
        "  - { id: 61, email: Twin@Example.com, name: Tw, last_name: One, active: true }\n  - { id: 62, email: twin@example.com, name: Tw, last_name: Two, active: true }\n  - { id: 60, email: jo@example.com,",
    );
    assert!(state.contains("id: 62"), "the example portal's users moved");
    ws.write("portal.yaml", &state);
    ws.write(
        "bad.yaml",
        "version: 1
groups:
  - id: 15
    members: [nobody@example.com, 9999]
  - id: 27
    owner: 22
    members: [twin@example.com]
  - name: No Such Group
    members: [cy@example.com]
  - name: Sales
    prune: false
    members: [ed@example.com]
",
    );
    let before = ws.read("portal.yaml");
    let run = ws.roster(&["plan", "bad.yaml", PORTAL]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    for want in [
        "bad.yaml:4:15: groups[0].members[0]:",
        "nobody@example.com",
        "bad.yaml:4:35: groups[0].members[1]:",
        "9999",
        "bad.yaml:7:15: groups[1].members[0]:",
        "#61, #62",
        "bad.yaml:8:11: groups[2].name:",
        "No Such Group",
    ] {
        assert!(
            run.stderr.contains(want),
            "missing {want:?} in\n{}",
            run.stderr
        );
    }
    // Sales resolves and is planned.
    assert!(run.stdout.contains("\"Sales\" (#42)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("ed@example.com (#23)"),
        "{}",
        run.stdout
    );
    let apply = ws.roster(&["apply", "bad.yaml", PORTAL, "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stderr.contains("nothing was sent"),
        "{}",
        apply.stderr
    );
    assert_eq!(ws.read("portal.yaml"), before);
}

/// Invite mode: apply invites; the next plan shows the invitation as pending and exits 0 with
/// --detailed-exitcode; a second apply sends no invitation.
#[test]
fn invitations_are_sent_once_and_then_shown_as_pending() {
    let ws = Workspace::with_example_portal();
    ws.write(
        "invite.yaml",
        "version: 1
add_with: invite
invite_message: Join us
groups:
  - name: Sales
    prune: false
    members: [ed@example.com, fay@example.com]
",
    );
    let mut served = ws.serve("portal.yaml");
    let portal = format!("--portal={}", served.url);
    let run = ws.roster(&["apply", "invite.yaml", &portal, "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let stats = sandbox_stats(&served.url);
    assert_eq!(
        stats["methods"]["sonet_group.user.invite"]["commands"], 1,
        "{stats}"
    );
    let plan = ws.roster(&["plan", "invite.yaml", &portal, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        plan.stdout.contains("invited, pending acceptance"),
        "{}",
        plan.stdout
    );
    let again = ws.roster(&["apply", "invite.yaml", &portal, "--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    let stats = sandbox_stats(&served.url);
    assert_eq!(
        stats["methods"]["sonet_group.user.invite"]["commands"], 1,
        "a second apply sent an invitation: {stats}"
    );
    served.interrupt();
    let rows = ws.portal_group("portal.yaml", 42);
    assert!(rows.contains(&"23=Z".to_owned()), "{rows:?}");
    assert!(rows.contains(&"30=Z".to_owned()), "{rows:?}");
}

/// Group 15's owner is ada (1), whose webhook is the example's admin webhook: hand it to bo
/// and keep ada as a moderator.
const TRANSFER: &str = "version: 1
groups:
  - name: Marketing
    owner: bo@example.com
    moderators: [ada@example.com]
    members: [cy@example.com, fay@example.com]
";

/// Group 27's owner is di (22): the admin webhook (ada) may not hand it over.
const NOT_OURS: &str = "version: 1
groups:
  - id: 27
    owner: ed@example.com
    moderators: [di@example.com]
    members: [gus@example.com]
";

/// Owner transfer: without the flag nothing changes and the plan says why; with it, ownership
/// moves and the old owner's role is reconciled in the same run; a webhook that is not the
/// owner's is told at plan time and apply sends nothing.
#[test]
fn owner_transfer_needs_the_flag_and_the_owners_webhook() {
    let ws = Workspace::with_example_portal();
    ws.write("transfer.yaml", TRANSFER);
    ws.write("not-ours.yaml", NOT_OURS);
    let before = ws.read("portal.yaml");
    let plain = ws.roster(&["plan", "transfer.yaml", PORTAL, "--detailed-exitcode"]);
    assert_eq!(plain.code, 0, "{}", plain.transcript());
    assert!(
        plain.stdout.contains("--allow-owner-change"),
        "{}",
        plain.stdout
    );
    let plain = ws.roster(&["apply", "transfer.yaml", PORTAL, "--auto-approve"]);
    assert_eq!(plain.code, 0, "{}", plain.transcript());
    assert_eq!(
        ws.read("portal.yaml"),
        before,
        "nothing changes without the flag"
    );

    // Not the owner's webhook: a warning at plan time, a refusal before any write.
    let told = ws.roster(&["plan", "not-ours.yaml", PORTAL, "--allow-owner-change"]);
    assert_eq!(told.code, 0, "{}", told.transcript());
    assert!(
        told.stderr.contains("warning:") && told.stderr.contains("owner"),
        "{}",
        told.transcript()
    );
    let refused = ws.roster(&[
        "apply",
        "not-ours.yaml",
        PORTAL,
        "--allow-owner-change",
        "--auto-approve",
    ]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stderr.contains("nothing was sent"),
        "{}",
        refused.stderr
    );
    assert_eq!(ws.read("portal.yaml"), before);

    // The owner's own webhook, with the flag: ownership moves, ada is kept as moderator.
    let done = ws.roster(&[
        "apply",
        "transfer.yaml",
        PORTAL,
        "--allow-owner-change",
        "--auto-approve",
    ]);
    assert_eq!(done.code, 0, "{}", done.transcript());
    let rows = ws.portal_group("portal.yaml", 15);
    assert!(rows.contains(&"10=A".to_owned()), "{rows:?}");
    assert!(rows.contains(&"1=E".to_owned()), "{rows:?}");
    let after = ws.roster(&[
        "plan",
        "transfer.yaml",
        PORTAL,
        "--allow-owner-change",
        "--detailed-exitcode",
    ]);
    assert_eq!(after.code, 0, "{}", after.transcript());
}

/// A webhook without administrator rights: plan warns, apply refuses before any write.
#[test]
fn a_non_admin_webhook_is_told_at_plan_time_and_apply_sends_nothing() {
    let ws = Workspace::with_example_portal();
    let state = ws.read("portal.yaml").replace(
        "  - { user: 1, code: sandboxcode0001 }",
        "  - { user: 1, code: sandboxcode0001 }\n  - { user: 10, code: memberscode0010 }",
    );
    ws.write("portal.yaml", &state);
    let mut served = ws.serve("portal.yaml");
    let url = served
        .url
        .replace("/1/sandboxcode0001/", "/10/memberscode0010/");
    let portal = format!("--portal={url}");
    let plan = ws.roster(&["plan", "groups.yaml", &portal]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        plan.stderr.contains("warning") && plan.stderr.contains("administrator"),
        "{}",
        plan.transcript()
    );
    let apply = ws.roster(&["apply", "groups.yaml", &portal, "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    let stats = sandbox_stats(&served.url);
    served.interrupt();
    assert_eq!(stats["write_commands"], 0, "{stats}");
}

/// Tokens of the OAuth test portal (never printed: the test checks every output for them).
const ACCESS: &str = "expiredaccesstoken0000000000000001";
const REFRESH: &str = "refreshtoken00000000000000000000001";
const CLIENT_ID: &str = "local.roster.test";
const CLIENT_SECRET: &str = "clientsecret000000000000000000001";

/// The example portal with an OAuth application whose access token has expired.
fn oauth_portal(ws: &Workspace, revoked: bool) {
    let state = format!(
        "{}oauth:
  clients:
    - {{ client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET} }}
  tokens:
    - {{ access_token: {ACCESS}, user: 1, expires_at: 1 }}
  refresh_tokens:
    - {{ refresh_token: {REFRESH}, client_id: {CLIENT_ID}, user: 1, revoked: {revoked} }}
",
        ws.read("portal.yaml")
    );
    ws.write("portal.yaml", &state);
}

/// The OAuth settings for a served sandbox: the tokens, and the sandbox as the OAuth server
/// (whose `/oauth/token/` it serves).
fn oauth_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ROSTER_OAUTH_ACCESS_TOKEN", ACCESS.into()),
        ("ROSTER_OAUTH_REFRESH_TOKEN", REFRESH.into()),
        ("ROSTER_OAUTH_CLIENT_ID", CLIENT_ID.into()),
        ("ROSTER_OAUTH_CLIENT_SECRET", CLIENT_SECRET.into()),
        (
            "ROSTER_OAUTH_SERVER",
            endpoint.trim_end_matches("/rest/").into(),
        ),
    ]
}

fn with_env<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn assert_no_token(run: &crate::support::Run, extra: &[String]) {
    let all = run.transcript();
    for secret in [ACCESS, REFRESH, CLIENT_SECRET]
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
    {
        assert!(!all.contains(&secret), "a token leaked:\n{all}");
        assert!(
            !all.to_lowercase().contains(&secret.to_lowercase()),
            "a token leaked:\n{all}"
        );
    }
}

/// OAuth: an expired access token is refreshed once and the run succeeds; the new tokens are
/// kept in the token file (0600), and no token appears in any output.
#[test]
fn an_expired_oauth_token_is_refreshed_once() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::with_example_portal();
    oauth_portal(&ws, false);
    let mut served = ws.serve("portal.yaml");
    let endpoint = served.url.replace("1/sandboxcode0001/", "");
    let portal = format!("--portal={endpoint}");
    let tokens = ws.path("tokens.json");
    let file = format!("--oauth-token-file={}", tokens.display());
    let run = ws.roster_with_env(
        &["plan", "groups.yaml", &portal, &file, "-vv"],
        &with_env(&oauth_env(&endpoint)),
    );
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(run.stdout.contains("\"Marketing\" (#15)"), "{}", run.stdout);
    let stats = sandbox_stats(&served.url);
    assert_eq!(stats["oauth_token_requests"], 1, "{stats}");
    let mode = std::fs::metadata(&tokens).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved: serde_json::Value = serde_json::from_str(&ws.read("tokens.json")).unwrap();
    let new_access = saved["access_token"].as_str().unwrap().to_owned();
    let new_refresh = saved["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_access, ACCESS);
    assert_no_token(&run, &[new_access.clone(), new_refresh.clone()]);
    // The next run uses the file's fresh token: no refresh.
    let again = ws.roster_with_env(
        &["plan", "groups.yaml", &portal, &file],
        &with_env(&oauth_env(&endpoint)),
    );
    assert_eq!(again.code, 0, "{}", again.transcript());
    assert_eq!(sandbox_stats(&served.url)["oauth_token_requests"], 1);
    assert_no_token(&again, &[new_access, new_refresh]);
    served.interrupt();
}

/// OAuth: a revoked refresh token fails the run with a message that says what to do, and sends
/// nothing else.
#[test]
fn a_revoked_refresh_token_says_what_to_do() {
    let ws = Workspace::with_example_portal();
    oauth_portal(&ws, true);
    let mut served = ws.serve("portal.yaml");
    let endpoint = served.url.replace("1/sandboxcode0001/", "");
    let portal = format!("--portal={endpoint}");
    let run = ws.roster_with_env(
        &["apply", "groups.yaml", &portal, "--auto-approve"],
        &with_env(&oauth_env(&endpoint)),
    );
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("invalid_grant"), "{}", run.stderr);
    assert!(
        run.stderr.contains("ROSTER_OAUTH_REFRESH_TOKEN"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("cannot refresh").count(),
        1,
        "once: {}",
        run.stderr
    );
    assert_no_token(&run, &[]);
    let stats = sandbox_stats(&served.url);
    assert_eq!(stats["write_commands"], 0, "{stats}");
    served.interrupt();
}

/// A group Bitrix24 keeps in step with departments (`UF_SG_DEPT`): the plan says so and plans
/// no removals unless the file says `prune: true` for it, and then warns. Extranet users are
/// allowed and marked.
#[test]
fn department_synced_groups_are_not_pruned_unless_the_file_says_so() {
    let ws = Workspace::with_example_portal();
    let state = ws
        .read("portal.yaml")
        .replace(
            "  - id: 15\n    name: Marketing\n",
            "  - id: 15\n    name: Marketing\n    departments: [8, 12]\n",
        )
        .replace(
            "{ id: 30, email: fay@example.com, name: Fay, last_name: Finn, active: true }",
            "{ id: 30, email: fay@example.com, name: Fay, last_name: Finn, active: true, extranet: true }",
        );
    assert!(state.contains("departments: [8, 12]") && state.contains("extranet: true"));
    ws.write("portal.yaml", &state);
    let before = ws.read("portal.yaml");
    let plan = ws.roster(&["plan", "groups.yaml", PORTAL, "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let v: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let g15 = &v["groups"][0];
    assert_eq!(g15["departments"], serde_json::json!([8, 12]), "{g15}");
    let fay = g15["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["user"] == 30)
        .unwrap();
    assert_eq!(fay["action"], "skip", "{fay}");
    assert_eq!(fay["reason"], "synced", "{fay}");
    let text = ws.roster(&["plan", "groups.yaml", PORTAL]);
    assert!(
        text.stdout
            .contains("synced by Bitrix24 from departments 8, 12"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("+ fay@example.com (#30, extranet)"),
        "{}",
        text.stdout
    );
    // Applying leaves fay in the synced group.
    let apply = ws.roster(&["apply", "groups.yaml", PORTAL, "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(
        ws.portal_group("portal.yaml", 15)
            .contains(&"30=K".to_owned())
    );
    assert_ne!(ws.read("portal.yaml"), before);
    // `prune: true` takes the group over: the removal is planned, with a warning.
    let file = ws.read("groups.yaml").replace(
        "  - name: Marketing",
        "  - name: Marketing\n    prune: true",
    );
    ws.write("takeover.yaml", &file);
    let takeover = ws.roster(&["plan", "takeover.yaml", PORTAL]);
    assert_eq!(takeover.code, 0, "{}", takeover.transcript());
    assert!(
        takeover
            .stdout
            .contains("- fay@example.com (#30, extranet)"),
        "{}",
        takeover.stdout
    );
    assert!(
        takeover.transcript().contains("may add"),
        "{}",
        takeover.transcript()
    );
}

/// A group the portal does not have (or hides from the run's user) is an error at its place in
/// the file; the other groups are still planned; exit 1, and apply sends nothing.
#[test]
fn an_unreadable_group_is_an_error_at_its_position_and_the_rest_is_planned() {
    let ws = Workspace::with_example_portal();
    ws.write(
        "missing.yaml",
        "version: 1\ngroups:\n  - id: 999\n    members: [cy@example.com]\n  - name: Sales\n    prune: false\n    members: [ed@example.com]\n",
    );
    let before = ws.read("portal.yaml");
    let run = ws.roster(&["plan", "missing.yaml", PORTAL, "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["errors"][0]["line"], 3, "{}", run.stdout);
    assert_eq!(v["errors"][0]["column"], 9, "{}", run.stdout);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read group 999"),
        "{}",
        run.stdout
    );
    assert_eq!(v["groups"].as_array().unwrap().len(), 1, "{}", run.stdout);
    assert_eq!(v["groups"][0]["id"], 42);
    let apply = ws.roster(&["apply", "missing.yaml", PORTAL, "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stderr.contains("missing.yaml:3:9:"),
        "{}",
        apply.stderr
    );
    assert_eq!(ws.read("portal.yaml"), before);
}

/// A webhook without the `socialnetwork` scope: roster falls back to `sonet_group.user.get`
/// and says what it cannot see, in the text run's stderr and in the JSON plan.
#[test]
fn a_webhook_without_the_socialnetwork_scope_is_told_what_roster_cannot_see() {
    let ws = Workspace::with_example_portal();
    let state = ws.read("portal.yaml").replace(
        "  - { user: 1, code: sandboxcode0001 }",
        "  - { user: 1, code: sandboxcode0001, scopes: [sonet_group, user] }",
    );
    ws.write("portal.yaml", &state);
    let text = ws.roster(&["plan", "groups.yaml", PORTAL]);
    assert_eq!(text.code, 0, "{}", text.transcript());
    assert!(text.stderr.contains("socialnetwork"), "{}", text.stderr);
    let json = ws.roster(&["plan", "groups.yaml", PORTAL, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let warnings = v["portal_warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{}", json.stdout);
    assert!(
        warnings[0].as_str().unwrap().contains("socialnetwork"),
        "{}",
        json.stdout
    );
}
