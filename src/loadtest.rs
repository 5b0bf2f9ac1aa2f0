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
use crate::{apply, spec};

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
    /// The fewest requests the API allows: reads of every group twice (plan, apply) 50 a batch,
    /// plus the coalesced writes 50 a batch.
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
    let desired = spec::parse("desired.yaml", &scenario.desired_yaml)
        .and_then(|s| crate::resolve::offline(&s))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let sandbox = Sandbox::start(&state_path, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let webhook = Webhook::parse(&sandbox.webhook_url().context("scenario has a webhook")?)?;
    let rate = options.rate;
    let provider = Provider::Bitrix24(bitrix24::Client::new(webhook, options)?);
    let quiet = |_: usize| {};

    let started = Instant::now();
    let current = provider.fetch(&desired, &quiet).await?;
    let the_plan = plan::diff(&desired, &current);
    let plan_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let current = provider.fetch(&desired, &quiet).await?;
    let to_apply = plan::diff(&desired, &current);
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
    let min_http_requests = 2 * reads + batches(write_commands(&the_plan));
    let floor = floor_s(min_http_requests, rate);
    Ok(Measurement {
        groups: desired.groups.len(),
        memberships: scenario.memberships,
        operations: report.outcomes.len(),
        http_requests: stats.http_requests,
        commands: stats.commands,
        min_http_requests,
        rejected_503: stats.rejected_503,
        rejected_429: stats.rejected_429,
        retries: provider.counters().retries,
        plan_s,
        apply_s,
        floor_s: floor,
        ratio_to_floor: (floor > 0.0).then(|| (plan_s + apply_s) / floor),
        not_done: report.outcomes.len() - report.done(),
        converged,
    })
}
