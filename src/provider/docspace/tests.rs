//! Unit tests of the DocSpace client's pure parts: the envelope and DTO readers, the rate-limit
//! headers, change grouping, verdicts, settling, the lookup's cost choice, addresses and
//! credentials. Exchanges with a scripted server are in `exchange`; round trips against the
//! sandbox live in tests/it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::http::{authorization, base_url_of};
use super::lookup::{self, PAGE};
use super::wire::{self, Answer, Envelope};
use super::write::{self, Miss, Settled, Verdict, Who};
use super::*;
use crate::model::{OpStatus, Role, UserId};
use crate::plan::Change;

mod exchange;

const U1: &str = "00000000-0000-4000-8000-000000000001";
const U2: &str = "00000000-0000-4000-8000-000000000002";
const U3: &str = "00000000-0000-4000-8000-000000000003";
const U4: &str = "00000000-0000-4000-8000-000000000004";
const U5: &str = "00000000-0000-4000-8000-000000000005";
const G1: &str = "10000000-0000-4000-8000-000000000001";
const G2: &str = "10000000-0000-4000-8000-000000000002";

fn uuid(s: &str) -> Uuid {
    Uuid::parse(s).unwrap()
}
fn user(s: &str) -> UserId {
    UserId::Uuid(uuid(s))
}
fn gid(s: &str) -> GroupId {
    GroupId::Uuid(uuid(s))
}

fn employee_json(id: &str) -> Value {
    json!({"id": id, "displayName": "Anna Berg", "email": "anna@example.com", "status": 1,
           "isAdmin": false, "isOwner": false, "isVisitor": false})
}

// ---------------------------------------------------------------------------------------------
// The envelope.

