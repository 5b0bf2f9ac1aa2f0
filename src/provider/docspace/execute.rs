//! `Client::execute`: a plan's changes sent group by group (the manager, then one add and one
//! removal request, see `write` for what is sent and how answers are judged), settled by
//! reading groups again, with the reason for every user DocSpace skipped.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::json;
use tracing::info;

use super::http::{CallError, Req};
use super::write::{self, GroupWrites, Miss, Settled, Verdict, Who};
use super::{Client, MAX_CONCURRENT_READS, MAX_CONCURRENT_WRITES, wire};
use crate::model::{GroupId, OpStatus, UserId, Uuid};
use crate::plan::Change;
use crate::provider::{CancellationToken, OnProgress};

impl Client {
    /// Carry out `changes`; one status per change, in input order. `on_progress` counts the
    /// changes finished, adding up to `changes.len()`.
    ///
    /// Per group: the manager change first; then one add request with every added user; then
    /// one removal request with every removed user except the group's manager as last read
    /// (never sent: `NotDone`). Changes about a group's old manager wait for its manager change
    /// to be confirmed, else they are `NotDone` naming it. Invitations, join requests and roles
    /// do not exist on DocSpace: `NotDone`, never sent. Groups run in parallel.
    ///
    /// Every change is judged from the group its request returned; a change without a usable
    /// answer is settled by reading its group again (also after an interrupt). Changes never
    /// sent because `stop` was cancelled are `NotStarted`.
    pub async fn execute(
        &self,
        changes: &[(GroupId, Change)],
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
    ) -> Vec<OpStatus> {
        let plan = write::per_group(changes);
        let mut verdicts: Vec<Option<Verdict>> = vec![None; changes.len()];
        let runs = plan
            .iter()
            .map(|w| self.execute_group(w, changes, on_progress, stop));
        let done: Vec<Vec<(usize, Verdict)>> = stream::iter(runs)
            .buffer_unordered(
                self.options
                    .concurrent_writes
                    .clamp(1, MAX_CONCURRENT_WRITES),
            )
            .collect()
            .await;
        for (i, v) in done.into_iter().flatten() {
            verdicts[i] = Some(v);
        }
        let verdicts: Vec<Verdict> = verdicts
            .into_iter()
            .map(|v| v.expect("every change has a verdict"))
            .collect();

        // Settle what no answer confirmed by reading its group again.
        let recheck: Vec<GroupId> = changes
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| v.needs_reread())
            .map(|((g, _), _)| *g)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut reread: BTreeMap<GroupId, Result<wire::Group, String>> = BTreeMap::new();
        if !recheck.is_empty() {
            // After an interrupt: one attempt a group, all of it within one timeout.
            let hurry = stop.is_cancelled();
            let deadline = CancellationToken::new();
            let timer = hurry.then(|| {
                let (token, after) = (deadline.clone(), self.options.timeout);
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    token.cancel();
                })
            });
            let reads = recheck.iter().map(|g| {
                let deadline = &deadline;
                async move { (*g, self.read_group(*g, deadline, hurry).await) }
            });
            reread = stream::iter(reads)
                .buffer_unordered(self.options.concurrent_reads.clamp(1, MAX_CONCURRENT_READS))
                .collect()
                .await;
            if let Some(t) = timer {
                t.abort();
            }
        }
        let settled: Vec<Settled> = changes
            .iter()
            .zip(verdicts)
            .map(|((g, change), verdict)| {
                let again = verdict.needs_reread();
                let seen = reread
                    .get(g)
                    .filter(|_| again)
                    .map(|r| r.as_ref().map_err(String::as_str));
                let seen = match (again, seen) {
                    (true, None) => Some(Err("not read again")),
                    (_, seen) => seen,
                };
                let s = write::settle(verdict, change, seen);
                if again && s == Settled::Status(OpStatus::Confirmed) {
                    info!(group = %g, user = %change.user(), "change confirmed by reading the group again");
                }
                s
            })
            .collect();

        // Say why the portal skipped whom it skipped.
        let missed: BTreeSet<UserId> = changes
            .iter()
            .zip(&settled)
            .filter(|(_, s)| matches!(s, Settled::Missed(Miss::NotAdded | Miss::NotManager)))
            .map(|((_, c), _)| c.user())
            .collect();
        let who = self.who(&missed, stop).await;
        let statuses = changes
            .iter()
            .zip(settled)
            .map(|((_, change), s)| match s {
                Settled::Status(status) => status,
                Settled::Missed(m) => {
                    let who = who
                        .get(&change.user())
                        .cloned()
                        .unwrap_or(Who::Unread("not looked up".into()));
                    OpStatus::NotDone {
                        reason: write::reason(m, &who),
                    }
                }
            })
            .collect();
        match self.breaker.cause() {
            Some(cause) => write::shorten(statuses, cause),
            None => statuses,
        }
    }

    /// One group's writes, in order; each change's verdict.
    async fn execute_group(
        &self,
        w: &GroupWrites,
        changes: &[(GroupId, Change)],
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
    ) -> Vec<(usize, Verdict)> {
        let mut out: Vec<(usize, Verdict)> = Vec::new();
        let finish = |out: &mut Vec<(usize, Verdict)>, items: Vec<(usize, Verdict)>| {
            if !items.is_empty() {
                on_progress(items.len());
            }
            out.extend(items);
        };
        finish(
            &mut out,
            w.refused
                .iter()
                .map(|(i, s)| (*i, Verdict::Final(s.clone())))
                .collect(),
        );
        // A group with a Bitrix24 ID has every change refused already.
        let Some(id) = w.group.uuid() else {
            return out;
        };

        // The manager first.
        let mut blocked: BTreeMap<Uuid, (Uuid, OpStatus)> = BTreeMap::new();
        for &(i, to, from) in &w.manager {
            let req = Req::with_body(
                Method::PUT,
                format!("group/{id}/manager"),
                json!({ "userId": to.to_string() }),
            );
            let verdict = self.write(&req, id, &[&changes[i].1], stop).await.remove(0);
            if verdict != Verdict::Done
                && let Some(from) = from
            {
                blocked.insert(from, (to, write::provisional(&verdict)));
            }
            finish(&mut out, vec![(i, verdict)]);
        }
        let held = |user: Uuid| {
            blocked
                .get(&user)
                .map(|(to, status)| write::held_back(w.group, *to, status))
        };

        // Then every add, in one request.
        let (held_adds, adds): (Vec<_>, Vec<_>) =
            w.adds.iter().partition(|(_, u)| held(*u).is_some());
        finish(
            &mut out,
            held_adds
                .iter()
                .map(|(i, u)| (*i, Verdict::Final(held(*u).expect("held"))))
                .collect(),
        );
        if !adds.is_empty() {
            let users: Vec<String> = adds.iter().map(|(_, u)| u.to_string()).collect();
            let req = Req::with_body(
                Method::PUT,
                format!("group/{id}/members"),
                json!({ "members": users }),
            );
            let carried: Vec<&Change> = adds.iter().map(|(i, _)| &changes[*i].1).collect();
            let verdicts = self.write(&req, id, &carried, stop).await;
            finish(
                &mut out,
                adds.iter().map(|(i, _)| *i).zip(verdicts).collect(),
            );
        }

        // Then every removal but the manager's, in one request.
        if w.removes.is_empty() {
            return out;
        }
        let mut sendable = Vec::new();
        let mut kept = Vec::new();
        for &(i, u) in &w.removes {
            match held(u) {
                Some(status) => kept.push((i, Verdict::Final(status))),
                None => sendable.push((i, u)),
            }
        }
        if !sendable.is_empty() {
            let manager = match self.known_group(id) {
                Some(g) => Ok(g.manager_id()),
                None if stop.is_cancelled() => Err(None),
                // Never read in this run: read it now, to know its manager.
                None => self
                    .read_group(w.group, stop, false)
                    .await
                    .map(|g| g.manager_id())
                    .map_err(Some),
            };
            match manager {
                Ok(manager) => sendable.retain(|&(i, u)| {
                    let is_manager = manager == Some(u);
                    if is_manager {
                        kept.push((i, Verdict::Final(write::manager_kept(w.group))));
                    }
                    !is_manager
                }),
                Err(why) => {
                    let status = match why {
                        _ if stop.is_cancelled() => OpStatus::NotStarted,
                        Some(e) => OpStatus::Failed {
                            error: format!(
                                "not sent: cannot tell who manages group {} (reading it failed: {e}), and roster never removes a group's manager",
                                w.group
                            ),
                        },
                        None => OpStatus::NotStarted,
                    };
                    kept.extend(
                        sendable
                            .drain(..)
                            .map(|(i, _)| (i, Verdict::Final(status.clone()))),
                    );
                }
            }
        }
        finish(&mut out, kept);
        if !sendable.is_empty() {
            let users: Vec<String> = sendable.iter().map(|(_, u)| u.to_string()).collect();
            let req = Req::with_body(
                Method::DELETE,
                format!("group/{id}/members"),
                json!({ "members": users }),
            );
            let carried: Vec<&Change> = sendable.iter().map(|(i, _)| &changes[*i].1).collect();
            let verdicts = self.write(&req, id, &carried, stop).await;
            finish(
                &mut out,
                sendable.iter().map(|(i, _)| *i).zip(verdicts).collect(),
            );
        }
        out
    }

    /// Send one write for group `id` and judge each change it carries from its answer.
    async fn write(
        &self,
        req: &Req,
        id: Uuid,
        carried: &[&Change],
        stop: &CancellationToken,
    ) -> Vec<Verdict> {
        let (result, trace) = self.call(req, stop, false).await;
        match result {
            Ok(reply) => {
                let group = self.group_in(req, &reply, id);
                if let Ok(g) = &group {
                    self.learn_group(g);
                }
                let answer = group.as_ref().map_err(String::as_str);
                carried.iter().map(|c| write::judge(answer, c)).collect()
            }
            Err(e) => {
                let verdict = if trace.interrupted && trace.uncertain.is_none() {
                    Verdict::Final(OpStatus::NotStarted)
                } else {
                    let error = match &e {
                        CallError::Api(a) if a.status == 403 => format!(
                            "{} may not change groups: {} (DocSpace lets only its owner and admins change groups)",
                            self.auth.whose(),
                            self.forbidden(a, "accounts:write")
                        ),
                        CallError::Api(a)
                            if a.status == 404
                                && a.message.as_deref().is_some_and(|m| m.contains("group")) =>
                        {
                            format!("{e} (no such group on the DocSpace portal)")
                        }
                        _ => e.to_string(),
                    };
                    Verdict::Failed {
                        error,
                        uncertain: trace.uncertain.clone(),
                        still_running: trace.still_running,
                    }
                };
                vec![verdict; carried.len()]
            }
        }
    }

    /// Who each of `users` is, for the reason of a miss: from what the run learned when that
    /// explains the miss (unknown, terminated, a guest), else one `GET people/{id}` each (none
    /// after an interrupt).
    async fn who(
        &self,
        users: &BTreeSet<UserId>,
        stop: &CancellationToken,
    ) -> BTreeMap<UserId, Who> {
        let mut out = BTreeMap::new();
        let mut ask = Vec::new();
        {
            let known = self.known.lock().expect("known lock");
            for &user in users {
                let Some(id) = user.uuid() else { continue };
                if known.missing.contains(&id) {
                    out.insert(user, Who::Unknown);
                } else if let Some(e) = known.people.get(&id)
                    && Who::of(e) != Who::Ordinary
                {
                    out.insert(user, Who::of(e));
                } else {
                    // Never seen, or seen as an ordinary user, which DocSpace's skip just
                    // contradicted (terminated, made a guest or deleted since): asked again.
                    ask.push((user, id));
                }
            }
        }
        if ask.is_empty() {
            return out;
        }
        if stop.is_cancelled() {
            out.extend(
                ask.into_iter()
                    .map(|(u, _)| (u, Who::Unread("interrupted".into()))),
            );
            return out;
        }
        let never = CancellationToken::new();
        let lookups = ask.into_iter().map(|(user, id)| {
            let never = &never;
            async move {
                let who = match self.user_by_id(id, never).await {
                    Ok(Some(e)) => Who::of(&e),
                    Ok(None) if self.is_missing(id) => Who::Unknown,
                    // The portal refused to say (403).
                    Ok(None) => Who::Unread(
                        self.users_refused
                            .get()
                            .cloned()
                            .unwrap_or_else(|| "the portal did not say".into()),
                    ),
                    Err(e) => Who::Unread(e),
                };
                (user, who)
            }
        });
        out.extend(
            stream::iter(lookups)
                .buffer_unordered(self.options.concurrent_reads.clamp(1, MAX_CONCURRENT_READS))
                .collect::<Vec<_>>()
                .await,
        );
        out
    }
}
