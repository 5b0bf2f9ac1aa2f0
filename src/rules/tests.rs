//! Rules against a small company: Acme (1) › Sales (2) › Sales EU (3), Sales US (4); Ops (5).
//! Heads: Ada (1) of Acme, Bo (10) of Sales, Cy (21) of Sales EU. Members: Bo in Sales; Cy
//! and Di (22) in Sales EU; Ed (23) in Sales US; Fay (30) in Ops; Gus (31) dismissed, in
//! Sales; Xi (40) extranet.

use super::*;
use crate::structure::{Department, Employee};

fn u(n: u64) -> UserId {
    UserId::Num(n)
}

fn company() -> Structure {
    let mut s = Structure::default();
    for (id, name, parent, head) in [
        (1, "Acme", None, Some(1)),
        (2, "Sales", Some(1), Some(10)),
        (3, "Sales EU", Some(2), Some(21)),
        (4, "Sales US", Some(2), None),
        (5, "Ops", Some(1), None),
        (6, "sales", Some(5), None),
    ] {
        s.departments.insert(
            id,
            Department {
                id,
                name: name.to_owned(),
                parent,
                head: head.map(u),
            },
        );
    }
    for (id, depts, active, extranet) in [
        (1, vec![1], true, false),
        (10, vec![2], true, false),
        (21, vec![3], true, false),
        (22, vec![3], true, false),
        (23, vec![4], true, false),
        (30, vec![5], true, false),
        (31, vec![2], false, false),
        (40, vec![], true, true),
    ] {
        s.users.insert(
            u(id),
            Employee {
                id: u(id),
                email: Some(format!("u{id}@example.com")),
                name: None,
                active,
                extranet,
                departments: depts,
            },
        );
    }
    s
}

fn dept(id: u64) -> Source {
    Source::Department {
        dept: DeptRef::Id(id),
        include_sub: true,
    }
}

fn roles(r: &Resolved) -> Vec<(u64, Role)> {
    r.users
        .iter()
        .map(|(k, (role, _))| (k.expect_num(), *role))
        .collect()
}

#[test]
fn a_department_gives_its_active_users_and_those_below_it() {
    let s = company();
    let r = resolve(&s, &BTreeMap::new(), &[(Role::Member, dept(2))], &[]);
    assert_eq!(
        roles(&r),
        [
            (10, Role::Member),
            (21, Role::Member),
            (22, Role::Member),
            (23, Role::Member)
        ]
    );
    assert_eq!(r.sizes, [4]);
    assert!(r.problems.is_empty() && r.empty.is_empty());
    // Each with the department they are in, from the top.
    assert_eq!(
        r.users[&u(22)]
            .1
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["department \"Acme\" › \"Sales\" › \"Sales EU\""]
    );
    // Without sub-departments: only Sales itself (Gus is dismissed).
    let only = Source::Department {
        dept: DeptRef::Id(2),
        include_sub: false,
    };
    let r = resolve(&s, &BTreeMap::new(), &[(Role::Member, only)], &[]);
    assert_eq!(roles(&r), [(10, Role::Member)]);
}

#[test]
fn heads_moderate_and_the_highest_role_wins() {
    let s = company();
    let heads = Source::DepartmentHeads {
        dept: DeptRef::Name("sales eu".into()),
        include_sub: true,
    };
    let r = resolve(
        &s,
        &BTreeMap::new(),
        &[(Role::Member, dept(2)), (Role::Moderator, heads)],
        &[],
    );
    assert_eq!(
        roles(&r),
        [
            (10, Role::Member),
            (21, Role::Moderator),
            (22, Role::Member),
            (23, Role::Member)
        ]
    );
    // Cy is there for both reasons.
    let why: Vec<String> = r.users[&u(21)].1.iter().map(ToString::to_string).collect();
    assert_eq!(
        why,
        [
            "department \"Acme\" › \"Sales\" › \"Sales EU\"",
            "head of \"Acme\" › \"Sales\" › \"Sales EU\""
        ]
    );
}

#[test]
fn explicit_entries_win_and_except_takes_only_from_rules() {
    let s = company();
    let explicit: BTreeMap<UserId, Role> = [(u(22), Role::Moderator), (u(23), Role::Member)].into();
    let except = [
        Source::User(u(23)),
        Source::Department {
            dept: DeptRef::Name("Sales EU".into()),
            include_sub: false,
        },
    ];
    let r = resolve(&s, &explicit, &[(Role::Member, dept(2))], &except);
    // Cy (Sales EU) is taken away; Di is listed (moderator) and Ed is listed: both stay.
    assert_eq!(
        roles(&r),
        [
            (10, Role::Member),
            (22, Role::Moderator),
            (23, Role::Member)
        ]
    );
    assert_eq!(
        r.users[&u(22)].1.iter().collect::<Vec<_>>(),
        [&Reason::Explicit]
    );
}

