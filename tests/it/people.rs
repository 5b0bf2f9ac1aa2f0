//! People as people, through the real client against a real sandbox over HTTP: users by
//! e-mail (exact, case-insensitive, never a LIKE pattern, duplicates) and by ID, groups by
//! name, the caller; groups read with their invitations, join requests and departments;
//! invitations, accepted requests and owner transfers written and read back; and the exact
//! number of requests each takes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};

use roster::model::{Caller, GroupId, OpStatus, Role, UserId, Wanted};
use roster::plan::Change;
use roster::provider::CancellationToken;
use roster::provider::bitrix24::{Client, Options, Webhook};
use roster::sandbox::bitrix24::Sandbox;
use roster::sandbox::bitrix24::state::{self, RateLimit};
use roster::sandbox::scenario::{self, Params};

/// A sandbox serving a state file written from `yaml`, in its own temp dir.
struct Portal {
    dir: tempfile::TempDir,
    sandbox: Sandbox,
}

impl Portal {
    async fn start(yaml: &str) -> Portal {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.yaml");
        std::fs::write(&path, yaml).unwrap();
        let sandbox = Sandbox::start(&path, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        Portal { dir, sandbox }
    }

    /// A client acting as `user` through the webhook `code`, without pacing.
    fn client(&self, user: u64, code: &str) -> Client {
        let url = format!("http://{}/rest/{user}/{code}/", self.sandbox.addr());
        Client::new(
            Webhook::parse(&url).unwrap(),
            Options {
                rate: None,
                ..Options::default()
            },
        )
        .unwrap()
    }

    /// A generated portal (`scenario::generate`) without a rate limit to speak of.
    async fn generated(params: Params) -> Portal {
        let mut state = scenario::generate(&params).state;
        state.portal.rate_limit = Some(RateLimit {
            burst: 1_000.0,
            per_second: 1_000.0,
        });
        Portal::start(&state::render(&state)).await
    }

    fn admin(&self) -> Client {
        self.client(1, ADMIN_CODE)
    }

    /// The admin of a generated portal.
    fn scenario_admin(&self) -> Client {
        self.client(1, scenario::WEBHOOK_CODE)
    }

    /// Commands of `method` the sandbox ran so far.
    fn commands(&self, method: &str) -> u64 {
        self.sandbox.stats().method(method).commands
    }

    /// HTTP requests the sandbox answered so far.
    fn requests(&self) -> u64 {
        self.sandbox.stats().http_requests
    }

    /// A group's rows in the state file as `USER=ROLE` (`Z` rows with their initiator).
    fn rows(&self, group: u64) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("portal.yaml")).unwrap();
        let v: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let g = v["groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|g| g["id"].as_u64() == Some(group))
            .unwrap();
        g["members"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                let mut row = format!(
                    "{}={}",
                    m["user"].as_u64().unwrap(),
                    m["role"].as_str().unwrap()
                );
                if let Some(by) = m["initiated_by"].as_str() {
                    write!(row, "/{by}").unwrap();
                }
                row
            })
            .collect()
    }
}

const ADMIN_CODE: &str = "adminhook0001";
const OWNER_CODE: &str = "ownerhook0008";

/// Users with look-alike e-mails, a shared e-mail in two cases, a dismissed and an extranet
/// user; groups with invitations, a join request and a linked department, two groups whose
/// names differ only in case, and a group owned by user 8 (an administrator with their own
/// webhook).
const PORTAL: &str = r#"
portal:
  rate_limit: { burst: 1000, per_second: 1000 }
users:
  - { id: 1, email: ada@example.com, name: Ada, last_name: Admin, admin: true }
  - { id: 2, email: anna_b@example.com, name: Anna, last_name: Berg }
  - { id: 3, email: annaxb@example.com, name: Annax, last_name: Berg }
  - { id: 4, email: Dup@Example.com, name: Dup, last_name: One }
  - { id: 5, email: dup@example.com, name: Dup, last_name: Two }
  - { id: 6, email: gone@example.com, name: Gone, last_name: Away, active: false }
  - { id: 7, email: ext@partner.io, name: Ext, last_name: Ern, extranet: true }
  - { id: 8, email: owen@example.com, name: Owen, last_name: Owner, admin: true }
  - { id: 9, email: mo@example.com, name: Mo, last_name: Mod }
  - { id: 10, email: new@example.com, name: New, last_name: Comer }
  - { id: 11, email: req@example.com, name: Req, last_name: Uest }
groups:
  - id: 15
    name: Marketing
    departments: [5]
    members:
      - { user: 1, role: A }
      - { user: 8, role: K }
      - { user: 9, role: E }
      - { user: 2, role: Z, initiated_by: G }
      - { user: 3, role: Z, initiated_by: U }
      - { user: 5, role: T }
  - id: 16
    name: marketing
    members:
      - { user: 1, role: A }
  - id: 17
    name: Marketing EU
    members:
      - { user: 1, role: A }
  - id: 20
    name: Owned by Owen
    members:
      - { user: 8, role: A }
      - { user: 1, role: K }
      - { user: 9, role: K }
      - { user: 11, role: Z, initiated_by: U }
