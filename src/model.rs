//! The domain: group and user identities, roles, desired and current membership. Plain data,
//! provider-neutral, ordered (`BTreeMap`) so everything derived from it is deterministic.
//! No I/O and no wire formats here: providers convert their JSON into these types by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A UUID (DocSpace's user and group IDs), kept as two halves so that IDs stay `Copy`, 8-byte
/// aligned and ordered like their text. Shown lower-case and hyphenated, as DocSpace writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid {
    pub hi: u64,
    pub lo: u64,
}

impl Uuid {
    /// The canonical form only: 8-4-4-4-12 hex digits (either case). Braces, URNs and the
    /// 32-digit form are refused, so a file cannot hold two spellings of one ID.
    pub fn parse(s: &str) -> Option<Uuid> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut value: u128 = 0;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            let digit = (c as char).to_digit(16)?;
            value = (value << 4) | u128::from(digit);
        }
        Some(Uuid {
            hi: (value >> 64) as u64,
            lo: value as u64,
        })
    }

    /// The all-zero UUID, DocSpace's "none".
    pub fn is_nil(self) -> bool {
        self.hi == 0 && self.lo == 0
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = (u128::from(self.hi) << 64) | u128::from(self.lo);
        let h = format!("{v:032x}");
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// Identities are provider-neutral: each provider uses the variant its API has (Bitrix24
/// integers, DocSpace UUIDs). A plan only ever compares IDs of one portal, and `resolve`
/// refuses an ID of the wrong kind for its group's portal, so the variants never mix in a
/// group. Numbers order before UUIDs; within a variant, the natural order.
macro_rules! identity {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            /// Bitrix24.
            Num(u64),
            /// ONLYOFFICE DocSpace.
            Uuid(Uuid),
        }

        impl $name {
            /// The numeric ID, for a Bitrix24 portal.
            pub fn num(self) -> Option<u64> {
                match self {
                    $name::Num(n) => Some(n),
                    $name::Uuid(_) => None,
                }
            }

            /// The number of an ID that `resolve` guarantees is numeric (a Bitrix24 portal's, or
            /// a test's).
            ///
            /// # Panics
            /// On a UUID: a bug, an ID of another system reached Bitrix24 code.
            pub fn expect_num(self) -> u64 {
                match self {
                    $name::Num(n) => n,
                    $name::Uuid(u) => panic!("a DocSpace ID ({u}) reached Bitrix24 code"),
                }
            }

            /// The UUID, for a DocSpace portal.
            pub fn uuid(self) -> Option<Uuid> {
                match self {
                    $name::Uuid(u) => Some(u),
                    $name::Num(_) => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::Num(n) => write!(f, "{n}"),
                    $name::Uuid(u) => write!(f, "{u}"),
                }
            }
        }

        /// A number for Bitrix24 (as before), a string for DocSpace.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $name::Num(n) => s.serialize_u64(*n),
                    $name::Uuid(u) => s.collect_str(u),
                }
            }
        }
    };
}

identity!(
    /// A group's ID on its portal (Bitrix24 `GROUP_ID`, DocSpace group `id`).
    GroupId
);
identity!(
    /// A portal user's ID (Bitrix24 `USER_ID`, DocSpace user `id`).
    UserId
);

/// The systems roster manages: one closed enum. Adding a third means a variant here, a
/// provider module and a sandbox module (ARCHITECTURE.md, "The provider boundary").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// Bitrix24 workgroups: numeric IDs; owner, moderators, members; invitations.
    #[default]
    Bitrix24,
    /// ONLYOFFICE DocSpace groups: UUIDs; one manager (playing the owner's part) and members.
    DocSpace,
}

impl System {
    /// The key that names it in a file's `portals:` (`bitrix24`, `docspace`).
    pub fn key(self) -> &'static str {
        match self {
            System::Bitrix24 => "bitrix24",
            System::DocSpace => "docspace",
        }
    }

    /// Its name for people.
    pub fn title(self) -> &'static str {
        match self {
            System::Bitrix24 => "Bitrix24",
            System::DocSpace => "ONLYOFFICE DocSpace",
        }
    }

    /// What the system calls the role roster keeps as `Role::Owner`.
    pub fn owner_word(self) -> &'static str {
        match self {
            System::Bitrix24 => "owner",
            System::DocSpace => "manager",
        }
    }

    /// A role in this system's words.
    pub fn role_word(self, role: Role) -> &'static str {
        match role {
            Role::Owner => self.owner_word(),
            r => r.as_str(),
        }
    }

    /// Whether an ID (or a user ID) is of this system's kind.
    pub fn takes_uuids(self) -> bool {
        matches!(self, System::DocSpace)
    }
}

