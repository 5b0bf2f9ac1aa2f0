//! The reconcile load test: a generated portal served by the sandbox over loopback HTTP, a plan
//! and an apply through roster's real client, and the numbers that say how close roster came to
//! the fewest requests and the least time the portal's limits allow. Used by
//! `cargo bench --bench reconcile` and by the CI test that pins request counts.
//!
//! It is the one module that uses both `provider` (the client) and `sandbox` (the emulator); the
//! two never use each other.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::model::Role;
use crate::plan::{self, Change, Plan};
use crate::provider::Provider;
use crate::provider::bitrix24::{self, BATCH_MAX, RateProfile, Webhook};
use crate::sandbox::bitrix24::{Sandbox, state};
use crate::sandbox::scenario::Scenario;
use crate::{apply, resolve, spec};

/// One run's numbers. `ratio_to_floor` is `null` when the bucket imposes no wait at all.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub groups: usize,
    pub memberships: usize,
    /// Planned changes (adds, role changes, removals).
    pub operations: usize,
    /// HTTP requests the sandbox received (plan and apply).
    pub http_requests: u64,
    /// Commands the sandbox executed (a batch counts each of its commands).
    pub commands: u64,
    /// The fewest requests the API allows: twice (plan, apply) the file's resolution, the reads
    /// of every group 50 a batch and the lookup of the people the plan shows that the file does
    /// not name; plus the coalesced writes 50 a batch.
    pub min_http_requests: u64,
    pub rejected_503: u64,
    pub rejected_429: u64,
    /// Requests and commands the client re-sent after transient errors.
    pub retries: u64,
    pub plan_s: f64,
    pub apply_s: f64,
    /// The time the bucket alone imposes on `min_http_requests`.
    pub floor_s: f64,
    pub ratio_to_floor: Option<f64>,
    /// Changes the apply report did not mark done.
    pub not_done: usize,
    /// A final plan (not counted above) found nothing to change.
    pub converged: bool,
    /// Distinct users the file names (e-mails and IDs), and users on the portal.
    pub identities: u64,
    pub users: u64,
    /// Requests one resolution of the file took (the lookup of a plan), and the bound
    /// for it: min(⌈identities/50⌉, 1 + ⌈users/2,500⌉), at least 1 (the caller is always
    /// looked up). `min_http_requests` counts the bound once for plan and once for apply.
    pub resolve_requests: u64,
    /// The fewest requests one resolution takes (see `measure`).
    pub min_resolve_requests: u64,
    pub resolve_bound: u64,
    pub resolve_s: f64,
}

/// Write commands after coalescing: per group one add, one promote (new moderators and
/// members becoming moderators), one demote and one delete, each only if needed.
pub fn write_commands(plan: &Plan) -> u64 {
    plan.groups
        .iter()
        .map(|g| {
            let kinds: BTreeSet<u8> = g
                .changes()
                .flat_map(|c| match *c {
                    Change::Add {
                        role: Role::Moderator,
                        ..
                    } => vec![0, 1],
                    Change::Add { .. } | Change::Accept { .. } => vec![0],
                    Change::Invite { .. } => vec![4],
                    Change::SetOwner { .. } => vec![5],
                    Change::SetRole {
                        to: Role::Moderator,
                        ..
                    } => vec![1],
                    Change::SetRole { .. } => vec![2],
                    Change::Remove { .. } => vec![3],
                })
                .collect();
            kinds.len() as u64
        })
        .sum()
}

fn batches(commands: u64) -> u64 {
    commands.div_ceil(BATCH_MAX as u64)
}

/// The time a leaky bucket imposes on `requests` sent as fast as it allows.
pub fn floor_s(requests: u64, rate: Option<RateProfile>) -> f64 {
    match rate {
        Some(r) => ((requests as f64 - r.burst).max(0.0)) / r.per_second,
        None => 0.0,
    }
}