webhooks:
  - { user: 1, code: adminhook0001 }
  - { user: 8, code: ownerhook0008 }
  - { user: 1, code: noscope00001, scopes: [sonet_group, user] }
  - { user: 1, code: nouser000001, scopes: [sonet_group, socialnetwork] }
"#;

fn wanted(emails: &[&str], users: &[u64], names: &[&str]) -> Wanted {
    Wanted {
        emails: emails.iter().map(|e| e.to_string()).collect(),
        users: users.iter().copied().map(UserId::Num).collect(),
        group_names: names.iter().map(|n| n.to_string()).collect(),
    }
}

fn ids(people: &[roster::model::Person]) -> Vec<u64> {
    people.iter().map(|p| p.id.expect_num()).collect()
}

/// Everything the resolve step needs, in one request: the caller, e-mails (exact and
/// case-insensitive: `anna_b` does not match `annaxb`; both users of `dup@` are found), IDs
/// (an unknown one simply absent), group names (both case variants, not `Marketing EU`).
#[tokio::test(flavor = "multi_thread")]
async fn one_request_looks_everything_up() {
    let p = Portal::start(PORTAL).await;
    let c = p.admin();
    let found = c
        .lookup(&wanted(
            &[
                "anna_b@example.com",
                "dup@example.com",
                "gone@example.com",
                "ext@partner.io",
                "nobody@example.com",
            ],
            &[9, 999],
            &["Marketing", "Nope"],
        ))
        .await
        .unwrap();
    assert_eq!(ids(&found.people), [2, 4, 5, 6, 7, 9]);
    let by_id: BTreeMap<u64, _> = found
        .people
        .iter()
        .map(|p| (p.id.expect_num(), p))
        .collect();
    assert_eq!(by_id[&4].email.as_deref(), Some("Dup@Example.com"));
    assert_eq!(by_id[&2].name.as_deref(), Some("Anna Berg"));
    assert!(!by_id[&6].active && by_id[&2].active);
    assert!(by_id[&7].extranet && !by_id[&2].extranet);
    assert_eq!(
        found.groups_by_name,
        BTreeMap::from([
            (
                "Marketing".to_owned(),
                vec![
                    (GroupId::Num(15), "Marketing".to_owned()),
                    (GroupId::Num(16), "marketing".to_owned())
                ]
            ),
            ("Nope".to_owned(), vec![]),
        ])
    );
    assert_eq!(
        found.caller,
        Some(Caller {
            user: UserId::Num(1),
            admin: true
        })
    );
    assert_eq!((c.counters().requests, p.requests()), (1, 1));

    // A `%` in an address is not a wildcard either.
    let none = c
        .lookup(&wanted(&["%@example.com"], &[], &[]))
        .await
        .unwrap();
    assert!(none.people.is_empty(), "{:?}", none.people);
    // A non-admin caller is told as such.
    let owner = p
        .client(8, OWNER_CODE)
        .lookup(&Wanted::default())
        .await
        .unwrap();
    assert_eq!(
        owner.caller,
        Some(Caller {
            user: UserId::Num(8),
            admin: true
        })
    );
}

/// More than a page of matches (60 users sharing an e-mail, 60 groups sharing a name): the
/// following pages are fetched, one more request for both.
#[tokio::test(flavor = "multi_thread")]
async fn duplicates_beyond_a_page_are_all_found() {
    let mut yaml = String::from(
        "portal:\n  rate_limit: { burst: 1000, per_second: 1000 }\nusers:\n  - { id: 1, email: ada@example.com, admin: true }\n",
    );
    for id in 100..160 {
        writeln!(yaml, "  - {{ id: {id}, email: same@example.com }}").unwrap();
    }
    yaml.push_str("groups:\n");
    for id in 200..260 {
        writeln!(
            yaml,
            "  - {{ id: {id}, name: Same, members: [{{ user: 1, role: A }}] }}"
        )
        .unwrap();
    }
    writeln!(yaml, "webhooks:\n  - {{ user: 1, code: {ADMIN_CODE} }}").unwrap();
    let p = Portal::start(&yaml).await;
    let c = p.admin();
    let found = c
        .lookup(&wanted(&["same@example.com"], &[], &["same"]))
        .await
        .unwrap();
    assert_eq!(found.people.len(), 60);
    assert_eq!(found.groups_by_name["same"].len(), 60);
    assert_eq!(c.counters().requests, 2, "one round, then the second pages");
}

/// Generated users `user1@example.com`… by e-mail.
fn emails(ids: impl IntoIterator<Item = u64>) -> Vec<String> {
    ids.into_iter()
        .map(|i| format!("user{i}@example.com"))
        .collect()
}

fn wanted_owned(emails: Vec<String>, names: Vec<String>) -> Wanted {
    Wanted {
        emails: emails.into_iter().collect(),
        users: BTreeSet::new(),
        group_names: names.into_iter().collect(),
    }
}

