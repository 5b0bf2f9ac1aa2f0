//! Reading the portal's company structure (`crate::structure::Structure`): every department
//! (`department.get`, scope `department`) and every user (`user.get`, scope `user`,
//! `user_basic` or `user_brief`), for membership rules that follow departments.
//!
//! What is asked (rules §1.1, §1.5; reference §2.1):
//! - `department.get?sort=ID&order=ASC&start=N`: no filter, so every department whose every
//!   ancestor is active (the portal adds `GLOBAL_ACTIVE`); IDs ascending rather than the
//!   default tree order, so a department created while the pages are read lands at the end.
//!   Lower-case `start` (the only one the server pages by), legacy navigation: page =
//!   ⌊start/50⌋+1, `total` and `next`.
//! - `user.get?start=N`: no filter, IDs ascending (the default). `user.get` never adds an
//!   `ACTIVE` filter of its own and `USER_TYPE` takes one value, so no filter is what gives
//!   employees and extranet users, active and dismissed alike (bots, e-mail and Open Lines
//!   users are never returned: `REAL_USER`). The rules need dismissed users to tell a
//!   declared user is inactive. ORM navigation: `start` is an offset, `next = start + count`.
//!   `UF_DEPARTMENT` is read however it comes (an array of ints or strings, a bare ID, or
//!   absent, `null`, `[]` or `false` for a user without departments: rules §8.1); `EMAIL` only
//!   with a scope that shows it.
//!
//! Requests, every one a `batch` through the client's pacing, retries and breaker: the first
//! page of both lists in one request (their `total`s say how many pages there are), then every
//! other page of both at once, 50 commands a request: 1 + ⌈(P_d + P_u − 2)/50⌉ for P_d = ⌈D/50⌉
//! and P_u = ⌈U/50⌉ pages ([`requests`]), never more than ⌈D/2,500⌉ + ⌈U/2,500⌉ + 1 — inside
//! the bound of + 2 ([`bound`]). Should a list's last page still say `next` (rows
//! created meanwhile), the pages from there are read one by one. What `start` past the end
//! returns (an empty page or the last one again) is UNCONFIRMED: both are taken, rows being
//! kept once by ID.
//!
//! Not read-ahead: sending guessed pages in the first request could save one request on big
//! portals but would spend up to 48 commands of operating time on small ones.

use std::collections::BTreeMap;

use serde_json::Value;
use tracing::debug;

use super::lookup::{PAGE, person, user_page};
use super::wire::{self, Command};
use super::{Answers, BATCH_MAX, Client};
use crate::model::{GroupId, UserId};
use crate::provider::{CancellationToken, FetchError};
use crate::structure::{Department, Employee, Structure};

/// Rounds of pages followed one by one after the counted ones: a guard against a portal whose
/// `next` never ends.
const MAX_EXTRA_PAGES: usize = 400;

/// The two lists the structure is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum List {
    Departments,
    Users,
}

impl List {
    fn page(self, start: u64) -> Command {
        match self {
            List::Departments => Command::new("department.get")
                .param("sort", "ID")
                .param("order", "ASC")
                .param("start", start),
            List::Users => user_page(start as usize),
        }
    }

    /// Advice when the portal refuses the method for these credentials.
    fn scope(self) -> &'static str {
        match self {
            List::Departments => {
                "may not read the company structure (department.get needs the `department` scope)"
            }
            List::Users => {
                "may not list users (user.get needs the `user`, `user_basic` or `user_brief` scope)"
            }
        }
    }
}

/// Requests [`Client::structure`] sends for a portal of `departments` departments and `users`
/// users (visible to the caller) when nothing changes while it reads.
pub fn requests(departments: u64, users: u64) -> usize {
    let pages =
        |rows: u64| usize::try_from(rows.div_ceil(PAGE as u64).max(1)).unwrap_or(usize::MAX);
    let rest = pages(departments) - 1 + pages(users) - 1;
    1 + rest.div_ceil(BATCH_MAX)
}