/// A member's role in a group. Ordered from most to least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The group's single owner (Bitrix24 `A`). roster never removes or demotes it.
    Owner,
    /// Bitrix24 `E`.
    Moderator,
    /// Bitrix24 `K`.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Moderator => "moderator",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a group's new members are brought in (`add_with:` in the file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddWith {
    /// `sonet_group.user.add`: the user is a member at once (needs an administrator).
    #[default]
    Add,
    /// `sonet_group.user.invite`: the user is invited and becomes a member on accepting.
    Invite,
}

/// What the YAML file declares for one group, with every reference resolved to IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGroup {
    pub id: GroupId,
    /// The group's name: the file's, else the portal's once resolved. Shown in plans.
    pub name: Option<String>,
    /// The declared owner, if any: checked against the portal; changed only with
    /// `--allow-owner-change`.
    pub owner: Option<UserId>,
    /// Declared active members with their role (moderator or member; never owner).
    pub members: BTreeMap<UserId, Role>,
    /// Declared users the portal reports as inactive (dismissed): shown, never added, never
    /// removed for being undeclared, never made the owner (an inactive declared owner is here
    /// with `Role::Owner`).
    pub inactive: BTreeMap<UserId, Role>,
    /// When true, members present on the portal but not declared are removed (owners never).
    pub prune: bool,
    /// Whether `prune:` was written for this group (a department-synced group is pruned only
    /// when the file says so explicitly).
    pub prune_explicit: bool,
    /// How new members are brought in.
    pub add_with: AddWith,
    /// The invitation text (`invite_message:`), for `AddWith::Invite`.
    pub invite_message: Option<String>,
    /// Users never removed or demoted in this group (in addition to `DesiredState::protected`).
    pub protected: BTreeSet<UserId>,
    /// This group's own removal limits; unset fields fall back to the file's, then the defaults.
    /// `max_total_removals` is never set here (the loader accepts it only at the top).
    pub limits: Limits,
    /// 1-based line of the group in its source file, for messages about it.
    pub line: usize,
}

impl DesiredGroup {
    /// A group with nothing declared: no owner, no members, pruned, added with `add`.
    pub fn new(id: GroupId) -> DesiredGroup {
        DesiredGroup {
            id,
            name: None,
            owner: None,
            members: BTreeMap::new(),
            inactive: BTreeMap::new(),
            prune: true,
            prune_explicit: false,
            add_with: AddWith::Add,
            invite_message: None,
            protected: BTreeSet::new(),
            limits: Limits::default(),
            line: 1,
        }
    }
}

/// The whole desired state: every declared group, by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub groups: BTreeMap<GroupId, DesiredGroup>,
    /// Users never removed or demoted in any declared group.
    pub protected: BTreeSet<UserId>,
    /// The file's top-level `limits:`: defaults for every group, and the run-wide limit.
    pub limits: Limits,
}

impl DesiredState {
    /// Whether `user` is protected in `group` (at the top or in the group).
    pub fn is_protected(&self, group: &DesiredGroup, user: UserId) -> bool {
        self.protected.contains(&user) || group.protected.contains(&user)
    }
}

/// How many removals a limit allows: a count, or a whole percent (0..=100) of what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u64),
    Percent(u8),
}

impl Limit {
    /// The most removals allowed out of `current`.
    pub fn allowed(self, current: usize) -> u64 {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(p) => (current as u64).saturating_mul(u64::from(p)) / 100,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p} %"),
        }
    }
}

/// A value set in the file, with the 1-based line it was written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub line: usize,
}

/// Mass-removal limits as written in one `limits:` mapping (the file's top or a group's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Removals allowed per group, of its current non-owner members.
    pub max_removals: Option<Setting<Limit>>,
    /// `true` switches off the rule that a plan never removes every non-owner member of a
    /// group that has 4 or more.
    pub allow_empty: Option<Setting<bool>>,
    /// Removals allowed in the whole run, of all current memberships of the declared groups.
    pub max_total_removals: Option<Setting<Limit>>,
}

/// One group's members as the portal reports them (owner included, with `Role::Owner`), and
/// the relations that are not memberships yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentGroup {
    pub members: BTreeMap<UserId, Role>,
    /// Invited by the group, not accepted yet (Bitrix24 `Z` initiated by the group).
    pub invited: BTreeSet<UserId>,
    /// Asked to join, waiting for approval (Bitrix24 `Z` initiated by the user).
    pub requested: BTreeSet<UserId>,
    /// The portal's name for the group, when the read tells it.
    pub name: Option<String>,
    /// Departments the portal itself keeps the group in step with (Bitrix24 `UF_SG_DEPT`);
    /// empty when none (or when the read cannot tell).
    pub departments: Vec<u64>,
    /// The least role allowed to invite (Bitrix24 `INITIATE_PERMS`), when known.
    pub initiate_perms: Option<Role>,
    /// Whether the group is visible to everyone (Bitrix24 `VISIBLE`), when known: a secret
    /// group takes invitations only from its members, administrators included.
    pub visible: Option<bool>,
}

impl CurrentGroup {
    pub fn owner(&self) -> Option<UserId> {
        self.members
            .iter()
            .find(|(_, role)| **role == Role::Owner)
            .map(|(user, _)| *user)
    }
}

