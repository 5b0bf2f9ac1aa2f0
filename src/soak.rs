//! The soak: seeded random scenarios — a random portal, a random desired state, random faults
//! at the sandbox — each planned and applied through roster's real client over loopback HTTP,
//! then checked against the promises roster makes:
//!
//! 1. `plan` sends no write (counted by method at the sandbox);
//! 2. no change sent removes or demotes an owner or a protected user (checked on what roster
//!    sent, since the sandbox itself skips owners), and no protected user lost standing in the
//!    state file;
//! 3. the removal limits hold: a plan over a limit is not applied (and a refused plan really
//!    breaks one), and an applied plan removes no more than the limits allow;
//! 4. every change's reported outcome is what the portal holds afterwards (done or confirmed ⇔
//!    held; not done, failed, not started ⇒ not held; unknown is counted, never a violation),
//!    and without faults every change is done;
//! 5. a second apply without faults converges, judged from the file as generated: declared
//!    roles in place, pruned members gone, owners and protected users kept.
//!
//! The checks read the sandbox's state file and re-derive every expectation from the
//! generated inputs (the limits from the file format's documentation), never from the code
//! under test; each was seen to fail against a deliberately broken planner or guard. Used by
//! `cargo bench --bench soak` and by a short CI test. Like `loadtest`, it is a module that uses
//! both the client and the sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::model::{OpStatus, Role, UserId};
use crate::plan::{self, Change};
use crate::provider::bitrix24::{self, Webhook};
use crate::provider::{CancellationToken, Provider};
use crate::sandbox::bitrix24::state::{self, Faults, Group, Member, Portal, State, User};
use crate::sandbox::bitrix24::{Sandbox, Stats};
use crate::{apply, spec};

/// What to run.
#[derive(Debug, Clone)]
pub struct Params {
    pub scenarios: usize,
    pub seed: u64,
}

/// The totals, printed by the bench as one JSON line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub scenarios: usize,
    /// Faults the sandbox injected (refused, lost, cut, slowed or failed requests and commands).
    pub faults_injected: u64,
    /// Changes attempted by the first apply of each scenario.
    pub operations: usize,
    /// Broken promises; each is described in `details`.
    pub violations: usize,
    /// Changes reported as `outcome unknown` (allowed: counted, not a violation).
    pub unknown: usize,
    /// Scenarios whose plan was refused by the removal limits (and so not applied).
    pub refused_by_limits: usize,
    /// Scenarios where reading the portal failed under faults (nothing was applied).
    pub plan_failed: usize,
    #[serde(skip)]
    pub details: Vec<String>,
}

/// Run every scenario in turn, each in its own state file under `dir`.
pub async fn run(p: &Params, dir: &Path) -> Result<Totals> {
    let mut totals = Totals::default();
    for i in 0..p.scenarios {
        let seed = p
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(i as u64)
            .wrapping_add(1);
        let r = scenario(seed, &dir.join(format!("soak-{i}.yaml")))
            .await
            .with_context(|| format!("scenario {i} (seed {seed})"))?;
        totals.scenarios += 1;
        totals.faults_injected += r.faults;
        totals.operations += r.operations;
        totals.unknown += r.unknown;
        totals.refused_by_limits += usize::from(r.refused);
        totals.plan_failed += usize::from(r.plan_failed);
        totals.violations += r.violations.len();
        for v in r.violations {
            totals
                .details
                .push(format!("scenario {i} (seed {seed}): {v}"));
        }
    }
    Ok(totals)
}

#[derive(Debug, Default)]
struct ScenarioResult {
    faults: u64,
    operations: usize,
    unknown: usize,
    refused: bool,
    plan_failed: bool,
    violations: Vec<String>,
}

/// The code of every generated webhook.
const CODE: &str = "soakcode0001";

/// A generated scenario: the portal, the desired file, and what the checks need to know.
struct Generated {
    state: State,
    desired_yaml: String,
    /// Protected users per group (top-level and per-group lists merged).
    protected: BTreeMap<i64, BTreeSet<i64>>,
    /// The limits the file declares, as the soak understands them (its own reading).
    top_limits: SoakLimits,
    group_limits: BTreeMap<i64, SoakLimits>,
    /// What the file declares per group, for the final comparison.
    wanted: BTreeMap<i64, Wanted>,
    /// No faults at all: every change must be done.
    calm: bool,
}