/// The bound for reading the structure: ⌈D/2,500⌉ + ⌈U/2,500⌉ + 2.
pub fn bound(departments: u64, users: u64) -> usize {
    let per_request = (PAGE * BATCH_MAX) as u64;
    let n = |rows: u64| usize::try_from(rows.div_ceil(per_request)).unwrap_or(usize::MAX);
    n(departments) + n(users) + 2
}

/// What has been read of the two lists.
#[derive(Default)]
struct Read {
    departments: BTreeMap<u64, Department>,
    users: BTreeMap<UserId, Employee>,
    failed: Vec<String>,
}

impl Client {
    /// The portal's departments and users (see the module for what is asked and how many
    /// requests it takes). A refused method is an error naming the scope it needs; a failed
    /// page fails the read, since a structure missing a page would drop members silently.
    pub async fn structure(&self) -> Result<Structure, FetchError> {
        let mut read = Read::default();
        let lists = [List::Departments, List::Users];
        let first = self.pages(lists.iter().map(|l| (*l, 0)).collect()).await;
        let mut more: Vec<(List, u64)> = Vec::new();
        // Per list: where its counted pages end, or where to follow `next` from.
        let mut follow: Vec<(List, u64)> = Vec::new();
        let mut ends: Vec<(List, u64)> = Vec::new();
        for ((list, _), answers) in lists.iter().map(|l| (*l, 0)).zip(&first) {
            self.take(list, answers, &mut read);
            let Some(next) = answers.next else { continue };
            match answers.total {
                Some(total) => {
                    let pages = total.div_ceil(PAGE as u64).max(1);
                    more.extend((1..pages).map(|i| (list, i * PAGE as u64)));
                    ends.push((list, pages * PAGE as u64));
                    if pages == 1 {
                        // One page by `total`, yet `next`: rows created meanwhile.
                        follow.push((list, next));
                    }
                }
                None => follow.push((list, next)),
            }
        }
        self.check(&mut read)?;
        if !more.is_empty() {
            let answers = self.pages(more.clone()).await;
            // The last counted page of each list: still `next` means rows created meanwhile.
            let mut last: BTreeMap<List, (u64, Option<u64>)> = BTreeMap::new();
            for ((list, start), a) in more.iter().zip(&answers) {
                self.take(*list, a, &mut read);
                if last.get(list).is_none_or(|(s, _)| s < start) {
                    last.insert(*list, (*start, a.next));
                }
            }
            for (list, end) in &ends {
                if let Some((_, Some(next))) = last.get(list)
                    && *next >= *end
                {
                    follow.push((*list, *next));
                }
            }
            self.check(&mut read)?;
        }
        let mut extra = 0;
        while !follow.is_empty() {
            extra += 1;
            if extra > MAX_EXTRA_PAGES {
                return Err(FetchError::Lookup(vec![format!(
                    "the portal still said there were more departments or users after {} and {} rows",
                    read.departments.len(),
                    read.users.len()
                )]));
            }
            let answers = self.pages(follow.clone()).await;
            let mut again = Vec::new();
            for ((list, start), a) in follow.iter().zip(&answers) {
                self.take(*list, a, &mut read);
                // Only forward: a portal answering the last page again says no `next` then.
                if let Some(next) = a.next.filter(|n| n > start) {
                    again.push((*list, next));
                }
            }
            self.check(&mut read)?;
            follow = again;
        }
        debug!(
            departments = read.departments.len(),
            users = read.users.len(),
            "read the company structure"
        );
        Ok(Structure {
            departments: read.departments,
            users: read.users,
        })
    }

