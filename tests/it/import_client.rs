//! Listing a portal's groups and taking its snapshot for `roster import`, through the real
//! clients against the real sandboxes over HTTP on 127.0.0.1: every group with its name, in
//! the fewest requests (from the sandboxes' counters), groups named by ID or name, hidden or
//! unknown groups refused by name, and the example portals' members, roles and e-mails.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use roster::import::{self, SnapGroup, SnapUser, Snapshot};
use roster::model::{GroupId, System, UserId, Uuid};
use roster::provider::list::{GroupRef, Which};
use roster::provider::{FetchError, Provider, bitrix24, docspace};
use roster::sandbox::scenario::{self, Params};

use crate::support::{EXAMPLE_CODE, repo};

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A Bitrix24 sandbox serving `yaml` from a temp dir.
struct B24 {
    _dir: tempfile::TempDir,
    sb: roster::sandbox::bitrix24::Sandbox,
}

impl B24 {
    async fn start(yaml: &str) -> B24 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.yaml");
        std::fs::write(&path, yaml).unwrap();
        let sb = roster::sandbox::bitrix24::Sandbox::start(&path, loopback())
            .await
            .unwrap();
        B24 { _dir: dir, sb }
    }

    async fn example() -> B24 {
        B24::start(&std::fs::read_to_string(repo("examples/sandbox.yaml")).unwrap()).await
    }

    /// Acting as `user` through webhook `code`, without client-side pacing.
    fn provider(&self, user: u64, code: &str) -> Provider {
        let url = format!("http://{}/rest/{user}/{code}/", self.sb.addr());
        let options = bitrix24::Options {
            rate: None,
            ..bitrix24::Options::default()
        };
        Provider::Bitrix24(
            bitrix24::Client::new(bitrix24::Webhook::parse(&url).unwrap(), options).unwrap(),
        )
    }

    fn requests(&self) -> u64 {
        self.sb.stats().http_requests
    }

    fn commands(&self, method: &str) -> u64 {
        self.sb.stats().method(method).commands
    }
}

/// A DocSpace sandbox serving `yaml` from a temp dir.
struct Docs {
    _dir: tempfile::TempDir,
    sb: roster::sandbox::docspace::Sandbox,
}

const DOCS_KEY: &str = "sk-5a4d0c0ffee00000000000000000000000000000000000000000000000000001";
const LIST: &str = "GET /api/2.0/group";

impl Docs {
    async fn start(yaml: &str) -> Docs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.yaml");
        std::fs::write(&path, yaml).unwrap();
        Docs::serve(dir, &path).await
    }

    async fn serve(dir: tempfile::TempDir, path: &Path) -> Docs {
        let sb = roster::sandbox::docspace::Sandbox::start(path, loopback())
            .await
            .unwrap();
        Docs { _dir: dir, sb }
    }

    async fn example() -> Docs {
        Docs::start(&std::fs::read_to_string(repo("examples/docspace-sandbox.yaml")).unwrap()).await
    }

    fn provider(&self, key: &str) -> Provider {
        let auth = docspace::Auth::ApiKey(docspace::Secret::new(key));
        Provider::DocSpace(
            docspace::Client::new(&self.sb.base_url(), auth, docspace::Options::default()).unwrap(),
        )
    }

    fn requests(&self) -> u64 {
        self.sb.stats().http_requests
    }

    fn route(&self, route: &str) -> u64 {
        self.sb.stats().route(route).http_requests
    }
}

