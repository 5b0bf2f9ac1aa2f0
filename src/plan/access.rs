//! Permissions known before apply: `check(plan, current, caller)` says which planned changes
//! the run's user (the webhook's creator or the OAuth token's user) is not allowed to make,
//! so `plan` can warn and `apply` can refuse before any write. Pure: no I/O.
//!
//! The rules (shared/reference/bitrix24-api.md §1.2, bitrix24-rules.md §3.1 and §4):
//! - `sonet_group.user.add`, `.update` and `.delete` are for portal administrators only, so a
//!   non-admin caller cannot make an `Add`, `Accept` (an update of the request to a role),
//!   `SetRole` or `Remove`.
//! - `sonet_group.user.invite` needs an administrator, or a caller whose role in the group
//!   meets the group's `INITIATE_PERMS` (`A` owner only, `E` owner or moderators, `K` any
//!   member; unknown → `K`, the most lenient, so roster never refuses what may work). After an
//!   owner change in the same plan the caller's role is the one the transfer leaves them.
//! - `sonet_group.user.invite` looks the group up with the caller's permissions even for an
//!   administrator: a secret group (`VISIBLE=N`) takes invitations only from its members
//!   (rules §3.1); and the portal never invites the caller themself.
//! - `sonet_group.setowner` is for the group's current owner: over REST an administrator is
//!   not enough (the admin bypass needs the UI's admin-mode session flag).

use crate::model::{Caller, CurrentState, GroupId, Role, System};

use super::{Change, Plan};

/// Planned changes in one group that the caller may not make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessProblem {
    pub group: GroupId,
    /// The group's name as the plan shows it.
    pub name: Option<String>,
    /// How many of the group's changes this is about.
    pub changes: usize,
    pub message: String,
}

/// `check` under the rules of the plan's system. DocSpace (docspace-api.md §3, §6): every group
/// write (members added or removed, the manager set) needs a DocSpace owner or administrator;
/// a room admin, a user or a guest gets 403, a group's own manager included.
pub fn check_for(
    system: System,
    plan: &Plan,
    current: &CurrentState,
    caller: &Caller,
) -> Vec<AccessProblem> {
    match system {
        System::Bitrix24 => check(plan, current, caller),
        System::DocSpace => {
            if caller.admin {
                return Vec::new();
            }
            plan.groups
                .iter()
                .filter_map(|g| {
                    let changes = g.changes().count();
                    (changes > 0).then(|| AccessProblem {
                        group: g.id,
                        name: g.name.clone(),
                        changes,
                        message: format!(
                            "only a DocSpace owner or administrator may change a group's members or manager, and the key's user ({}) is not one",
                            caller.user
                        ),
                    })
                })
                .collect()
        }
    }
}