/// 10,000 users, a file naming all of them by e-mail: 200 lookups against a list of 200
/// pages, so the lookups go directly, 47 of them beside the caller and the list's first
/// page, the other 153 in four more requests: 5, the bound min(200, 1 + 4).
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_emails_on_ten_thousand_users() {
    let p = Portal::generated(Params {
        users: 10_000,
        ..Params::new(0, 1, 0.0, 1)
    })
    .await;
    let c = p.scenario_admin();
    let found = c
        .lookup(&wanted_owned(emails(1..=10_000), vec![]))
        .await
        .unwrap();
    assert_eq!(ids(&found.people), (1..=10_000).collect::<Vec<_>>());
    assert!(found.caller.is_some_and(|c| c.admin));
    assert_eq!((c.counters().requests, p.requests()), (5, 5));
    assert_eq!(p.commands("user.get"), 1 + 200);
}

/// 60 e-mails on a 10,000-user portal: two lookups beside the caller, one request (the bound
/// min(2, 5)); the whole list is never read.
#[tokio::test(flavor = "multi_thread")]
async fn sixty_emails_on_ten_thousand_users() {
    let p = Portal::generated(Params {
        users: 10_000,
        ..Params::new(0, 1, 0.0, 1)
    })
    .await;
    let c = p.scenario_admin();
    let found = c
        .lookup(&wanted_owned(emails((1..=60).map(|i| i * 100)), vec![]))
        .await
        .unwrap();
    assert_eq!(found.people.len(), 60);
    assert_eq!((c.counters().requests, p.requests()), (1, 1));
    assert_eq!(p.commands("user.get"), 2);
}

/// Thousands of e-mails, mostly unknown, on a small portal: the list (40 pages) is cheaper
/// than 200 lookups, 2 requests (the bound min(200, 1 + 1)); only the users asked for come
/// back, matched ignoring case.
#[tokio::test(flavor = "multi_thread")]
async fn many_emails_on_a_small_portal_read_the_list() {
    let p = Portal::generated(Params {
        users: 2_000,
        ..Params::new(0, 1, 0.0, 1)
    })
    .await;
    let c = p.scenario_admin();
    let mut asked = emails((1..=10_000).filter(|i| i % 3 == 0));
    asked.extend(emails(10_001..=13_333));
    asked.push("USER7@Example.COM".into());
    let found = c.lookup(&wanted_owned(asked, vec![])).await.unwrap();
    let expected: Vec<u64> = (1..=2_000).filter(|i| i % 3 == 0 || *i == 7).collect();
    assert_eq!(ids(&found.people), expected);
    assert_eq!((c.counters().requests, p.requests()), (2, 2));
    // The first page and 47 lookups, then pages 2..40.
    assert_eq!(p.commands("user.get"), 1 + 47 + 39);
}

/// 2,000 group names on a 2,000-group portal: the list (40 pages) instead of 2,000 lookups,
/// 2 requests (the bound min(41, 1 + 1)); 3 names on it: 1 request.
#[tokio::test(flavor = "multi_thread")]
async fn group_names_on_two_thousand_groups() {
    let p = Portal::generated(Params::new(2_000, 1, 0.0, 1)).await;
    let c = p.scenario_admin();
    let names: Vec<String> = (1..=2_000).map(|g| format!("Group {g}")).collect();
    let found = c.lookup(&wanted_owned(vec![], names)).await.unwrap();
    assert_eq!(found.groups_by_name.len(), 2_000);
    for (name, groups) in &found.groups_by_name {
        let id: u64 = name["Group ".len()..].parse().unwrap();
        assert_eq!(groups, &[(GroupId::Num(id), name.clone())]);
    }
    assert_eq!((c.counters().requests, p.requests()), (2, 2));
    assert_eq!(p.commands("sonet_group.get"), 1 + 47 + 39);

    let c = p.scenario_admin();
    let names = ["Group 1", "group 2000", "Group 2001"]
        .map(String::from)
        .to_vec();
    let found = c.lookup(&wanted_owned(vec![], names)).await.unwrap();
    assert_eq!(
        found.groups_by_name["group 2000"],
        [(GroupId::Num(2_000), "Group 2000".to_owned())]
    );
    assert!(found.groups_by_name["Group 2001"].is_empty());
    assert_eq!(c.counters().requests, 1);
    assert_eq!(p.commands("sonet_group.get"), 87 + 3);
}

