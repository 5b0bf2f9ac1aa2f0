//! Saved plans: every entry kind survives the file, fingerprints follow the state, drift names
//! who moved, and what is not a plan file of this version is refused.

use super::*;
use crate::model::{CurrentState, Lookups};
use crate::plan::{self, Options};

fn person(id: UserId, email: &str, active: bool) -> Person {
    Person {
        id,
        email: Some(email.to_owned()),
        name: Some(format!("Name of {email}")),
        active,
        extranet: false,
    }
}

/// A Bitrix24 plan with every kind of entry: add, invite, a role change, a removal, an owner
/// change, a skipped owner, pending invited / requested / inactive users.
fn bitrix24() -> (Plan, Directory, CurrentState) {
    let file = "version: 1
groups:
  - id: 15
    owner: 5
    moderators: [23]
    members: [21, 25, 26]
  - id: 16
    add_with: invite
    members: [21]
  - id: 17
    members: [40]
";
    let spec = crate::spec::parse("t.yaml", file).unwrap();
    let n = UserId::Num;
    let people = [
        person(n(1), "olga@example.com", true),
        person(n(5), "boss@example.com", true),
        person(n(21), "anna@example.com", true),
        person(n(23), "mod@example.com", true),
        person(n(25), "gone@example.com", false),
        person(n(26), "invited@example.com", true),
        person(n(30), "fay@example.com", true),
        person(n(40), "di@example.com", true),
    ];
    let found = Lookups {
        people: people.to_vec(),
        ..Lookups::default()
    };
    let r = crate::resolve::resolve(&spec, &found);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let mut cur = CurrentState::default();
    let mut g = CurrentGroup {
        name: Some("Marketing".to_owned()),
        ..CurrentGroup::default()
    };
    g.members.insert(n(1), Role::Owner);
    g.members.insert(n(23), Role::Member);
    g.members.insert(n(30), Role::Member);
    g.invited.insert(n(26));
    g.requested.insert(n(31));
    cur.groups.insert(GroupId::Num(15), g);
    let mut g = CurrentGroup::default();
    g.members.insert(n(1), Role::Owner);
    cur.groups.insert(GroupId::Num(16), g);
    // Group 17 has nothing to change: it is not saved.
    let mut g = CurrentGroup::default();
    g.members.insert(n(1), Role::Owner);
    g.members.insert(n(40), Role::Member);
    cur.groups.insert(GroupId::Num(17), g);
    let options = Options {
        allow_owner_change: true,
    };
    (plan::diff_with(&r.desired, &cur, options), r.directory, cur)
}

fn part<'a>(plan: &'a Plan, dir: &'a Directory, cur: &'a CurrentState) -> Part<'a> {
    Part {
        name: None,
        system: System::Bitrix24,
        portal: "example.bitrix24.com".to_owned(),
        url_env: None,
        key_env: None,
        plan,
        current: cur,
        dir,
    }
}

#[test]
fn a_saved_plan_reads_back_as_the_plan_of_its_changed_groups() {
    let (plan, dir, cur) = bitrix24();
    let saved = build(
        "t.yaml",
        b"version: 1\n",
        &[],
        Flags::default(),
        &[part(&plan, &dir, &cur)],
    );
    let text = serde_json::to_string_pretty(&saved).unwrap();
    let back = parse(&text).unwrap();
    assert_eq!(back, saved);
    let loaded = load(&back.portals[0]).unwrap();
    let changed: Vec<&GroupPlan> = plan
        .groups
        .iter()
        .filter(|g| g.changes().next().is_some())
        .collect();
    assert_eq!(changed.len(), 2, "{plan:?}");
    assert_eq!(loaded.plan.groups.iter().collect::<Vec<_>>(), changed);
    // Every kind of entry was there to survive.
    let kinds: BTreeSet<&str> = saved.portals[0].groups[0]
        .entries
        .iter()
        .chain(&saved.portals[0].groups[1].entries)
        .map(|e| match e {
            SavedEntry::Add { .. } => "add",
            SavedEntry::Invite { .. } => "invite",
            SavedEntry::Accept { .. } => "accept",
            SavedEntry::SetRole { .. } => "set_role",
            SavedEntry::Remove { .. } => "remove",
            SavedEntry::SetOwner { .. } => "set_owner",
            SavedEntry::Skip { .. } => "skip",
            SavedEntry::Pending { .. } => "pending",
        })
        .collect();
    for k in ["invite", "set_role", "remove", "set_owner", "pending"] {
        assert!(kinds.contains(k), "{k} missing from {kinds:?}");
    }
    // The people shown are kept, with their e-mails; others are not.
    assert_eq!(
        loaded.dir.users[&UserId::Num(30)].email.as_deref(),
        Some("fay@example.com")
    );
    assert!(!loaded.dir.users.contains_key(&UserId::Num(40)));
    assert_eq!(loaded.system, System::Bitrix24);
    assert_eq!(saved.file_sha256, sha256_hex(b"version: 1\n"));
}

