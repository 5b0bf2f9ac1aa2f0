//! Reading a portal's company structure through the real client against the real Bitrix24
//! sandbox over HTTP on 127.0.0.1: the example portal's tree, heads and members; every
//! UNCONFIRMED shape of an empty `UF_DEPARTMENT`; a generated portal of 300 departments and
//! 10,000 users within the request bound (from the sandbox's counters); a webhook
//! without the `department` scope; cloud pacing; DocSpace, which has no departments.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};

use roster::model::UserId;
use roster::provider::bitrix24::{self, RateProfile, structure as read};
use roster::provider::{FetchError, Provider, docspace};
use roster::structure::Structure;

use crate::support::repo;

const ADMIN: &str = "sandboxcode0001";

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
        let sb = roster::sandbox::bitrix24::Sandbox::start(
            &path,
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        )
        .await
        .unwrap();
        B24 { _dir: dir, sb }
    }

    /// Acting as user 1 through webhook `code`, with `rate` as the client's pacing.
    fn provider(&self, code: &str, rate: Option<RateProfile>) -> Provider {
        let url = format!("http://{}/rest/1/{code}/", self.sb.addr());
        let options = bitrix24::Options {
            rate,
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

fn example_yaml() -> String {
    std::fs::read_to_string(repo("examples/sandbox-departments.yaml")).unwrap()
}

fn ids(xs: &[u64]) -> BTreeSet<UserId> {
    xs.iter().copied().map(UserId::Num).collect()
}

/// The example portal's structure as `examples/sandbox-departments.yaml` describes it.
fn check_example(s: &Structure) {
    // Legacy (7) is inactive: the portal hides it and Legacy Support (8) below it.
    assert_eq!(
        s.departments.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    let d = |id: u64| &s.departments[&id];
    assert_eq!((d(1).name.as_str(), d(1).parent), ("Acme", None));
    assert_eq!((d(4).name.as_str(), d(4).parent), ("Sales EU", Some(2)));
    assert_eq!(d(6).parent, Some(3));
    assert_eq!(d(5).head, None);
    assert_eq!(d(3).head, Some(UserId::Num(22)));
    assert_eq!(s.subtree(1), [1, 2, 4, 5, 3, 6]);
    assert_eq!(s.subtree(2), [2, 4, 5]);
    assert_eq!(s.path(4), ["Acme", "Sales", "Sales EU"]);
    assert_eq!(s.by_name("sales eu"), [4]);
    assert_eq!(s.members(2, false), ids(&[10]), "Ivy (50) is dismissed");
    assert_eq!(s.members(2, true), ids(&[10, 21, 30]));
    assert_eq!(s.members(1, true), ids(&[1, 10, 21, 22, 23, 30]));
    assert_eq!(s.heads(2, true), ids(&[10, 21]));
    assert_eq!(s.heads(1, true), ids(&[1, 10, 21, 22]));
    assert_eq!(s.all_employees(), ids(&[1, 10, 21, 22, 23, 30, 40]));
    // Every user is read, dismissed and extranet ones too.
    assert_eq!(s.users.len(), 9);
    let u = |id: u64| &s.users[&UserId::Num(id)];
    assert!(!u(50).active);
    assert_eq!(u(50).departments, [2]);
    assert!(u(31).extranet && u(31).departments.is_empty());
    assert_eq!(u(30).departments, [4, 5]);
    assert_eq!(
        u(40).departments,
        [8],
        "a hidden department is still listed"
    );
    assert_eq!(u(21).email.as_deref(), Some("cy@example.com"));
    assert_eq!(u(21).name.as_deref(), Some("Cy Cole"));
}

#[tokio::test]
async fn the_example_portal_in_one_request() {
    let b = B24::start(&example_yaml()).await;
    let s = b.provider(ADMIN, None).structure().await.unwrap();
    check_example(&s);
    assert_eq!(b.requests(), 1, "both first pages in one batch");
    assert_eq!(b.commands("department.get"), 1);
    assert_eq!(b.commands("user.get"), 1);
}

/// `portal.user_no_department`: whichever way the portal sends an empty `UF_DEPARTMENT`
/// (UNCONFIRMED, rules §8.1), the user is an extranet user without departments.
#[tokio::test]
async fn every_shape_of_no_department() {
    for setting in ["absent", "null", "empty", "false"] {
        let yaml = example_yaml().replacen(
            "portal:\n",
            &format!("portal:\n  user_no_department: {setting}\n"),
            1,
        );
        let b = B24::start(&yaml).await;
        let s = b.provider(ADMIN, None).structure().await.unwrap();
        check_example(&s);
    }
}

/// A generated portal: department 1 at the top, department `i` below `i / 2` (a binary tree),
/// every seventh department headed by user `i`; user `u` in department `1 + u % d`, every
/// 50th dismissed, every 100th an extranet user without departments, every 9th also in
/// department 2.
fn generated(departments: u64, users: u64) -> String {
    let mut y = String::from("portal:\n  rate_limit: null\nusers:\n");
    for u in 1..=users {
        let active = u % 50 != 0;
        if u % 100 == 0 {
            writeln!(
                y,
                "  - {{ id: {u}, email: u{u}@example.com, name: U{u}, last_name: L, active: {active}, admin: {}, extranet: true }}",
                u == 1
            )
            .unwrap();
            continue;
        }
        let mut ds = vec![1 + u % departments];
        if u % 9 == 0 && !ds.contains(&2) {
            ds.push(2);
        }
        let ds: Vec<String> = ds.iter().map(u64::to_string).collect();
        writeln!(
            y,
            "  - {{ id: {u}, email: u{u}@example.com, name: U{u}, last_name: L, active: {active}, admin: {}, departments: [{}] }}",
            u == 1,
            ds.join(", ")
        )
        .unwrap();
    }
    y.push_str("departments:\n");
    for i in 1..=departments {
        let parent = if i == 1 {
            String::new()
        } else {
            format!(", parent: {}", i / 2)
        };
        let head = if i % 7 == 0 {
            format!(", head: {i}")
        } else {
            String::new()
        };
        writeln!(y, "  - {{ id: {i}, name: Dept {i}{parent}{head} }}").unwrap();
    }
    y.push_str(&format!(
        "webhooks:\n  - {{ user: 1, code: {ADMIN} }}\n  - {{ user: 1, code: nodeptcode0001, scopes: [user, sonet_group, socialnetwork] }}\n"
    ));
    y
}

const D: u64 = 300;
const U: u64 = 10_000;

/// What `generated(D, U)` must read as.
fn check_generated(s: &Structure) {
    assert_eq!(s.departments.len(), D as usize);
    assert_eq!(s.users.len(), U as usize);
    let employees = (1..=U).filter(|u| u % 50 != 0 && u % 100 != 0).count();
    assert_eq!(s.all_employees().len(), employees);
    // Every department is below 1.
    assert_eq!(s.subtree(1).len(), D as usize);
    assert_eq!(s.members(1, true), s.all_employees());
    // Department 2's subtree: itself and every department whose chain of halves reaches 2.
    let below_2 = |mut d: u64| {
        while d > 2 {
            d /= 2;
        }
        d == 2
    };
    let want: BTreeSet<UserId> = (1..=U)
        .filter(|u| u % 50 != 0 && u % 100 != 0)
        .filter(|u| below_2(1 + u % D) || u % 9 == 0)
        .map(UserId::Num)
        .collect();
    assert_eq!(s.members(2, true), want);
    let heads: BTreeSet<UserId> = (1..=D)
        .filter(|i| i % 7 == 0 && i % 50 != 0)
        .map(UserId::Num)
        .collect();
    assert_eq!(s.heads(1, true), heads);
    assert_eq!(
        s.path(300),
        [
            "Dept 1", "Dept 2", "Dept 4", "Dept 9", "Dept 18", "Dept 37", "Dept 75", "Dept 150",
            "Dept 300"
        ]
    );
}

#[tokio::test]
async fn a_big_portal_within_the_request_bound() {
    let b = B24::start(&generated(D, U)).await;
    let s = b.provider(ADMIN, None).structure().await.unwrap();
    check_generated(&s);
    let bound = read::bound(D, U);
    assert_eq!(bound, 7, "⌈300/2,500⌉ + ⌈10,000/2,500⌉ + 2");
    assert_eq!(b.requests(), read::requests(D, U) as u64);
    assert_eq!(b.requests(), 6, "1 + ⌈(6 + 200 − 2)/50⌉");
    assert!(b.requests() <= bound as u64);
    // Every page once: no page asked twice, none past the end.
    assert_eq!(b.commands("department.get"), D.div_ceil(50));
    assert_eq!(b.commands("user.get"), U.div_ceil(50));
}

#[tokio::test]
async fn without_the_department_scope_the_error_names_it() {
    let b = B24::start(&example_yaml()).await;
    let e = b
        .provider("nodeptcode0001", None)
        .structure()
        .await
        .unwrap_err();
    let FetchError::Lookup(lines) = &e else {
        panic!("{e}")
    };
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("insufficient_scope"), "{}", lines[0]);
    assert!(lines[0].contains("the `department` scope"), "{}", lines[0]);
    assert!(lines[0].contains("the webhook"), "{}", lines[0]);
    // Nothing read past the first request.
    assert_eq!(b.requests(), 1);
}

/// With the client pacing to the portal's bucket, the read is the same and never refused.
#[tokio::test]
async fn cloud_pacing_on() {
    let b = B24::start(&generated(D, U)).await;
    let s = b
        .provider(ADMIN, Some(RateProfile::CLOUD))
        .structure()
        .await
        .unwrap();
    check_generated(&s);
    assert_eq!(b.requests(), 6);
    assert_eq!(b.sb.stats().rejected_503, 0);
}

/// A tight bucket (3 at once, 20 a second) on both sides: the client waits rather than being
/// refused, and the pages still come in six requests.
#[tokio::test]
async fn a_tight_bucket_paces_without_refusals() {
    let yaml = generated(D, U).replacen(
        "rate_limit: null",
        "rate_limit: { burst: 3, per_second: 20 }",
        1,
    );
    let b = B24::start(&yaml).await;
    let rate = RateProfile {
        burst: 3.0,
        per_second: 20.0,
    };
    let s = b.provider(ADMIN, Some(rate)).structure().await.unwrap();
    check_generated(&s);
    assert_eq!(b.requests(), 6);
    assert_eq!(b.sb.stats().rejected_503, 0);
}

#[tokio::test]
async fn docspace_has_no_departments() {
    let auth = docspace::Auth::ApiKey(docspace::Secret::new("sk-never-sent-0000000000000000"));
    let p = Provider::DocSpace(
        docspace::Client::new("http://127.0.0.1:9/", auth, docspace::Options::default()).unwrap(),
    );
    let e = p.structure().await.unwrap_err().to_string();
    assert!(e.contains("DocSpace has no departments"), "{e}");
}
