//! The planner alone on a large portal: `plan::diff` and `plan::check_limits` over G groups × M
//! members with 5 % churn, built in memory (no YAML, no HTTP). Prints one line of JSON: sizes,
//! the best of three times for each (`plan_s`, `limits_s`), and the peak resident memory.
//!
//! cargo bench --bench planner -- --groups 10000 --members 500

use std::collections::BTreeMap;
use std::time::Instant;

use roster::model::{
    CurrentGroup, CurrentState, DesiredGroup, DesiredState, GroupId, Role, UserId,
};
use roster::plan;

fn main() {
    let mut groups = 10_000usize;
    let mut members = 500usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--groups" => groups = it.next().and_then(|v| v.parse().ok()).expect("--groups N"),
            "--members" => members = it.next().and_then(|v| v.parse().ok()).expect("--members N"),
            _ => {}
        }
    }
    let mut rng = fastrand::Rng::with_seed(1);
    let pool = members as u64 * 4;
    let mut current = CurrentState::default();
    let mut desired = DesiredState::default();
    for g in 1..=groups as u64 {
        let mut have = BTreeMap::new();
        have.insert(UserId::Num(1), Role::Owner);
        while have.len() < members {
            let role = if rng.u8(0..5) == 0 {
                Role::Moderator
            } else {
                Role::Member
            };
            have.insert(UserId::Num(rng.u64(2..=pool)), role);
        }
        let mut want: BTreeMap<UserId, Role> = have
            .iter()
            .filter(|(_, r)| **r != Role::Owner)
            .map(|(u, r)| (*u, *r))
            .collect();
        // 5 % churn: a third adds, a third role changes, a third removals.
        for _ in 0..members / 20 {
            let u = UserId::Num(rng.u64(2..=pool));
            match rng.u8(0..3) {
                0 => {
                    want.entry(u).or_insert(Role::Member);
                }
                1 => {
                    if let Some(r) = want.get_mut(&u) {
                        *r = if *r == Role::Member {
                            Role::Moderator
                        } else {
                            Role::Member
                        };
                    }
                }
                _ => {
                    want.remove(&u);
                }
            }
        }
        current.groups.insert(
            GroupId::Num(g),
            CurrentGroup {
                members: have,
                ..Default::default()
            },
        );
        desired.groups.insert(
            GroupId::Num(g),
            DesiredGroup {
                owner: Some(UserId::Num(1)),
                members: want,
                ..DesiredGroup::new(GroupId::Num(g))
            },
        );
    }
    let mut best = f64::MAX;
    let mut best_limits = f64::MAX;
    let mut summary = Default::default();
    for _ in 0..3 {
        let started = Instant::now();
        let p = plan::diff(&desired, &current);
        best = best.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let breaches = plan::check_limits(&desired, &current, &p);
        best_limits = best_limits.min(started.elapsed().as_secs_f64());
        assert!(
            breaches.is_empty(),
            "5 % churn is within the default limits"
        );
        summary = p.summary();
    }
    println!(
        "{}",
        serde_json::json!({
            "groups": groups,
            "memberships": groups * members,
            "summary": summary,
            "plan_s": best,
            "limits_s": best_limits,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