/// Serve `scenario` from a state file in `dir`, then plan and apply with `options`.
pub async fn measure(
    scenario: &Scenario,
    dir: &Path,
    options: bitrix24::Options,
) -> Result<Measurement> {
    let state_path = dir.join("portal.yaml");
    state::save(&state_path, &scenario.state)?;
    let spec =
        spec::parse("desired.yaml", &scenario.desired_yaml).map_err(|d| anyhow::anyhow!("{d}"))?;
    let sandbox = Sandbox::start(&state_path, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let webhook = Webhook::parse(&sandbox.webhook_url().context("scenario has a webhook")?)?;
    let rate = options.rate;
    let provider = Provider::Bitrix24(bitrix24::Client::new(webhook, options)?);
    let quiet = |_: usize| {};

    // The resolution alone first, to measure it; not counted in the totals below.
    let lookup = Instant::now();
    let lookups = provider.lookup(&resolve::wanted(&spec)).await?;
    let resolve_s = lookup.elapsed().as_secs_f64();
    let resolve_requests = sandbox.stats().http_requests;
    let resolved = resolve::resolve(&spec, &lookups);
    ensure!(
        resolved.errors.is_empty(),
        "the scenario's file does not resolve: {:?}",
        resolved.errors
    );
    let base = sandbox.stats();
    let base_retries = provider.counters().retries;
    // Let the bucket drain as it would between two runs, so the measured runs start alike.
    if let Some(r) = rate {
        tokio::time::sleep(std::time::Duration::from_secs_f64(
            resolve_requests as f64 / r.per_second,
        ))
        .await;
    }
    // What `roster plan` does, then what `roster apply` does (the same, and the writes).
    let options = plan::Options::default();
    let started = Instant::now();
    let the_plan = crate::prepare(&spec, &provider, options).await?;
    let plan_s = started.elapsed().as_secs_f64();
    let desired = the_plan.resolved.desired;
    let the_plan = the_plan.plan;

    let started = Instant::now();
    let to_apply = crate::prepare(&spec, &provider, options).await?.plan;
    ensure!(
        to_apply == the_plan,
        "the portal changed between plan and apply"
    );
    let report = apply::apply(
        &to_apply,
        &provider,
        &quiet,
        &crate::provider::CancellationToken::new(),
    )
    .await;
    let apply_s = started.elapsed().as_secs_f64();
    let stats = sandbox.stats();

    // Not counted: check that the portal converged.
    let after = provider.fetch(&desired, &quiet).await?;
    let converged = !plan::diff(&desired, &after).summary().has_changes();
    sandbox.shutdown().await?;

    let reads = batches(desired.groups.len() as u64);
    let wanted = resolve::wanted(&spec);
    let identities = (wanted.emails.len() + wanted.users.len()) as u64;
    let users = scenario.state.users.len() as u64;
    let per = BATCH_MAX as u64;
    let resolve_bound = identities
        .div_ceil(per)
        .min(1 + users.div_ceil(per * per))
        .max(1);
    // The fewest commands a resolution takes: who the caller is (2), then the users 50 a
    // command (by e-mail and by ID) or the whole user list 50 a page, whichever is fewer, and
    // each group name (or the whole group list, 50 a page).
    let by_value =
        (wanted.emails.len() as u64).div_ceil(per) + (wanted.users.len() as u64).div_ceil(per);
    let groups_on_portal = scenario.state.groups.len() as u64;
    let resolve_commands = 2
        + by_value.min(users.div_ceil(per))
        + (wanted.group_names.len() as u64).min(groups_on_portal.div_ceil(per));
    let min_resolve = batches(resolve_commands);
    // The plan names everyone it shows: users the file did not name (members it removes) are
    // looked up after the read, 50 IDs a command.
    let unnamed: BTreeSet<_> = the_plan
        .groups
        .iter()
        .flat_map(|g| g.entries.iter().map(plan::Entry::user))
        .filter(|u| !resolved.directory.users.contains_key(u))
        .collect();
    let min_people = batches((unnamed.len() as u64).div_ceil(per));
    let min_http_requests =
        2 * (min_resolve + reads + min_people) + batches(write_commands(&the_plan));
    let floor = floor_s(min_http_requests, rate);
    Ok(Measurement {
        groups: desired.groups.len(),
        memberships: scenario.memberships,
        operations: report.outcomes.len(),
        http_requests: stats.http_requests - base.http_requests,
        commands: stats.commands - base.commands,
        min_http_requests,
        rejected_503: stats.rejected_503 - base.rejected_503,
        rejected_429: stats.rejected_429 - base.rejected_429,
        retries: provider.counters().retries - base_retries,
        plan_s,
        apply_s,
        floor_s: floor,
        ratio_to_floor: (floor > 0.0).then(|| (plan_s + apply_s) / floor),
        not_done: report.outcomes.len() - report.done(),
        converged,
        identities,
        users,
        resolve_requests,
        min_resolve_requests: min_resolve,
        resolve_bound,
        resolve_s,
    })
}

/// One DocSpace run's numbers (`measure_docspace`). Requests are counted at the sandbox by
/// route; `ratio_to_floor` is `null` when the limiter imposes no wait at all.
#[derive(Debug, Clone, Serialize)]
pub struct DocSpaceMeasurement {
    pub groups: usize,
    pub memberships: usize,
    /// Planned changes (adds, removals, manager changes).
    pub operations: usize,
    /// Every HTTP request the sandbox received for plan and apply (429s included); the counts
    /// below are of the requests it accepted.
    pub http_requests: u64,
    /// Of those, refused with 429 by the sandbox's limiter.
    pub rejected_429: u64,
    /// `GET group/{id}` (plan and apply read every group once each).
    pub reads: u64,
    /// `PUT group/{id}/members`, `DELETE group/{id}/members`, `PUT group/{id}/manager`.
    pub adds: u64,
    pub removes: u64,
    pub manager_changes: u64,
    /// The fewest the API allows: two reads a group (plan, apply); per group one add and one
    /// remove when it has any, and one manager change where the file names another manager;
    /// twice the file's resolution (its bound, `lookup::user_requests`/`group_requests`).
    pub min_reads: u64,
    pub min_writes: u64,
    /// Every other request of plan and apply: the lookups (the caller, the named users and
    /// groups) and the people a plan shows that the file does not name (none: the reads carry
    /// every member's profile).
    pub lookup_requests: u64,
    pub min_lookup_requests: u64,
    pub retries: u64,
    pub plan_s: f64,
    pub apply_s: f64,
    /// The time the limiter's sliding window alone imposes on the accepted requests.
    pub floor_s: f64,
    pub ratio_to_floor: Option<f64>,
    pub not_done: usize,
    pub converged: bool,
}

/// The time a sliding window of `per_minute` requests imposes on `requests` sent as fast as
/// it allows: a minute for every full window after the first.
pub fn window_floor_s(requests: u64, per_minute: Option<u32>) -> f64 {
    match per_minute {
        Some(n) if n > 0 => (requests.saturating_sub(1) / u64::from(n)) as f64 * 60.0,
        _ => 0.0,
    }
}

/// Serve a DocSpace scenario from a state file in `dir`, then plan and apply it as `roster`
/// does (`crate::prepare`, then `apply`), counting requests by route at the sandbox.
pub async fn measure_docspace(
    scenario: &crate::sandbox::scenario::DocSpaceScenario,
    dir: &Path,
    options: crate::provider::docspace::Options,
) -> Result<DocSpaceMeasurement> {
    use crate::provider::docspace::{self, Auth, Secret, lookup};
    use crate::sandbox::docspace::{Sandbox as DsSandbox, Stats as DsStats, state as ds_state};
    let state_path = dir.join("portal.yaml");
    ds_state::save(&state_path, &scenario.state)?;
    let spec =
        spec::parse("desired.yaml", &scenario.desired_yaml).map_err(|d| anyhow::anyhow!("{d}"))?;
    let sandbox = DsSandbox::start(&state_path, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let key = sandbox.api_key().context("scenario has an API key")?;
    let provider = Provider::DocSpace(docspace::Client::new(
        &sandbox.base_url(),
        Auth::ApiKey(Secret::new(key)),
        options,
    )?);
    let per_minute = scenario
        .state
        .rate_limit
        .filter(|r| r.enabled)
        .map(|r| r.per_minute);
    let quiet = |_: usize| {};
    // Requests the portal accepted (a 429 is counted in `rejected_429`).
    let route = |s: &DsStats, r: &str| s.route(r).executed;
    const READ: &str = "GET /api/2.0/group/{id}";
    const ADD: &str = "PUT /api/2.0/group/{id}/members";
    const REMOVE: &str = "DELETE /api/2.0/group/{id}/members";
    const MANAGER: &str = "PUT /api/2.0/group/{id}/manager";
    let base_retries = provider.counters().retries;
    let options = crate::options_for(crate::model::System::DocSpace, false);
    let started = Instant::now();
    let first = crate::prepare(&spec, &provider, options).await?;
    let plan_s = started.elapsed().as_secs_f64();
    ensure!(
        first.resolved.errors.is_empty(),
        "the scenario's file does not resolve: {:?}",
        first.resolved.errors
    );
    let started = Instant::now();
    let second = crate::prepare(&spec, &provider, options).await?;
    ensure!(
        second.plan == first.plan,
        "the portal changed between plan and apply"
    );
    let report = apply::apply(
        &second.plan,
        &provider,
        &quiet,
        &crate::provider::CancellationToken::new(),
    )
    .await;
    let apply_s = started.elapsed().as_secs_f64();
    let stats = sandbox.stats();
    let desired = second.resolved.desired;
    let after = provider.fetch(&desired, &quiet).await?;
    let converged = !plan::diff_with(&desired, &after, options)
        .summary()
        .has_changes();
    sandbox.shutdown().await?;

    let groups = desired.groups.len() as u64;
    let min_writes: u64 = first
        .plan
        .groups
        .iter()
        .map(|g| {
            let kinds: BTreeSet<u8> = g
                .changes()
                .map(|c| match c {
                    Change::Add { .. } => 0,
                    Change::Remove { .. } => 1,
                    _ => 2,
                })
                .collect();
            kinds.len() as u64
        })
        .sum();
    let wanted = resolve::wanted(&spec);
    let named = wanted.emails.len() + wanted.users.len();
    let active = scenario
        .state
        .users
        .iter()
        .filter(|u| u.status == crate::sandbox::docspace::state::Status::Active)
        .count() as u64;
    // The caller, then the users (everyone named is active here: h counts those on the first
    // page, which the bound needs only as an upper limit, so 0), then the group names.
    let min_lookup = 1
        + lookup::user_requests(named, 0, 0, active)
        + lookup::group_requests(wanted.group_names.len(), scenario.state.groups.len() as u64);
    let (reads, adds, removes, managers) = (
        route(&stats, READ),
        route(&stats, ADD),
        route(&stats, REMOVE),
        route(&stats, MANAGER),
    );
    let lookup_requests = stats
        .http_requests
        .saturating_sub(stats.rejected_429 + reads + adds + removes + managers);
    let accepted = stats.http_requests - stats.rejected_429;
    let floor = window_floor_s(accepted, per_minute);
    Ok(DocSpaceMeasurement {
        groups: desired.groups.len(),
        memberships: scenario.memberships,
        operations: report.outcomes.len(),
        http_requests: stats.http_requests,
        rejected_429: stats.rejected_429,
        reads,
        adds,
        removes,
        manager_changes: managers,
        min_reads: 2 * groups,
        min_writes,
        lookup_requests,
        min_lookup_requests: 2 * min_lookup,
        retries: provider.counters().retries - base_retries,
        plan_s,
        apply_s,
        floor_s: floor,
        ratio_to_floor: (floor > 0.0).then(|| (plan_s + apply_s) / floor),
        not_done: report.outcomes.len() - report.done(),
        converged,
    })
}
