//! A portal's company structure: its departments (a tree by `parent`) and its users with the
//! departments they belong to, as plain data, with the pure questions membership rules ask of
//! it (a department's subtree, members and heads; departments by name; a department's path).
//! No I/O here: a provider reads it (Bitrix24: `provider::bitrix24::structure`), this module
//! only answers from what was read.
//!
//! Bad data never loops: a `parent` chain that comes back on itself ends where it would
//! repeat, and a `parent` naming no department read makes that department a root.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::UserId;

/// One department (Bitrix24 `department.get`: `ID`, `NAME`, `PARENT`, `UF_HEAD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Department {
    pub id: u64,
    pub name: String,
    /// `None` for a top-level department.
    pub parent: Option<u64>,
    /// The department's head (`UF_HEAD`), who need not be among its members.
    pub head: Option<UserId>,
}

/// One user of the portal, active or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Employee {
    pub id: UserId,
    pub email: Option<String>,
    pub name: Option<String>,
    /// `false` for a dismissed user.
    pub active: bool,
    /// An extranet user (`USER_TYPE` `extranet`, or no department at all): never a member
    /// of a department.
    pub extranet: bool,
    /// `UF_DEPARTMENT`: the departments the user belongs to directly, as the portal listed
    /// them (possibly departments the portal does not show, such as one below an inactive
    /// department).
    pub departments: Vec<u64>,
}

impl Employee {
    /// An active intranet user: someone a department rule may count.
    pub fn counts(&self) -> bool {
        self.active && !self.extranet
    }
}

/// Departments by ID and users by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Structure {
    pub departments: BTreeMap<u64, Department>,
    pub users: BTreeMap<UserId, Employee>,
}

impl Structure {
    /// The department `id` and every department below it, in pre-order (a parent before its
    /// children, siblings by ID). Empty when there is no such department.
    pub fn subtree(&self, id: u64) -> Vec<u64> {
        if !self.departments.contains_key(&id) {
            return Vec::new();
        }
        let children = self.children();
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(d) = stack.pop() {
            if !seen.insert(d) {
                continue;
            }
            out.push(d);
            if let Some(kids) = children.get(&d) {
                // Reversed onto the stack, so the lowest ID comes off first.
                stack.extend(kids.iter().rev().filter(|k| !seen.contains(k)));
            }
        }
        out
    }

    /// Each department's direct children, by ID. A department that is its own parent is no
    /// child of itself.
    fn children(&self) -> BTreeMap<u64, Vec<u64>> {
        let mut children: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for d in self.departments.values() {
            if let Some(p) = d.parent.filter(|p| *p != d.id) {
                children.entry(p).or_default().push(d.id);
            }
        }
        children
    }

    /// The departments named exactly `name`, ignoring case (as the portal's `NAME` filter, a
    /// `LIKE` without wildcards, matches), by ID. `%` and `_` are plain characters here.
    pub fn by_name(&self, name: &str) -> Vec<u64> {
        let wanted = name.to_lowercase();
        self.departments
            .values()
            .filter(|d| d.name.to_lowercase() == wanted)
            .map(|d| d.id)
            .collect()
    }

    /// The names from the top-level department down to `id` ("Acme", "Sales", "Sales EU"),
    /// for saying where a rule's members come from. Empty when there is no such department;
    /// a cycle ends where it would repeat.
    pub fn path(&self, id: u64) -> Vec<String> {
        let mut names = Vec::new();
        let mut seen = BTreeSet::new();
        let mut at = Some(id);
        while let Some(d) = at.and_then(|a| self.departments.get(&a)) {
            if !seen.insert(d.id) {
                break;
            }
            names.push(d.name.clone());
            at = d.parent;
        }
        names.reverse();
        names
    }

    /// The departments a rule on `id` covers: `id` alone, or with `include_sub` its subtree.
    fn covered(&self, id: u64, include_sub: bool) -> BTreeSet<u64> {
        if include_sub {
            self.subtree(id).into_iter().collect()
        } else if self.departments.contains_key(&id) {
            BTreeSet::from([id])
        } else {
            BTreeSet::new()
        }
    }

    /// The active intranet users who belong to `id` (with `include_sub`, to it or any
    /// department below it) by their own `UF_DEPARTMENT`. Heads are not added: see
    /// [`Structure::heads`].
    pub fn members(&self, id: u64, include_sub: bool) -> BTreeSet<UserId> {
        let covered = self.covered(id, include_sub);
        if covered.is_empty() {
            return BTreeSet::new();
        }
        self.users
            .values()
            .filter(|u| u.counts() && u.departments.iter().any(|d| covered.contains(d)))
            .map(|u| u.id)
            .collect()
    }

    /// The heads (`UF_HEAD`) of `id` (with `include_sub`, of it and every department below
    /// it) who are active users of the portal. A head the user list does not show is left
    /// out: nothing says they are active.
    pub fn heads(&self, id: u64, include_sub: bool) -> BTreeSet<UserId> {
        self.covered(id, include_sub)
            .iter()
            .filter_map(|d| self.departments.get(d)?.head)
            .filter(|h| self.users.get(h).is_some_and(|u| u.active))
            .collect()
    }