/// One group as the generated file declares it.
#[derive(Debug, Clone, Default)]
struct Wanted {
    moderators: BTreeSet<i64>,
    members: BTreeSet<i64>,
    prune: bool,
}

/// A `limits:` mapping as generated: each field optional.
#[derive(Debug, Clone, Copy, Default)]
struct SoakLimits {
    /// `(value, is_percent)`
    max_removals: Option<(u64, bool)>,
    allow_empty: Option<bool>,
    max_total_removals: Option<(u64, bool)>,
}

impl SoakLimits {
    fn random(rng: &mut fastrand::Rng, top: bool) -> SoakLimits {
        let limit = |rng: &mut fastrand::Rng| {
            if rng.bool() {
                (rng.u64(0..8), false)
            } else {
                (rng.u64(0..=100), true)
            }
        };
        SoakLimits {
            max_removals: rng.bool().then(|| limit(rng)),
            allow_empty: rng.bool().then(|| rng.bool()),
            max_total_removals: (top && rng.bool()).then(|| limit(rng)),
        }
    }

    /// The YAML flow mapping, or `None` when no field is set.
    fn yaml(&self) -> Option<String> {
        let show = |(v, pct): (u64, bool)| if pct { format!("{v}%") } else { v.to_string() };
        let mut fields = Vec::new();
        if let Some(l) = self.max_removals {
            fields.push(format!("max_removals: {}", show(l)));
        }
        if let Some(b) = self.allow_empty {
            fields.push(format!("allow_empty: {b}"));
        }
        if let Some(l) = self.max_total_removals {
            fields.push(format!("max_total_removals: {}", show(l)));
        }
        (!fields.is_empty()).then(|| format!("{{ {} }}", fields.join(", ")))
    }
}

/// The most removals a limit allows out of `current` memberships, or `None` where it does not
/// apply (a percent of fewer than 10). Written from the file format's documentation, not from
/// `plan::check_limits`.
fn allowed((value, percent): (u64, bool), current: usize) -> Option<u64> {
    match percent {
        false => Some(value),
        true if current >= 10 => Some(current as u64 * value / 100),
        true => None,
    }
}

