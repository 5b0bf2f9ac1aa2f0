//! Listing the portal's groups for `roster import`: `sonet_group.get` with `IS_ADMIN=Y`
//! (reference §1.2: an admin then skips the permission check and sees every group, secret
//! ones included; for anyone else the portal ignores it and shows the groups they may see) and
//! `ORDER[ID]=ASC`, so a group created while the pages are read lands at the end.
//!
//! Requests, every one a `batch` through the client's pacing and retries: for every group,
//! the first page (one request, whose `total` says how many pages there are), then the other
//! pages at once by `start` (legacy navigation: page = ⌊start/50⌋+1), 50 commands a request:
//! 1 + ⌈(⌈N/50⌉ − 1)/50⌉ ≤ ⌈N/2,500⌉ + 1 requests for N groups. Should the last page still
//! say `next` (groups created meanwhile), the pages from there are read one by one. What
//! `start` past the end returns (an empty page or the last one again) is UNCONFIRMED: both are
//! taken, rows being kept once by ID, so groups deleted meanwhile cost nothing but a repeat.
//!
//! Named groups (`Which::Groups`): up to 50 references are looked up directly in one request,
//! one command each (`FILTER[ID]`, or `FILTER[=NAME]` matched again here ignoring case);
//! more than that read the whole list and pick from it, which is never dearer.

use serde_json::Value;

use super::lookup::{Ask, Got, PAGE, group_page};
use super::wire::{self, Command};
use super::{BATCH_MAX, Client};
use crate::model::GroupId;
use crate::provider::FetchError;
use crate::provider::list::{self, GroupInfo, GroupRef, Which};

/// Rounds of further pages followed at most after the counted ones: a guard against a
/// portal whose `next` never ends.
const MAX_EXTRA_PAGES: usize = 400;

impl Client {
    /// The groups `which` names (see the module): each once, by ID ascending. A reference
    /// that matches no group the caller can see, or several by name, is an error naming it.
    pub async fn list_groups(&self, which: &Which) -> Result<Vec<GroupInfo>, FetchError> {
        match which {
            Which::All => Ok(list::all(self.every_group().await?)),
            Which::Groups(refs) if refs.len() <= BATCH_MAX => {
                let found = self.named_groups(refs).await?;
                list::pick(refs, &found, &self.unseen()).map_err(FetchError::Lookup)
            }
            Which::Groups(refs) => {
                let found = self.every_group().await?;
                list::pick(refs, &found, &self.unseen()).map_err(FetchError::Lookup)
            }
        }
    }

    /// Why an asked group may not be found.
    fn unseen(&self) -> String {
        let who = match &self.auth {
            super::Auth::Webhook(_) => "the webhook's user",
            super::Auth::OAuth(_) => "the OAuth token's user",
        };
        format!(", or {who} cannot see it (a secret group they are not a member of)")
    }

    /// Every group's row, in page order (duplicates possible; see the module).
    async fn every_group(&self) -> Result<Vec<GroupInfo>, FetchError> {
        let first = self.rows_of(
            self.run_lookups(vec![(Ask::GroupPage, group_page(0))])
                .await,
        )?;
        let mut rows = first.rows;
        let Some(mut start) = first.next else {
            return Ok(rows);
        };
        let mut next = Some(start);
        // Pages 2.. at once by `total`; without one, they are followed one by one.
        if let Some(total) = first.total {
            let pages = usize::try_from(total.div_ceil(PAGE as u64)).unwrap_or(usize::MAX);
            let more: Vec<(Ask, Command)> = (1..pages)
                .map(|i| (Ask::GroupPage, group_page(i * PAGE)))
                .collect();
            if !more.is_empty() {
                let end = (pages * PAGE) as u64;
                let got = self.rows_of(self.run_lookups(more).await)?;
                rows.extend(got.rows);
                // Still more after the last counted page: groups created meanwhile.
                next = got.next.filter(|n| *n >= end);
                start = next.unwrap_or(end);
            }
        }
        let mut extra = 0;
        while next.is_some() {
            extra += 1;
            if extra > MAX_EXTRA_PAGES {
                return Err(FetchError::Lookup(vec![format!(
                    "sonet_group.get: the portal still said there were more groups after {} rows",
                    rows.len()
                )]));
            }
            let got = self.rows_of(
                self.run_lookups(vec![(Ask::GroupPage, group_page(start as usize))])
                    .await,
            )?;
            rows.extend(got.rows);
            // Only forward: a portal answering the last page again says no `next` then.
            next = got.next.filter(|n| *n > start);
            start = next.unwrap_or(start);
        }
        Ok(rows)
    }