    /// Every active intranet user.
    pub fn all_employees(&self) -> BTreeSet<UserId> {
        self.users
            .values()
            .filter(|u| u.counts())
            .map(|u| u.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn dept(id: u64, name: &str, parent: Option<u64>, head: Option<u64>) -> Department {
        Department {
            id,
            name: name.to_owned(),
            parent,
            head: head.map(UserId::Num),
        }
    }

    fn user(id: u64, departments: &[u64], active: bool, extranet: bool) -> Employee {
        Employee {
            id: UserId::Num(id),
            email: None,
            name: None,
            active,
            extranet: extranet || departments.is_empty(),
            departments: departments.to_vec(),
        }
    }

    fn structure(depts: Vec<Department>, users: Vec<Employee>) -> Structure {
        Structure {
            departments: depts.into_iter().map(|d| (d.id, d)).collect(),
            users: users.into_iter().map(|u| (u.id, u)).collect(),
        }
    }

    /// The example portal's structure (examples/sandbox-departments.yaml) as read: Legacy (7)
    /// and Legacy Support (8) hidden, Hal (40) still listing 8.
    fn acme() -> Structure {
        structure(
            vec![
                dept(1, "Acme", None, Some(1)),
                dept(2, "Sales", Some(1), Some(10)),
                dept(3, "Engineering", Some(1), Some(22)),
                dept(4, "Sales EU", Some(2), Some(21)),
                dept(5, "Sales US", Some(2), None),
                dept(6, "Platform", Some(3), None),
            ],
            vec![
                user(1, &[1], true, false),
                user(10, &[2], true, false),
                user(21, &[4], true, false),
                user(22, &[3], true, false),
                user(23, &[6], true, false),
                user(30, &[4, 5], true, false),
                user(31, &[], true, true),
                user(40, &[8], true, false),
                user(50, &[2], false, false),
            ],
        )
    }

    fn ids(xs: &[u64]) -> BTreeSet<UserId> {
        xs.iter().copied().map(UserId::Num).collect()
    }

    #[test]
    fn subtrees_are_pre_order_with_siblings_by_id() {
        let s = acme();
        for (id, want) in [
            (1, vec![1, 2, 4, 5, 3, 6]),
            (2, vec![2, 4, 5]),
            (3, vec![3, 6]),
            (5, vec![5]),
            (7, vec![]),
            (99, vec![]),
        ] {
            assert_eq!(s.subtree(id), want, "subtree({id})");
        }
    }

    #[test]
    fn cycles_and_self_parents_do_not_loop() {
        let s = structure(
            vec![
                dept(1, "A", Some(2), None),
                dept(2, "B", Some(1), None),
                dept(3, "C", Some(3), None),
                dept(4, "D", Some(1), None),
            ],
            vec![user(5, &[2], true, false), user(6, &[3], true, false)],
        );
        assert_eq!(s.subtree(1), [1, 2, 4]);
        assert_eq!(s.subtree(2), [2, 1, 4]);
        assert_eq!(s.subtree(3), [3]);
        assert_eq!(s.path(4), ["B", "A", "D"]);
        assert_eq!(s.path(3), ["C"]);
        assert_eq!(s.members(4, true), ids(&[]));
        assert_eq!(s.members(1, true), ids(&[5]));
        assert_eq!(s.members(3, true), ids(&[6]));
    }

    #[test]
    fn names_match_exactly_ignoring_case() {
        let mut s = acme();
        s.departments.insert(9, dept(9, "SALES", Some(3), None));
        s.departments.insert(10, dept(10, "Sales_", Some(3), None));
        assert_eq!(s.by_name("sales"), [2, 9]);
        assert_eq!(s.by_name("Sales EU"), [4]);
        assert_eq!(s.by_name("Sales%"), Vec::<u64>::new());
        assert_eq!(s.by_name("Sales_"), [10]);
        assert_eq!(s.by_name("Sale"), Vec::<u64>::new());
        assert_eq!(s.by_name(""), Vec::<u64>::new());
    }

    #[test]
    fn paths_run_from_the_root() {
        let s = acme();
        assert_eq!(s.path(4), ["Acme", "Sales", "Sales EU"]);
        assert_eq!(s.path(1), ["Acme"]);
        assert!(s.path(8).is_empty());
        // A parent that was not read (hidden): the path starts at the first one known.
        let orphan = structure(vec![dept(9, "Orphan", Some(77), None)], vec![]);
        assert_eq!(orphan.path(9), ["Orphan"]);
        assert_eq!(orphan.subtree(9), [9]);
    }

    #[test]
    fn members_are_active_intranet_users_of_the_departments() {
        let s = acme();
        for (id, sub, want) in [
            (2, false, vec![10]),
            (2, true, vec![10, 21, 30]),
            (4, false, vec![21, 30]),
            (5, false, vec![30]),
            (1, false, vec![1]),
            (1, true, vec![1, 10, 21, 22, 23, 30]),
            (3, true, vec![22, 23]),
            // Hidden departments have no members, though Hal lists 8.
            (8, true, vec![]),
            (99, true, vec![]),
        ] {
            assert_eq!(s.members(id, sub), ids(&want), "members({id}, {sub})");
        }
    }

    #[test]
    fn extranet_users_are_never_members() {
        let mut s = acme();
        // USER_TYPE extranet although UF_DEPARTMENT names a department.
        s.users.insert(UserId::Num(60), user(60, &[2], true, true));
        assert_eq!(s.members(2, false), ids(&[10]));
        assert!(!s.all_employees().contains(&UserId::Num(60)));
    }

    #[test]
    fn heads_are_active_users_only() {
        let mut s = acme();
        assert_eq!(s.heads(2, false), ids(&[10]));
        assert_eq!(s.heads(2, true), ids(&[10, 21]));
        assert_eq!(s.heads(1, true), ids(&[1, 10, 21, 22]));
        assert_eq!(s.heads(5, true), ids(&[]));
        // A dismissed head, and a head the user list does not show.
        s.departments.get_mut(&4).unwrap().head = Some(UserId::Num(50));
        s.departments.get_mut(&5).unwrap().head = Some(UserId::Num(777));
        assert_eq!(s.heads(2, true), ids(&[10]));
        // An extranet head still heads.
        s.departments.get_mut(&6).unwrap().head = Some(UserId::Num(31));
        assert_eq!(s.heads(3, true), ids(&[22, 31]));
    }

    #[test]
    fn all_employees_leaves_out_dismissed_and_extranet_users() {
        assert_eq!(acme().all_employees(), ids(&[1, 10, 21, 22, 23, 30, 40]));
        assert!(Structure::default().all_employees().is_empty());
    }

    /// A random forest: department `i` (1-based) has a parent among `1..i` or none, so it is
    /// acyclic; users belong to random departments (some to none, some to unknown ones).
    fn forest() -> impl Strategy<Value = Structure> {
        (1usize..40)
            .prop_flat_map(|n| {
                let parents = proptest::collection::vec(
                    proptest::option::of(any::<prop::sample::Index>()),
                    n,
                );
                let users = proptest::collection::vec(
                    (
                        proptest::collection::vec(1u64..(n as u64 + 3), 0..3),
                        any::<bool>(),
                        any::<bool>(),
                    ),
                    0..60,
                );
                (parents, users)
            })
            .prop_map(|(parents, users)| {
                let depts = parents
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let id = i as u64 + 1;
                        let parent = p.filter(|_| i > 0).map(|ix| ix.index(i) as u64 + 1);
                        dept(id, &format!("D{id}"), parent, None)
                    })
                    .collect();
                let users = users
                    .iter()
                    .enumerate()
                    .map(|(i, (ds, active, extranet))| user(i as u64 + 1, ds, *active, *extranet))
                    .collect();
                structure(depts, users)
            })
    }