/// The lists' rules are the lookups' rules: on the hand-written portal, a file naming enough
/// to need the lists (2,450 e-mails and 60 names, mostly unknown) finds exactly what the
/// direct lookups find for the names it shares with a small file (exact e-mails ignoring case,
/// never a pattern; names ignoring case, 0..n each), and nothing else — in one request, as
/// both lists fit in their first pages.
#[tokio::test(flavor = "multi_thread")]
async fn lists_match_as_the_lookups_do() {
    let p = Portal::start(PORTAL).await;
    let few = [
        "anna_b@example.com",
        "DUP@example.com",
        "%@example.com",
        "gone@example.com",
    ];
    let some_names = ["Marketing", "marketing eu", "MARKETING", "Nope"];
    let direct = p
        .admin()
        .lookup(&wanted(&few, &[9, 999], &some_names))
        .await
        .unwrap();
    assert_eq!(ids(&direct.people), [2, 4, 5, 6, 9]);
    let mut many: Vec<String> = few.iter().map(|e| e.to_string()).collect();
    many.extend((0..2_450).map(|i| format!("nobody{i}@example.com")));
    let mut names: Vec<String> = some_names.iter().map(|n| n.to_string()).collect();
    names.extend((0..56).map(|i| format!("No group {i}")));
    let c = p.admin();
    let listed = c
        .lookup(&Wanted {
            emails: many.into_iter().collect(),
            users: [UserId::Num(9), UserId::Num(999)].into(),
            group_names: names.into_iter().collect(),
        })
        .await
        .unwrap();
    assert_eq!(listed.people, direct.people);
    assert_eq!(listed.caller, direct.caller);
    for (name, groups) in &direct.groups_by_name {
        assert_eq!(&listed.groups_by_name[name], groups, "{name}");
    }
    assert_eq!(listed.groups_by_name.len(), 60);
    assert!(
        listed
            .groups_by_name
            .iter()
            .filter(|(n, _)| n.starts_with("No group"))
            .all(|(_, g)| g.is_empty())
    );
    assert_eq!(c.counters().requests, 1);
}

/// `people`: 50 IDs a command, 2,500 a request.
#[tokio::test(flavor = "multi_thread")]
async fn people_by_id_take_one_request_per_2500() {
    let p = Portal::start(PORTAL).await;
    let c = p.admin();
    let mut asked: Vec<UserId> = (1..=2_500).map(UserId::Num).collect();
    let found = c.people(&asked).await.unwrap();
    assert_eq!(ids(&found), (1..=11).collect::<Vec<_>>());
    assert_eq!(c.counters().requests, 1);
    asked.push(UserId::Num(2_501));
    c.people(&asked).await.unwrap();
    assert_eq!(c.counters().requests, 1 + 2);
}

/// One `socialnetwork.api.workgroup.get` per group: roles, invitations, join requests,
/// departments and the portal's name, in ⌈G/50⌉ requests.
#[tokio::test(flavor = "multi_thread")]
async fn groups_are_read_with_their_pending_relations() {
    let p = Portal::start(PORTAL).await;
    let c = p.admin();
    let state = c
        .fetch(&[GroupId::Num(15), GroupId::Num(20)], &|_| {})
        .await
        .unwrap();
    let g = &state.groups[&GroupId::Num(15)];
    assert_eq!(
        g.members,
        BTreeMap::from([
            (UserId::Num(1), Role::Owner),
            (UserId::Num(8), Role::Member),
            (UserId::Num(9), Role::Moderator)
        ])
    );
    assert_eq!(g.invited, BTreeSet::from([UserId::Num(2)]));
    assert_eq!(g.requested, BTreeSet::from([UserId::Num(3)]));
    assert_eq!(g.departments, [5]);
    assert_eq!(g.name.as_deref(), Some("Marketing"));
    assert_eq!(
        state.groups[&GroupId::Num(20)].requested,
        BTreeSet::from([UserId::Num(11)])
    );
    assert_eq!(c.counters().requests, 1);
    let stats = p.sandbox.stats();
    assert_eq!(stats.method("socialnetwork.api.workgroup.get").commands, 2);
    assert_eq!(stats.method("sonet_group.user.get").commands, 0);
}

/// Without the `socialnetwork` scope the read falls back to `sonet_group.user.get` for the
/// rest of the run: one extra request the first time, none after.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_scope_groups_are_read_the_old_way() {
    let p = Portal::start(PORTAL).await;
    let c = p.client(1, "noscope00001");
    assert!(c.read_warnings().is_empty());
    let state = c.fetch(&[GroupId::Num(15)], &|_| {}).await.unwrap();
    let g = &state.groups[&GroupId::Num(15)];
    assert_eq!(g.members.len(), 3);
    assert!(g.invited.is_empty() && g.requested.is_empty() && g.departments.is_empty());
    // Nothing in sonet_group.user.get's answer says the name or the visibility.
    assert_eq!((g.name.as_deref(), g.visible), (None, None));
    assert_eq!(c.counters().requests, 2);
    // F4: said in the plan's warnings, not only on stderr.
    assert_eq!(
        c.read_warnings(),
        [
            "the webhook lacks the `socialnetwork` scope: roster cannot see pending invitations, join requests or department links, so it may plan adds for invited users and removals Bitrix24 undoes; add the scope"
        ]
    );
    c.fetch(&[GroupId::Num(15)], &|_| {}).await.unwrap();
    assert_eq!(c.counters().requests, 3);
    assert_eq!(p.sandbox.stats().method("sonet_group.user.get").commands, 2);
}