fn generate(rng: &mut fastrand::Rng) -> Generated {
    let n_users = rng.i64(8..40);
    let users = (1..=n_users)
        .map(|id| User::generated(id, "u", "Soak"))
        .collect();
    let top_protected: BTreeSet<i64> = (0..rng.usize(0..3)).map(|_| rng.i64(2..=n_users)).collect();
    let mut groups = Vec::new();
    let mut protected = BTreeMap::new();
    let mut yaml = String::from("version: 1\n");
    if !top_protected.is_empty() {
        let _ = writeln!(yaml, "protected: {}", list(&top_protected));
    }
    // Half the files set limits of their own; the rest get the defaults.
    let top_limits = if rng.bool() {
        SoakLimits::random(rng, true)
    } else {
        SoakLimits::default()
    };
    if let Some(l) = top_limits.yaml() {
        let _ = writeln!(yaml, "limits: {l}");
    }
    let mut group_limits = BTreeMap::new();
    let mut wanted = BTreeMap::new();
    yaml.push_str("groups:\n");
    // Up to 24 groups, so some applies take more than one batch.
    for id in 1..=rng.i64(1..25) {
        let owner = rng.i64(1..=n_users);
        let mut members = vec![Member {
            user: owner,
            role: state::Role::A,
            initiated_by: None,
            message: None,
        }];
        let mut related = BTreeSet::from([owner]);
        let size = rng.usize(0..(n_users as usize).min(25));
        for _ in 0..size {
            let u = rng.i64(1..=n_users);
            if !related.insert(u) {
                continue;
            }
            let role = match rng.u8(0..20) {
                0 => state::Role::Z,
                1 => state::Role::T,
                2..=5 => state::Role::E,
                _ => state::Role::K,
            };
            let initiated_by = (role == state::Role::Z).then_some(state::Initiator::U);
            members.push(Member {
                user: u,
                role,
                initiated_by,
                message: None,
            });
        }
        // The desired membership: most members kept, some re-roled, some dropped, a few added.
        // Users with a pending or banned relation are left out (the portal would skip them).
        let blocked: BTreeSet<i64> = members
            .iter()
            .filter(|m| !m.role.is_member())
            .map(|m| m.user)
            .collect();
        let empty_it = rng.u8(0..15) == 0;
        let mut moderators = BTreeSet::new();
        let mut plain = BTreeSet::new();
        if !empty_it {
            for m in members
                .iter()
                .filter(|m| m.role.is_member() && m.user != owner)
            {
                // Dropped 1 in 10, re-roled 3 in 20, kept the rest.
                match rng.u8(0..20) {
                    0..=1 => {}
                    2..=4 => {
                        if m.role == state::Role::E {
                            plain.insert(m.user);
                        } else {
                            moderators.insert(m.user);
                        }
                    }
                    _ => {
                        if m.role == state::Role::E {
                            moderators.insert(m.user);
                        } else {
                            plain.insert(m.user);
                        }
                    }
                }
            }
            for _ in 0..rng.usize(0..5) {
                let u = rng.i64(1..=n_users);
                if related.contains(&u) || blocked.contains(&u) {
                    continue;
                }
                if rng.bool() {
                    moderators.insert(u);
                } else {
                    plain.insert(u);
                }
            }
        }
        let declare_owner = rng.bool();
        // Sometimes the file asks to demote the owner: it must be skipped.
        if !declare_owner && rng.u8(0..6) == 0 {
            plain.insert(owner);
        }
        plain.retain(|u| !moderators.contains(u));
        let group_protected: BTreeSet<i64> =
            (0..rng.usize(0..2)).map(|_| rng.i64(1..=n_users)).collect();
        let _ = writeln!(yaml, "  - id: {id}");
        if declare_owner {
            let _ = writeln!(yaml, "    owner: {owner}");
        }
        let _ = writeln!(yaml, "    moderators: {}", list(&moderators));
        let _ = writeln!(yaml, "    members: {}", list(&plain));
        if !group_protected.is_empty() {
            let _ = writeln!(yaml, "    protected: {}", list(&group_protected));
        }
        let prune = rng.u8(0..5) != 0;
        if !prune {
            yaml.push_str("    prune: false\n");
        }
        wanted.insert(
            id,
            Wanted {
                moderators: moderators.clone(),
                members: plain.clone(),
                prune,
            },
        );
        let limits = if rng.u8(0..3) == 0 {
            SoakLimits::random(rng, false)
        } else {
            SoakLimits::default()
        };
        if let Some(l) = limits.yaml() {
            let _ = writeln!(yaml, "    limits: {l}");
        }
        group_limits.insert(id, limits);
        protected.insert(id, top_protected.union(&group_protected).copied().collect());
        groups.push(Group {
            id,
            name: format!("Soak {id}"),
            members,
            visible: true,
            opened: false,
            description: String::new(),
            project: false,
            active: true,
            departments: Vec::new(),
            initiate_perms: Default::default(),
        });
    }
    let faults = faults(rng);
    let calm = faults.request_rates().iter().all(|r| *r == 0.0) && faults.rate_cmd_error == 0.0;
    let portal = Portal {
        rate_limit: None,
        faults: Some(faults),
        ..Portal::default()
    };
    Generated {
        state: State {
            portal,
            users,
            groups,
            webhooks: vec![state::Webhook {
                user: 1,
                code: CODE.into(),
                scopes: None,
            }],
            oauth: None,
        },
        desired_yaml: yaml,
        protected,
        top_limits,
        group_limits,
        wanted,
        calm,
    }
}

