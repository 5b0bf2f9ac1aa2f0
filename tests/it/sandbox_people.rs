//! Conformance of the sandbox's "people as people" side (issue 7) with
//! `/work/shared/reference/bitrix24-api.md` and `bitrix24-rules.md`, over real HTTP on
//! 127.0.0.1: users by e-mail and type, groups by name, `socialnetwork.api.workgroup.get`,
//! invitations and `INITIATE_PERMS`, owner transfer, webhook scopes, OAuth calls and the
//! refresh grant.
//!
//! Requests are encoded by the conformance module's own helpers (shared with
//! `sandbox_conformance`, nothing with roster's client); the OAuth requests are built here.

use std::sync::Arc;
use std::time::Duration;

use roster::sandbox::bitrix24::Sandbox;
use roster::sandbox::bitrix24::limits::ManualClock;
use serde_json::{Value, json};

use super::sandbox_conformance::{
    Env, Reply, STYLES, Style, assert_err, assert_time, build_query, client, env, pairs,
};

/// The people portal: an extranet user, e-mails with `%`/`_`, inactive users, a linked
/// group with every kind of row, two groups of one name (different case), names with
/// wildcards, scoped webhooks and an `oauth:` section.
const PEOPLE: &str = r#"portal:
  rate_limit: null
users:
  - { id: 1, email: ada@example.com, name: Ada, last_name: Admin, admin: true }
  - { id: 10, email: bo@example.com, name: Bo, last_name: Berg }
  - { id: 11, email: Bo.Two@Example.com, name: Bo, last_name: Two }
  - { id: 12, email: "b%o@example.com", name: Pe, last_name: Cent }
  - { id: 13, email: b_o@example.com, name: Un, last_name: Der }
  - { id: 14, email: bxo@example.com, name: Ex, last_name: Ox }
  - { id: 20, email: ex@partner.example, name: Ex, last_name: Tern, extranet: true }
  - { id: 21, email: cy@example.com, name: Cy, last_name: Cole }
  - { id: 22, email: di@example.com, name: Di, last_name: Dahl }
  - { id: 23, email: ed@example.com, name: Ed, last_name: Eng }
  - { id: 30, email: fay@example.com, name: Fay, last_name: Finn }
  - { id: 50, email: ina@example.com, name: Ina, last_name: Idle, active: false }
  - { id: 51, email: jo@example.com, name: Jo, last_name: Gone, active: false }
groups:
  - id: 15
    name: Marketing
    departments: [8, 9]
    members:
      - { user: 1, role: A }
      - { user: 10, role: K }
      - { user: 21, role: E }
      - { user: 50, role: K }
      - { user: 30, role: Z, initiated_by: G, message: Welcome }
      - { user: 22, role: Z, initiated_by: U }
      - { user: 23, role: T }
  - id: 27
    name: Engineering
    initiate_perms: E
    members:
      - { user: 22, role: A }
      - { user: 23, role: E }
      - { user: 10, role: K }
  - id: 28
    name: engineering
    initiate_perms: A
    members:
      - { user: 22, role: A }
      - { user: 21, role: K }
  - id: 40
    name: "100% _done"
    members:
      - { user: 1, role: A }
  - id: 41
    name: 100x xdone
    members:
      - { user: 1, role: A }
  - id: 99
    name: Secret
    visible: false
    members:
      - { user: 10, role: A }
      - { user: 21, role: K }
webhooks:
  - { user: 1, code: admincode }
  - { user: 10, code: bocode }
  - { user: 20, code: excode }
  - { user: 21, code: cycode }
  - { user: 22, code: dicode }
  - { user: 23, code: edcode }
  - { user: 1, code: usersonly, scopes: [user_basic] }
  - { user: 1, code: sonetonly, scopes: [sonet_group] }
  - { user: 1, code: socialonly, scopes: [socialnetwork] }
  - { user: 1, code: briefonly, scopes: [user_brief, sonet_group] }
oauth:
  clients:
    - { client_id: local.app1, client_secret: appsecret0001 }
    - { client_id: local.app2, client_secret: othersecret02 }
  tokens:
    - { access_token: livetoken0001, user: 22, expires_at: 4102444800 }
    - { access_token: deadtoken0001, user: 22, expires_at: 1000 }
    - { access_token: admintoken001, user: 1, expires_at: 4102444800 }
    - { access_token: idletoken0001, user: 50, expires_at: 4102444800 }
    - { access_token: sonettoken001, user: 22, expires_at: 4102444800, scopes: [sonet_group] }
    - { access_token: brieftoken001, user: 22, expires_at: 4102444800, scopes: [user_brief, socialnetwork] }
  refresh_tokens:
    - { refresh_token: refreshtoken0001, client_id: local.app1, user: 22 }
    - { refresh_token: oldrefresh0001, client_id: local.app1, user: 22, revoked: true }
    - { refresh_token: app2refresh001, client_id: local.app2, user: 1 }
    - { refresh_token: scopedrefresh01, client_id: local.app1, user: 22, scopes: [sonet_group, user_brief] }
"#;

/// Every secret of [`PEOPLE`]: none may appear in an error body.
const SECRETS: &[&str] = &[
    "livetoken0001",
    "deadtoken0001",
    "admintoken001",
    "idletoken0001",
    "sonettoken001",
    "brieftoken001",
    "refreshtoken0001",
    "oldrefresh0001",
    "app2refresh001",
    "scopedrefresh01",
    "appsecret0001",
    "othersecret02",
];

async fn people() -> Env {
    env(PEOPLE).await
}

/// [`PEOPLE`] with extra `portal:` lines.
async fn people_with(settings: &str) -> Env {
    env(&PEOPLE.replacen(
        "  rate_limit: null\n",
        &format!("  rate_limit: null\n{settings}"),
        1,
    ))
    .await
}

fn ids(b: &Value) -> Vec<String> {
    b["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result list: {b}"))
        .iter()
        .map(|u| u["ID"].as_str().unwrap().to_owned())
        .collect()
}

