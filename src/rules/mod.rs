//! Membership rules resolved against a company structure (issue 10, the pure part): which
//! users a group's rules give, with which role, and why. Not yet reachable from the file
//! format: the spec and the shell call this once rules are parsed (ARCHITECTURE.md, "Where
//! future work fits").
//!
//! A group lists explicit users and rules under `moderators:` and `members:`. Rules give the
//! active intranet users of a department (and its sub-departments, by default), the heads of
//! one, or every employee; `except:` takes users or rules away from what rules gave. A user
//! reached by several rules gets the highest role of them; an explicit entry always wins,
//! with its own role, and `except:` never removes it. Every user keeps the reasons that gave
//! them (`department "Sales" › "Sales EU"`), for the plan to show.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Role, UserId};
use crate::structure::Structure;

/// A department as a rule names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeptRef {
    Id(u64),
    /// Its exact name, ignoring case (as `department.get`'s NAME filter matches).
    Name(String),
}

/// Where a rule's users come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The active intranet users of a department (`include_sub`: and of every department
    /// below it).
    Department { dept: DeptRef, include_sub: bool },
    /// The heads (UF_HEAD) of a department (`include_sub`: and of those below it), if active.
    DepartmentHeads { dept: DeptRef, include_sub: bool },
    /// Every active intranet user (not extranet).
    AllEmployees,
    /// One user, as `except:` names them.
    User(UserId),
}

/// Why a user is in a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Listed in the file.
    Explicit,
    /// A member of the department with this path (from the top): the first department of
    /// the rule's subtree the user is in.
    Department {
        path: Vec<String>,
    },
    /// The head of the department with this path.
    Head {
        path: Vec<String>,
    },
    AllEmployees,
}

impl std::fmt::Display for Reason {
    /// `listed`, `department "Sales" › "Sales EU"`, `head of "Sales"`, `all employees`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = |p: &[String]| {
            p.iter()
                .map(|n| format!("\"{}\"", crate::spec::escape(n)))
                .collect::<Vec<_>>()
                .join(" › ")
        };
        match self {
            Reason::Explicit => f.write_str("listed"),
            Reason::Department { path: p } => write!(f, "department {}", path(p)),
            Reason::Head { path: p } => write!(f, "head of {}", path(p)),
            Reason::AllEmployees => f.write_str("all employees"),
        }
    }
}

/// A problem with one rule, by its index in the rules given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The department is not on the portal (or hidden: inactive, or below an inactive one).
    NoSuchDepartment { rule: usize, dept: DeptRef },
    /// Several departments have that name: their IDs.
    AmbiguousDepartment {
        rule: usize,
        name: String,
        ids: Vec<u64>,
    },
}

/// What a group's rules and explicit entries give.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Each user with their role and every reason, sorted.
    pub users: BTreeMap<UserId, (Role, BTreeSet<Reason>)>,
    /// Rules (by index) that resolved to nobody: a warning, and what the removal guard
    /// should name when a rule suddenly empties.
    pub empty: Vec<usize>,
    /// How many users each rule gave before `except:` (by index), for the guard's message.
    pub sizes: Vec<usize>,
    /// Rules that cannot be resolved: errors. A group with any is not planned.
    pub problems: Vec<Problem>,
}

fn find(structure: &Structure, rule: usize, dept: &DeptRef) -> Result<u64, Problem> {
    match dept {
        DeptRef::Id(id) if structure.departments.contains_key(id) => Ok(*id),
        DeptRef::Id(_) => Err(Problem::NoSuchDepartment {
            rule,
            dept: dept.clone(),
        }),
        DeptRef::Name(name) => match structure.by_name(name).as_slice() {
            [one] => Ok(*one),
            [] => Err(Problem::NoSuchDepartment {
                rule,
                dept: dept.clone(),
            }),
            many => Err(Problem::AmbiguousDepartment {
                rule,
                name: name.clone(),
                ids: many.to_vec(),
            }),
        },
    }
}

/// The users a source gives, each with its reason. Problems for a missing or ambiguous
/// department.
fn users_of(
    structure: &Structure,
    rule: usize,
    source: &Source,
) -> Result<BTreeMap<UserId, Reason>, Problem> {
    let mut out = BTreeMap::new();
    match source {
        Source::Department { dept, include_sub } => {
            let top = find(structure, rule, dept)?;
            let depts: Vec<u64> = if *include_sub {
                structure.subtree(top)
            } else {
                vec![top]
            };
            // Each user under the first of their departments in the subtree's order (the
            // department itself before those below it).
            for d in &depts {
                for u in structure.members(*d, false) {
                    out.entry(u).or_insert_with(|| Reason::Department {
                        path: structure.path(*d),
                    });
                }
            }
        }
        Source::DepartmentHeads { dept, include_sub } => {
            let top = find(structure, rule, dept)?;
            let depts: Vec<u64> = if *include_sub {
                structure.subtree(top)
            } else {
                vec![top]
            };
            for d in &depts {
                for u in structure.heads(*d, false) {
                    out.entry(u).or_insert_with(|| Reason::Head {
                        path: structure.path(*d),
                    });
                }
            }
        }
        Source::AllEmployees => {
            for u in structure.all_employees() {
                out.insert(u, Reason::AllEmployees);
            }
        }
        Source::User(u) => {
            out.insert(*u, Reason::Explicit);
        }
    }
    Ok(out)
}

/// Resolve a group: `explicit` users with their declared roles, `rules` each with the role
/// of the list it is under, `except` subtracted from what the rules gave (never from the
/// explicit users). Pure.
pub fn resolve(
    structure: &Structure,
    explicit: &BTreeMap<UserId, Role>,
    rules: &[(Role, Source)],
    except: &[Source],
) -> Resolved {
    let mut out = Resolved::default();
    let mut given: BTreeMap<UserId, (Role, BTreeSet<Reason>)> = BTreeMap::new();
    for (i, (role, source)) in rules.iter().enumerate() {
        match users_of(structure, i, source) {
            Ok(users) => {
                out.sizes.push(users.len());
                if users.is_empty() {
                    out.empty.push(i);
                }
                for (u, reason) in users {
                    let entry = given.entry(u).or_insert((*role, BTreeSet::new()));
                    // Roles order from most privileged: the highest is the least.
                    entry.0 = entry.0.min(*role);
                    entry.1.insert(reason);
                }
            }
            Err(p) => {
                out.sizes.push(0);
                out.problems.push(p);
            }
        }
    }
    // `except:` rules are numbered after the group's rules.
    for (j, source) in except.iter().enumerate() {
        match users_of(structure, rules.len() + j, source) {
            Ok(users) => {
                for u in users.keys() {
                    given.remove(u);
                }
            }
            Err(p) => out.problems.push(p),
        }
    }
    for (u, role) in explicit {
        let mut reasons = BTreeSet::new();
        reasons.insert(Reason::Explicit);
        given.insert(*u, (*role, reasons));
    }
    out.users = given;
    out
}

#[cfg(test)]
mod tests;