/// Every group's problems, in plan order: membership writes, then invitations, then the owner
/// change. Empty when the caller may make every change.
pub fn check(plan: &Plan, current: &CurrentState, caller: &Caller) -> Vec<AccessProblem> {
    let mut out = Vec::new();
    for g in &plan.groups {
        let have = current.groups.get(&g.id);
        let owner = have.and_then(|h| h.owner());
        let (mut writes, mut invites, mut self_invite) = (0, 0, false);
        let mut transfer = None;
        for c in g.changes() {
            match *c {
                Change::Add { .. }
                | Change::Accept { .. }
                | Change::SetRole { .. }
                | Change::Remove { .. } => writes += 1,
                Change::Invite { user, .. } => {
                    invites += 1;
                    self_invite |= user == caller.user;
                }
                Change::SetOwner { from, to } => transfer = Some((from, to)),
            }
        }
        let mut problem = |changes, message: String| {
            out.push(AccessProblem {
                group: g.id,
                name: g.name.clone(),
                changes,
                message,
            })
        };
        let who = format!("the run's user (#{})", caller.user);
        if writes > 0 && !caller.admin {
            problem(
                writes,
                format!(
                    "only a portal administrator may add members, accept requests, change roles or remove members (sonet_group.user.add/update/delete), and {who} is not one"
                ),
            );
        }
        let member_when_inviting = match transfer {
            Some((_, to)) if to == caller.user => true,
            _ => have.is_some_and(|h| h.members.contains_key(&caller.user)),
        };
        if self_invite {
            problem(
                1,
                format!(
                    "the portal never invites the caller, and {who} is invited here; add them with `add_with: add` or invite them from another account"
                ),
            );
        }
        if invites > 0
            && caller.admin
            && have.and_then(|h| h.visible) == Some(false)
            && !member_when_inviting
        {
            problem(
                invites,
                format!(
                    "the group is secret, and the portal takes invitations to a secret group only from its members, administrators included (sonet_group.user.invite checks the caller's access); {who} is not a member: add them to the group first, or use `add_with: add`"
                ),
            );
        }
        if invites > 0 && !caller.admin {
            // The caller's role when the invitations are sent: after the owner change.
            let role = match transfer {
                Some((_, to)) if to == caller.user => Some(Role::Owner),
                Some((Some(from), _)) if from == caller.user => Some(Role::Member),
                _ => have.and_then(|h| h.members.get(&caller.user).copied()),
            };
            let perms = have.and_then(|h| h.initiate_perms).unwrap_or(Role::Member);
            // Roles are ordered most privileged first.
            if role.is_none_or(|r| r > perms) {
                let needed = match perms {
                    Role::Owner => "the group's owner",
                    Role::Moderator => "the group's owner or a moderator",
                    Role::Member => "a member of the group",
                };
                let is = match role {
                    Some(r) => format!("is a {r}"),
                    None => "is not a member".to_owned(),
                };
                problem(
                    invites,
                    format!(
                        "inviting (sonet_group.user.invite) needs a portal administrator or {needed} (the group's invitation setting), and {who} {is}"
                    ),
                );
            }
        }
        if let Some((_, to)) = transfer
            && owner != Some(caller.user)
        {
            let current = owner.map_or("the group has no owner".to_owned(), |o| {
                format!("the owner is #{o}")
            });
            problem(
                1,
                format!(
                    "only the group's current owner may hand it to #{to} (sonet_group.setowner; an administrator's webhook is not enough), and {who} is not the owner ({current}); run with the owner's webhook or change the owner in Bitrix24"
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CurrentGroup, UserId};
    use crate::plan::GroupPlan;

    fn plan(changes: &[Change]) -> Plan {
        Plan {
            groups: vec![GroupPlan {
                id: GroupId::Num(15),
                name: Some("M".to_owned()),
                entries: changes
                    .iter()
                    .copied()
                    .map(super::super::Entry::Change)
                    .collect(),
                owner_mismatch: None,
                departments: Vec::new(),
                prune_synced: false,
                invite_message: None,
                current_non_owners: 0,
            }],
        }
    }

    fn current(members: &[(u64, Role)], perms: Option<Role>) -> CurrentState {
        let mut c = CurrentState::default();
        c.groups.insert(
            GroupId::Num(15),
            CurrentGroup {
                members: members.iter().map(|(u, r)| (UserId::Num(*u), *r)).collect(),
                initiate_perms: perms,
                ..Default::default()
            },
        );
        c
    }

    fn caller(user: u64, admin: bool) -> Caller {
        Caller {
            user: UserId::Num(user),
            admin,
        }
    }

    const ADD: Change = Change::Add {
        user: UserId::Num(2),
        role: Role::Member,
    };
    const ACCEPT: Change = Change::Accept {
        user: UserId::Num(3),
        role: Role::Member,
    };
    const PROMOTE: Change = Change::SetRole {
        user: UserId::Num(4),
        from: Role::Member,
        to: Role::Moderator,
    };
    const REMOVE: Change = Change::Remove {
        user: UserId::Num(5),
        role: Role::Member,
    };
    const INVITE: Change = Change::Invite {
        user: UserId::Num(6),
        role: Role::Member,
    };

    fn summary(p: &[AccessProblem]) -> Vec<(u64, usize, String)> {
        p.iter()
            .map(|p| (p.group.expect_num(), p.changes, p.message.clone()))
            .collect()
    }

    #[test]
    fn an_administrator_may_write_members_and_invite() {
        let p = plan(&[ADD, ACCEPT, PROMOTE, REMOVE, INVITE]);
        assert!(
            check(
                &p,
                &current(&[(1, Role::Owner)], Some(Role::Owner)),
                &caller(9, true)
            )
            .is_empty()
        );
    }

    #[test]
    fn a_non_administrator_may_not_add_accept_change_or_remove() {
        let p = plan(&[ADD, ACCEPT, PROMOTE, REMOVE]);
        let got = check(&p, &current(&[(9, Role::Owner)], None), &caller(9, false));
        assert_eq!(
            summary(&got),
            [(15, 4, "only a portal administrator may add members, accept requests, change roles or remove members (sonet_group.user.add/update/delete), and the run's user (#9) is not one".to_owned())]
        );
        assert_eq!(got[0].name.as_deref(), Some("M"));
    }

    #[test]
    fn invitations_follow_the_groups_invitation_setting() {
        let p = plan(&[INVITE, INVITE]);
        let members = [(1, Role::Owner), (7, Role::Moderator), (8, Role::Member)];
        let may =
            |user, perms| check(&p, &current(&members, perms), &caller(user, false)).is_empty();
        // Owner only.
        assert!(may(1, Some(Role::Owner)));
        assert!(!may(7, Some(Role::Owner)));
        // Owner or moderators.
        assert!(may(7, Some(Role::Moderator)));
        assert!(!may(8, Some(Role::Moderator)));
        // Any member; unknown settings count as that.
        assert!(may(8, Some(Role::Member)));
        assert!(may(8, None));
        assert!(!may(99, None));
        let got = check(
            &p,
            &current(&members, Some(Role::Moderator)),
            &caller(8, false),
        );
        assert_eq!(
            summary(&got),
            [(15, 2, "inviting (sonet_group.user.invite) needs a portal administrator or the group's owner or a moderator (the group's invitation setting), and the run's user (#8) is a member".to_owned())]
        );
        let got = check(&p, &current(&members, None), &caller(99, false));
        assert!(got[0].message.ends_with("a member of the group (the group's invitation setting), and the run's user (#99) is not a member"), "{}", got[0].message);
    }

    #[test]
    fn an_owner_change_needs_the_current_owner_even_for_administrators() {
        let to = |to| Change::SetOwner {
            from: Some(UserId::Num(1)),
            to: UserId::Num(to),
        };
        let cur = current(&[(1, Role::Owner), (5, Role::Member)], Some(Role::Owner));
        assert!(check(&plan(&[to(5)]), &cur, &caller(1, false)).is_empty());
        let got = check(&plan(&[to(5)]), &cur, &caller(9, true));
        assert_eq!(
            summary(&got),
            [(15, 1, "only the group's current owner may hand it to #5 (sonet_group.setowner; an administrator's webhook is not enough), and the run's user (#9) is not the owner (the owner is #1); run with the owner's webhook or change the owner in Bitrix24".to_owned())]
        );
        let ownerless = current(&[(5, Role::Member)], None);
        let got = check(
            &plan(&[Change::SetOwner {
                from: None,
                to: UserId::Num(5),
            }]),
            &ownerless,
            &caller(9, true),
        );
        assert!(got[0].message.contains("(the group has no owner)"));
        // The owner handing the group over then inviting where only owners may: the
        // invitations come after the transfer, when the caller is a member.
        let got = check(&plan(&[to(5), INVITE]), &cur, &caller(1, false));
        assert_eq!(got.len(), 1);
        assert!(got[0].message.contains("is a member"), "{}", got[0].message);
    }

    #[test]
    fn problems_come_per_group_and_kind() {
        let p = plan(&[
            ADD,
            INVITE,
            Change::SetOwner {
                from: Some(UserId::Num(1)),
                to: UserId::Num(5),
            },
        ]);
        let got = check(
            &p,
            &current(&[(1, Role::Owner)], Some(Role::Owner)),
            &caller(9, false),
        );
        assert_eq!(got.iter().map(|p| p.changes).collect::<Vec<_>>(), [1, 1, 1]);
        // A group missing from the current state: no owner, no role.
        let got = check(&p, &CurrentState::default(), &caller(9, false));
        assert_eq!(got.len(), 3);
        assert!(
            check(
                &Plan::default(),
                &CurrentState::default(),
                &caller(9, false)
            )
            .is_empty()
        );
    }

    /// rules §3.1: a secret group takes invitations from its members only, administrators
    /// included; the caller is never invited.
    #[test]
    fn a_secret_group_and_the_caller_themself_cannot_be_invited_into() {
        let mut secret = current(&[(1, Role::Owner)], None);
        secret.groups.get_mut(&GroupId::Num(15)).unwrap().visible = Some(false);
        let p = plan(&[INVITE]);
        let found = summary(&check(&p, &secret, &caller(9, true)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("secret"), "{found:?}");
        // A member administrator may; a visible group takes the administrator's invitations.
        assert!(check(&p, &secret, &caller(1, true)).is_empty());
        let visible = current(&[(1, Role::Owner)], None);
        assert!(check(&p, &visible, &caller(9, true)).is_empty());
        // Inviting oneself.
        let me = plan(&[Change::Invite {
            user: UserId::Num(1),
            role: Role::Member,
        }]);
        let found = summary(&check(&me, &visible, &caller(1, true)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("never invites the caller"), "{found:?}");
    }
}