    /// One round of pages, 50 commands a request, batches concurrently.
    async fn pages(&self, pages: Vec<(List, u64)>) -> Vec<Answers> {
        let never = CancellationToken::new();
        let cmds: Vec<(Option<GroupId>, Command)> = pages
            .iter()
            .map(|(list, start)| (None, list.page(*start)))
            .collect();
        let weights = vec![0; cmds.len()];
        self.run_all(&cmds, &weights, &|_| {}, &never, false).await
    }

    /// Keep the rows of one page, or why it failed.
    fn take(&self, list: List, answers: &Answers, read: &mut Read) {
        let method = list.page(0).method;
        let Some(v) = answers.got.iter().rev().find_map(|a| a.as_ref().ok()) else {
            let e = match answers.got.last() {
                Some(Err(e)) => e.clone(),
                _ => format!("{method}: no answer"),
            };
            let e = if super::refuses_method(answers.code.as_deref()) {
                format!("{e}: {} {}", self.credentials(), list.scope())
            } else {
                e
            };
            if !read.failed.contains(&e) {
                read.failed.push(e);
            }
            return;
        };
        let got = match list {
            List::Departments => departments_in(v).map(|ds| {
                read.departments.extend(ds.into_iter().map(|d| (d.id, d)));
            }),
            List::Users => employees_in(v).map(|us| {
                read.users.extend(us.into_iter().map(|u| (u.id, u)));
            }),
        };
        if let Err(e) = got {
            read.failed.push(e);
        }
    }

    /// Fail with every failure so far (the run-wide cause once, when the breaker tripped).
    fn check(&self, read: &mut Read) -> Result<(), FetchError> {
        if let Some(cause) = self.unreachable() {
            return Err(FetchError::Lookup(vec![cause.to_owned()]));
        }
        if read.failed.is_empty() {
            Ok(())
        } else {
            Err(FetchError::Lookup(std::mem::take(&mut read.failed)))
        }
    }
}

/// The rows of a page: an array, or an object of rows (PHP arrays).
fn rows<'v>(v: &'v Value, method: &str) -> Result<Vec<&'v Value>, String> {
    match v {
        Value::Array(rows) => Ok(rows.iter().collect()),
        Value::Object(map) => Ok(map.values().collect()),
        other => Err(format!("{method}: expected a list, got {other}")),
    }
}

/// The departments of a `department.get` page. `ID`, `PARENT` and `UF_HEAD` as strings or
/// numbers; `PARENT` and `UF_HEAD` absent (a top-level department, no head), empty or `0`
/// mean none. Rows without a positive ID are skipped.
fn departments_in(v: &Value) -> Result<Vec<Department>, String> {
    let positive = |key: &str, row: &Value| row.get(key).and_then(wire::id).filter(|n| *n > 0);
    Ok(rows(v, "department.get")?
        .into_iter()
        .filter_map(|row| {
            let id = positive("ID", row)?;
            Some(Department {
                id,
                name: row
                    .get("NAME")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                parent: positive("PARENT", row).filter(|p| *p != id),
                head: positive("UF_HEAD", row).map(UserId::Num),
            })
        })
        .collect())
}