/// Invitations: one command per group with its message; an invite the portal skips (the
/// user is banned) is not done, and stays so after one re-read; an invite of a user
/// somebody else already invited is confirmed by that re-read; the re-read shows the new
/// invitation. A pending request is accepted with `update`.
#[tokio::test(flavor = "multi_thread")]
async fn invitations_and_accepted_requests() {
    let p = Portal::start(PORTAL).await;
    let c = p.admin();
    let messages = BTreeMap::from([(GroupId::Num(15), "Welcome to Marketing".to_owned())]);
    let invite = |user| Change::Invite {
        user: UserId::Num(user),
        role: Role::Member,
    };
    let changes = [
        (GroupId::Num(15), invite(10)),
        (GroupId::Num(15), invite(5)),
        (GroupId::Num(15), invite(2)),
        (
            GroupId::Num(15),
            Change::Accept {
                user: UserId::Num(3),
                role: Role::Member,
            },
        ),
    ];
    let statuses = c
        .execute(&changes, &messages, &|_| {}, &CancellationToken::new())
        .await;
    assert_eq!(statuses[0], OpStatus::Done);
    assert!(
        matches!(&statuses[1], OpStatus::NotDone { reason } if reason.starts_with("not done: already related or not invitable")),
        "{statuses:?}"
    );
    assert_eq!(statuses[2], OpStatus::Confirmed);
    assert_eq!(statuses[3], OpStatus::Done);
    // One batch for the writes, one re-read for the skipped invites.
    assert_eq!(c.counters().requests, 2);
    assert_eq!(
        p.rows(15),
        ["1=A", "8=K", "9=E", "2=Z/G", "3=K", "5=T", "10=Z/G"]
    );
    let saved = std::fs::read_to_string(p.dir.path().join("portal.yaml")).unwrap();
    assert!(
        saved.contains("Welcome to Marketing"),
        "the group's message was sent"
    );
    let state = c.fetch(&[GroupId::Num(15)], &|_| {}).await.unwrap();
    assert_eq!(
        state.groups[&GroupId::Num(15)].invited,
        BTreeSet::from([UserId::Num(2), UserId::Num(10)])
    );
}

