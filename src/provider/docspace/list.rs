//! Listing the portal's groups for `roster import`: `GET group?count=100&startIndex=…`
//! (reference §1.1; the server's default order, by title), through the client's pacing,
//! concurrency limit and retries like every other read.
//!
//! Requests, for T groups on the portal and P = 100 rows a page (fewer when the portal pages
//! shorter, learnt from the first page): every group costs ⌈T/P⌉, the first page (its `total`
//! says how many more) and then the others at once. The rows are kept once by ID; when the
//! list changed while it was read (a `total` moved, or the rows do not add up), it is read
//! once more, and if it moved again that reading is taken with a warning.
//!
//! Named groups (`Which::Groups`): one reference is looked up directly, by ID
//! (`GET group/{id}?includeMembers=false`, 404: none) or by name (`GET group?filterValue=…`,
//! a substring match on the server, matched exactly here ignoring case). Two or more read the
//! list's first page first, then either the rest of the list (when that is fewer requests
//! than the references left) or the direct lookups.

use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use tracing::{debug, warn};

use super::http::{CallError, Reply, Req, TransportError, TransportKind};
use super::lookup::{PAGE, page_size, pages, take_list};
use super::{Client, MAX_CONCURRENT_READS, wire};
use crate::model::{GroupId, Uuid};
use crate::provider::list::{self, GroupInfo, GroupRef, Which};
use crate::provider::{CancellationToken, FetchError};

/// Why an asked group may be missing.
const UNSEEN: &str = " on the DocSpace portal";

/// One page of the group list.
struct Page {
    rows: Vec<GroupInfo>,
    total: Option<u64>,
    /// Rows on the page as answered, usable or not (to learn the page size).
    answered: usize,
}

impl Client {
    /// The groups `which` names (see the module): each once, by ID ascending. A reference
    /// that matches no group, or several by name, is an error naming it.
    pub async fn list_groups(&self, which: &Which) -> Result<Vec<GroupInfo>, FetchError> {
        let refs = match which {
            Which::All => return Ok(list::all(self.every_group().await?)),
            Which::Groups(refs) => refs,
        };
        let bad: Vec<String> = refs
            .iter()
            .filter_map(|r| match r {
                GroupRef::Id(GroupId::Num(n)) => Some(format!(
                    "group {n}: not a DocSpace group ID (DocSpace IDs are UUIDs)"
                )),
                _ => None,
            })
            .collect();
        if !bad.is_empty() {
            return Err(FetchError::Lookup(bad));
        }
        let found = match refs.len() {
            0 => Vec::new(),
            1 => self.direct(refs).await?,
            n => {
                let first = self.list_page(0, PAGE).await?;
                let total = first.total.unwrap_or(first.answered as u64);
                let size = page_size(first.answered, total);
                let remaining = pages(total, size).saturating_sub(1);
                // Groups asked by ID that are all on the first page need nothing more (a name
                // might match another group further on).
                let known = refs.iter().all(|r| matches!(r, GroupRef::Id(_)))
                    && list::pick(refs, &first.rows, UNSEEN).is_ok();
                debug!(
                    total,
                    remaining,
                    refs = n,
                    "groups: the list or direct lookups"
                );
                if remaining == 0 || known {
                    first.rows
                } else if take_list(remaining, n) {
                    self.every_group().await?
                } else {
                    self.direct(refs).await?
                }
            }
        };
        list::pick(refs, &found, UNSEEN).map_err(FetchError::Lookup)
    }

    /// Every group, read once more if the list changed meanwhile (see the module).
    async fn every_group(&self) -> Result<Vec<GroupInfo>, FetchError> {
        let (rows, steady) = self.read_list().await?;
        if steady {
            return Ok(rows);
        }
        debug!("the group list changed while it was read; reading it again");
        let (rows, steady) = self.read_list().await?;
        if !steady {
            warn!(
                "the DocSpace group list changed while it was read, twice: groups created or renamed meanwhile may be missing"
            );
        }
        Ok(rows)
    }

    /// The whole list, and whether it held still: every `total` the same, and the rows (once
    /// by ID) as many.
    async fn read_list(&self) -> Result<(Vec<GroupInfo>, bool), FetchError> {
        let first = self.list_page(0, PAGE).await?;
        let Some(total) = first
            .total
            .or_else(|| (first.answered < PAGE).then_some(first.answered as u64))
        else {
            return Err(FetchError::Lookup(vec![
                "GET group: the answer has no `total`, so roster cannot tell how many groups there are".into(),
            ]));
        };
        let size = page_size(first.answered, total);
        let remaining = pages(total, size).saturating_sub(1);
        let reqs = (1..=remaining).map(|p| self.list_page(p * size as u64, size));
        let more: Vec<Result<Page, FetchError>> =
            stream::iter(reqs).buffered(self.fanout()).collect().await;
        let mut steady = first.total.is_none_or(|t| t == total);
        let mut rows = first.rows;
        for page in more {
            let page = page?;
            steady &= page.total.is_none_or(|t| t == total);
            rows.extend(page.rows);
        }
        let rows = list::all(rows);
        steady &= rows.len() as u64 == total;
        Ok((rows, steady))
    }

