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
    /// Users on the portal (0: four per member slot, plus the admin).
    pub users: usize,
    /// Name people in the desired file by e-mail instead of by ID.
    pub emails: bool,
    /// Name groups in the desired file by name instead of by ID.
    pub group_names: bool,
}

impl Params {
    /// G groups × M members with `churn`, people and groups by ID, the default portal.
    pub fn new(groups: usize, members: usize, churn: f64, seed: u64) -> Params {
        Params {
            groups,
            members,
            churn,
            seed,
            portal: Portal::default(),
            users: 0,
            emails: false,
            group_names: false,
        }
    }
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
    let pool = if p.users > members {
        p.users as i64
    } else {
        (members as i64) * 4 + 1
    };
    let users: Vec<User> = (1..=pool)
        .map(|id| User::generated(id, "user", "Generated"))
        .collect();
    // How the file names a user: `User::generated`'s address, or the ID.
    let person = |u: i64| {
        if p.emails {
            format!("user{u}@example.com")
        } else {
            u.to_string()
        }
    };
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
                .map(|&u| person(u))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let group = if p.group_names {
            format!("name: Group {id}")
        } else {
            format!("id: {id}\n    name: Group {id}")
        };
        let _ = write!(
            desired,
            "  - {group}\n    owner: {}\n    moderators: [{}]\n    members: [{}]\n",
            person(1),
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
            departments: Vec::new(),
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

/// The API key of a generated DocSpace portal's owner.
pub const DOCSPACE_KEY: &str =
    "sk-5ce4a71000000000000000000000000000000000000000000000000000000001";

/// A generated user's DocSpace ID: `00000000-0000-4000-8000-` and the number in hex.
pub fn docspace_user(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// A generated group's DocSpace ID.
pub fn docspace_group(n: u64) -> String {
    format!("{n:08x}-0000-4000-9000-000000000000")
}

/// A generated DocSpace portal and the desired state to reconcile it to.
#[derive(Debug, Clone)]
pub struct DocSpaceScenario {
    pub state: super::docspace::state::State,
    /// A `version: 1` file with one DocSpace portal, `docs`.
    pub desired_yaml: String,
    pub memberships: usize,
    /// Groups whose desired manager differs from the portal's.
    pub manager_changes: usize,
}

/// G DocSpace groups × M members (the manager included) and a desired file that differs by
/// `churn` (adds and removals; DocSpace has no other roles), with one group in fifty handing
/// its manager role to another member (the old manager stays a member).
pub fn generate_docspace(p: &Params) -> DocSpaceScenario {
    use super::docspace::state::{
        ApiKey, Group as DsGroup, State as DsState, Status, User as DsUser, UserType,
    };
    let mut rng = fastrand::Rng::with_seed(p.seed);
    let members = p.members.max(1);
    let pool = if p.users > members {
        p.users as u64
    } else {
        (members as u64) * 4 + 1
    };
    let user = |n: u64, kind: UserType| DsUser {
        id: docspace_user(n),
        email: format!("user{n}@example.com"),
        first_name: "User".into(),
        last_name: format!("{n}"),
        user_name: None,
        status: Status::Active,
        kind,
    };
    let mut users = vec![user(1, UserType::Owner)];
    users.extend((2..=pool).map(|n| user(n, UserType::User)));
    let per_group_changes = ((members as f64) * p.churn).round() as usize;
    let mut desired = String::from("version: 1\nportals: { docs: { docspace: {} } }\ngroups:\n");
    let (mut groups, mut memberships, mut manager_changes) = (Vec::new(), 0, 0);
    for g in 0..p.groups as u64 {
        let mut chosen = BTreeSet::new();
        while chosen.len() < members {
            chosen.insert(rng.u64(2..=pool));
        }
        let have: Vec<u64> = chosen.iter().copied().collect();
        let manager = have[rng.usize(0..have.len())];
        memberships += have.len();
        let mut want: BTreeSet<u64> = chosen.clone();
        let mut touched = BTreeSet::from([manager]);
        for _ in 0..per_group_changes {
            if rng.bool() {
                let u = loop {
                    let u = rng.u64(2..=pool);
                    if !chosen.contains(&u) && !touched.contains(&u) {
                        break u;
                    }
                };
                touched.insert(u);
                want.insert(u);
            } else {
                let candidates: Vec<u64> = want
                    .iter()
                    .copied()
                    .filter(|u| chosen.contains(u) && !touched.contains(u))
                    .collect();
                if let Some(&u) = candidates.get(rng.usize(0..candidates.len().max(1))) {
                    touched.insert(u);
                    want.remove(&u);
                }
            }
        }
        let mut new_manager = manager;
        if g % 50 == 7
            && let Some(&u) = want.iter().find(|u| **u != manager && chosen.contains(u))
        {
            new_manager = u;
            manager_changes += 1;
        }
        want.remove(&new_manager);
        let list: Vec<String> = want.iter().map(|&u| docspace_user(u)).collect();
        let _ = write!(
            desired,
            "  - id: {}\n    name: Group {}\n    manager: {}\n    members: [{}]\n",
            docspace_group(g + 1),
            g + 1,
            docspace_user(new_manager),
            list.join(", ")
        );
        groups.push(DsGroup {
            id: docspace_group(g + 1),
            name: format!("Group {}", g + 1),
            manager: Some(docspace_user(manager)),
            members: have.iter().map(|&u| docspace_user(u)).collect(),
        });
    }
    DocSpaceScenario {
        state: DsState {
            users,
            groups,
            api_keys: vec![ApiKey {
                user: docspace_user(1),
                key: DOCSPACE_KEY.into(),
                scopes: None,
            }],
            ..DsState::default()
        },
        desired_yaml: desired,
        memberships,
        manager_changes,
    }
}
