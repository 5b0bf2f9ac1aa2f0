//! Listing a portal's groups (for `roster import`): which groups to list ([`Which`]), what is
//! known of each ([`GroupInfo`]), and the pure matching of asked references against what a
//! portal answered ([`pick`]). No I/O here: each provider's `list` module asks its API and
//! hands the rows to [`pick`].

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{GroupId, System, Uuid};

/// Which groups to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// Every group the caller may see (a Bitrix24 admin sees every group).
    All,
    /// These groups, by ID or name; each must exist (and be visible) exactly once.
    Groups(Vec<GroupRef>),
}

/// A group as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupRef {
    Id(GroupId),
    /// Matched ignoring case; a name that matches several groups must match one of them
    /// exactly (case included), as `resolve` does for the file's names.
    Name(String),
}

impl GroupRef {
    /// `--group VALUE` for a portal of `system`: its kind of ID (Bitrix24 digits, a DocSpace
    /// UUID) is an ID, anything else a name.
    pub fn parse(system: System, value: &str) -> GroupRef {
        let v = value.trim();
        let id = match system {
            System::Bitrix24 => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && v.bytes().all(|b| b.is_ascii_digit()))
                .map(GroupId::Num),
            System::DocSpace => Uuid::parse(v).filter(|u| !u.is_nil()).map(GroupId::Uuid),
        };
        id.map_or_else(|| GroupRef::Name(value.to_owned()), GroupRef::Id)
    }
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupRef::Id(id) => write!(f, "group {id}"),
            GroupRef::Name(n) => write!(f, "group {n:?}"),
        }
    }
}

/// A group on the portal, as its list shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupInfo {
    pub id: GroupId,
    pub name: String,
    /// Bitrix24 `PROJECT` (a project rather than a workgroup); `None` on DocSpace or when the
    /// answer does not say.
    pub project: Option<bool>,
}

/// What `refs` name among `found` (the portal's answers for them, or its whole list, in any
/// order, duplicates allowed): each group once, by ID ascending; or one line per reference
/// that matches no group or several (naming the reference and, for several, their IDs).
/// `unseen` is why a group may be missing ("or the webhook's user cannot see it").
pub fn pick(
    refs: &[GroupRef],
    found: &[GroupInfo],
    unseen: &str,
) -> Result<Vec<GroupInfo>, Vec<String>> {
    let by_id: BTreeMap<GroupId, &GroupInfo> = found.iter().map(|g| (g.id, g)).collect();
    let mut picked: BTreeMap<GroupId, GroupInfo> = BTreeMap::new();
    let mut failed = Vec::new();
    for r in refs {
        match r {
            GroupRef::Id(id) => match by_id.get(id) {
                Some(g) => {
                    picked.insert(g.id, (*g).clone());
                }
                None => failed.push(format!("{r}: no such group{unseen}")),
            },
            GroupRef::Name(name) => {
                let wanted = name.to_lowercase();
                let mut same: Vec<&GroupInfo> = by_id
                    .values()
                    .copied()
                    .filter(|g| g.name.to_lowercase() == wanted)
                    .collect();
                if same.len() > 1 && same.iter().any(|g| g.name == *name) {
                    same.retain(|g| g.name == *name);
                }
                match same.as_slice() {
                    [one] => {
                        picked.insert(one.id, (*one).clone());
                    }
                    [] => failed.push(format!("{r}: no group of that name{unseen}")),
                    many => failed.push(format!(
                        "{r}: {} groups have that name ({}); name one by ID",
                        many.len(),
                        many.iter()
                            .map(|g| g.id.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(picked.into_values().collect())
    } else {
        Err(failed)
    }
}

/// Every group of `found` once, by ID ascending (a group read twice, as a page shifted or
/// repeated past the end, keeps its last row).
pub fn all(found: Vec<GroupInfo>) -> Vec<GroupInfo> {
    let by_id: BTreeMap<GroupId, GroupInfo> = found.into_iter().map(|g| (g.id, g)).collect();
    by_id.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(id: u64, name: &str) -> GroupInfo {
        GroupInfo {
            id: GroupId::Num(id),
            name: name.to_owned(),
            project: None,
        }
    }

    fn check(refs: &[GroupRef], found: &[GroupInfo], expected: Result<Vec<u64>, Vec<&str>>) {
        let got = pick(refs, found, ", or hidden").map(|gs| {
            gs.into_iter()
                .map(|g| g.id.expect_num())
                .collect::<Vec<_>>()
        });
        let expected = expected.map_err(|e| e.into_iter().map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(got, expected);
    }

    fn name(n: &str) -> GroupRef {
        GroupRef::Name(n.to_owned())
    }

    fn id(n: u64) -> GroupRef {
        GroupRef::Id(GroupId::Num(n))
    }

    #[test]
    fn picks_by_id_and_name_once_sorted() {
        let found = [g(42, "Sales"), g(15, "Marketing"), g(27, "Engineering")];
        check(
            &[id(42), name("marketing"), id(15)],
            &found,
            Ok(vec![15, 42]),
        );
        check(&[], &found, Ok(vec![]));
        // Duplicate rows (a page read twice) are one group.
        check(
            &[name("Sales")],
            &[g(42, "Sales"), g(42, "Sales")],
            Ok(vec![42]),
        );
    }

    #[test]
    fn unknown_and_ambiguous_references_are_named() {
        let found = [g(1, "Sales"), g(2, "sales"), g(3, "Ops"), g(4, "ops")];
        check(
            &[id(9), name("Nope"), name("OPS"), name("sales")],
            &found,
            Err(vec![
                "group 9: no such group, or hidden",
                "group \"Nope\": no group of that name, or hidden",
                "group \"OPS\": 2 groups have that name (3, 4); name one by ID",
            ]),
        );
        // An exact match wins over the others.
        check(&[name("Sales"), name("ops")], &found, Ok(vec![1, 4]));
    }

    #[test]
    fn parses_ids_by_system() {
        assert_eq!(GroupRef::parse(System::Bitrix24, "42"), id(42));
        assert_eq!(GroupRef::parse(System::Bitrix24, "0"), name("0"));
        assert_eq!(GroupRef::parse(System::Bitrix24, "+42"), name("+42"));
        assert_eq!(GroupRef::parse(System::Bitrix24, "Sales"), name("Sales"));
        let u = "d5000000-0000-4000-8000-000000000015";
        assert_eq!(
            GroupRef::parse(System::DocSpace, u),
            GroupRef::Id(GroupId::Uuid(Uuid::parse(u).unwrap()))
        );
        assert_eq!(GroupRef::parse(System::DocSpace, "42"), name("42"));
    }

    #[test]
    fn all_dedups_by_id() {
        let got = all(vec![g(2, "B"), g(1, "A"), g(2, "B2")]);
        assert_eq!(got, vec![g(1, "A"), g(2, "B2")]);
    }
}