#[test]
fn a_docspace_plan_keeps_its_uuids() {
    let g = Uuid::parse("0a0d0000-0000-0000-0000-000000000001").unwrap();
    let m =
        |k: u64| UserId::Uuid(Uuid::parse(&format!("0a0d0000-0000-0000-0000-{k:012}")).unwrap());
    let mut cur = CurrentState::default();
    let mut group = CurrentGroup::default();
    group.members.insert(m(10), Role::Owner);
    group.members.insert(m(11), Role::Member);
    cur.groups.insert(GroupId::Uuid(g), group);
    let plan = Plan {
        groups: vec![GroupPlan {
            id: GroupId::Uuid(g),
            name: Some("Docs".into()),
            entries: vec![
                Entry::Change(Change::Remove {
                    user: m(11),
                    role: Role::Member,
                }),
                Entry::Change(Change::Add {
                    user: m(12),
                    role: Role::Member,
                }),
            ],
            owner_mismatch: None,
            departments: vec![],
            prune_synced: false,
            invite_message: None,
            current_non_owners: 1,
        }],
    };
    let dir = Directory {
        system: System::DocSpace,
        ..Directory::default()
    };
    let mut p = part(&plan, &dir, &cur);
    p.system = System::DocSpace;
    p.name = Some("docs");
    p.key_env = Some("ROSTER_DOCS_API_KEY");
    let saved = build("d.yaml", b"", &[], Flags::default(), &[p]);
    let loaded = load(
        &parse(&serde_json::to_string(&saved).unwrap())
            .unwrap()
            .portals[0],
    )
    .unwrap();
    assert_eq!(loaded.plan, plan);
    assert_eq!(loaded.system, System::DocSpace);
    // A Bitrix24 number is not a DocSpace ID.
    let mut wrong = saved.portals[0].clone();
    wrong.groups[0].id = "15".into();
    assert!(
        load(&wrong)
            .unwrap_err()
            .0
            .contains("not a ONLYOFFICE DocSpace group ID")
    );
}

#[test]
fn fingerprints_follow_the_state_and_drift_names_who_moved() {
    let (plan, dir, cur) = bitrix24();
    let saved = build(
        "t.yaml",
        b"",
        &[],
        Flags::default(),
        &[part(&plan, &dir, &cur)],
    );
    let loaded = load(&saved.portals[0]).unwrap();
    let id = GroupId::Num(15);
    let planned = &loaded.states[&id];
    let describe = |u: &str| format!("#{u}");
    // Unchanged: no drift, the same fingerprint.
    let now = state_of(cur.groups.get(&id));
    assert!(drift(id, planned, &now, &describe).is_empty());
    // Moved: a member made moderator, one gone, one new, the request withdrawn.
    let mut moved = cur.groups[&id].clone();
    moved.members.insert(UserId::Num(23), Role::Moderator);
    moved.members.remove(&UserId::Num(30));
    moved.members.insert(UserId::Num(50), Role::Member);
    moved.requested.clear();
    let now = state_of(Some(&moved));
    assert_ne!(fingerprint(id, &now), planned.1);
    assert_eq!(
        drift(id, planned, &now, &describe),
        [
            "#23: member → moderator",
            "#30: member → not in the group",
            "#31: asked to join → not in the group",
            "#50: not in the group → member",
        ]
    );
    // The same state under another group's ID is another fingerprint.
    assert_ne!(fingerprint(GroupId::Num(16), &planned.0), planned.1);
}

#[test]
fn what_is_not_a_saved_plan_of_this_version_is_refused() {
    let (plan, dir, cur) = bitrix24();
    let saved = build(
        "t.yaml",
        b"",
        &[],
        Flags::default(),
        &[part(&plan, &dir, &cur)],
    );
    let mut v = serde_json::to_value(&saved).unwrap();
    assert!(
        parse("version: 1\ngroups: []\n")
            .unwrap_err()
            .0
            .contains("not a roster plan file")
    );
    assert!(
        parse("{\"format_version\": \"1\"}")
            .unwrap_err()
            .0
            .contains("kind")
    );
    v["format_version"] = "2".into();
    assert!(
        parse(&v.to_string())
            .unwrap_err()
            .0
            .contains("format version 2")
    );
    v["format_version"] = "1".into();
    v["portals"][0]["surprise"] = true.into();
    assert!(parse(&v.to_string()).unwrap_err().0.contains("damaged"));
    // An edited state no longer matches its fingerprint.
    let mut edited = saved.portals[0].clone();
    edited.groups[0].state.members.pop();
    assert!(load(&edited).unwrap_err().0.contains("fingerprint"));
    assert!(looks_saved(&serde_json::to_string(&saved).unwrap()));
    assert!(!looks_saved("version: 1\n"));
}

#[test]
fn a_portal_is_named_by_its_host_only() {
    for (address, want) in [
        (
            "https://Example.Bitrix24.com/rest/1/s3cr3tc0de/",
            "example.bitrix24.com",
        ),
        (
            "https://example.bitrix24.com:443/rest/",
            "example.bitrix24.com",
        ),
        ("http://127.0.0.1:8024/rest/1/code/", "127.0.0.1:8024"),
        ("https://user:pass@docs.example.com/", "docs.example.com"),
        ("https://docs.example.com?x=1", "docs.example.com"),
        ("docs.example.com/path", "docs.example.com"),
    ] {
        assert_eq!(portal_identity(address, None), want, "{address}");
    }
    assert_eq!(
        portal_identity("sandbox:x.yaml", Some("/tmp/x.yaml")),
        "sandbox:/tmp/x.yaml"
    );
}