    /// The rows answering direct lookups for `refs`: one command each, all in one request.
    async fn named_groups(&self, refs: &[GroupRef]) -> Result<Vec<GroupInfo>, FetchError> {
        let mut cmds = Vec::new();
        let mut failed = Vec::new();
        for r in refs {
            match r {
                GroupRef::Id(GroupId::Num(n)) => cmds.push((
                    Ask::GroupPage,
                    Command::new("sonet_group.get")
                        .param("IS_ADMIN", "Y")
                        .param("FILTER[ID]", n),
                )),
                GroupRef::Id(id) => failed.push(format!(
                    "group {id}: not a Bitrix24 group ID (Bitrix24 IDs are numbers)"
                )),
                GroupRef::Name(name) => cmds.push((
                    Ask::GroupName(name.clone()),
                    Command::new("sonet_group.get")
                        .param("IS_ADMIN", "Y")
                        .param("FILTER[=NAME]", name),
                )),
            }
        }
        if !failed.is_empty() {
            return Err(FetchError::Lookup(failed));
        }
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.rows_of(self.run_lookups(cmds).await)?.rows)
    }

    /// The groups of every page answered, with the last command's `next` and `total`; or
    /// every failure (the run-wide cause once, when the breaker tripped).
    fn rows_of(&self, got: Vec<Got>) -> Result<Rows, FetchError> {
        let mut out = Rows::default();
        let mut failed = Vec::new();
        for g in got {
            match g.pages {
                Ok(pages) => {
                    for page in &pages {
                        match groups_of(page) {
                            Ok(found) => out.rows.extend(found),
                            Err(e) => failed.push(e),
                        }
                    }
                    (out.next, out.total) = (g.next, g.total);
                }
                Err(e) if super::refuses_method(g.code.as_deref()) => failed.push(format!(
                    "{e}: {} may not list groups (it needs the `sonet` scope)",
                    self.credentials()
                )),
                Err(e) => failed.push(e),
            }
        }
        if let Some(cause) = self.unreachable() {
            return Err(FetchError::Lookup(vec![cause.to_owned()]));
        }
        if failed.is_empty() {
            Ok(out)
        } else {
            Err(FetchError::Lookup(failed))
        }
    }
}

/// What a round of `sonet_group.get` commands answered.
#[derive(Default)]
struct Rows {
    rows: Vec<GroupInfo>,
    /// The last command's `next` and `total`.
    next: Option<u64>,
    total: Option<u64>,
}

/// The groups of a `sonet_group.get` page: an array, or an object of rows (PHP arrays). Rows
/// without a positive ID or a name are skipped; `PROJECT` is read when it is a flag.
pub(super) fn groups_of(v: &Value) -> Result<Vec<GroupInfo>, String> {
    let rows: Vec<&Value> = match v {
        Value::Array(rows) => rows.iter().collect(),
        Value::Object(map) => map.values().collect(),
        other => {
            return Err(format!(
                "sonet_group.get: expected a list of groups, got {other}"
            ));
        }
    };
    Ok(rows
        .into_iter()
        .filter_map(|g| {
            let id = g.get("ID").and_then(wire::id).filter(|id| *id > 0)?;
            let name = g.get("NAME").and_then(Value::as_str)?;
            Some(GroupInfo {
                id: GroupId::Num(id),
                name: name.to_owned(),
                project: g.get("PROJECT").and_then(wire::flag),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn groups_of_reads_arrays_and_objects_and_skips_odd_rows() {
        let page = json!([
            {"ID": "15", "NAME": "Marketing", "PROJECT": "N"},
            {"ID": 27, "NAME": "Engineering", "PROJECT": "Y"},
            {"ID": "0", "NAME": "Zero"},
            {"ID": "31"},
            {"ID": "42", "NAME": "Sales"},
        ]);
        let got: Vec<(u64, &str, Option<bool>)> = vec![
            (15, "Marketing", Some(false)),
            (27, "Engineering", Some(true)),
            (42, "Sales", None),
        ];
        let read = groups_of(&page).unwrap();
        let read: Vec<(u64, &str, Option<bool>)> = read
            .iter()
            .map(|g| (g.id.expect_num(), g.name.as_str(), g.project))
            .collect();
        assert_eq!(read, got);
        let object = json!({"0": {"ID": "15", "NAME": "Marketing"}});
        assert_eq!(groups_of(&object).unwrap().len(), 1);
        assert_eq!(groups_of(&json!([])).unwrap(), Vec::new());
        assert!(groups_of(&json!(true)).is_err());
    }
}
