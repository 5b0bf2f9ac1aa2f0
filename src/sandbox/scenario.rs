//! Generated portals for benchmarks and load tests: a sandbox state of G groups × M members and
//! a desired-state file that differs from it by a given churn (adds, role changes and removals,
//! mixed across groups). Deterministic for a seed. Builds values only; callers write files.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::bitrix24::state::{Group, Member, Portal, Role, State, User, Webhook};

/// The code of the generated admin webhook (user 1).
pub const WEBHOOK_CODE: &str = "scenariocode0001";

/// What to generate.
#[derive(Debug, Clone)]
pub struct Params {
    pub groups: usize,
    /// Members per group, the owner included.
    pub members: usize,
    /// Fraction of each group's memberships that the desired state changes (0.05 = 5 %).
    pub churn: f64,
    pub seed: u64,
    /// Portal settings (rate limit, latency, faults) for the generated state.
    pub portal: Portal,
}

/// A generated portal and the desired state to reconcile it to.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub state: State,
    /// A `version: 1` desired-state file.
    pub desired_yaml: String,
    /// Total memberships on the portal before reconciling.
    pub memberships: usize,
}

pub fn generate(p: &Params) -> Scenario {
    let mut rng = fastrand::Rng::with_seed(p.seed);
    let members = p.members.max(1);
    // Room to pick new users for adds.
    let pool = (members as i64) * 4 + 1;
    let users: Vec<User> = (1..=pool)
        .map(|id| User::generated(id, "user", "Generated"))
        .collect();
    let per_group_changes = ((members as f64) * p.churn).round() as usize;
    let mut groups = Vec::with_capacity(p.groups);
    let mut desired = String::from("version: 1\ngroups:\n");
    let mut memberships = 0;
    for g in 0..p.groups {
        let id = g as i64 + 1;
        // Owner 1, then members - 1 distinct others; one in five a moderator.
        let mut chosen = BTreeSet::new();
        while chosen.len() < members - 1 {
            chosen.insert(rng.i64(2..=pool));
        }
        let mut rows = vec![Member {
            user: 1,
            role: Role::A,
            initiated_by: None,
            message: None,
        }];
        for u in &chosen {
            let role = if rng.u8(0..5) == 0 { Role::E } else { Role::K };
            rows.push(Member {
                user: *u,
                role,
                initiated_by: None,
                message: None,
            });
        }
        memberships += rows.len();
        // Desired: the same, then churn.
        let mut want: Vec<(i64, Role)> = rows[1..].iter().map(|m| (m.user, m.role)).collect();
        let mut touched = BTreeSet::new();
        for _ in 0..per_group_changes {
            match rng.u8(0..3) {
                0 => {
                    // Add someone new.
                    let u = loop {
                        let u = rng.i64(2..=pool);
                        if !chosen.contains(&u) && !touched.contains(&u) {
                            break u;
                        }
                    };
                    touched.insert(u);
                    want.push((u, if rng.u8(0..5) == 0 { Role::E } else { Role::K }));
                }
                kind => {
                    let candidates: Vec<usize> = (0..want.len())
                        .filter(|&i| chosen.contains(&want[i].0) && !touched.contains(&want[i].0))
                        .collect();
                    if candidates.is_empty() {
                        continue;
                    }
                    let i = candidates[rng.usize(0..candidates.len())];
                    touched.insert(want[i].0);
                    if kind == 1 {
                        want[i].1 = if want[i].1 == Role::E {
                            Role::K
                        } else {
                            Role::E
                        };
                    } else {
                        want.remove(i);
                    }
                }
            }
        }
        let list = |role: Role| {
            let mut ids: Vec<i64> = want
                .iter()
                .filter(|(_, r)| *r == role)
                .map(|(u, _)| *u)
                .collect();
            ids.sort_unstable();
            ids.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            desired,
            "  - id: {id}\n    name: Group {id}\n    owner: 1\n    moderators: [{}]\n    members: [{}]\n",
            list(Role::E),
            list(Role::K)
        );
        groups.push(Group {
            id,
            name: format!("Group {id}"),
            members: rows,
            visible: true,
            opened: false,
            description: String::new(),
            project: false,
            active: true,
            departments: Vec::new(),
            initiate_perms: Default::default(),
        });
    }
    Scenario {
        state: State {
            portal: p.portal.clone(),
            users,
            groups,
            webhooks: vec![Webhook {
                user: 1,
                code: WEBHOOK_CODE.into(),
                scopes: None,
            }],
            oauth: None,
        },
        desired_yaml: desired,
        memberships,
    }
}