#[test]
fn all_employees_leave_out_extranet_and_dismissed_users() {
    let s = company();
    let r = resolve(
        &s,
        &BTreeMap::new(),
        &[(Role::Member, Source::AllEmployees)],
        &[],
    );
    let ids: Vec<u64> = r.users.keys().map(|k| k.expect_num()).collect();
    assert_eq!(ids, [1, 10, 21, 22, 23, 30]);
}

#[test]
fn missing_ambiguous_and_empty_rules_are_reported() {
    let s = company();
    let rules = [
        (Role::Member, dept(99)),
        (
            Role::Member,
            Source::Department {
                dept: DeptRef::Name("SALES".into()),
                include_sub: true,
            },
        ),
        (
            Role::Moderator,
            Source::DepartmentHeads {
                dept: DeptRef::Id(4),
                include_sub: false,
            },
        ),
        (Role::Member, dept(5)),
    ];
    let r = resolve(
        &s,
        &BTreeMap::new(),
        &rules,
        &[Source::Department {
            dept: DeptRef::Name("Nowhere".into()),
            include_sub: true,
        }],
    );
    assert_eq!(
        r.problems,
        [
            Problem::NoSuchDepartment {
                rule: 0,
                dept: DeptRef::Id(99)
            },
            Problem::AmbiguousDepartment {
                rule: 1,
                name: "SALES".into(),
                ids: vec![2, 6]
            },
            Problem::NoSuchDepartment {
                rule: 4,
                dept: DeptRef::Name("Nowhere".into())
            },
        ]
    );
    // Sales US has no head: the rule resolves to nobody (a warning).
    assert_eq!(r.empty, [2]);
    assert_eq!(r.sizes, [0, 0, 0, 1]);
    assert_eq!(roles(&r), [(30, Role::Member)]);
}

#[test]
fn moving_or_dismissing_a_user_changes_exactly_that_user() {
    let s = company();
    let rules = [(Role::Member, dept(2))];
    let before = resolve(&s, &BTreeMap::new(), &rules, &[]);
    let mut moved = s.clone();
    moved.users.get_mut(&u(23)).unwrap().departments = vec![5];
    moved.users.get_mut(&u(21)).unwrap().active = false;
    let mut hired = moved.clone();
    hired.users.insert(
        u(50),
        Employee {
            id: u(50),
            email: None,
            name: None,
            active: true,
            extranet: false,
            departments: vec![4],
        },
    );
    let after = resolve(&hired, &BTreeMap::new(), &rules, &[]);
    let b: BTreeSet<u64> = before.users.keys().map(|k| k.expect_num()).collect();
    let a: BTreeSet<u64> = after.users.keys().map(|k| k.expect_num()).collect();
    assert_eq!(b.difference(&a).copied().collect::<Vec<_>>(), [21, 23]);
    assert_eq!(a.difference(&b).copied().collect::<Vec<_>>(), [50]);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn source() -> impl Strategy<Value = Source> {
        prop_oneof![
            (1u64..7, any::<bool>()).prop_map(|(d, sub)| Source::Department {
                dept: DeptRef::Id(d),
                include_sub: sub
            }),
            (1u64..7, any::<bool>()).prop_map(|(d, sub)| Source::DepartmentHeads {
                dept: DeptRef::Id(d),
                include_sub: sub
            }),
            Just(Source::AllEmployees),
            prop::sample::select(vec![1u64, 10, 21, 22, 23, 30, 31, 40])
                .prop_map(|n| Source::User(u(n))),
        ]
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Moderator), Just(Role::Member)]
    }

    proptest! {
        /// Explicit users are always there with their own role; every other user is one some
        /// rule gave, not taken by `except:`, with the highest role of the rules giving them.
        #[test]
        fn explicit_wins_and_rules_give_their_highest_role(
            rules in prop::collection::vec((role(), source()), 0..5),
            except in prop::collection::vec(source(), 0..3),
            explicit in prop::collection::btree_map(
                prop::sample::select(vec![10u64, 22, 30, 99]).prop_map(u), role(), 0..3),
        ) {
            let s = company();
            let r = resolve(&s, &explicit, &rules, &except);
            for (user, role) in &explicit {
                prop_assert_eq!(&r.users[user].0, role);
            }
            let taken: BTreeSet<UserId> = except
                .iter()
                .enumerate()
                .filter_map(|(j, x)| users_of(&s, j, x).ok())
                .flat_map(|m| m.into_keys())
                .collect();
            for (user, (got, _)) in &r.users {
                if explicit.contains_key(user) {
                    continue;
                }
                prop_assert!(!taken.contains(user));
                let best = rules
                    .iter()
                    .enumerate()
                    .filter(|(i, (_, src))| {
                        users_of(&s, *i, src).is_ok_and(|m| m.contains_key(user))
                    })
                    .map(|(_, (role, _))| *role)
                    .min();
                prop_assert_eq!(Some(*got), best);
            }
            prop_assert_eq!(r.sizes.len(), rules.len());
        }
    }
}