    /// Each reference looked up on its own, concurrently: the groups found.
    async fn direct(&self, refs: &[GroupRef]) -> Result<Vec<GroupInfo>, FetchError> {
        let lookups = refs.iter().map(|r| async move {
            match r {
                GroupRef::Id(id) => match id.uuid() {
                    Some(u) => self.group_by_id(u).await.map(|g| g.into_iter().collect()),
                    None => Ok(Vec::new()),
                },
                GroupRef::Name(name) => self.groups_containing_name(name).await,
            }
        });
        let got: Vec<Result<Vec<GroupInfo>, String>> = stream::iter(lookups)
            .buffered(self.fanout())
            .collect()
            .await;
        let mut found = Vec::new();
        let mut failed = Vec::new();
        for g in got {
            match g {
                Ok(rows) => found.extend(rows),
                Err(e) => failed.push(e),
            }
        }
        if let Some(cause) = self.breaker.cause() {
            return Err(FetchError::Lookup(vec![cause.to_owned()]));
        }
        if failed.is_empty() {
            Ok(found)
        } else {
            Err(FetchError::Lookup(failed))
        }
    }

    /// `GET group/{id}?includeMembers=false`: the group, `None` for a 404.
    async fn group_by_id(&self, id: Uuid) -> Result<Option<GroupInfo>, String> {
        let req = Req::get(format!("group/{id}")).query("includeMembers", "false");
        let (result, _) = self.call(&req, &CancellationToken::new(), false).await;
        match result {
            Ok(reply) => {
                let response = reply
                    .response()
                    .ok_or_else(|| format!("{}: the answer has no group", req.shown()))?;
                let g = wire::group(response).map_err(|e| format!("{}: {e}", req.shown()))?;
                match (g.id, g.name) {
                    (Some(got), _) if got != id => Err(format!(
                        "{}: the answer is group {got}, not {id}",
                        req.shown()
                    )),
                    (_, Some(name)) => Ok(Some(GroupInfo {
                        id: GroupId::Uuid(id),
                        name,
                        project: None,
                    })),
                    (_, None) => Err(format!("{}: the answer has no name", req.shown())),
                }
            }
            Err(CallError::Api(e)) if e.status == 404 => Ok(None),
            Err(e) => Err(self.list_refused(&req, e)),
        }
    }

    /// `GET group?filterValue=NAME`, every page: the groups whose name contains `name`.
    async fn groups_containing_name(&self, name: &str) -> Result<Vec<GroupInfo>, String> {
        let page = |start: u64, size: usize| {
            Req::get("group")
                .query("count", size)
                .query("startIndex", start)
                .query("filterValue", name)
        };
        let first = self.page_of(page(0, PAGE)).await?;
        let mut rows = first.rows;
        if let Some(total) = first.total {
            let size = page_size(first.answered, total);
            let remaining = pages(total, size).saturating_sub(1);
            for p in 1..=remaining {
                rows.extend(self.page_of(page(p * size as u64, size)).await?.rows);
            }
        }
        Ok(rows)
    }

    /// A page of the whole list.
    async fn list_page(&self, start: u64, size: usize) -> Result<Page, FetchError> {
        let req = Req::get("group")
            .query("count", size)
            .query("startIndex", start);
        self.page_of(req)
            .await
            .map_err(|e| FetchError::Lookup(vec![self.breaker.cause().map_or(e, str::to_owned)]))
    }

    /// One page of a group list.
    async fn page_of(&self, req: Req) -> Result<Page, String> {
        let (result, _) = self.call(&req, &CancellationToken::new(), false).await;
        match result {
            Ok(Reply::Envelope(wire::Envelope {
                response: Value::Array(rows),
                total,
            })) => {
                let answered = rows.len();
                let rows = wire::groups(&Value::Array(rows))
                    .map_err(|e| format!("{}: {e}", req.shown()))?;
                Ok(Page {
                    rows: rows
                        .into_iter()
                        .map(|(id, name)| GroupInfo {
                            id: GroupId::Uuid(id),
                            name,
                            project: None,
                        })
                        .collect(),
                    total,
                    answered,
                })
            }
            Ok(_) => Err(CallError::Transport(TransportError {
                request: req.shown(),
                status: Some(200),
                detail: "the answer is not a list".into(),
                kind: TransportKind::BadAnswer,
            })
            .to_string()),
            Err(e) => Err(self.list_refused(&req, e)),
        }
    }

    /// A failed list request, said with the likely cause of a 403.
    fn list_refused(&self, req: &Req, e: CallError) -> String {
        match &e {
            CallError::Api(a) if a.status == 403 => format!(
                "{}: {} may not list groups ({})",
                req.shown(),
                self.auth.whose(),
                self.forbidden(a, "accounts:read")
            ),
            _ => e.to_string(),
        }
    }

    fn fanout(&self) -> usize {
        self.options.concurrent_reads.clamp(1, MAX_CONCURRENT_READS)
    }
}