fn names(groups: &[roster::provider::list::GroupInfo]) -> Vec<(String, String)> {
    groups
        .iter()
        .map(|g| (g.id.to_string(), g.name.clone()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn num(n: u64) -> GroupRef {
    GroupRef::Id(GroupId::Num(n))
}

fn uuid(s: &str) -> GroupRef {
    GroupRef::Id(GroupId::Uuid(Uuid::parse(s).unwrap()))
}

fn name(n: &str) -> GroupRef {
    GroupRef::Name(n.to_owned())
}

/// The lines of a failed lookup.
fn lookup_error(e: FetchError) -> Vec<String> {
    match e {
        FetchError::Lookup(lines) => lines,
        other => panic!("expected a lookup error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Bitrix24

#[tokio::test]
async fn bitrix24_lists_the_example_portals_groups_in_one_request() {
    let p = B24::example().await;
    let groups = p
        .provider(1, EXAMPLE_CODE)
        .list_groups(&Which::All)
        .await
        .unwrap();
    assert_eq!(
        names(&groups),
        pairs(&[("15", "Marketing"), ("27", "Engineering"), ("42", "Sales")])
    );
    assert!(groups.iter().all(|g| g.project == Some(false)));
    // One batch carrying the first (and only) page.
    assert_eq!((p.requests(), p.commands("sonet_group.get")), (1, 1));
}

#[tokio::test]
async fn bitrix24_lists_500_groups_in_two_requests() {
    let mut state = scenario::generate(&Params::new(500, 1, 0.0, 1)).state;
    state.portal.rate_limit = None;
    let p = B24::start(&roster::sandbox::bitrix24::state::render(&state)).await;
    let groups = p
        .provider(1, scenario::WEBHOOK_CODE)
        .list_groups(&Which::All)
        .await
        .unwrap();
    let ids: Vec<GroupId> = groups.iter().map(|g| g.id).collect();
    let expected: Vec<GroupId> = state
        .groups
        .iter()
        .map(|g| GroupId::Num(g.id as u64))
        .collect();
    assert_eq!(ids.len(), 500);
    assert_eq!(ids, expected);
    assert!(
        groups
            .iter()
            .zip(&state.groups)
            .all(|(got, want)| got.name == want.name)
    );
    // ⌈500/50⌉ = 10 pages: the first in one request, the other 9 in one batch.
    assert_eq!(p.requests(), 2);
    assert_eq!(p.sb.stats().method("batch").http_requests, 2);
    assert_eq!(p.commands("sonet_group.get"), 10);
    // More references than fit in one request: the list is read instead (2 requests, not 2
    // of direct lookups plus their 61st), and picked from.
    let mut refs: Vec<GroupRef> = (1..=60).map(|n| num(n * 8)).collect();
    refs.push(name("group 7"));
    let picked = p
        .provider(1, scenario::WEBHOOK_CODE)
        .list_groups(&Which::Groups(refs))
        .await
        .unwrap();
    assert_eq!(picked.len(), 61);
    assert_eq!(picked[0].id, GroupId::Num(7));
    assert_eq!(p.requests(), 4);
}

/// The example portal with a secret group (99, Di's alone) and a webhook for Cy, who is no
/// admin and not in it.
async fn with_secret_group() -> B24 {
    let example = std::fs::read_to_string(repo("examples/sandbox.yaml")).unwrap();
    let yaml = example
        .replace(
            "webhooks:\n",
            "  - id: 99\n    name: Secret\n    visible: false\n    members:\n      - { user: 22, role: A }\nwebhooks:\n",
        )
        .replace(
            "  - { user: 1, code: sandboxcode0001 }\n",
            "  - { user: 1, code: sandboxcode0001 }\n  - { user: 21, code: cycodecycode0021 }\n",
        );
    B24::start(&yaml).await
}

#[tokio::test]
async fn bitrix24_lists_named_groups_and_names_the_ones_it_cannot_see() {
    let p = with_secret_group().await;
    let admin = p.provider(1, EXAMPLE_CODE);
    // By ID and by name (ignoring case), each once, IDs ascending: one request.
    let before = p.requests();
    let groups = admin
        .list_groups(&Which::Groups(vec![num(42), name("engineering"), num(42)]))
        .await
        .unwrap();
    assert_eq!(
        names(&groups),
        pairs(&[("27", "Engineering"), ("42", "Sales")])
    );
    assert_eq!(p.requests() - before, 1);
    // The admin sees the secret group (IS_ADMIN=Y), in the whole list too.
    let groups = admin
        .list_groups(&Which::Groups(vec![num(99)]))
        .await
        .unwrap();
    assert_eq!(names(&groups), pairs(&[("99", "Secret")]));
    let all = admin.list_groups(&Which::All).await.unwrap();
    assert_eq!(all.len(), 4);

    // Cy does not: the group is an error naming it, as is an unknown one.
    let cy = p.provider(21, "cycodecycode0021");
    let e = cy
        .list_groups(&Which::Groups(vec![num(99), name("Nope"), num(15)]))
        .await
        .unwrap_err();
    assert_eq!(
        lookup_error(e),
        [
            "group 99: no such group, or the webhook's user cannot see it (a secret group they are not a member of)",
            "group \"Nope\": no group of that name, or the webhook's user cannot see it (a secret group they are not a member of)",
        ]
    );
    let all = cy.list_groups(&Which::All).await.unwrap();
    assert_eq!(
        names(&all),
        pairs(&[("15", "Marketing"), ("27", "Engineering"), ("42", "Sales")])
    );
    // A DocSpace ID is not a Bitrix24 one.
    let e = admin
        .list_groups(&Which::Groups(vec![uuid(
            "d5000000-0000-4000-8000-000000000015",
        )]))
        .await
        .unwrap_err();
    assert!(lookup_error(e)[0].contains("not a Bitrix24 group ID"));
}

/// Who a snapshot's users are: `ID email`.
fn who(u: &SnapUser) -> String {
    format!("{} {}", u.id, u.email.as_deref().unwrap_or("-"))
}

/// A snapshot group as lines: owner, moderators, members, pending counts.
fn lines(g: &SnapGroup) -> Vec<String> {
    let mut out = vec![format!("{} {}", g.id, g.name)];
    out.extend(g.owner.iter().map(|u| format!("owner {}", who(u))));
    out.extend(g.moderators.iter().map(|u| format!("moderator {}", who(u))));
    out.extend(g.members.iter().map(|u| format!("member {}", who(u))));
    out.push(format!(
        "pending {} invited, {} requested",
        g.pending.invited, g.pending.requested
    ));
    out
}

fn all_lines(s: &Snapshot) -> Vec<String> {
    s.groups.iter().flat_map(lines).collect()
}

#[tokio::test]
async fn bitrix24_snapshot_of_the_example_portal() {
    let p = B24::example().await;
    let s = import::snapshot(&p.provider(1, EXAMPLE_CODE), &Which::All)
        .await
        .unwrap();
    assert_eq!(s.system, System::Bitrix24);
    assert_eq!(
        all_lines(&s),
        [
            "15 Marketing",
            "owner 1 ada@example.com",
            "member 10 bo@example.com",
            "member 21 cy@example.com",
            "member 30 fay@example.com",
            "pending 0 invited, 0 requested",
            "27 Engineering",
            "owner 22 di@example.com",
            "moderator 23 ed@example.com",
            "member 31 gus@example.com",
            // Jo (60) is invited and Hal (40) asked to join: counted, not members.
            "pending 1 invited, 1 requested",
            "42 Sales",
            "owner 1 ada@example.com",
            "member 22 di@example.com",
            "pending 0 invited, 0 requested",
        ]
    );
    let ada = s.groups[0].owner.as_ref().unwrap();
    assert_eq!(ada.name.as_deref(), Some("Ada Admin"));
    assert_eq!((ada.active, ada.extranet), (Some(true), false));
    // The list, the three groups' reads in one batch, the seven members in one command.
    assert_eq!(p.requests(), 3);
    assert_eq!(p.commands("socialnetwork.api.workgroup.get"), 3);
    assert_eq!(p.commands("user.get"), 1);

    // One group by name.
    let s = import::snapshot(
        &p.provider(1, EXAMPLE_CODE),
        &Which::Groups(vec![name("Sales")]),
    )
    .await
    .unwrap();
    assert_eq!(s.groups.len(), 1);
    assert_eq!(s.groups[0].members[0].id, UserId::Num(22));
}

// ---------------------------------------------------------------------------------------------
// DocSpace

const DESIGNERS: &str = "d5000000-0000-4000-8000-000000000015";
const WRITERS: &str = "d5000000-0000-4000-8000-000000000027";

#[tokio::test]
async fn docspace_lists_the_example_portals_groups_in_one_request() {
    let p = Docs::example().await;
    let groups = p.provider(DOCS_KEY).list_groups(&Which::All).await.unwrap();
    assert_eq!(
        names(&groups),
        pairs(&[(DESIGNERS, "Designers"), (WRITERS, "Writers")])
    );
    assert_eq!((p.requests(), p.route(LIST)), (1, 1));
}

#[tokio::test]
async fn docspace_lists_500_groups_in_five_requests() {
    let state = scenario::generate_docspace(&Params::new(500, 1, 0.0, 1)).state;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.yaml");
    roster::sandbox::docspace::state::save(&path, &state).unwrap();
    let p = Docs::serve(dir, &path).await;
    let groups = p
        .provider(scenario::DOCSPACE_KEY)
        .list_groups(&Which::All)
        .await
        .unwrap();
    let mut expected: Vec<(String, String)> = state
        .groups
        .iter()
        .map(|g| (g.id.clone(), g.name.clone()))
        .collect();
    expected.sort();
    assert_eq!(names(&groups), expected);
    // ⌈500/100⌉ pages, nothing else.
    assert_eq!((p.requests(), p.route(LIST)), (5, 5));
}

#[tokio::test]
async fn docspace_lists_named_groups_and_names_unknown_ones() {
    let p = Docs::example().await;
    let docs = p.provider(DOCS_KEY);
    // One reference: one direct lookup.
    let groups = docs
        .list_groups(&Which::Groups(vec![uuid(WRITERS)]))
        .await
        .unwrap();
    assert_eq!(names(&groups), pairs(&[(WRITERS, "Writers")]));
    assert_eq!(p.route("GET /api/2.0/group/{id}"), 1);
    let groups = docs
        .list_groups(&Which::Groups(vec![name("designers")]))
        .await
        .unwrap();
    assert_eq!(names(&groups), pairs(&[(DESIGNERS, "Designers")]));
    // Several: the list's first page holds them all.
    let before = p.requests();
    let groups = docs
        .list_groups(&Which::Groups(vec![name("Writers"), uuid(DESIGNERS)]))
        .await
        .unwrap();
    assert_eq!(
        names(&groups),
        pairs(&[(DESIGNERS, "Designers"), (WRITERS, "Writers")])
    );
    assert_eq!(p.requests() - before, 1);

    let unknown = "d5000000-0000-4000-8000-0000000000ff";
    for which in [
        vec![uuid(unknown), name("Nope")],
        vec![uuid(unknown), name("Nope"), uuid(WRITERS)],
    ] {
        let e = docs.list_groups(&Which::Groups(which)).await.unwrap_err();
        assert_eq!(
            lookup_error(e),
            [
                format!("group {unknown}: no such group on the DocSpace portal"),
                "group \"Nope\": no group of that name on the DocSpace portal".to_owned(),
            ]
        );
    }
    let e = docs
        .list_groups(&Which::Groups(vec![uuid(unknown)]))
        .await
        .unwrap_err();
    assert_eq!(
        lookup_error(e),
        [format!(
            "group {unknown}: no such group on the DocSpace portal"
        )]
    );
    let e = docs
        .list_groups(&Which::Groups(vec![num(15)]))
        .await
        .unwrap_err();
    assert!(lookup_error(e)[0].contains("not a DocSpace group ID"));
}

#[tokio::test]
async fn docspace_snapshot_of_the_example_portal() {
    let p = Docs::example().await;
    let s = import::snapshot(&p.provider(DOCS_KEY), &Which::All)
        .await
        .unwrap();
    assert_eq!(s.system, System::DocSpace);
    let id = |n: &str| format!("0a0d0000-0000-4000-8000-0000000000{n}");
    assert_eq!(
        all_lines(&s),
        [
            format!("{DESIGNERS} Designers"),
            format!("owner {} bo@example.com", id("10")),
            format!("member {} cy@example.com", id("21")),
            format!("member {} fay@example.com", id("30")),
            "pending 0 invited, 0 requested".to_owned(),
            format!("{WRITERS} Writers"),
            format!("owner {} di@example.com", id("22")),
            format!("member {} ed@example.com", id("23")),
            "pending 0 invited, 0 requested".to_owned(),
        ]
    );
    assert_eq!(
        s.groups[0].owner.as_ref().unwrap().name.as_deref(),
        Some("Bo Berg")
    );
    // The list and one read a group; the members came with the reads.
    assert_eq!(p.requests(), 3);
}