fn list(users: &BTreeSet<i64>) -> String {
    let items: Vec<String> = users.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// Random fault rates of every kind the sandbox injects, seeded for the sandbox's own dice. A
/// third of the scenarios are calm, a third mild, a third a storm near the adversarial
/// campaign's mix (rates summing to about 0.8). Slow responses outlast the client's timeout.
fn faults(rng: &mut fastrand::Rng) -> Faults {
    let seed = rng.u64(..);
    let level = [0.0, 0.3, 1.0][rng.usize(0..3)];
    let mut pick = |max: f64| max * level * (0.5 + rng.f64() / 2.0);
    Faults {
        seed,
        rate_503: pick(0.2),
        rate_429: pick(0.05),
        rate_500: pick(0.1),
        rate_lost: pick(0.15),
        rate_502: pick(0.1),
        rate_500_after: pick(0.1),
        rate_truncated: pick(0.1),
        rate_slow: pick(0.02),
        slow_ms: 1_000,
        rate_cmd_error: pick(0.1),
    }
}

/// Client settings for the soak: the real client with short waits, so a thousand scenarios
/// with faults finish in minutes. Pacing is off (the sandbox's bucket is off too), and so is
/// learning a rate from 503s: here they are random faults, and learning from them would only
/// slow the soak to the pacer's floor.
fn options() -> bitrix24::Options {
    bitrix24::Options {
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_millis(500),
        throttle_wait: Duration::from_millis(5),
        rate: None,
        learn_rate: false,
        concurrency: 3,
        ..bitrix24::Options::default()
    }
}

/// Every fault the sandbox injected, from its counters.
fn injected(stats: &Stats) -> u64 {
    stats.faults_injected
}

async fn scenario(seed: u64, path: &Path) -> Result<ScenarioResult> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let generated = generate(&mut rng);
    let desired = spec::parse("soak.yaml", &generated.desired_yaml)
        .and_then(|s| crate::resolve::offline(&s))
        .map_err(|d| anyhow::anyhow!("generated desired state is invalid: {d}"))?;
    state::save(path, &generated.state)?;
    let mut out = ScenarioResult::default();

    // Plan and apply under faults.
    let sandbox = start(path).await?;
    let provider = connect(&sandbox)?;
    let quiet = |_: usize| {};
    let before = sandbox.stats();
    let fetched = provider.fetch(&desired, &quiet).await;
    let writes = write_commands(&sandbox.stats()) - write_commands(&before);
    if writes > 0 {
        out.violations
            .push(format!("plan sent {writes} write command(s)"));
    }
    let current = match fetched {
        Ok(current) => current,
        Err(e) => {
            tracing::info!("soak: reading failed under faults: {e}");
            out.plan_failed = true;
            return stop_unchanged(out, sandbox, &generated.state, path).await;
        }
    };
    let the_plan = plan::diff(&desired, &current);
    // The shell's gate: a plan over the limits is not applied (no --allow-mass-removal here).
    if !plan::check_limits(&desired, &current, &the_plan).is_empty() {
        out.refused = true;
        if !breaks_a_limit(&generated, &the_plan) {
            out.violations
                .push("a plan within every limit was refused".to_owned());
        }
        return stop_unchanged(out, sandbox, &generated.state, path).await;
    }
    let report = apply::apply(&the_plan, &provider, &quiet, &CancellationToken::new()).await;
    out.faults = injected(&sandbox.stats());
    sandbox.shutdown().await?;
    let after = state::load(path)?;
    out.operations = report.outcomes.len();

    // 2. Owners and protected users.
    for g in &generated.state.groups {
        let now = after.group(g.id).context("group vanished")?;
        if now.owner() != g.owner() {
            out.violations.push(format!(
                "group {}: owner was {:?}, is {:?}",
                g.id,
                g.owner(),
                now.owner()
            ));
        }
        for &u in &generated.protected[&g.id] {
            let was = rank(g, u);
            let is = rank(now, u);
            if is < was {
                out.violations.push(format!(
                    "group {}: protected user {u} went from rank {was} to {is}",
                    g.id
                ));
            }
        }
    }
    // 3. The limits held: removals counted from the state files, limits read from the file
    // as generated.
    check_limits_held(&generated, &after, &mut out.violations);
    // 2. (again, on what roster sent: the sandbox skips owners by itself, so the state file
    // alone cannot show an owner change.)
    check_sent(&generated, &report, &mut out.violations);
    // 4. Reported outcome == what the portal holds; without faults, everything is done.
    if generated.calm && !report.all_done() {
        out.violations.push(format!(
            "no faults, yet {} of {} changes not done",
            report.outcomes.len() - report.done(),
            report.outcomes.len()
        ));
    }
    for o in &report.outcomes {
        let group = after.group(o.group.0 as i64).context("group vanished")?;
        let held = holds(group, &o.change);
        match (&o.status, held) {
            (OpStatus::Done | OpStatus::Confirmed, false) => out.violations.push(format!(
                "group {}: {:?} reported done, the portal does not hold it",
                o.group, o.change
            )),
            (OpStatus::NotDone { .. } | OpStatus::Failed { .. } | OpStatus::NotStarted, true) => {
                out.violations.push(format!(
                    "group {}: {:?} reported {:?}, the portal holds it",
                    o.group, o.change, o.status
                ))
            }
            (OpStatus::Unknown { .. }, _) => out.unknown += 1,
            _ => {}
        }
    }
    // 5. Without faults, a second apply converges.
    let mut calm = after;
    calm.portal.faults = None;
    state::save(path, &calm)?;
    let sandbox = start(path).await?;
    let provider = connect(&sandbox)?;
    let current = provider.fetch(&desired, &quiet).await?;
    let again = plan::diff(&desired, &current);
    let second = apply::apply(&again, &provider, &quiet, &CancellationToken::new()).await;
    check_sent(&generated, &second, &mut out.violations);
    if !second.all_done() {
        out.violations.push(format!(
            "second apply: {} of {} changes not done",
            second.outcomes.len() - second.done(),
            second.outcomes.len()
        ));
    }
    let current = provider.fetch(&desired, &quiet).await?;
    let last = plan::diff(&desired, &current);
    if last.summary().has_changes() {
        out.violations.push(format!(
            "no convergence: {:?} still planned after a second apply",
            last.summary()
        ));
    }
    sandbox.shutdown().await?;
    // ... and the portal is what the file asked for, judged from the file as generated (not
    // by the planner under test).
    check_converged(&generated, &state::load(path)?, &mut out.violations);
    Ok(out)
}