/// The users of a `user.get` page, with their departments (see the module for the shapes of
/// `UF_DEPARTMENT`). A user with no department is an extranet user whatever `USER_TYPE` says
/// (that is how the portal computes it).
fn employees_in(v: &Value) -> Result<Vec<Employee>, String> {
    Ok(rows(v, "user.get")?
        .into_iter()
        .filter_map(|row| {
            let p = person(row)?;
            let departments = match row.get("UF_DEPARTMENT") {
                Some(one @ (Value::String(_) | Value::Number(_))) => {
                    wire::id(one).filter(|n| *n > 0).into_iter().collect()
                }
                other => wire::ids(other),
            };
            Some(Employee {
                id: p.id,
                email: p.email,
                name: p.name,
                active: p.active,
                extranet: p.extranet || departments.is_empty(),
                departments,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn department_rows_in_every_shape() {
        let page = json!([
            {"ID": "1", "NAME": "Acme", "SORT": 500, "UF_HEAD": "1"},
            {"ID": 2, "NAME": "Sales", "PARENT": "1", "UF_HEAD": 10},
            {"ID": "3", "NAME": "Odd", "PARENT": "0", "UF_HEAD": ""},
            {"ID": "4", "NAME": "Self", "PARENT": "4"},
            {"ID": "0", "NAME": "Zero"},
            {"NAME": "No ID"},
            {"ID": "5"},
        ]);
        let got = departments_in(&page).unwrap();
        let view: Vec<(u64, &str, Option<u64>, Option<UserId>)> = got
            .iter()
            .map(|d| (d.id, d.name.as_str(), d.parent, d.head))
            .collect();
        assert_eq!(
            view,
            [
                (1, "Acme", None, Some(UserId::Num(1))),
                (2, "Sales", Some(1), Some(UserId::Num(10))),
                (3, "Odd", None, None),
                (4, "Self", None, None),
                (5, "", None, None),
            ]
        );
        assert_eq!(
            departments_in(&json!({"0": {"ID": "9", "NAME": "X"}}))
                .unwrap()
                .len(),
            1
        );
        assert!(departments_in(&json!(true)).is_err());
    }

    #[test]
    fn uf_department_in_every_shape() {
        let page = json!([
            {"ID": "1", "ACTIVE": true, "NAME": "Ada", "LAST_NAME": "Admin", "EMAIL": "ada@example.com", "UF_DEPARTMENT": [1, "2"], "USER_TYPE": "employee"},
            {"ID": "2", "ACTIVE": false, "UF_DEPARTMENT": "7"},
            {"ID": 3, "ACTIVE": "Y", "UF_DEPARTMENT": 8},
            {"ID": "4", "UF_DEPARTMENT": null},
            {"ID": "5", "UF_DEPARTMENT": []},
            {"ID": "6", "UF_DEPARTMENT": false},
            {"ID": "7"},
            {"ID": "8", "UF_DEPARTMENT": [3], "USER_TYPE": "extranet"},
            {"ID": "9", "UF_DEPARTMENT": {"0": 4, "1": "5"}},
        ]);
        let got = employees_in(&page).unwrap();
        let view: Vec<(u64, bool, bool, Vec<u64>)> = got
            .iter()
            .map(|u| {
                (
                    u.id.expect_num(),
                    u.active,
                    u.extranet,
                    u.departments.clone(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (1, true, false, vec![1, 2]),
                (2, false, false, vec![7]),
                (3, true, false, vec![8]),
                (4, true, true, vec![]),
                (5, true, true, vec![]),
                (6, true, true, vec![]),
                (7, true, true, vec![]),
                (8, true, true, vec![3]),
                (9, true, false, vec![4, 5]),
            ]
        );
        assert_eq!(got[0].email.as_deref(), Some("ada@example.com"));
        assert_eq!(got[0].name.as_deref(), Some("Ada Admin"));
        assert!(employees_in(&json!("x")).is_err());
    }

    #[test]
    fn page_commands_use_lower_case_start() {
        assert_eq!(
            List::Departments.page(100).to_cmd(),
            "department.get?sort=ID&order=ASC&start=100"
        );
        assert_eq!(List::Users.page(50).to_cmd(), "user.get?start=50");
    }

    #[test]
    fn requests_stay_inside_the_bound() {
        assert_eq!(requests(8, 9), 1);
        assert_eq!(requests(0, 0), 1);
        assert_eq!(requests(300, 10_000), 6);
        assert_eq!(bound(300, 10_000), 7);
        assert_eq!(requests(2_500, 2_500), 3);
        for d in (0..20_000).step_by(137) {
            for u in (0..60_000).step_by(1_013) {
                let (r, b) = (requests(d, u), bound(d, u));
                // One under the bound at least: the first pages share a request.
                assert!(r < b, "D={d} U={u}: {r} requests, bound {b}");
            }
        }
    }
}