    /// Whether `a` is `d` or above it, by walking parents (acyclic input).
    fn is_ancestor(s: &Structure, a: u64, mut d: u64) -> bool {
        loop {
            if a == d {
                return true;
            }
            match s.departments.get(&d).and_then(|x| x.parent) {
                Some(p) => d = p,
                None => return false,
            }
        }
    }

    proptest! {
        #[test]
        fn subtree_is_exactly_the_descendants_in_pre_order(s in forest()) {
            for &root in s.departments.keys() {
                let sub = s.subtree(root);
                let want: BTreeSet<u64> = s.departments.keys().copied().filter(|d| is_ancestor(&s, root, *d)).collect();
                let got: BTreeSet<u64> = sub.iter().copied().collect();
                prop_assert_eq!(got.len(), sub.len(), "no repeats");
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(sub[0], root);
                // Pre-order: every department comes after its parent.
                for (i, d) in sub.iter().enumerate().skip(1) {
                    let p = s.departments[d].parent.unwrap();
                    prop_assert!(sub[..i].contains(&p));
                }
                // Path ends with the department and has one name per level.
                let path = s.path(root);
                prop_assert_eq!(path.last(), Some(&s.departments[&root].name));
            }
        }

        #[test]
        fn members_are_the_union_over_the_subtree(s in forest()) {
            for &root in s.departments.keys() {
                let mut union = BTreeSet::new();
                for d in s.subtree(root) {
                    union.extend(s.members(d, false));
                }
                prop_assert_eq!(&s.members(root, true), &union);
                let all = s.all_employees();
                prop_assert!(s.members(root, true).is_subset(&all));
                for u in s.members(root, false) {
                    let e = &s.users[&u];
                    prop_assert!(e.active && !e.extranet && e.departments.contains(&root));
                }
            }
        }

        #[test]
        fn bad_parents_never_loop(parents in proptest::collection::vec(0u64..12, 1..12)) {
            // Any parent pointer at all, cycles included.
            let s = structure(
                parents.iter().enumerate().map(|(i, p)| dept(i as u64 + 1, "x", Some(*p), None)).collect(),
                vec![],
            );
            for &d in s.departments.keys() {
                let sub = s.subtree(d);
                prop_assert!(sub.len() <= s.departments.len());
                prop_assert!(s.path(d).len() <= s.departments.len());
            }
        }
    }
}