/// The portal's current membership for the groups roster looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentState {
    pub groups: BTreeMap<GroupId, CurrentGroup>,
}

/// What roster knows about a portal user, for display and for plan-time checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: UserId,
    pub email: Option<String>,
    /// Full name as the portal gives it (first and last), when known.
    pub name: Option<String>,
    /// False for users who cannot be added to a group: dismissed (Bitrix24), terminated or
    /// guests (DocSpace).
    pub active: bool,
    /// An external user: Bitrix24 extranet, a DocSpace guest.
    pub extranet: bool,
}

/// Who the run acts as: the webhook's creator or the OAuth token's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    /// A portal administrator (`user.admin`).
    pub admin: bool,
}

/// What the file refers to by something other than an ID, and the IDs it names: what the
/// provider must look up before the file can be resolved. E-mails are lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub emails: BTreeSet<String>,
    pub users: BTreeSet<UserId>,
    pub group_names: BTreeSet<String>,
}

/// What the provider found for a `Wanted`: every user it found (by e-mail or ID; two users
/// may share an e-mail), the groups found for each name asked (0..n each), and the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    pub people: Vec<Person>,
    pub groups_by_name: BTreeMap<String, Vec<(GroupId, String)>>,
    pub caller: Option<Caller>,
    /// Set when the portal would not let roster look users up at all (a webhook without the
    /// `user` scope): why. Then user IDs are taken unchecked and e-mails cannot be resolved.
    pub users_unavailable: Option<String>,
    /// Set when users can be looked up by ID but not by e-mail (the portal ignored the e-mail
    /// filter: a webhook or token with only the `user_brief` scope sees no e-mails): why.
    /// Then e-mails cannot be resolved; IDs are checked as usual.
    pub emails_unavailable: Option<String>,
}

/// Names for display: people and groups roster learned about during the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    pub users: BTreeMap<UserId, Person>,
    pub groups: BTreeMap<GroupId, String>,
    /// The system the plan is for: its words for roles (a DocSpace owner is a "manager").
    pub system: System,
}

/// What became of one planned change when it was carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpStatus {
    /// The portal confirmed the change.
    Done,
    /// The change is in place: reading the group after apply showed it, though no answer to
    /// roster's own command confirmed it (a lost response, or somebody else made it).
    Confirmed,
    /// The portal answered without error but did not make the change (for example it
    /// silently skipped the user); `reason` says what is known.
    NotDone { reason: String },
    /// The call carrying the change failed and the portal does not hold the change (reading
    /// the group again showed it missing, or the portal refused the call outright); `error` is
    /// the API or transport error.
    Failed { error: String },
    /// Nobody can tell whether the portal made the change: an answer was lost (or refused after
    /// the portal may have acted) and reading the group again failed too. Never counted as done
    /// or as failed; the next `plan` shows the truth.
    Unknown { error: String },
    /// Never sent: the run was interrupted (SIGINT/SIGTERM) before the change's batch started.
    NotStarted,
}

impl OpStatus {
    /// Done or confirmed: the portal holds the change.
    pub fn is_done(&self) -> bool {
        matches!(self, OpStatus::Done | OpStatus::Confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_parse_in_canonical_form_only_and_print_lower_case() {
        let text = "C652DBA3-210e-436d-b264-df5ceda0a48e";
        let u = Uuid::parse(text).expect("canonical");
        assert_eq!(u.to_string(), text.to_lowercase());
        assert_eq!(UserId::Uuid(u).to_string(), text.to_lowercase());
        for bad in [
            "c652dba3210e436db264df5ceda0a48e",
            "{c652dba3-210e-436d-b264-df5ceda0a48e}",
            "c652dba3-210e-436d-b264-df5ceda0a48",
            "c652dba3-210e-436d-b264_df5ceda0a48e",
            "g652dba3-210e-436d-b264-df5ceda0a48e",
            "c652dba3-210e-436d-b264-df5ceda0a4é",
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad}");
        }
        assert!(
            Uuid::parse("00000000-0000-0000-0000-000000000000")
                .unwrap()
                .is_nil()
        );
    }

    #[test]
    fn ids_order_like_their_text_and_serialize_by_kind() {
        let a = Uuid::parse("0fffffff-ffff-ffff-ffff-ffffffffffff").unwrap();
        let b = Uuid::parse("10000000-0000-0000-0000-000000000000").unwrap();
        assert!(a < b);
        assert!(UserId::Num(u64::MAX) < UserId::Uuid(a));
        assert_eq!(serde_json::to_string(&GroupId::Num(15)).unwrap(), "15");
        assert_eq!(
            serde_json::to_string(&GroupId::Uuid(b)).unwrap(),
            "\"10000000-0000-0000-0000-000000000000\""
        );
        assert_eq!(std::mem::size_of::<UserId>(), 24);
    }
}