/// Owner transfer as the owner: `setowner` first, then the old owner's new role, in two
/// requests; the portal ends with the new owner and the old one a moderator.
#[tokio::test(flavor = "multi_thread")]
async fn owner_transfer_then_the_old_owners_role() {
    let p = Portal::start(PORTAL).await;
    let c = p.client(8, OWNER_CODE);
    let changes = [
        (
            GroupId::Num(20),
            Change::SetOwner {
                from: Some(UserId::Num(8)),
                to: UserId::Num(1),
            },
        ),
        (
            GroupId::Num(20),
            Change::SetRole {
                user: UserId::Num(8),
                from: Role::Member,
                to: Role::Moderator,
            },
        ),
        (
            GroupId::Num(20),
            Change::Remove {
                user: UserId::Num(9),
                role: Role::Member,
            },
        ),
    ];
    let statuses = c
        .execute(
            &changes,
            &BTreeMap::new(),
            &|_| {},
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(statuses, [OpStatus::Done, OpStatus::Done, OpStatus::Done]);
    assert_eq!(c.counters().requests, 2, "the owner phase, then the rest");
    assert_eq!(p.rows(20), ["8=E", "1=A", "11=Z/U"]);
    let state = c.fetch(&[GroupId::Num(20)], &|_| {}).await.unwrap();
    assert_eq!(
        state.groups[&GroupId::Num(20)].owner(),
        Some(UserId::Num(1))
    );
}

/// Owner transfer as an administrator who is not the owner: the portal refuses `setowner`,
/// the old owner's change is never sent (not done, naming the owner change), the rest goes
/// ahead, and one re-read settles both.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_owner_transfer_holds_back_the_old_owners_changes() {
    let p = Portal::start(PORTAL).await;
    let c = p.admin();
    let changes = [
        (
            GroupId::Num(20),
            Change::SetOwner {
                from: Some(UserId::Num(8)),
                to: UserId::Num(9),
            },
        ),
        (
            GroupId::Num(20),
            Change::Remove {
                user: UserId::Num(8),
                role: Role::Member,
            },
        ),
        (
            GroupId::Num(20),
            Change::Accept {
                user: UserId::Num(11),
                role: Role::Member,
            },
        ),
    ];
    let statuses = c
        .execute(
            &changes,
            &BTreeMap::new(),
            &|_| {},
            &CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(&statuses[0], OpStatus::Failed { error } if error.starts_with("sonet_group.setowner")),
        "{statuses:?}"
    );
    match &statuses[1] {
        OpStatus::NotDone { reason } => {
            assert!(
                reason.starts_with("not sent: it waits for the owner change to #9 in group 20"),
                "{reason}"
            );
            assert!(reason.contains("#8 may still be the owner"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(statuses[2], OpStatus::Done);
    // The owner phase, the rest (the accepted request alone), one re-read.
    assert_eq!(c.counters().requests, 3);
    let stats = p.sandbox.stats();
    assert_eq!(stats.method("sonet_group.user.delete").commands, 0);
    assert_eq!(p.rows(20), ["8=A", "1=K", "9=K", "11=K"]);
}

/// F3: two runs sharing one OAuth token file, both holding an expired access token, against
/// the sandbox's OAuth server, which retires a refresh token once used
/// (`oauth_rotation: invalidate`). Both read their groups; one refresh in all: the second run
/// takes the tokens the first saved instead of spending the retired refresh token.
#[tokio::test(flavor = "multi_thread")]
async fn two_runs_sharing_a_token_file_refresh_once() {
    use roster::provider::bitrix24::{OAuth, OAuthConfig, Secret};
    const ACCESS: &str = "expiredaccesstoken0000000000000001";
    const REFRESH: &str = "refreshtoken00000000000000000000001";
    let yaml = format!(
        "{PORTAL}oauth:
  clients:
    - {{ client_id: local.roster.test, client_secret: clientsecret000000000000000000001 }}
  tokens:
    - {{ access_token: {ACCESS}, user: 1, expires_at: 1 }}
  refresh_tokens:
    - {{ refresh_token: {REFRESH}, client_id: local.roster.test, user: 1 }}
"
    );
    let p = Portal::start(&yaml).await;
    let file = p.dir.path().join("tokens.json");
    let config = OAuthConfig {
        access_token: Some(Secret::new(ACCESS)),
        refresh_token: Some(Secret::new(REFRESH)),
        client_id: Some("local.roster.test".into()),
        client_secret: Some(Secret::new("clientsecret000000000000000000001")),
        server: Some(format!("http://{}", p.sandbox.addr())),
        token_file: Some(file.clone()),
    };
    let endpoint = format!("http://{}/rest/", p.sandbox.addr());
    let run = || {
        Client::new(
            OAuth::new(&endpoint, &config).unwrap(),
            Options {
                rate: None,
                ..Options::default()
            },
        )
        .unwrap()
    };
    let (a, b) = (run(), run());
    let groups = [GroupId::Num(15), GroupId::Num(20)];
    let (sa, sb) = tokio::join!(a.fetch(&groups, &|_| {}), b.fetch(&groups, &|_| {}));
    assert_eq!(sa.unwrap().groups.len(), 2);
    assert_eq!(sb.unwrap().groups.len(), 2);
    let stats = p.sandbox.stats();
    assert_eq!(
        (stats.oauth_token_requests, stats.oauth_tokens_issued),
        (1, 1)
    );
    assert_eq!(a.counters().refreshes + b.counters().refreshes, 1);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_ne!(saved["access_token"], ACCESS);
}

/// F5: a webhook without the `user` scope (the README's `sonet` webhook). The lookup does not
/// fail: no people, no caller, `users_unavailable` says why, group names are found as usual,
/// and the user methods are not asked again (`people` answers empty without a request).
#[tokio::test(flavor = "multi_thread")]
async fn without_the_user_scope_users_are_unavailable_not_an_error() {
    let p = Portal::start(PORTAL).await;
    let c = p.client(1, "nouser000001");
    let found = c
        .lookup(&wanted(&["ada@example.com"], &[1, 9, 99], &["Marketing"]))
        .await
        .unwrap();
    assert_eq!(
        found.users_unavailable.as_deref(),
        Some("the portal refuses user.get (insufficient_scope): roster cannot look users up")
    );
    assert!(found.people.is_empty(), "{:?}", found.people);
    assert_eq!(found.caller, None);
    let marketing: Vec<u64> = found.groups_by_name["Marketing"]
        .iter()
        .map(|(g, _)| g.expect_num())
        .collect();
    assert_eq!(marketing, [15, 16]);
    assert_eq!(c.counters().requests, 1);
    assert!(
        c.people(&[UserId::Num(1), UserId::Num(2)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(c.counters().requests, 1, "not asked again");
    let warnings = c.read_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("the portal refuses user.get (insufficient_scope): roster cannot look users up; so user IDs are taken unchecked"),
        "{warnings:?}"
    );
    assert!(
        warnings[0].ends_with("give the webhook the `user` scope (or `user_basic`) in Bitrix24"),
        "{warnings:?}"
    );
    // The groups are read as usual.
    let state = c.fetch(&[GroupId::Num(15)], &|_| {}).await.unwrap();
    assert_eq!(state.groups[&GroupId::Num(15)].members.len(), 3);

    // `people` alone finds out too, once.
    let c = p.client(1, "nouser000001");
    assert!(c.people(&[UserId::Num(1)]).await.unwrap().is_empty());
    assert!(c.people(&[UserId::Num(2)]).await.unwrap().is_empty());
    assert_eq!(c.counters().requests, 1);
    // A file naming only groups gets the same answer (the caller's `user.current` is refused).
    let c = p.client(1, "nouser000001");
    let found = c
        .lookup(&wanted(&[], &[], &["Owned by Owen"]))
        .await
        .unwrap();
    assert_eq!(
        found.users_unavailable.as_deref(),
        Some("the portal refuses user.current (insufficient_scope): roster cannot look users up")
    );
    assert_eq!(
        found.groups_by_name["Owned by Owen"],
        [(GroupId::Num(20), "Owned by Owen".to_owned())]
    );
    // With the scope, nothing is unavailable.
    let found = p.admin().lookup(&wanted(&[], &[1], &[])).await.unwrap();
    assert_eq!(found.users_unavailable, None);
    assert_eq!(ids(&found.people), [1]);
}

/// A portal with a secret group (18) that user 2 is not in, for reading what a caller may see.
const SECRETS: &str = r#"
portal:
  rate_limit: { burst: 1000, per_second: 1000 }
users:
  - { id: 1, email: ada@example.com, name: Ada, last_name: Admin, admin: true }
  - { id: 2, email: u2@example.com, name: U, last_name: Two }
groups:
  - id: 15
    name: Open
    members:
      - { user: 1, role: A }
      - { user: 2, role: K }
  - id: 18
    name: Secret
    visible: false
    members:
      - { user: 1, role: A }
webhooks:
  - { user: 1, code: adminhook0001 }
  - { user: 2, code: userhook00002 }
  - { user: 2, code: oldread00002, scopes: [sonet_group, user] }
"#;

/// F1: a group the portal does not have, or one the caller cannot see, is reported on its
/// own; every other group is read. Both ways of reading say the same. A failure of the whole
/// run (a wrong webhook) is still one run-wide error.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_each_reports_unreadable_groups_and_reads_the_rest() {
    let p = Portal::start(SECRETS).await;
    let asked = [GroupId::Num(15), GroupId::Num(18), GroupId::Num(99999)];
    let why = "no such group, or the webhook's user cannot see it (a secret group they are not a member of)";
    for code in ["userhook00002", "oldread00002"] {
        let c = p.client(2, code);
        let (state, failed) = c.fetch_each(&asked, &|_| {}).await.unwrap();
        assert_eq!(
            state.groups.keys().copied().collect::<Vec<_>>(),
            [GroupId::Num(15)],
            "{code}"
        );
        assert_eq!(
            failed,
            [
                (GroupId::Num(18), why.to_owned()),
                (GroupId::Num(99999), why.to_owned())
            ],
            "{code}"
        );
        // `fetch` still fails as a whole.
        assert!(matches!(
            c.fetch(&asked, &|_| {}).await,
            Err(roster::provider::FetchError::Groups(g)) if g.len() == 2
        ));
    }
    let admin = p.admin();
    let (state, failed) = admin.fetch_each(&asked, &|_| {}).await.unwrap();
    assert_eq!(state.groups.len(), 2);
    assert_eq!(failed, [(GroupId::Num(99999), why.to_owned())]);
    // F4: visibility is read; nothing was missed.
    assert_eq!(state.groups[&GroupId::Num(15)].visible, Some(true));
    assert_eq!(state.groups[&GroupId::Num(18)].visible, Some(false));
    assert!(admin.read_warnings().is_empty());
    let wrong = p.client(1, "wrongcode0001");
    match wrong.fetch_each(&asked, &|_| {}).await {
        Err(roster::provider::FetchError::RunWide { unread: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// A portal of 200 users (`u1@example.com`…) with a webhook of `user_brief` only and one of
/// `user_basic`.
fn brief_portal() -> String {
    let mut yaml = "portal:\n  rate_limit: { burst: 1000, per_second: 1000 }\nusers:\n".to_owned();
    yaml.push_str(
        "  - { id: 1, email: ada@example.com, name: Ada, last_name: Admin, admin: true }\n",
    );
    for id in 2..=200 {
        writeln!(
            yaml,
            "  - {{ id: {id}, email: u{id}@example.com, name: U{id}, last_name: L }}"
        )
        .unwrap();
    }
    yaml.push_str(
        "groups:\n  - id: 15\n    name: Marketing\n    members:\n      - { user: 1, role: A }\n",
    );
    yaml.push_str(
        "webhooks:\n  - { user: 1, code: briefhook0001, scopes: [sonet_group, user_brief] }\n",
    );
    yaml.push_str("  - { user: 1, code: basichook0001, scopes: [sonet_group, user_basic] }\n");
    yaml
}

/// With only `user_brief` the portal answers `user.get` without `EMAIL` and ignores the
/// `@EMAIL` filter (rules §1.5 "Scopes"; reference §2.1 "unknown keys are silently ignored"),
/// so every e-mail command's answer is the whole portal, 50 a page. The client sees users it
/// did not ask for, follows no `next` (one request, not 4 pages per command), says once why
/// e-mails are unavailable (`emails_unavailable`, a read warning), and still finds users by
/// ID and the caller.
#[tokio::test(flavor = "multi_thread")]
async fn with_user_brief_e_mails_are_unavailable_and_ids_still_work() {
    let p = Portal::start(&brief_portal()).await;
    let c = p.client(1, "briefhook0001");
    let emails: Vec<String> = (2..=61).map(|i| format!("u{i}@example.com")).collect();
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    let found = c
        .lookup(&wanted(&emails, &[7, 150, 999], &["Marketing"]))
        .await
        .unwrap();
    assert_eq!(ids(&found.people), [7, 150]);
    assert!(found.people.iter().all(|p| p.email.is_none()));
    assert_eq!(found.users_unavailable, None);
    let why = found.emails_unavailable.as_deref().unwrap();
    assert_eq!(
        why,
        "the portal did not apply the e-mail filter of user.get (it answered users with none of the e-mails asked): likely the webhook has only the `user_brief` scope, and e-mails need `user_basic` or `user`"
    );
    assert_eq!(
        found.caller,
        Some(Caller {
            user: UserId::Num(1),
            admin: true
        })
    );
    assert_eq!(
        found.groups_by_name["Marketing"],
        [(GroupId::Num(15), "Marketing".to_owned())]
    );
    // Two e-mail commands and one ID command, once each: no page followed.
    assert_eq!((c.counters().requests, p.commands("user.get")), (1, 3));
    assert_eq!(
        c.read_warnings(),
        [format!(
            "{why}; users named by e-mail could not be resolved"
        )]
    );
    // Display lookups by ID are unaffected.
    let shown = c.people(&[UserId::Num(3), UserId::Num(4)]).await.unwrap();
    assert_eq!(ids(&shown), [3, 4]);

    // The resolve step turns it into errors that say why, not "no user has".
    let spec = roster::spec::parse(
        "g.yaml",
        "version: 1\ngroups:\n  - id: 15\n    members: [u2@example.com, 7]\n",
    )
    .unwrap();
    let r = roster::resolve::resolve(&spec, &found);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!(
        r.errors[0].message,
        format!("cannot look up the e-mail address u2@example.com: {why}; name the user by ID")
    );

    // With `user_basic` the same lookup finds everyone by e-mail, with no warning.
    let c = p.client(1, "basichook0001");
    let found = c.lookup(&wanted(&emails, &[7], &[])).await.unwrap();
    assert_eq!(found.people.len(), 60);
    assert_eq!(found.emails_unavailable, None);
    assert!(c.read_warnings().is_empty());
}

/// An OAuth portal for [`PORTAL`]'s admin: tokens without `socialnetwork` and without `user`
/// (the sandbox checks a token's `scopes` like a webhook's, rules §5 `insufficient_scope`).
fn oauth_client(p: &Portal, token: &str) -> Client {
    use roster::provider::bitrix24::{OAuth, OAuthConfig, Secret};
    let config = OAuthConfig {
        access_token: Some(Secret::new(token)),
        ..OAuthConfig::default()
    };
    let endpoint = format!("http://{}/rest/", p.sandbox.addr());
    Client::new(
        OAuth::new(&endpoint, &config).unwrap(),
        Options {
            rate: None,
            ..Options::default()
        },
    )
    .unwrap()
}

const NO_SOCIAL: &str = "nosocialtoken0000000000000000001";
const NO_USER: &str = "nousertoken000000000000000000001";

fn scoped_tokens() -> String {
    format!(
        "{PORTAL}oauth:
  clients:
    - {{ client_id: local.roster.test, client_secret: clientsecret000000000000000000001 }}
  tokens:
    - {{ access_token: {NO_SOCIAL}, user: 1, expires_at: 4102444800, scopes: [sonet_group, user] }}
    - {{ access_token: {NO_USER}, user: 1, expires_at: 4102444800, scopes: [sonet_group, socialnetwork] }}
  refresh_tokens: []
"
    )
}

/// An OAuth token without `socialnetwork`: like such a webhook, the read falls back to
/// `sonet_group.user.get` for the run and says so, naming the OAuth application.
#[tokio::test(flavor = "multi_thread")]
async fn an_oauth_token_without_socialnetwork_reads_the_old_way() {
    let p = Portal::start(&scoped_tokens()).await;
    let c = oauth_client(&p, NO_SOCIAL);
    let state = c.fetch(&[GroupId::Num(15)], &|_| {}).await.unwrap();
    let g = &state.groups[&GroupId::Num(15)];
    assert_eq!(g.members.len(), 3);
    assert!(g.invited.is_empty() && g.requested.is_empty() && g.departments.is_empty());
    assert_eq!(c.counters().requests, 2);
    assert_eq!(
        c.read_warnings(),
        [
            "the OAuth application lacks the `socialnetwork` scope: roster cannot see pending invitations, join requests or department links, so it may plan adds for invited users and removals Bitrix24 undoes; add the scope"
        ]
    );
    assert_eq!(p.sandbox.stats().method("sonet_group.user.get").commands, 1);
}

/// An OAuth token without `user`: like such a webhook, users are unavailable (not an error),
/// with the advice naming the OAuth application; group names are found as usual.
#[tokio::test(flavor = "multi_thread")]
async fn an_oauth_token_without_user_makes_users_unavailable() {
    let p = Portal::start(&scoped_tokens()).await;
    let c = oauth_client(&p, NO_USER);
    let found = c
        .lookup(&wanted(&["ada@example.com"], &[1, 9], &["Marketing"]))
        .await
        .unwrap();
    assert_eq!(
        found.users_unavailable.as_deref(),
        Some("the portal refuses user.get (insufficient_scope): roster cannot look users up")
    );
    assert!(found.people.is_empty());
    assert_eq!(found.caller, None);
    assert_eq!(found.groups_by_name["Marketing"].len(), 2);
    let warnings = c.read_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .ends_with("give the OAuth application the `user` scope (or `user_basic`) in Bitrix24"),
        "{warnings:?}"
    );
}