fn no_secrets(r: &Reply) {
    let text = r.body.to_string();
    for s in SECRETS {
        assert!(!text.contains(s), "{s} echoed in {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// user.get, user.current, user.admin

/// `USER_TYPE` is `extranet` for extranet users and `employee` otherwise, in `user.get` and
/// `user.current`, and filters with forced `=` (rules §1.5 `USER_TYPE`; reference §2.1).
#[tokio::test]
async fn user_type_is_reported_and_filters() {
    let e = people().await;
    for style in STYLES {
        let b = e
            .ok(
                style,
                "user.get",
                json!({"FILTER": {"USER_TYPE": "extranet"}}),
            )
            .await;
        assert_eq!(ids(&b), ["20"], "{style:?}");
        assert_eq!(b["result"][0]["USER_TYPE"], "extranet");
        let b = e
            .ok(
                style,
                "user.get",
                json!({"FILTER": {"USER_TYPE": "employee"}}),
            )
            .await;
        assert_eq!(
            ids(&b),
            [
                "1", "10", "11", "12", "13", "14", "21", "22", "23", "30", "50", "51"
            ]
        );
        assert!(
            b["result"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["USER_TYPE"] == "employee")
        );
        let r = e
            .call_as((20, "excode"), style, "user.current", json!({}))
            .await;
        assert_eq!(
            (
                r.status,
                &r.body["result"]["ID"],
                &r.body["result"]["USER_TYPE"]
            ),
            (200, &json!("20"), &json!("extranet"))
        );
    }
}

/// `@EMAIL` with a list and `=EMAIL` are exact, case-insensitive matches in which `%` and `_`
/// are plain characters (SQL `IN`/`=` under a case-insensitive collation; reference §2.1
/// "Filter by e-mail", operators `@`, `=`); `@ID` takes a list. A bare `EMAIL` stays LIKE
/// (the default of the UNCONFIRMED `user_get_bare_email`).
#[tokio::test]
async fn user_get_email_lists_are_exact_and_case_insensitive() {
    let e = people().await;
    let cases = [
        (
            json!({"FILTER": {"@EMAIL": ["BO@example.com", "b_o@example.com", "b%o@EXAMPLE.com", "nobody@example.com"]}}),
            vec!["10", "12", "13"],
        ),
        (json!({"FILTER": {"=EMAIL": "b_o@example.com"}}), vec!["13"]),
        (json!({"FILTER": {"=EMAIL": "b%o@example.com"}}), vec!["12"]),
        (
            json!({"FILTER": {"=EMAIL": "BO.TWO@example.COM"}}),
            vec!["11"],
        ),
        (json!({"FILTER": {"=EMAIL": "bo%"}}), vec![]),
        (json!({"FILTER": {"@ID": [22, 10, 999]}}), vec!["10", "22"]),
        // Inactive users are found too unless ACTIVE is filtered.
        (
            json!({"FILTER": {"@EMAIL": ["ina@example.com", "jo@example.com"]}}),
            vec!["50", "51"],
        ),
        (
            json!({"FILTER": {"@EMAIL": ["ina@example.com", "jo@example.com", "bo@example.com"], "ACTIVE": true}}),
            vec!["10"],
        ),
        // Bare EMAIL: LIKE, `_` matches any one character.
        (
            json!({"FILTER": {"EMAIL": "b_o@example.com"}}),
            vec!["12", "13", "14"],
        ),
    ];
    for style in STYLES {
        for (p, want) in &cases {
            let b = e.ok(style, "user.get", p.clone()).await;
            if want.is_empty() {
                assert_eq!(b["result"], json!([]), "{style:?} {p}");
            } else {
                assert_eq!(ids(&b), *want, "{style:?} {p}");
            }
        }
    }
}

/// `user.admin` answers `true`/`false` for the caller; it is in the `basic` scope, so a
/// webhook without `user` may call it (DOCS-EN `api-reference/common/users/user-admin.md`).
#[tokio::test]
async fn user_admin_is_the_callers_admin_flag() {
    let e = people().await;
    for style in STYLES {
        for (who, want) in [
            ((1, "admincode"), true),
            ((10, "bocode"), false),
            ((1, "sonetonly"), true),
        ] {
            let r = e.call_as(who, style, "user.admin", json!({})).await;
            assert_eq!(
                (r.status, &r.body["result"]),
                (200, &json!(want)),
                "{who:?}"
            );
            assert_time(&r.body["time"]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sonet_group.get by name

fn group_ids(b: &Value) -> Vec<String> {
    ids(b)
}

/// `FILTER {NAME}` and `{=NAME}` are `G.NAME = value`: exact, case-insensitive, `%`/`_` plain,
/// names not unique; secret groups only with `IS_ADMIN: "Y"` for an admin, or for members
/// (rules §2.3 "NAME semantics", "IS_ADMIN"; reference §1.2 `sonet_group.get`).
#[tokio::test]
async fn group_get_by_name_is_exact() {
    let e = people().await;
    let asc = |filter: Value| json!({"IS_ADMIN": "Y", "ORDER": {"ID": "ASC"}, "FILTER": filter});
    for style in STYLES {
        let cases = [
            (asc(json!({"=NAME": "engineering"})), vec!["27", "28"]),
            (asc(json!({"NAME": "ENGINEERING"})), vec!["27", "28"]),
            (asc(json!({"NAME": "100% _done"})), vec!["40"]),
            (asc(json!({"=NAME": "100x xdone"})), vec!["41"]),
            (asc(json!({"NAME": "100%"})), vec![]),
            (asc(json!({"NAME": "Engineer"})), vec![]),
            (asc(json!({"NAME": "Secret"})), vec!["99"]),
        ];
        for (p, want) in &cases {
            let b = e.ok(style, "sonet_group.get", p.clone()).await;
            assert_eq!(group_ids(&b), *want, "{style:?} {p}");
            assert_eq!(b["total"], want.len(), "{p}");
        }
        // Default order ID DESC.
        let b = e
            .ok(
                style,
                "sonet_group.get",
                json!({"FILTER": {"NAME": "engineering"}}),
            )
            .await;
        assert_eq!(group_ids(&b), ["28", "27"]);
        // Without IS_ADMIN an admin sees no secret group he is not in; a member sees it;
        // IS_ADMIN from a non-admin is ignored.
        let secret = json!({"FILTER": {"NAME": "Secret"}});
        let mut admin_mode = secret.clone();
        admin_mode["IS_ADMIN"] = json!("Y");
        for (who, p, want) in [
            ((1, "admincode"), &secret, vec![]),
            ((21, "cycode"), &secret, vec!["99"]),
            ((22, "dicode"), &admin_mode, vec![]),
        ] {
            let r = e.call_as(who, style, "sonet_group.get", p.clone()).await;
            assert_eq!(r.status, 200);
            let got: Vec<String> = r.body["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["ID"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(got, want, "{who:?} {p}");
        }
    }
}

/// A name shared by many groups pages 50 at a time with `total` and `next` (reference §1.2
/// "sonet_group.get pagination").
#[tokio::test]
async fn group_get_by_name_pages_by_fifty() {
    let mut y = String::from(
        "portal: { rate_limit: null }\nusers:\n  - { id: 1, email: a@example.com, name: A, last_name: B, admin: true }\ngroups:\n",
    );
    for i in 1..=123 {
        let name = match i % 41 {
            0 => "Other",
            n if n % 2 == 0 => "same",
            _ => "SAME",
        };
        y.push_str(&format!(
            "  - {{ id: {i}, name: {name}, visible: {}, members: [ {{ user: 1, role: A }} ] }}\n",
            i % 3 != 0
        ));
    }
    y.push_str("webhooks:\n  - { user: 1, code: admincode }\n");
    let e = env(&y).await;
    let p = |start: i64| json!({"IS_ADMIN": "Y", "ORDER": {"ID": "ASC"}, "FILTER": {"=NAME": "Same"}, "start": start});
    for style in STYLES {
        let b = e.ok(style, "sonet_group.get", p(0)).await;
        let got = group_ids(&b);
        assert_eq!(
            (got.len(), &got[0], &b["next"], &b["total"]),
            (50, &"1".to_owned(), &json!(50), &json!(120))
        );
        let b = e.ok(style, "sonet_group.get", p(50)).await;
        assert_eq!((group_ids(&b).len(), &b["next"]), (50, &json!(100)));
        let b = e.ok(style, "sonet_group.get", p(100)).await;
        let got = group_ids(&b);
        assert_eq!((got.len(), got.last().unwrap().as_str()), (20, "122"));
        assert!(b.get("next").is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// socialnetwork.api.workgroup.get

/// The documented shape: ids and counters as JSON ints, flags `Y`/`N`, `MEMBERS` = A/E/K,
/// `ORDINARY_MEMBERS` = K, `MODERATOR_MEMBERS` = E (the owner only in `MEMBERS`, as in the
/// docs' example), `INVITED_MEMBERS` = Z rows the group initiated; counters of active users
/// (`SetStat`); inactive users left out by default (DOCS-EN
/// `api-reference/sonet-group/socialnetwork-api-workgroup-get.md`; rules §2.1, §3.3, §8.6).
#[tokio::test]
async fn workgroup_get_default_shape() {
    let e = people().await;
    for style in STYLES {
        let b = e
            .ok(
                style,
                "socialnetwork.api.workgroup.get",
                json!({"params": {"groupId": 15}}),
            )
            .await;
        assert_eq!(
            b["result"],
            json!({
                "ID": 15, "ACTIVE": "Y", "SITE_ID": "s1", "SUBJECT_ID": 1, "NAME": "Marketing",
                "DESCRIPTION": "", "KEYWORDS": "", "CLOSED": "N", "VISIBLE": "Y", "OPENED": "N",
                "DATE_CREATE": "01.01.2024 00:00:00", "DATE_UPDATE": "01.01.2024 00:00:00",
                "DATE_ACTIVITY": "01.01.2024 00:00:00", "IMAGE_ID": 0, "AVATAR_TYPE": "folder",
                "OWNER_ID": 1, "INITIATE_PERMS": "K", "NUMBER_OF_MEMBERS": 3,
                "NUMBER_OF_MODERATORS": 2, "PROJECT": "N", "PROJECT_DATE_START": null,
                "PROJECT_DATE_FINISH": null, "LANDING": "N", "SCRUM_OWNER_ID": 0,
                "SCRUM_SPRINT_DURATION": 0, "SCRUM_TASK_RESPONSIBLE": "", "TYPE": "group",
                "MEMBERS": [1, 10, 21], "ORDINARY_MEMBERS": [10], "INVITED_MEMBERS": [30],
                "MODERATOR_MEMBERS": [21], "SITE_IDS": ["s1"]
            }),
            "{style:?}"
        );
        assert!(b.get("total").is_none());
        let b = e
            .ok(
                style,
                "socialnetwork.api.workgroup.get",
                json!({"params": {"groupId": "28"}}),
            )
            .await;
        assert_eq!(
            (
                &b["result"]["INITIATE_PERMS"],
                &b["result"]["OWNER_ID"],
                &b["result"]["MODERATOR_MEMBERS"],
                &b["result"]["INVITED_MEMBERS"]
            ),
            (&json!("A"), &json!(22), &json!([]), &json!([]))
        );
    }
}

/// `select` adds `DEPARTMENTS` (UF_SG_DEPT), `LIST_OF_MEMBERS_AWAITING_INVITE` (requests: Z
/// rows the user initiated) and `GROUP_MEMBERS_LIST` (members, invited and awaiting users)
/// (DOCS-EN `socialnetwork-api-workgroup-get.md` "Parameter select"; rules §3.3).
#[tokio::test]
async fn workgroup_get_select_extras() {
    let e = people().await;
    let all = json!({"params": {"groupId": 15, "select": ["DEPARTMENTS", "LIST_OF_MEMBERS_AWAITING_INVITE", "GROUP_MEMBERS_LIST", "TAGS"]}});
    for style in STYLES {
        let b = e
            .ok(style, "socialnetwork.api.workgroup.get", all.clone())
            .await;
        let r = &b["result"];
        assert_eq!(r["DEPARTMENTS"], json!([8, 9]), "{style:?}");
        assert_eq!(
            r["LIST_OF_MEMBERS_AWAITING_INVITE"],
            json!([{"id": 22, "name": "Di Dahl", "photo": ""}])
        );
        assert_eq!(
            r["GROUP_MEMBERS_LIST"],
            json!([
                {"id": 1, "invited": false, "isAwaiting": false, "isMember": true},
                {"id": 10, "invited": false, "isAwaiting": false, "isMember": true},
                {"id": 21, "invited": false, "isAwaiting": false, "isMember": true},
                {"id": 30, "invited": true, "isAwaiting": false, "isMember": false},
                {"id": 22, "invited": false, "isAwaiting": true, "isMember": false}
            ])
        );
        // Unknown select names add nothing; without select there are no extras.
        assert!(r.get("TAGS").is_none());
        let b = e
            .ok(
                style,
                "socialnetwork.api.workgroup.get",
                json!({"params": {"groupId": 27, "select": ["DEPARTMENTS"]}}),
            )
            .await;
        assert_eq!(b["result"]["DEPARTMENTS"], json!([]));
        assert!(b["result"].get("GROUP_MEMBERS_LIST").is_none());
    }
    // The form encoding a PHP client sends: params[select][]=….
    let url = format!("{}socialnetwork.api.workgroup.get", e.base(1, "admincode"));
    let r = e
        .raw(
            e.http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("params%5BgroupId%5D=15&params[select][]=DEPARTMENTS"),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["result"]["DEPARTMENTS"]),
        (200, &json!([8, 9]))
    );
}

/// Errors: no or zero `groupId` (also when not wrapped in `params`) →
/// `SONET_CONTROLLER_WORKGROUP_EMPTY`; unknown, or secret and the caller neither admin nor
/// member → `SONET_CONTROLLER_WORKGROUP_NOT_FOUND`, HTTP 400; an admin sees any group (DOCS-EN
/// `socialnetwork-api-workgroup-get.md` "Error Handling" and "An administrator can retrieve
/// information about any group").
#[tokio::test]
async fn workgroup_get_errors_and_visibility() {
    let e = people().await;
    for style in STYLES {
        for p in [
            json!({}),
            json!({"groupId": 15}),
            json!({"params": {"groupId": 0}}),
            json!({"params": {"select": ["DEPARTMENTS"]}}),
        ] {
            let r = e
                .call(style, "socialnetwork.api.workgroup.get", p.clone())
                .await;
            assert_err(
                &r,
                400,
                "SONET_CONTROLLER_WORKGROUP_EMPTY",
                "No value for the workgroup ID was provided.",
            );
        }
        for (who, gid) in [((1, "admincode"), 1234), ((22, "dicode"), 99)] {
            let r = e
                .call_as(
                    who,
                    style,
                    "socialnetwork.api.workgroup.get",
                    json!({"params": {"groupId": gid}}),
                )
                .await;
            assert_err(
                &r,
                400,
                "SONET_CONTROLLER_WORKGROUP_NOT_FOUND",
                "Workgroup not found.",
            );
        }
        for who in [(1, "admincode"), (21, "cycode"), (10, "bocode")] {
            let r = e
                .call_as(
                    who,
                    style,
                    "socialnetwork.api.workgroup.get",
                    json!({"params": {"groupId": 99}}),
                )
                .await;
            assert_eq!(
                (r.status, &r.body["result"]["MEMBERS"]),
                (200, &json!([10, 21]))
            );
        }
    }
}

/// `portal.workgroup_members_inactive: include` lists inactive users' relations too (rules
/// §8.6, UNCONFIRMED); the counters stay active-only.
#[tokio::test]
async fn workgroup_get_inactive_members_knob() {
    let e = people_with("  workgroup_members_inactive: include\n").await;
    let b = e
        .ok(
            Style::Json,
            "socialnetwork.api.workgroup.get",
            json!({"params": {"groupId": 15}}),
        )
        .await;
    let r = &b["result"];
    assert_eq!(r["MEMBERS"], json!([1, 10, 21, 50]));
    assert_eq!(r["ORDINARY_MEMBERS"], json!([10, 50]));
    assert_eq!(r["NUMBER_OF_MEMBERS"], 3);
}

// ---------------------------------------------------------------------------------------------
// sonet_group.setowner

/// Only the current owner may transfer: a portal admin who is not the owner gets
/// `Insufficient permissions to complete the operation.` (rules §4 "the admin trap"; API §1.2);
/// `portal.setowner_admin: allow` lets admins through (UNCONFIRMED).
#[tokio::test]
async fn setowner_refuses_a_non_owner_admin() {
    let e = people().await;
    for style in STYLES {
        for who in [(1, "admincode"), (23, "edcode"), (10, "bocode")] {
            let r = e
                .call_as(
                    who,
                    style,
                    "sonet_group.setowner",
                    json!({"GROUP_ID": 27, "USER_ID": 10}),
                )
                .await;
            assert_err(
                &r,
                400,
                "",
                "Insufficient permissions to complete the operation.",
            );
        }
        // An admin still sees a secret group he is not in: the refusal is about rights.
        let r = e
            .call(
                style,
                "sonet_group.setowner",
                json!({"GROUP_ID": 99, "USER_ID": 21}),
            )
            .await;
        assert_err(
            &r,
            400,
            "",
            "Insufficient permissions to complete the operation.",
        );
    }
    assert_eq!(
        e.members(27).await,
        pairs(&[("22", "A"), ("23", "E"), ("10", "K")])
    );
    let e = people_with("  setowner_admin: allow\n").await;
    let b = e
        .ok(
            Style::Json,
            "sonet_group.setowner",
            json!({"GROUP_ID": 27, "USER_ID": 10}),
        )
        .await;
    assert_eq!(b["result"], json!(true));
    assert_eq!(
        e.members(27).await,
        pairs(&[("22", "K"), ("23", "E"), ("10", "A")])
    );
    assert!(e.text().contains("  setowner_admin: allow\n"));
}

/// The owner hands over to anyone who exists: ACTIVE and USER_TYPE are not checked; the old
/// owner's row becomes K; the new owner's row of any role (Z invited, Z requested, T banned)
/// becomes A, else a new A row is appended; a missing user is `Cannot complete operation.`
/// (rules §4 "Effects", "Edge cases"; API §1.2).
#[tokio::test]
async fn setowner_by_the_owner_takes_any_existing_user() {
    for style in STYLES {
        let e = people().await;
        let setowner = |g: i64, u: i64| json!({"GROUP_ID": g, "USER_ID": u});
        // The admin owns 15: hand it to the invited user 30 (Z/G, with a message).
        let b = e.ok(style, "sonet_group.setowner", setowner(15, 30)).await;
        assert_eq!(b["result"], json!(true));
        let text = e.text();
        assert!(text.contains("      - { user: 1, role: K }\n"), "{text}");
        assert!(text.contains("      - { user: 30, role: A }\n"), "{text}");
        // Group 27 (owner 22): to the inactive user 50, who has no row yet.
        let r = e
            .call_as(
                (22, "dicode"),
                style,
                "sonet_group.setowner",
                setowner(27, 50),
            )
            .await;
        assert_eq!(
            (r.status, &r.body["result"]),
            (200, &json!(true)),
            "{}",
            r.body
        );
        assert!(e.text().contains("      - { user: 50, role: A }\n"));
        // Group 28 (owner 22): to the extranet user 20.
        let r = e
            .call_as(
                (22, "dicode"),
                style,
                "sonet_group.setowner",
                setowner(28, 20),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let b = e
            .ok(
                style,
                "socialnetwork.api.workgroup.get",
                json!({"params": {"groupId": 28}}),
            )
            .await;
        assert_eq!(
            (&b["result"]["OWNER_ID"], &b["result"]["MEMBERS"]),
            (&json!(20), &json!([22, 21, 20]))
        );
        // A user that does not exist.
        let r = e
            .call_as(
                (20, "excode"),
                style,
                "sonet_group.setowner",
                setowner(28, 999),
            )
            .await;
        assert_err(&r, 400, "", "Cannot complete operation.");
    }
}

/// A banned (T) row and a pending request (Z/U) become A when their user is made owner
/// (rules §4: "The new owner's existing row of any role (K/E/Z/T) becomes A").
#[tokio::test]
async fn setowner_promotes_banned_and_requesting_rows() {
    let e = people().await;
    e.ok(
        Style::Form,
        "sonet_group.setowner",
        json!({"GROUP_ID": 15, "USER_ID": 23}),
    )
    .await;
    let r = e
        .call_as(
            (23, "edcode"),
            Style::Get,
            "sonet_group.setowner",
            json!({"GROUP_ID": 15, "USER_ID": 22}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        e.members(15).await,
        pairs(&[
            ("1", "K"),
            ("10", "K"),
            ("21", "E"),
            ("22", "A"),
            ("23", "K")
        ])
    );
    assert!(!e.text().contains("initiated_by: U"));
}

// ---------------------------------------------------------------------------------------------
// sonet_group.user.invite / add / update

/// The caller must pass the group's `INITIATE_PERMS` (A: owner; E: owner and moderators; K:
/// every member) or be a portal admin; otherwise every target is skipped silently (rules §3.1
/// "Inside SendRequestToJoinGroup"; DOCS-EN `socialnetwork-api-workgroup-get.md` INITIATE_PERMS).
#[tokio::test]
async fn invite_honours_initiate_perms() {
    for style in STYLES {
        let e = people().await;
        let invite = |g: i64, u: i64| json!({"GROUP_ID": g, "USER_ID": [u]});
        let cases = [
            // Group 27, E: a member may not, a moderator and the owner may.
            ((10, "bocode"), invite(27, 30), false),
            ((23, "edcode"), invite(27, 30), true),
            ((22, "dicode"), invite(27, 11), true),
            // Group 28, A: a member may not; the owner may; an admin outside may.
            ((21, "cycode"), invite(28, 30), false),
            ((22, "dicode"), invite(28, 30), true),
            ((1, "admincode"), invite(28, 11), true),
            // Group 15, K (default): any member may, a non-member may not.
            ((10, "bocode"), invite(15, 11), true),
            ((20, "excode"), invite(15, 12), false),
        ];
        for (who, p, allowed) in cases {
            let r = e
                .call_as(who, style, "sonet_group.user.invite", p.clone())
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            let n = r.body["result"].as_array().unwrap().len();
            assert_eq!(n, usize::from(allowed), "{style:?} {who:?} {p}");
        }
        let b = e
            .ok(
                style,
                "socialnetwork.api.workgroup.get",
                json!({"params": {"groupId": 28}}),
            )
            .await;
        assert_eq!(b["result"]["INVITED_MEMBERS"], json!([30, 11]));
    }
}

/// Skipped silently: the caller, unknown users, users with any relation (A/E/K/Z/T). Inactive
/// users are invited (nothing checks ACTIVE). `MESSAGE` is stored on the new Z/G row. The
/// result echoes the IDs as they arrived (rules §3.1; API §1.2 `sonet_group.user.invite`).
#[tokio::test]
async fn invite_skips_related_users_and_invites_inactive_ones() {
    for style in STYLES {
        let e = people().await;
        let b = e
            .ok(
                style,
                "sonet_group.user.invite",
                json!({
                    "GROUP_ID": 15,
                    "USER_ID": [1, 999, 10, 21, 50, 30, 22, 23, 51, "14", 51],
                    "MESSAGE": "Join the team"
                }),
            )
            .await;
        let want = if style == Style::Json {
            json!([51, "14"])
        } else {
            json!(["51", "14"])
        };
        assert_eq!(b["result"], want, "{style:?}");
        let text = e.text();
        assert!(
            text.contains(
                "      - { user: 51, role: Z, initiated_by: G, message: Join the team }\n      - { user: 14, role: Z, initiated_by: G, message: Join the team }\n"
            ),
            "{text}"
        );
        // The earlier invite kept its own message.
        assert!(
            text.contains("      - { user: 30, role: Z, initiated_by: G, message: Welcome }\n")
        );
        let b = e
            .ok(
                style,
                "socialnetwork.api.workgroup.get",
                json!({"params": {"groupId": 15}}),
            )
            .await;
        // 51 is inactive: left out by default, though invited.
        assert_eq!(b["result"]["INVITED_MEMBERS"], json!([30, 14]));
        // Without MESSAGE no message key is written.
        e.ok(
            style,
            "sonet_group.user.invite",
            json!({"GROUP_ID": 15, "USER_ID": 13}),
        )
        .await;
        assert!(
            e.text()
                .contains("      - { user: 13, role: Z, initiated_by: G }\n")
        );
    }
}

/// `sonet_group.user.add` skips users with any relation, pending (Z) and banned (T)
/// included, and unknown users; inactive users are added (API §1.2, §1.3; rules §3.1).
#[tokio::test]
async fn add_skips_every_existing_relation() {
    for style in STYLES {
        let e = people().await;
        let b = e
            .ok(
                style,
                "sonet_group.user.add",
                json!({"GROUP_ID": 15, "USER_ID": [30, 22, 23, 10, 21, 1, 50, 51, 999]}),
            )
            .await;
        assert_eq!(b["result"], json!(["51"]), "{style:?}");
        assert!(e.text().contains("      - { user: 51, role: K }\n"));
    }
}

/// `sonet_group.user.update` rewrites the row whatever its role, so a pending request (Z/U)
/// or an invitation (Z/G) becomes E/K; the message and initiator go with it (API §1.2
/// `sonet_group.user.update` [inferred]; rules §3.1 "To admit them, use
/// sonet_group.user.update ROLE=K").
#[tokio::test]
async fn update_admits_a_pending_request() {
    for style in STYLES {
        let e = people().await;
        let b = e
            .ok(
                style,
                "sonet_group.user.update",
                json!({"GROUP_ID": 15, "USER_ID": [22], "ROLE": "K"}),
            )
            .await;
        assert_eq!(b["result"], json!(["22"]));
        let b = e
            .ok(
                style,
                "sonet_group.user.update",
                json!({"GROUP_ID": 15, "USER_ID": 30, "ROLE": "E"}),
            )
            .await;
        assert_eq!(b["result"], json!(["30"]));
        assert_eq!(
            e.members(15).await,
            pairs(&[
                ("1", "A"),
                ("10", "K"),
                ("21", "E"),
                ("30", "E"),
                ("22", "K")
            ])
        );
        let text = e.text();
        assert!(!text.contains("initiated_by"), "{text}");
        assert!(!text.contains("message"), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook scopes

/// A webhook with `scopes` may call only methods of those scopes: `sonet_group.*` needs
/// `sonet_group` or `socialnetwork`, `user.*` needs `user`/`user_basic`/`user_brief`,
/// `socialnetwork.api.*` needs `socialnetwork` (rules §2.4, §1.5 "Scopes"). Others fail with
/// `insufficient_scope` (reference §5; HTTP status per `insufficient_scope_status`, 401 by
/// default, as the newer DOCS-RU system-error table gives it).
#[tokio::test]
async fn webhook_scopes_refuse_other_methods() {
    let e = people().await;
    let text = "The request requires higher privileges than provided by the webhook token";
    let calls = [
        ("user.get", json!({})),
        ("user.current", json!({})),
        ("sonet_group.get", json!({})),
        ("sonet_group.user.get", json!({"ID": 15})),
        (
            "socialnetwork.api.workgroup.get",
            json!({"params": {"groupId": 15}}),
        ),
    ];
    let allowed = [
        ("usersonly", [true, true, false, false, false]),
        ("sonetonly", [false, false, true, true, false]),
        ("socialonly", [false, false, true, true, true]),
        ("admincode", [true, true, true, true, true]),
    ];
    for style in STYLES {
        for (code, ok) in allowed {
            for ((method, p), ok) in calls.iter().zip(ok) {
                let r = e.call_as((1, code), style, method, p.clone()).await;
                if ok {
                    assert_eq!(r.status, 200, "{code} {method}: {}", r.body);
                } else {
                    assert_err(&r, 401, "insufficient_scope", text);
                }
            }
        }
    }
    // Nothing refused was executed or changed.
    let r = e
        .call_as(
            (1, "usersonly"),
            Style::Json,
            "sonet_group.user.add",
            json!({"GROUP_ID": 15, "USER_ID": 51}),
        )
        .await;
    assert_err(&r, 401, "insufficient_scope", text);
    assert!(!e.text().contains("user: 51"));
}

/// Inside a batch, scope is checked per sub-command: a refused one gets `insufficient_scope`
/// with an empty description in `result_error`, the others run (reference §3 "scope is
/// checked per sub-call"); the knob sets the status of plain calls to 403 (reference §5).
#[tokio::test]
async fn scopes_inside_batch_and_the_status_knob() {
    let e = people().await;
    let b = e
        .call_as(
            (1, "usersonly"),
            Style::Json,
            "batch",
            json!({"halt": 0, "cmd": {"me": "user.current", "groups": "sonet_group.get", "admin": "user.admin"}}),
        )
        .await;
    assert_eq!(b.status, 200, "{}", b.body);
    let r = &b.body["result"];
    assert_eq!(r["result"]["me"]["ID"], "1");
    assert_eq!(r["result"]["admin"], true);
    assert_eq!(
        r["result_error"],
        json!({"groups": {"error": "insufficient_scope", "error_description": ""}})
    );
    let e = people_with("  insufficient_scope_status: 403\n").await;
    let r = e
        .call_as((1, "sonetonly"), Style::Get, "user.get", json!({}))
        .await;
    assert_err(
        &r,
        403,
        "insufficient_scope",
        "The request requires higher privileges than provided by the webhook token",
    );
}

/// With `user_brief` (and neither `user` nor `user_basic`) users come without `EMAIL`, in
/// `user.get` and `user.current`, plain or in a batch (rules §1.5 "Scopes": `user_brief` has
/// no `EMAIL`, `user_basic` adds it; reference §2.2 "filtered by scope").
#[tokio::test]
async fn user_brief_gives_no_emails() {
    let e = people().await;
    for style in STYLES {
        let b = e
            .call_as((1, "briefonly"), style, "user.get", json!({}))
            .await;
        assert_eq!(b.status, 200, "{}", b.body);
        let rows = b.body["result"].as_array().unwrap();
        assert_eq!(rows.len(), 13);
        assert!(rows.iter().all(|u| u.get("EMAIL").is_none()), "{}", b.body);
        assert_eq!(rows[0]["NAME"], "Ada");
        let me = e
            .call_as((1, "briefonly"), style, "user.current", json!({}))
            .await;
        assert_eq!(me.body["result"]["ID"], "1");
        assert!(me.body["result"].get("EMAIL").is_none(), "{}", me.body);
        // user_basic (and every scope) still has it.
        for code in ["usersonly", "admincode"] {
            let me = e.call_as((1, code), style, "user.current", json!({})).await;
            assert_eq!(me.body["result"]["EMAIL"], "ada@example.com", "{code}");
        }
    }
    let b = e
        .call_as(
            (1, "briefonly"),
            Style::Json,
            "batch",
            json!({"halt": 0, "cmd": {"me": "user.current", "some": "user.get?FILTER[@ID][]=10"}}),
        )
        .await;
    let r = &b.body["result"]["result"];
    assert_eq!(
        (&r["me"]["ID"], &r["some"][0]["ID"]),
        (&json!("1"), &json!("10"))
    );
    assert!(r["me"].get("EMAIL").is_none() && r["some"][0].get("EMAIL").is_none());
}

/// With `user_brief` only, a filter on `EMAIL` (any prefix, or the legacy top-level key) is a
/// filter on a field the scope does not allow, and is silently ignored (reference §2.1
/// "Only allowed user fields are accepted … unknown keys are silently ignored"; rules §1.5
/// "Scopes"): everyone comes back, 50 a page with `total` and `next`.
#[tokio::test]
async fn user_brief_ignores_an_email_filter() {
    let mut yaml = "portal:\n  rate_limit: null\nusers:\n".to_owned();
    for id in 1..=60 {
        yaml.push_str(&format!(
            "  - {{ id: {id}, email: u{id}@example.com, name: U{id}, last_name: L }}\n"
        ));
    }
    yaml.push_str("webhooks:\n  - { user: 1, code: briefonly, scopes: [user_brief] }\n");
    yaml.push_str("  - { user: 1, code: basiconly, scopes: [user_basic] }\n");
    let e = env(&yaml).await;
    let asked = ["u7@example.com", "u9@example.com"];
    for style in STYLES {
        for filter in [
            json!({"FILTER": {"@EMAIL": asked}}),
            json!({"FILTER": {"=EMAIL": "u7@example.com"}}),
            json!({"FILTER": {"EMAIL": "u7@example.com"}}),
            json!({"EMAIL": "u7@example.com"}),
        ] {
            let b = e
                .call_as((1, "briefonly"), style, "user.get", filter.clone())
                .await;
            assert_eq!(b.status, 200, "{}", b.body);
            assert_eq!(
                (
                    b.body["result"].as_array().unwrap().len(),
                    &b.body["total"],
                    &b.body["next"]
                ),
                (50, &json!(60), &json!(50)),
                "{style:?} {filter}"
            );
            // Other filter keys still apply.
            let mut with_id = filter.clone();
            if with_id.get("FILTER").is_some() {
                with_id["FILTER"]["@ID"] = json!([3, 4]);
            } else {
                with_id["@ID"] = json!([3, 4]);
            }
            let b = e
                .call_as((1, "briefonly"), style, "user.get", with_id.clone())
                .await;
            assert_eq!(ids(&b.body), ["3", "4"], "{style:?} {with_id}");
        }
        // The same filter with user_basic is applied.
        let b = e
            .call_as(
                (1, "basiconly"),
                style,
                "user.get",
                json!({"FILTER": {"@EMAIL": asked}}),
            )
            .await;
        assert_eq!(ids(&b.body), ["7", "9"], "{style:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth calls

/// Where an OAuth request carries its token.
#[derive(Debug, Clone, Copy)]
enum Carrier {
    Query,
    QueryAccessToken,
    Form,
    Json,
    Bearer,
}

const CARRIERS: [Carrier; 5] = [
    Carrier::Query,
    Carrier::QueryAccessToken,
    Carrier::Form,
    Carrier::Json,
    Carrier::Bearer,
];

/// `/rest/{method}` with `token` in `carrier` and `p` encoded to match.
async fn oauth(e: &Env, carrier: Carrier, method: &str, token: &str, p: Value) -> Reply {
    let url = format!("http://{}/rest/{method}", e.sb().addr());
    let mut with = p.clone();
    let req = match carrier {
        Carrier::Query => {
            with["auth"] = json!(token);
            e.http.get(format!("{url}?{}", build_query(&with)))
        }
        Carrier::QueryAccessToken => {
            with["access_token"] = json!(token);
            e.http.get(format!("{url}?{}", build_query(&with)))
        }
        Carrier::Form => {
            with["auth"] = json!(token);
            e.http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(build_query(&with))
        }
        Carrier::Json => {
            with["auth"] = json!(token);
            e.http.post(url).json(&with)
        }
        Carrier::Bearer => e
            .http
            .post(url)
            .header("authorization", format!("Bearer {token}"))
            .json(&p),
    };
    e.raw(req).await
}

/// An OAuth call runs as the token's user, with that user's admin flag, on `/rest/{method}`
/// (`.json` and a trailing slash accepted), the token in `auth` or `access_token` (query, form
/// or JSON body) or `Authorization: Bearer` (reference §0 "Endpoint", §6 "OAuth call"; rules
/// §5 "Auth carriers").
#[tokio::test]
async fn oauth_calls_run_as_the_token_user() {
    let e = people().await;
    for carrier in CARRIERS {
        for method in ["user.current", "user.current.json", "USER.current/"] {
            let r = oauth(&e, carrier, method, "livetoken0001", json!({})).await;
            assert_eq!(
                (r.status, &r.body["result"]["ID"]),
                (200, &json!("22")),
                "{carrier:?} {method}: {}",
                r.body
            );
            assert_time(&r.body["time"]);
        }
        let r = oauth(&e, carrier, "user.admin", "admintoken001", json!({})).await;
        assert_eq!(r.body["result"], true, "{carrier:?}");
        let r = oauth(&e, carrier, "user.admin", "livetoken0001", json!({})).await;
        assert_eq!(r.body["result"], false, "{carrier:?}");
        // Parameters other than the token reach the method.
        let r = oauth(
            &e,
            carrier,
            "sonet_group.user.get",
            "livetoken0001",
            json!({"ID": 27}),
        )
        .await;
        assert_eq!(
            r.body["result"][0],
            json!({"USER_ID": "22", "ROLE": "A"}),
            "{carrier:?}"
        );
    }
}

/// The reason roster needs OAuth: the owner's token may transfer ownership; an admin's token
/// that is not the owner's may not (rules §4, §7 "Owner transfer over REST works reliably only
/// as the current owner (e.g. an OAuth token of that user)").
#[tokio::test]
async fn oauth_owner_token_transfers_ownership() {
    let e = people().await;
    let p = json!({"GROUP_ID": 27, "USER_ID": 23});
    let r = oauth(
        &e,
        Carrier::Json,
        "sonet_group.setowner",
        "admintoken001",
        p.clone(),
    )
    .await;
    assert_err(
        &r,
        400,
        "",
        "Insufficient permissions to complete the operation.",
    );
    let r = oauth(
        &e,
        Carrier::Json,
        "sonet_group.setowner",
        "livetoken0001",
        p,
    )
    .await;
    assert_eq!(
        (r.status, &r.body["result"]),
        (200, &json!(true)),
        "{}",
        r.body
    );
    assert_eq!(
        e.members(27).await,
        pairs(&[("22", "K"), ("23", "A"), ("10", "K")])
    );
}

/// Refusals, all HTTP 401 and none quoting the token: an unknown token `invalid_token`
/// "Unable to get application by token" (text UNCONFIRMED, PYSDK); an expired one
/// `expired_token` "The access token provided has expired." (`expires <= time()`); a token
/// of an inactive user `authorization_error` "Unable to authorize user"; no token at all
/// `NO_AUTH_FOUND` (rules §5 "Token check order"; reference §5).
#[tokio::test]
async fn oauth_token_refusals() {
    let e = people().await;
    for carrier in CARRIERS {
        for (token, code, text) in [
            (
                "nosuchtoken01",
                "invalid_token",
                "Unable to get application by token",
            ),
            (
                "deadtoken0001",
                "expired_token",
                "The access token provided has expired.",
            ),
            (
                "idletoken0001",
                "authorization_error",
                "Unable to authorize user",
            ),
        ] {
            let r = oauth(&e, carrier, "user.current", token, json!({})).await;
            assert_err(&r, 401, code, text);
            assert!(!r.body.to_string().contains(token));
        }
    }
    let url = format!("http://{}/rest/user.current", e.sb().addr());
    for req in [
        e.http.get(&url),
        e.http.get(format!("{url}?auth=")),
        e.http.post(&url).header("authorization", "Basic eDp5"),
    ] {
        let r = e.raw(req).await;
        assert_err(&r, 401, "NO_AUTH_FOUND", "Wrong authorization data");
    }
}

/// A batch on `/rest/batch` is covered by the outer token: sub-commands run as its user, and
/// an `auth` inside a sub-command's query changes nothing (reference §3 "The caller's auth
/// and the auth data are copied into every sub-call").
#[tokio::test]
async fn oauth_batch_runs_sub_commands_as_the_token_user() {
    let e = people().await;
    for carrier in CARRIERS {
        let r = oauth(
            &e,
            carrier,
            "batch",
            "livetoken0001",
            json!({"halt": 0, "cmd": {
                "me": "user.current",
                "other": "user.current?auth=admintoken001",
                "admin": "user.admin",
                "members": "sonet_group.user.get?ID=27"
            }}),
        )
        .await;
        assert_eq!(r.status, 200, "{carrier:?}: {}", r.body);
        let res = &r.body["result"]["result"];
        assert_eq!(
            (
                &res["me"]["ID"],
                &res["other"]["ID"],
                &res["admin"],
                &res["members"][0]["USER_ID"]
            ),
            (&json!("22"), &json!("22"), &json!(false), &json!("22")),
            "{carrier:?}"
        );
        assert_eq!(r.body["result"]["result_error"], json!([]));
    }
    // OAuth calls are counted like webhook calls.
    let stats = e.sb().stats();
    assert_eq!(stats.method("batch").http_requests, 5);
    assert_eq!(stats.method("user.current").commands, 10);
}

/// An access token's `scopes` are checked like a webhook's (rules §5 "scope not in the token →
/// `insufficient_scope` 'The request requires higher privileges than provided by the access
/// token'"; reference §5; HTTP status per `insufficient_scope_status`), per sub-command inside
/// a batch with an empty description (reference §3); with `user_brief` users come without
/// `EMAIL` (rules §1.5 "Scopes").
#[tokio::test]
async fn oauth_token_scopes_are_checked() {
    let e = people().await;
    let text = "The request requires higher privileges than provided by the access token";
    let calls = [
        ("user.get", json!({})),
        ("user.current", json!({})),
        ("sonet_group.user.get", json!({"ID": 27})),
        (
            "socialnetwork.api.workgroup.get",
            json!({"params": {"groupId": 27}}),
        ),
        ("user.admin", json!({})),
    ];
    let allowed = [
        ("sonettoken001", [false, false, true, false, true]),
        ("brieftoken001", [true, true, true, true, true]),
        ("livetoken0001", [true, true, true, true, true]),
    ];
    for carrier in CARRIERS {
        for (token, ok) in allowed {
            for ((method, p), ok) in calls.iter().zip(ok) {
                let r = oauth(&e, carrier, method, token, p.clone()).await;
                if ok {
                    assert_eq!(r.status, 200, "{token} {method}: {}", r.body);
                } else {
                    assert_err(&r, 401, "insufficient_scope", text);
                    no_secrets(&r);
                }
            }
        }
        let me = oauth(&e, carrier, "user.current", "brieftoken001", json!({})).await;
        assert_eq!(me.body["result"]["ID"], "22");
        assert!(me.body["result"].get("EMAIL").is_none(), "{}", me.body);
        let me = oauth(&e, carrier, "user.current", "livetoken0001", json!({})).await;
        assert_eq!(me.body["result"]["EMAIL"], "di@example.com");
    }
    let b = oauth(
        &e,
        Carrier::Json,
        "batch",
        "sonettoken001",
        json!({"halt": 0, "cmd": {"me": "user.current", "members": "sonet_group.user.get?ID=27"}}),
    )
    .await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.body["result"]["result"]["members"][0]["USER_ID"], "22");
    assert_eq!(
        b.body["result"]["result_error"],
        json!({"me": {"error": "insufficient_scope", "error_description": ""}})
    );
    let e = people_with("  insufficient_scope_status: 403\n").await;
    let r = oauth(&e, Carrier::Bearer, "user.get", "sonettoken001", json!({})).await;
    assert_err(&r, 403, "insufficient_scope", text);
}

// ---------------------------------------------------------------------------------------------
// The token endpoint

/// `/oauth/token/?grant_type=refresh_token&client_id&client_secret&refresh_token` (GET query
/// or POST form body).
async fn refresh(e: &Env, post: bool, p: Value) -> Reply {
    let url = format!("http://{}/oauth/token/", e.sb().addr());
    let req = if post {
        e.http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(build_query(&p))
    } else {
        e.http.get(format!("{url}?{}", build_query(&p)))
    };
    e.raw(req).await
}

fn grant(client: &str, secret: &str, token: &str) -> Value {
    json!({"grant_type": "refresh_token", "client_id": client, "client_secret": secret, "refresh_token": token})
}

/// A refresh answers the documented fields (`access_token`, `refresh_token`, `expires`,
/// `expires_in`, `client_endpoint`, `server_endpoint`, `domain`, `member_id`, `scope`,
/// `status`, `user_id`), issues new random tokens, persists them, and (default
/// `oauth_rotation: invalidate`) revokes the refresh token used (reference §6 "Refresh";
/// rules §5 "Response", "Refresh token rotation", UNCONFIRMED).
#[tokio::test]
async fn refresh_issues_new_tokens_and_revokes_the_old_one() {
    let mut e = people().await;
    let mut token = "refreshtoken0001".to_owned();
    for post in [false, true] {
        let addr = e.sb().addr().to_string();
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let r = refresh(&e, post, grant("local.app1", "appsecret0001", &token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let b = &r.body;
        let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "access_token",
            "expires",
            "expires_in",
            "scope",
            "domain",
            "server_endpoint",
            "status",
            "client_endpoint",
            "member_id",
            "user_id",
            "refresh_token",
        ];
        let mut got = keys.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(b["expires_in"], 3600);
        let expires = b["expires"].as_i64().unwrap();
        assert!((before + 3600..=before + 3602).contains(&expires), "{b}");
        assert_eq!(b["client_endpoint"], format!("http://{addr}/rest/"));
        assert_eq!(b["server_endpoint"], format!("http://{addr}/rest/"));
        assert_eq!(b["domain"], addr);
        assert_eq!((&b["status"], &b["user_id"]), (&json!("L"), &json!(22)));
        assert_eq!(b["member_id"].as_str().unwrap().len(), 32);
        let access = b["access_token"].as_str().unwrap().to_owned();
        let new_refresh = b["refresh_token"].as_str().unwrap().to_owned();
        assert!(access.len() >= 32 && new_refresh.len() >= 32);
        assert_ne!(access, new_refresh);
        assert_ne!(new_refresh, token);
        // The new access token works; the used refresh token is dead.
        let r = oauth(&e, Carrier::Json, "user.current", &access, json!({})).await;
        assert_eq!(r.body["result"]["ID"], "22");
        let r = refresh(&e, post, grant("local.app1", "appsecret0001", &token)).await;
        assert_eq!((r.status, &r.body["error"]), (400, &json!("invalid_grant")));
        // Persisted before the answer, and still good after a restart.
        let text = e.text();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} not in {text}"))
                .to_owned()
        };
        assert!(line(&token).ends_with(", client_id: local.app1, user: 22, revoked: true }"));
        assert!(line(&access).ends_with(&format!(", user: 22, expires_at: {expires} }}")));
        assert!(line(&new_refresh).ends_with(", client_id: local.app1, user: 22 }"));
        e.restart().await;
        let r = oauth(&e, Carrier::Bearer, "user.current", &access, json!({})).await;
        assert_eq!(r.body["result"]["ID"], "22");
        token = new_refresh;
    }
}

/// With `oauth_rotation: keep` a refresh token keeps working after use (rules §5, UNCONFIRMED);
/// the token endpoint has its own counters and is outside the REST counters.
#[tokio::test]
async fn refresh_with_rotation_keep() {
    let e = people_with("  oauth_rotation: keep\n").await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let r = refresh(
            &e,
            true,
            grant("local.app1", "appsecret0001", "refreshtoken0001"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(seen.insert(r.body["access_token"].as_str().unwrap().to_owned()));
    }
    let text = e.text();
    let used = text
        .lines()
        .find(|l| l.contains("refreshtoken0001"))
        .unwrap();
    assert!(!used.contains("revoked"), "{used}");
    let stats = e.sb().stats();
    assert_eq!(
        (
            stats.oauth_token_requests,
            stats.oauth_tokens_issued,
            stats.http_requests
        ),
        (2, 2, 0)
    );
}

/// A refreshed grant keeps the scopes of the refresh token's grant: the answer's `scope` lists
/// them (every scope when the refresh token has none), and the new access and refresh tokens
/// carry them, in the state file too, through further refreshes (rules §5 "Response": `scope`;
/// `INVALID_SCOPE` "Given scope exceeds permissions associated with given grant").
#[tokio::test]
async fn refresh_keeps_the_grants_scopes() {
    let mut e = people().await;
    let r = refresh(
        &e,
        true,
        grant("local.app1", "appsecret0001", "refreshtoken0001"),
    )
    .await;
    assert_eq!(r.body["scope"], "sonet_group,socialnetwork,user");
    let mut token = "scopedrefresh01".to_owned();
    for _ in 0..2 {
        let r = refresh(&e, false, grant("local.app1", "appsecret0001", &token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["scope"], "sonet_group,user_brief");
        let access = r.body["access_token"].as_str().unwrap().to_owned();
        let refreshed = r.body["refresh_token"].as_str().unwrap().to_owned();
        let text = e.text();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .unwrap()
                .to_owned()
        };
        assert!(
            line(&access).ends_with(", scopes: [sonet_group, user_brief] }"),
            "{}",
            line(&access)
        );
        assert!(line(&refreshed).ends_with(", user: 22, scopes: [sonet_group, user_brief] }"));
        e.restart().await;
        let r = oauth(
            &e,
            Carrier::Json,
            "socialnetwork.api.workgroup.get",
            &access,
            json!({"params": {"groupId": 27}}),
        )
        .await;
        assert_err(
            &r,
            401,
            "insufficient_scope",
            "The request requires higher privileges than provided by the access token",
        );
        let me = oauth(&e, Carrier::Json, "user.current", &access, json!({})).await;
        assert_eq!(me.body["result"]["ID"], "22");
        assert!(me.body["result"].get("EMAIL").is_none(), "{}", me.body);
        token = refreshed;
    }
}

/// Errors, HTTP 400 `{"error","error_description"}` quoting no secret: missing parameters
/// `invalid_request` (`No "refresh_token" parameter found`), other grant types
/// `unsupported_grant_type`, a wrong client/secret pair `invalid_client`, an unknown, revoked
/// or other client's refresh token `invalid_grant` (rules §5 "OAuth-server errors"; reference
/// §6).
#[tokio::test]
async fn refresh_errors() {
    let e = people().await;
    let mut no_token = grant("local.app1", "appsecret0001", "x");
    no_token.as_object_mut().unwrap().remove("refresh_token");
    let mut no_grant = grant("local.app1", "appsecret0001", "refreshtoken0001");
    no_grant.as_object_mut().unwrap().remove("grant_type");
    let mut code_grant = grant("local.app1", "appsecret0001", "refreshtoken0001");
    code_grant["grant_type"] = json!("authorization_code");
    let cases = [
        (
            no_token,
            "invalid_request",
            "No \"refresh_token\" parameter found",
        ),
        (
            no_grant,
            "invalid_request",
            "No \"grant_type\" parameter found",
        ),
        (
            code_grant,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        ),
        (
            grant("local.app1", "othersecret02", "refreshtoken0001"),
            "invalid_client",
            "Invalid client credentials",
        ),
        (
            grant("local.app9", "appsecret0001", "refreshtoken0001"),
            "invalid_client",
            "Invalid client credentials",
        ),
        (
            grant("local.app1", "appsecret0001", "nosuchrefresh01"),
            "invalid_grant",
            "Invalid or expired refresh token",
        ),
        (
            grant("local.app1", "appsecret0001", "oldrefresh0001"),
            "invalid_grant",
            "Invalid or expired refresh token",
        ),
        (
            grant("local.app2", "othersecret02", "refreshtoken0001"),
            "invalid_grant",
            "Invalid or expired refresh token",
        ),
    ];
    for post in [false, true] {
        for (p, code, text) in &cases {
            let r = refresh(&e, post, p.clone()).await;
            assert_eq!(
                (r.status, &r.body),
                (400, &json!({"error": code, "error_description": text})),
                "{p}"
            );
            no_secrets(&r);
        }
    }
    // Nothing was written.
    assert_eq!(e.text(), PEOPLE);
}

/// Expiry follows the sandbox clock: `expires_at <= now` is expired (rules §5, src OAUTH
/// `expires <= time()`); `access_ttl_s` sets `expires_in`.
#[tokio::test]
async fn issued_tokens_expire_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.yaml");
    std::fs::write(
        &path,
        PEOPLE.replace("oauth:\n", "oauth:\n  access_ttl_s: 60\n"),
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(1_773_850_553.0));
    let sb = Sandbox::start_with_clock(&path, "127.0.0.1:0".parse().unwrap(), clock.clone())
        .await
        .unwrap();
    let e = Env {
        _dir: dir,
        path,
        sb: Some(sb),
        http: client(),
    };
    let r = refresh(
        &e,
        false,
        grant("local.app1", "appsecret0001", "refreshtoken0001"),
    )
    .await;
    assert_eq!(
        (&r.body["expires_in"], &r.body["expires"]),
        (&json!(60), &json!(1_773_850_613_i64))
    );
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    clock.advance(Duration::from_secs(59));
    let r = oauth(&e, Carrier::Query, "user.current", &access, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    clock.advance(Duration::from_secs(1));
    let r = oauth(&e, Carrier::Query, "user.current", &access, json!({})).await;
    assert_err(
        &r,
        401,
        "expired_token",
        "The access token provided has expired.",
    );
}

/// OAuth calls pass through the same leaky bucket as webhook calls (reference §4: counted per
/// portal and source IP, whatever the auth).
#[tokio::test]
async fn oauth_calls_share_the_leaky_bucket() {
    let e = env(&PEOPLE.replacen(
        "  rate_limit: null\n",
        "  rate_limit: { burst: 2, per_second: 0 }\n",
        1,
    ))
    .await;
    let r = oauth(
        &e,
        Carrier::Json,
        "user.current",
        "livetoken0001",
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = e.call(Style::Json, "user.current", json!({})).await;
    assert_eq!(r.status, 200);
    let r = oauth(
        &e,
        Carrier::Bearer,
        "user.current",
        "livetoken0001",
        json!({}),
    )
    .await;
    assert_err(&r, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests");
    assert_eq!(e.sb().stats().rejected_503, 1);
}

/// A state file whose `oauth:` section is wrong is refused with a message that quotes no
/// token or secret (house style 13; the loader names items by position).
#[tokio::test]
async fn oauth_state_errors_quote_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        PEOPLE.replace("user: 22, expires_at: 1000", "user: 7, expires_at: 1000"),
        PEOPLE.replace(
            "user: 22, expires_at: 1000",
            "user: 22, expires_at: deadtoken0001",
        ),
        PEOPLE.replace(
            "client_id: local.app2, user: 1",
            "client_id: appsecret0001, user: 1",
        ),
    ] {
        let path = dir.path().join("portal.yaml");
        std::fs::write(&path, bad).unwrap();
        let err = Sandbox::start(&path, "127.0.0.1:0".parse().unwrap())
            .await
            .err()
            .expect("refused")
            .to_string();
        for s in SECRETS {
            assert!(!err.contains(s), "{s} in {err}");
        }
        assert!(err.contains("portal.yaml"), "{err}");
    }
}