/// No change roster sent removes or demotes a group's owner or a protected user.
fn check_sent(g: &Generated, report: &apply::Report, violations: &mut Vec<String>) {
    for o in &report.outcomes {
        let id = o.group.0 as i64;
        let Some(before) = g.state.group(id) else {
            continue;
        };
        let user = o.change.user().0 as i64;
        let harmful = match o.change {
            Change::Remove { .. } => true,
            Change::SetRole { from, to, .. } => to > from,
            Change::Add { .. }
            | Change::Invite { .. }
            | Change::Accept { .. }
            | Change::SetOwner { .. } => false,
        };
        if harmful && before.owner() == Some(user) {
            violations.push(format!("group {id}: sent {:?} to the owner", o.change));
        }
        if harmful && g.protected[&id].contains(&user) {
            violations.push(format!(
                "group {id}: sent {:?} to a protected user",
                o.change
            ));
        }
    }
}

/// After the calm second apply: every declared user has the declared role (the owner and
/// protected users excepted where the file would demote them); with prune, nobody else but
/// the owner and protected users is left.
fn check_converged(g: &Generated, after: &State, violations: &mut Vec<String>) {
    for before in &g.state.groups {
        let Some(now) = after.group(before.id) else {
            continue;
        };
        let owner = before.owner();
        let protected = &g.protected[&before.id];
        let want = &g.wanted[&before.id];
        for &u in &want.moderators {
            if Some(u) != owner && rank(now, u) != 2 {
                violations.push(format!(
                    "group {}: user {u} declared moderator, has rank {}",
                    before.id,
                    rank(now, u)
                ));
            }
        }
        for &u in &want.members {
            let kept_higher = Some(u) == owner || (protected.contains(&u) && rank(before, u) == 2);
            if !kept_higher && rank(now, u) != 1 {
                violations.push(format!(
                    "group {}: user {u} declared member, has rank {}",
                    before.id,
                    rank(now, u)
                ));
            }
        }
        if want.prune {
            for m in now.members.iter().filter(|m| m.role.is_member()) {
                let declared = want.moderators.contains(&m.user) || want.members.contains(&m.user);
                let kept = Some(m.user) == owner || protected.contains(&m.user);
                if !declared && !kept {
                    violations.push(format!(
                        "group {}: user {} is still a member although the file prunes it",
                        before.id, m.user
                    ));
                }
            }
        }
    }
}

/// Whether `plan` removes more than the file's limits allow (see `over_limits`).
fn breaks_a_limit(g: &Generated, plan: &plan::Plan) -> bool {
    let removed = |id: i64| {
        plan.groups
            .iter()
            .filter(|p| p.id.0 as i64 == id)
            .flat_map(|p| p.changes())
            .filter(|c| matches!(c, Change::Remove { .. }))
            .count()
    };
    !over_limits(g, removed).is_empty()
}