#[test]
fn success_envelope_in_any_property_order_with_total() {
    let body = r#"{"statusCode":200,"status":0,"links":[{"href":"x","action":"GET"}],"total":42,"count":1,"response":[1]}"#;
    assert_eq!(
        wire::read_answer(200, body),
        Answer::Ok(Envelope {
            response: json!([1]),
            total: Some(42)
        })
    );
    assert_eq!(
        wire::read_answer(200, r#"{"response":{"id":1},"count":1}"#),
        Answer::Ok(Envelope {
            response: json!({"id": 1}),
            total: None
        })
    );
}

#[test]
fn errors_are_read_by_key_whatever_else_they_carry() {
    let check = |status, body: &str, want_status, want: Option<&str>| {
        assert_eq!(
            wire::read_answer(status, body),
            Answer::Refused {
                status: want_status,
                message: want.map(str::to_owned)
            },
            "{body}"
        );
    };
    check(
        404,
        r#"{"error":{"message":"The group could not be found","type":"ASC.Common.Web.ItemNotFoundException","stack":"...","hresult":-2146233088},"status":1,"statusCode":404}"#,
        404,
        Some("The group could not be found"),
    );
    check(
        403,
        r#"{"status":1,"error":{"message":"Access denied"},"statusCode":403}"#,
        403,
        Some("Access denied"),
    );
    check(401, "", 401, None);
    check(403, "  ", 403, None);
    check(429, "", 429, None);
    // The validation answer rides in the success wrapper.
    check(
        400,
        r#"{"response":{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.1","title":"One or more validation errors occurred.","status":400,"errors":{"userId":["The value 'abc' is not valid."]}},"status":1,"statusCode":400}"#,
        400,
        Some("One or more validation errors occurred. (userId: The value 'abc' is not valid.)"),
    );
    // An error inside a 200 is still an error, with the envelope's status.
    check(
        200,
        r#"{"error":{"message":"Members"},"status":1,"statusCode":400}"#,
        400,
        Some("Members"),
    );
    check(500, r#"{"status":1,"statusCode":500}"#, 500, None);
}

#[test]
fn answers_that_are_not_the_envelope() {
    assert_eq!(wire::read_answer(204, ""), Answer::NoContent);
    let malformed = |status, body: &str| match wire::read_answer(status, body) {
        Answer::Malformed { truncated, .. } => truncated,
        other => panic!("{body}: {other:?}"),
    };
    assert!(!malformed(200, "<html>Sign in</html>"));
    assert!(!malformed(200, r#"{"count":1}"#));
    assert!(!malformed(200, ""));
    assert!(!malformed(200, "[1,2]"));
    assert!(malformed(200, r#"{"response":{"id":"#));
    assert!(!malformed(502, "<html>Bad gateway"));
}

// ---------------------------------------------------------------------------------------------
// DTOs.

#[test]
fn employees_tolerantly() {
    let e = wire::employee(&employee_json(U1)).unwrap();
    assert_eq!(e.id, uuid(U1));
    assert_eq!(e.name.as_deref(), Some("Anna Berg"));
    assert!(e.profile);
    // Upper-case IDs, names from first and last, numbers and flags as strings.
    let e = wire::employee(
        &json!({"id": U1.to_uppercase(), "firstName": "Bo", "lastName": " Ek ",
        "status": "2", "isVisitor": "true", "isOwner": 1}),
    )
    .unwrap();
    assert_eq!(e.id, uuid(U1));
    assert_eq!(e.name.as_deref(), Some("Bo Ek"));
    assert!(e.terminated() && e.is_visitor && e.is_owner && !e.is_admin);
    assert_eq!(e.email, None);
    // No usable ID: nobody.
    for bad in [
        json!({"displayName": "x"}),
        json!({"id": "7"}),
        json!({"id": "00000000-0000-0000-0000-000000000000"}),
        json!("x"),
    ] {
        assert_eq!(wire::employee(&bad), None, "{bad}");
    }
    // A bare ID is no profile.
    assert!(!wire::employee(&json!({ "id": U1 })).unwrap().profile);
}

#[test]
fn people_are_active_unless_terminated_and_guests_are_extranet() {
    let person = |status: Value, visitor: bool| {
        wire::employee(&json!({"id": U1, "status": status, "isVisitor": visitor}))
            .unwrap()
            .person()
    };
    let active = person(json!(1), false);
    assert!(active.active && !active.extranet);
    assert_eq!(active.id, user(U1));
    assert!(!person(json!(2), false).active);
    // Pending users can be made members: active.
    assert!(person(json!(4), false).active);
    // Nothing says otherwise.
    assert!(person(Value::Null, false).active);
    assert!(person(json!(1), true).extranet);
}

#[test]
fn the_manager_is_the_owner_and_a_member_even_when_not_listed() {
    let g = wire::group(&json!({
        "id": G1, "name": "Sales", "parent": "00000000-0000-0000-0000-000000000000",
        "manager": employee_json(U1),
        "members": [employee_json(U2), {"id": "junk"}, employee_json(U3)],
        "membersCount": 3, "isLDAP": false
    }))
    .unwrap();
    assert!(g.has(uuid(U1)) && g.has(uuid(U2)) && !g.has(uuid(G2)));
    let current = g.current().unwrap();
    assert_eq!(current.name.as_deref(), Some("Sales"));
    assert_eq!(current.owner(), Some(user(U1)));
    assert_eq!(
        current.members,
        BTreeMap::from([
            (user(U1), Role::Owner),
            (user(U2), Role::Member),
            (user(U3), Role::Member)
        ])
    );
    assert!(current.invited.is_empty() && current.requested.is_empty());
    assert!(current.departments.is_empty());
    assert_eq!((current.initiate_perms, current.visible), (None, None));
}

#[test]
fn groups_without_manager_or_members() {
    // No manager (omitted, null, the empty GUID, or a bare ID string).
    for manager in [
        json!(null),
        json!({"id": "00000000-0000-0000-0000-000000000000"}),
    ] {
        let g = wire::group(&json!({"id": G1, "manager": manager, "members": []})).unwrap();
        assert_eq!(g.manager_id(), None);
        assert!(g.current().unwrap().members.is_empty());
    }
    let g = wire::group(&json!({"id": G1, "manager": U1, "members": []})).unwrap();
    assert_eq!(g.current().unwrap().owner(), Some(user(U1)));
    // An answer without `members` is no read of them, unless the group is empty.
    let g = wire::group(&json!({"id": G1, "name": "x", "membersCount": 2})).unwrap();
    assert!(g.current().unwrap_err().contains("no `members`"));
    let g = wire::group(&json!({"id": G1, "membersCount": 0})).unwrap();
    assert!(g.current().unwrap().members.is_empty());
    assert!(wire::group(&json!({"id": G1, "members": 3})).is_err());
    assert!(wire::group(&json!([])).is_err());
}

#[test]
fn group_lists_keep_rows_with_id_and_name() {
    let rows = json!([
        {"id": G1, "name": "Sales", "membersCount": 3},
        {"id": G2},
        {"name": "x"},
        "junk"
    ]);
    assert_eq!(
        wire::groups(&rows).unwrap(),
        vec![(uuid(G1), "Sales".to_owned())]
    );
    assert!(wire::groups(&json!({})).is_err());
}

// ---------------------------------------------------------------------------------------------
// Rate-limit headers.

#[test]
fn retry_after_is_preferred_and_reset_read_as_seconds_or_a_time() {
    let now = 1_750_000_000;
    let wait = |retry: Option<&str>, reset: Option<&str>| wire::rate_limit_wait(retry, reset, now);
    let s = Duration::from_secs;
    assert_eq!(wait(Some("7"), Some("1750000100")), Some(s(7)));
    assert_eq!(wait(Some(" 2.5 "), None), Some(s(3)));
    assert_eq!(wait(None, Some("30")), Some(s(30)));
    assert_eq!(wait(None, Some("1750000045")), Some(s(45)));
    assert_eq!(wait(None, Some("1750000045000")), Some(s(45)));
    // A reset in the past: no wait.
    assert_eq!(wait(None, Some("1749999999")), Some(s(0)));
    // An HTTP date or junk: nothing known (the client then backs off on its own).
    assert_eq!(wait(Some("Wed, 21 Oct 2015 07:28:00 GMT"), None), None);
    assert_eq!(wait(None, None), None);
    assert_eq!(wait(Some("-3"), Some("x")), None);
}

// ---------------------------------------------------------------------------------------------
// Writes.

fn add(u: &str) -> Change {
    Change::Add {
        user: user(u),
        role: Role::Member,
    }
}
fn remove(u: &str) -> Change {
    Change::Remove {
        user: user(u),
        role: Role::Member,
    }
}
fn set_owner(from: Option<&str>, to: &str) -> Change {
    Change::SetOwner {
        from: from.map(user),
        to: user(to),
    }
}

#[test]
fn changes_go_per_group_manager_first_then_one_add_and_one_removal() {
    let changes = [
        (gid(G2), remove(U3)),
        (gid(G1), add(U2)),
        (gid(G1), remove(U1)),
        (gid(G1), set_owner(Some(U1), U3)),
        (gid(G1), add(U1)),
        (
            gid(G1),
            Change::Invite {
                user: user(U2),
                role: Role::Member,
            },
        ),
        (gid(G1), remove(U2)),
    ];
    let plan = write::per_group(&changes);
    assert_eq!(plan.len(), 2);
    let g1 = &plan[0];
    assert_eq!(g1.group, gid(G1));
    assert_eq!(g1.manager, vec![(3, uuid(U3), Some(uuid(U1)))]);
    assert_eq!(g1.adds, vec![(1, uuid(U2)), (4, uuid(U1))]);
    assert_eq!(g1.removes, vec![(2, uuid(U1)), (6, uuid(U2))]);
    assert_eq!(g1.refused.len(), 1);
    assert_eq!(g1.refused[0].0, 5);
    let mut all: Vec<usize> = plan.iter().flat_map(|w| w.indices()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..changes.len()).collect::<Vec<_>>());
    assert_eq!(plan[1].removes, vec![(0, uuid(U3))]);
}

#[test]
fn changes_docspace_cannot_carry_are_never_sent() {
    let refused = |change: Change| {
        let plan = write::per_group(&[(gid(G1), change)]);
        match &plan[0].refused[..] {
            [(0, OpStatus::NotDone { reason })] => reason.clone(),
            other => panic!("{change:?}: {other:?}"),
        }
    };
    let u = user(U1);
    assert!(
        refused(Change::Invite {
            user: u,
            role: Role::Member
        })
        .contains("no invitations")
    );
    assert!(
        refused(Change::Accept {
            user: u,
            role: Role::Member
        })
        .contains("no requests")
    );
    assert!(
        refused(Change::SetRole {
            user: u,
            from: Role::Member,
            to: Role::Moderator
        })
        .contains("no roles")
    );
    assert!(
        refused(Change::Add {
            user: u,
            role: Role::Moderator
        })
        .contains("no moderators")
    );
    assert!(
        refused(Change::Add {
            user: UserId::Num(5),
            role: Role::Member
        })
        .contains("not a DocSpace user ID")
    );
    let plan = write::per_group(&[(GroupId::Num(5), add(U1))]);
    assert!(
        matches!(&plan[0].refused[..], [(0, OpStatus::NotDone { reason })] if reason.contains("not a DocSpace group ID"))
    );
}

fn group(manager: Option<&str>, members: Option<&[&str]>) -> wire::Group {
    let mut v = json!({ "id": G1, "name": "Sales" });
    if let Some(m) = manager {
        v["manager"] = employee_json(m);
    }
    if let Some(ms) = members {
        v["members"] = Value::Array(ms.iter().map(|m| employee_json(m)).collect());
    }
    wire::group(&v).unwrap()
}

#[test]
fn each_change_is_judged_from_the_group_the_answer_returned() {
    let after = group(Some(U1), Some(&[U2]));
    let judge = |c: Change| write::judge(Ok(&after), &c);
    assert_eq!(judge(add(U2)), Verdict::Done);
    // The manager is a member even when not listed.
    assert_eq!(judge(add(U1)), Verdict::Done);
    assert_eq!(judge(add(U3)), Verdict::Missed(Miss::NotAdded));
    assert_eq!(judge(remove(U3)), Verdict::Done);
    assert_eq!(judge(remove(U2)), Verdict::Missed(Miss::NotRemoved));
    assert_eq!(judge(remove(U1)), Verdict::Missed(Miss::NotRemoved));
    assert_eq!(judge(set_owner(None, U1)), Verdict::Done);
    assert_eq!(
        judge(set_owner(Some(U1), U2)),
        Verdict::Missed(Miss::NotManager)
    );
    // Without a members list only the manager can be told.
    let bare = group(Some(U2), None);
    assert!(matches!(
        write::judge(Ok(&bare), &add(U2)),
        Verdict::Unverified { .. }
    ));
    assert_eq!(write::judge(Ok(&bare), &set_owner(None, U2)), Verdict::Done);
    assert!(
        matches!(write::judge(Err("not a group"), &add(U2)), Verdict::Unverified { why } if why == "not a group")
    );
}

fn failed(uncertain: bool, still_running: bool) -> Verdict {
    Verdict::Failed {
        error: "PUT group/x/members: HTTP 500".into(),
        uncertain: uncertain.then(|| "HTTP 500".to_owned()),
        still_running,
    }
}

#[test]
fn settling_from_the_group_read_again() {
    let now = group(Some(U1), Some(&[U2]));
    let held = Some(Ok(&now));
    let settle = |v: Verdict, c: Change, reread| write::settle(v, &c, reread);
    let status = |s: &Settled| match s {
        Settled::Status(s) => s.clone(),
        Settled::Missed(m) => panic!("missed {m:?}"),
    };
    // Shown made: confirmed, whatever the answer was.
    assert_eq!(
        status(&settle(failed(true, true), add(U2), held)),
        OpStatus::Confirmed
    );
    assert_eq!(
        status(&settle(failed(false, false), remove(U3), held)),
        OpStatus::Confirmed
    );
    assert_eq!(
        status(&settle(
            Verdict::Unverified { why: "x".into() },
            add(U2),
            held
        )),
        OpStatus::Confirmed
    );
    // Not made: as answered; a timed-out request may still land: unknown.
    assert!(matches!(
        status(&settle(failed(true, false), add(U3), held)),
        OpStatus::Failed { .. }
    ));
    assert!(
        matches!(status(&settle(failed(true, true), add(U3), held)), OpStatus::Unknown { error } if error.contains("may still be running"))
    );
    assert_eq!(
        settle(Verdict::Unverified { why: "x".into() }, add(U3), held),
        Settled::Missed(Miss::NotAdded)
    );
    // Unreadable: unknown when the portal may have acted, else as answered.
    let unread = Some(Err("GET group/x: HTTP 502"));
    assert!(
        matches!(status(&settle(failed(true, false), add(U3), unread)), OpStatus::Unknown { error } if error.contains("HTTP 502"))
    );
    assert!(matches!(
        status(&settle(failed(false, false), add(U3), unread)),
        OpStatus::Failed { .. }
    ));
    assert!(matches!(
        status(&settle(
            Verdict::Unverified { why: "x".into() },
            add(U3),
            unread
        )),
        OpStatus::Unknown { .. }
    ));
    // A re-read without members settles membership like an unreadable one.
    let bare = group(Some(U1), None);
    assert!(matches!(
        status(&settle(failed(true, false), add(U2), Some(Ok(&bare)))),
        OpStatus::Unknown { .. }
    ));
    // What an answer decided stands.
    assert_eq!(
        status(&settle(Verdict::Done, add(U3), None)),
        OpStatus::Done
    );
    assert_eq!(
        settle(Verdict::Missed(Miss::NotRemoved), remove(U2), None),
        Settled::Missed(Miss::NotRemoved)
    );
    assert_eq!(
        status(&settle(Verdict::Final(OpStatus::NotStarted), add(U3), held)),
        OpStatus::NotStarted
    );
    assert!(!Verdict::Done.needs_reread() && failed(false, false).needs_reread());
}

#[test]
fn reasons_say_whom_docspace_skipped() {
    let r = |m, w: Who| write::reason(m, &w);
    assert!(r(Miss::NotAdded, Who::Unknown).contains("no such user"));
    assert!(r(Miss::NotAdded, Who::Terminated).contains("terminated"));
    assert!(r(Miss::NotAdded, Who::Guest).contains("guest"));
    assert!(r(Miss::NotAdded, Who::Ordinary).contains("none of these"));
    assert!(r(Miss::NotManager, Who::Guest).contains("make the user the manager"));
    assert!(r(Miss::NotAdded, Who::Unread("HTTP 500".into())).contains("HTTP 500"));
    assert!(r(Miss::NotRemoved, Who::Ordinary).contains("still lists them"));
    let terminated = wire::employee(&json!({"id": U1, "status": 2, "isVisitor": true})).unwrap();
    assert_eq!(Who::of(&terminated), Who::Terminated);
    let guest = wire::employee(&json!({"id": U1, "status": 1, "isVisitor": true})).unwrap();
    assert_eq!(Who::of(&guest), Who::Guest);
}

#[test]
fn held_back_and_kept_managers() {
    assert_eq!(
        write::held_back(gid(G1), uuid(U2), &OpStatus::NotStarted),
        OpStatus::NotStarted
    );
    let s = write::held_back(
        gid(G1),
        uuid(U2),
        &OpStatus::Failed {
            error: "HTTP 500".into(),
        },
    );
    assert!(
        matches!(s, OpStatus::NotDone { reason } if reason.contains("manager change") && reason.contains("not confirmed") && reason.contains("HTTP 500"))
    );
    assert!(
        matches!(write::manager_kept(gid(G1)), OpStatus::NotDone { reason } if reason.contains("never removes a group's manager"))
    );
}

#[test]
fn a_run_wide_cause_is_told_whole_once() {
    let cause = "the DocSpace portal x refused the API key (HTTP 401)";
    let statuses = vec![
        OpStatus::Done,
        OpStatus::Failed {
            error: format!("PUT group/a/members: HTTP 401: {cause}"),
        },
        OpStatus::Failed {
            error: format!("not sent: an earlier request failed ({cause})"),
        },
        OpStatus::Unknown {
            error: format!(
                "the portal may have made the change (HTTP 500), and reading the group again failed (not sent: an earlier request failed ({cause}))"
            ),
        },
        OpStatus::NotStarted,
    ];
    let short = write::shorten(statuses, cause);
    assert!(matches!(&short[1], OpStatus::Failed { error } if error.contains(cause)));
    assert_eq!(
        short[2],
        OpStatus::Failed {
            error: format!("not sent: an earlier request failed ({})", write::SEE_ABOVE)
        }
    );
    assert!(
        matches!(&short[3], OpStatus::Unknown { error } if !error.contains(cause) && error.contains(write::SEE_ABOVE) && error.contains("HTTP 500"))
    );
    assert_eq!(
        (&short[0], &short[4]),
        (&OpStatus::Done, &OpStatus::NotStarted)
    );
}

// ---------------------------------------------------------------------------------------------
// The lookup's cost.

#[test]
fn lookup_costs() {
    // Users: one is always direct; two or more read the list's first page first.
    assert_eq!(lookup::user_requests(0, 0, 0, 5_000), 0);
    assert_eq!(lookup::user_requests(1, 0, 0, 5_000), 1);
    // 2 named on a portal of 80: the first page is the whole list.
    assert_eq!(lookup::user_requests(2, 2, 0, 80), 1);
    // 2 named on a large portal, neither on the first page: the page was wasted, 2 direct.
    assert_eq!(lookup::user_requests(2, 0, 0, 5_000), 3);
    // 500 named on 800 active users, 3 of them terminated: 8 pages and 3 direct lookups.
    assert_eq!(lookup::user_requests(500, 60, 3, 800), 1 + 7 + 3);
    // A tie goes to the direct lookups.
    assert_eq!(lookup::user_requests(8, 1, 0, 800), 1 + 7);
    // Groups: the first page tells T; the whole list when cheaper.
    assert_eq!(lookup::group_requests(0, 300), 0);
    assert_eq!(lookup::group_requests(1, 300), 1);
    assert_eq!(lookup::group_requests(40, 100), 1);
    assert_eq!(lookup::group_requests(40, 300), 3);
    assert_eq!(lookup::group_requests(2, 300), 3);
    assert_eq!(lookup::group_requests(3, 300), 3);
    assert_eq!(lookup::group_requests(4, 300), 3);
    assert!(!lookup::probe(1) && lookup::probe(2));
    // A portal that pages shorter than asked is read at its own page size.
    assert_eq!(lookup::page_size(25, 300), 25);
    assert_eq!(lookup::page_size(80, 80), PAGE);
    assert_eq!(lookup::page_size(0, 0), PAGE);
    assert_eq!(lookup::pages(300, 25), 12);
}

#[test]
fn group_names_match_exactly_ignoring_case_and_keep_duplicates() {
    let rows = vec![
        (uuid(G2), "Sales".to_owned()),
        (uuid(G1), "sales".to_owned()),
        (uuid(U1), "Sales EU".to_owned()),
        (uuid(G1), "sales".to_owned()),
    ];
    let names: BTreeSet<String> = ["Sales", "Marketing", "sales eu"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let found = lookup::match_names(&names, &rows);
    assert_eq!(
        found["Sales"],
        vec![(gid(G1), "sales".to_owned()), (gid(G2), "Sales".to_owned())]
    );
    assert_eq!(found["Marketing"], vec![]);
    assert_eq!(
        found["sales eu"],
        vec![(GroupId::Uuid(uuid(U1)), "Sales EU".to_owned())]
    );
}

// ---------------------------------------------------------------------------------------------
// Addresses and credentials.

#[test]
fn base_urls() {
    let ok = |url: &str, want: &str| {
        let (base, _) = base_url_of(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(base.as_str(), want, "{url}");
    };
    ok(
        "https://docs.example.com",
        "https://docs.example.com/api/2.0/",
    );
    ok(
        "https://docs.example.com/",
        "https://docs.example.com/api/2.0/",
    );
    ok(
        "https://docs.example.com/api/2.0/",
        "https://docs.example.com/api/2.0/",
    );
    ok(
        "https://example.com/docspace",
        "https://example.com/docspace/api/2.0/",
    );
    ok("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/2.0/");
    ok("http://localhost:3000/", "http://localhost:3000/api/2.0/");
    ok("http://[::1]:9/", "http://[::1]:9/api/2.0/");
    let (_, host) = base_url_of("https://docs.example.com:8443/x").unwrap();
    assert_eq!(host, "docs.example.com:8443");
    for bad in [
        "docs.example.com",
        "ftp://docs.example.com",
        "http://docs.example.com",
        "http://10.0.0.1",
        "https://u:sk-secret@docs.example.com",
        "https://docs.example.com/?key=sk-secret",
        "https://docs.example.com/#sk-secret",
    ] {
        let e = base_url_of(bad).unwrap_err().to_string();
        assert!(!e.contains("sk-secret"), "{bad}: {e}");
    }
    assert!(
        base_url_of("http://docs.example.com")
            .unwrap_err()
            .to_string()
            .contains("clear text")
    );
}

const KEY: &str = "sk-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn credentials_are_checked_and_never_shown() {
    let header = authorization(&Auth::ApiKey(Secret::new(KEY))).unwrap();
    assert!(header.is_sensitive());
    assert_eq!(header.to_str().unwrap(), format!("Bearer {KEY}"));
    let token = authorization(&Auth::Token(Secret::new(
        "Bearer abcdefghijklmnopqrstuvwxyz",
    )))
    .unwrap();
    assert_eq!(token.to_str().unwrap(), "Bearer abcdefghijklmnopqrstuvwxyz");
    for (auth, why) in [
        (Auth::ApiKey(Secret::new("")), "empty"),
        (
            Auth::ApiKey(Secret::new("0123456789abcdef0123456789")),
            "starts with `sk-`",
        ),
        (Auth::ApiKey(Secret::new("sk-abc")), "shorter"),
        (Auth::Token(Secret::new("abcdefgh ijklmnopqrst")), "spaces"),
        (
            Auth::Token(Secret::new("abcdefghijklmnopqrst\n\u{7}")),
            "header",
        ),
    ] {
        let e = authorization(&auth).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
        assert!(!e.contains("0123456789") && !e.contains("abcdefgh"), "{e}");
    }
    let auth = Auth::ApiKey(Secret::new(KEY));
    assert_eq!(format!("{auth:?}"), "ApiKey(***)");
    let client = Client::new("https://docs.example.com", auth, Options::default()).unwrap();
    assert!(!format!("{:?}", client.authorization).contains("sk-"));
}

/// Once a 429 told the window's size, no request is sent that the window would refuse: the
/// request after `limit` in a minute waits until the oldest is out of it (plus the margin).
#[tokio::test(start_paused = true)]
async fn the_window_learnt_from_a_429_paces_every_request() {
    let auth = Auth::ApiKey(Secret::new(KEY));
    let client = Client::new("https://docs.example.com", auth, Options::default()).unwrap();
    let stop = CancellationToken::new();
    let req = super::http::Req::get("group");
    // Before any 429: nothing waits, however many.
    let start = tokio::time::Instant::now();
    for _ in 0..200 {
        client.pace(&req, &stop).await.unwrap();
    }
    assert_eq!(start.elapsed(), std::time::Duration::ZERO);
    // A window of 100 (a concurrency limit's 15 is not taken for one).
    client.learn_window(100);
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    let start = tokio::time::Instant::now();
    for _ in 0..100 {
        client.pace(&req, &stop).await.unwrap();
    }
    assert_eq!(start.elapsed(), std::time::Duration::ZERO);
    client.pace(&req, &stop).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(60)
            && waited <= std::time::Duration::from_secs(61),
        "{waited:?}"
    );
    // The 100 sent at once left the window together: room for 100 again, then a wait, which an
    // interrupt ends at once.
    for _ in 0..99 {
        client.pace(&req, &stop).await.unwrap();
    }
    stop.cancel();
    assert!(client.pace(&req, &stop).await.is_err());
}

#[test]
fn the_window_size_is_read_from_its_header() {
    use super::wire::window_limit;
    assert_eq!(window_limit("1500"), Some(1500));
    assert_eq!(window_limit(" 100/30m"), Some(100));
    assert_eq!(window_limit("0"), None);
    assert_eq!(window_limit("many"), None);
}