/// The limits that `removed(group)` non-owner removals would break, counted against the
/// generated state and read from the file as generated (group over top over the 25 % default):
/// an independent reading of the rules in `crate::spec`, one line per broken limit.
fn over_limits(g: &Generated, removed: impl Fn(i64) -> usize) -> Vec<String> {
    let default = (25, true);
    let mut broken = Vec::new();
    let (mut removed_total, mut current_total) = (0, 0);
    for before in &g.state.groups {
        let members = before.members.iter().filter(|m| m.role.is_member()).count();
        let non_owner = members - usize::from(before.owner().is_some());
        let removed = removed(before.id);
        removed_total += removed;
        current_total += members;
        let own = g.group_limits[&before.id];
        let max = own
            .max_removals
            .or(g.top_limits.max_removals)
            .unwrap_or(default);
        if let Some(allowed) = allowed(max, non_owner)
            && removed as u64 > allowed
        {
            broken.push(format!(
                "group {}: {removed} of {non_owner} non-owner members removed, limit {max:?} allows {allowed}",
                before.id
            ));
        }
        let allow_empty = own
            .allow_empty
            .or(g.top_limits.allow_empty)
            .unwrap_or(false);
        if !allow_empty && non_owner >= 4 && removed == non_owner {
            broken.push(format!(
                "group {}: all {removed} non-owner members removed",
                before.id
            ));
        }
    }
    let max = g.top_limits.max_total_removals.unwrap_or(default);
    if let Some(allowed) = allowed(max, current_total)
        && removed_total as u64 > allowed
    {
        broken.push(format!(
            "run: {removed_total} of {current_total} memberships removed, limit {max:?} allows {allowed}"
        ));
    }
    broken
}

/// End a scenario in which nothing was applied: the portal must be as generated.
async fn stop_unchanged(
    mut out: ScenarioResult,
    sandbox: Sandbox,
    initial: &State,
    path: &Path,
) -> Result<ScenarioResult> {
    out.faults = injected(&sandbox.stats());
    sandbox.shutdown().await?;
    check_unchanged(initial, &state::load(path)?, &mut out.violations);
    Ok(out)
}

async fn start(path: &Path) -> Result<Sandbox> {
    Ok(Sandbox::start(path, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?)
}

fn connect(sandbox: &Sandbox) -> Result<Provider> {
    let url = sandbox
        .webhook_url()
        .context("the scenario has a webhook")?;
    Ok(Provider::Bitrix24(bitrix24::Client::new(
        Webhook::parse(&url)?,
        options(),
    )?))
}

/// Commands of methods that change the portal.
fn write_commands(stats: &Stats) -> u64 {
    stats.write_commands()
}

/// A user's standing in a group: 3 owner, 2 moderator, 1 member, 0 none (or pending/banned).
/// Lower after than before means removed or demoted.
fn rank(g: &Group, user: i64) -> u8 {
    match g.relation(user).map(|m| m.role) {
        Some(state::Role::A) => 3,
        Some(state::Role::E) => 2,
        Some(state::Role::K) => 1,
        _ => 0,
    }
}

/// Whether the portal's group shows `change` as made.
fn holds(g: &Group, change: &Change) -> bool {
    let role_of = |u: UserId| {
        g.relation(u.0 as i64).and_then(|m| match m.role {
            state::Role::A => Some(Role::Owner),
            state::Role::E => Some(Role::Moderator),
            state::Role::K => Some(Role::Member),
            _ => None,
        })
    };
    match *change {
        Change::Add { user, role } | Change::SetRole { user, to: role, .. } => {
            role_of(user) == Some(role)
        }
        Change::Remove { user, .. } => role_of(user).is_none(),
        Change::Accept { user, role } => role_of(user) == Some(role),
        Change::Invite { user, .. } => g
            .relation(user.0 as i64)
            .is_some_and(|m| m.role == state::Role::Z),
        Change::SetOwner { to, .. } => role_of(to) == Some(Role::Owner),
    }
}

/// Removals per group, counted from the state before and after the apply, within the limits.
fn check_limits_held(g: &Generated, after: &State, violations: &mut Vec<String>) {
    let removed = |id: i64| {
        let (Some(before), Some(now)) = (g.state.group(id), after.group(id)) else {
            return 0;
        };
        before
            .members
            .iter()
            .filter(|m| m.role.is_member() && m.role != state::Role::A)
            .filter(|m| rank(now, m.user) == 0)
            .count()
    };
    violations.extend(over_limits(g, removed));
}

fn check_unchanged(before: &State, after: &State, violations: &mut Vec<String>) {
    for g in &before.groups {
        if after.group(g.id).map(|a| &a.members) != Some(&g.members) {
            violations.push(format!(
                "group {}: changed although nothing was applied",
                g.id
            ));
        }
    }
}
