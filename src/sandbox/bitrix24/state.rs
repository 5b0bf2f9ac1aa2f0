//! The emulated portal's state and its YAML file: types, loading with validation, and the
//! atomic write-back. It owns the file format; it must not know HTTP or any REST method.
//!
//! # State file shape (YAML, read with `serde_norway`, unknown keys rejected)
//!
//! ```yaml
//! portal:                                   # optional; every key below is optional
//!   rate_limit: { burst: 50, per_second: 2 } # default (cloud); `null` disables; enterprise 250/5
//!   setowner_error_code: ""                 # `error` of sonet_group.setowner failures: "" or "0"
//!   sonet_group_get_past_end: last_page     # `start` past the end (also department.get): last_page | empty
//!   user_get_bare_email: like               # user.get FILTER {EMAIL: ..} without prefix: like | exact
//!   setowner_admin: deny                    # sonet_group.setowner by a non-owner admin: deny | allow
//!   workgroup_members_inactive: exclude     # socialnetwork.api.workgroup.get lists inactive users: exclude | include
//!   oauth_rotation: invalidate              # a used refresh token: invalidate | keep
//!   insufficient_scope_status: 401          # HTTP status of `insufficient_scope`: 401 | 403
//!   user_no_department: absent              # UF_DEPARTMENT of users without one: absent | null | empty | false
//!   latency_ms: 0                           # phase 2: added to every HTTP response
//!   command_ms: 0                           # phase 2: processing time charged per command
//!   operating_limit_s: 480                  # phase 2: per-method budget over 10 one-minute buckets
//!   batch_billing: per_command              # phase 2: per_command | batch
//!   faults: { seed: 1, rate_503: 0.0, rate_429: 0.0, rate_500: 0.0, rate_lost: 0.0 }   # default off
//!   # more keys of `faults`: rate_502, rate_500_after, rate_truncated, rate_slow, slow_ms,
//!   # rate_cmd_error (see below)
//! users:
//!   - { id: 1, email: admin@example.com, name: Ada, last_name: Admin, active: true, admin: true }
//!   - { id: 10, email: bo@example.com, name: Bo, last_name: Berg }  # active: true, admin: false
//!   - { id: 11, email: ex@example.com, name: Ex, last_name: Tern, active: true, extranet: true }
//!   - { id: 12, email: cy@example.com, name: Cy, last_name: Cole, active: true, departments: [3, 7] }
//! departments:                              # optional: the company structure (department.get)
//!   - { id: 1, name: Acme, head: 1 }        # no parent: a top-level department
//!   - { id: 3, name: Sales, parent: 1, sort: 100 }  # sort (default 500), head (default none)
//!   - { id: 7, name: Old, parent: 1, active: false }  # hidden with everything below it
//! groups:
//!   - id: 15
//!     name: Marketing
//!     # optional: visible (true), opened (false), description (""), project (false), active (true)
//!     departments: [8]    # UF_SG_DEPT, the linked departments (default [])
//!     initiate_perms: K   # who may invite: A owner, E owner + moderators, K all members (default)
//!     members:            # relation rows in relation-ID (creation) order; exactly one A
//!       - { user: 1, role: A }
//!       - { user: 10, role: K }
//!       - { user: 30, role: Z, initiated_by: U }   # pending: U = user asked, G = group invited
//!       - { user: 31, role: Z, initiated_by: G, message: "Join us" }  # MESSAGE of the invite
//!       - { user: 40, role: T }                     # banned
//! webhooks:
//!   - { user: 1, code: sandboxcode0001 }
//!   - { user: 10, code: bocode0000001, scopes: [user_basic] }   # default: every scope
//! oauth:                                    # optional
//!   clients: [{ client_id: local.app1, client_secret: appsecret0001 }]
//!   access_ttl_s: 3600                      # lifetime of access tokens issued by /oauth/token/
//!   tokens:
//!     - { access_token: accesstoken0001, user: 1, expires_at: 1773850553 }   # unix seconds
//!     - { access_token: accesstoken0002, user: 1, expires_at: 1773850553, scopes: [sonet_group] }
//!   refresh_tokens:
//!     - { refresh_token: refreshtoken0001, client_id: local.app1, user: 1 }  # revoked: false
//!     - { refresh_token: refreshtoken0002, client_id: local.app1, user: 1, scopes: [user_brief] }
//! ```
//!
//! Scopes (webhooks, access tokens; default every scope): `sonet_group.*` needs `sonet_group`
//! or `socialnetwork`, `user.*` needs `user`, `user_basic` or `user_brief`,
//! `socialnetwork.api.*` needs `socialnetwork`; other names are accepted and grant nothing
//! here. With `user_brief` but neither `user` nor `user_basic`, users come without `EMAIL` and
//! a filter on it is ignored. A refresh token's `scopes` are those of its grant: the access
//! and refresh tokens it is exchanged for carry them. `department.*` needs `department`.
//!
//! # Departments
//!
//! A user's `departments` is `UF_DEPARTMENT` (default none). `USER_TYPE` still comes from
//! `extranet` alone, so older files behave as before: an employee may have no departments
//! (on a portal that would make them extranet), while an extranet user must have none.
//! Validation requires unique positive ids, a non-empty name, an existing `parent` (no cycles),
//! an existing `head` user and existing departments in users' lists; its messages give the
//! line. Groups' `departments` (`UF_SG_DEPT`) are not checked against the tree, as before.
//!
//! # Injected faults (`portal.faults`, all optional, default 0)
//!
//! One roll of the seeded dice per HTTP request picks at most one request fault; the rates are
//! probabilities, each ≥ 0, and the request rates together at most 1. Bands are taken in the
//! order listed, so adding a rate never changes which requests an existing config hits.
//!
//! * `seed` — the dice's seed: the same seed and requests give the same faults.
//! * `rate_503` — refused before anything runs: 503 `QUERY_LIMIT_EXCEEDED` (counted as a 503).
//! * `rate_429` — refused: 429 `OPERATION_TIME_LIMIT` (counted as a 429).
//! * `rate_500` — refused: 500 `INTERNAL_SERVER_ERROR`, nothing executed.
//! * `rate_lost` — **executed**, then a proxy's 502 HTML page: the client cannot tell.
//! * `rate_502` — a proxy's 502 HTML page, nothing executed.
//! * `rate_500_after` — **executed**, then 500 `INTERNAL_SERVER_ERROR` (JSON).
//! * `rate_truncated` — **executed**, then status 200 with the JSON body cut in half.
//! * `rate_slow` — **executed** (the change is on disk before the wait), then the response is
//!   held for `slow_ms` (default 40000), so a client timeout fires first; a client that hangs
//!   up does not undo the change.
//! * `rate_cmd_error` — a separate probability, rolled once **per batch sub-command** (only
//!   for requests no request fault hit): the sub-command is not executed and gets
//!   `{"error":"INTERNAL_SERVER_ERROR","error_description":"Internal server error"}` in
//!   `result_error`; the others run normally. At most 1.
//!
//! Write-back keeps every list in file order (new relation rows are appended) and writes keys
//! in the order shown above; optional keys are written only when they differ from the default,
//! except `active` on users, which is always written. Comments are not preserved.
//!
//! Webhook codes, access and refresh tokens and client secrets are secrets: no validation or
//! parser message quotes them (validation names items by position, and parser messages are
//! scrubbed of every value that follows a `code`, `token` or `secret` key).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::SandboxError;

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    #[serde(default)]
    pub portal: Portal,
    #[serde(default)]
    pub users: Vec<User>,
    /// The company structure, in file order (`department.get` orders it itself).
    #[serde(default)]
    pub departments: Vec<Department>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    #[serde(default)]
    pub oauth: Option<OAuth>,
}

/// Portal-wide settings, including the knobs for behaviour the reference leaves UNCONFIRMED.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Portal {
    /// Leaky bucket; `None` (YAML `null`) disables it. Missing key = cloud default 50/2.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: Option<RateLimit>,
    /// The `error` code of `sonet_group.setowner` failures (reference §0: `""` or `"0"`).
    #[serde(default)]
    pub setowner_error_code: String,
    /// What `sonet_group.get` (and `department.get`, the same legacy navigation) returns for
    /// a `start` past the last page.
    #[serde(default)]
    pub sonet_group_get_past_end: PastEnd,
    /// How `user.get` matches a FILTER `EMAIL` key without prefix.
    #[serde(default)]
    pub user_get_bare_email: BareEmail,
    /// Whether a portal admin who is not the owner may call `sonet_group.setowner`.
    #[serde(default)]
    pub setowner_admin: SetOwnerAdmin,
    /// Whether `socialnetwork.api.workgroup.get` lists inactive users.
    #[serde(default)]
    pub workgroup_members_inactive: InactiveMembers,
    /// What happens to a refresh token once it has been used.
    #[serde(default)]
    pub oauth_rotation: OAuthRotation,
    /// The HTTP status of `insufficient_scope` (docs: 403; newer docs and the OAuth source
    /// path: 401).
    #[serde(default = "default_scope_status")]
    pub insufficient_scope_status: u16,
    /// What `user.get` sends as `UF_DEPARTMENT` for a user without departments (rules §1.5,
    /// §8.1: UNCONFIRMED).
    #[serde(default)]
    pub user_no_department: NoDepartment,
    /// Milliseconds added to every HTTP response.
    #[serde(default)]
    pub latency_ms: u64,
    /// Processing time charged per executed command, in milliseconds.
    #[serde(default)]
    pub command_ms: u64,
    /// Operating budget per (webhook, method) over the last 10 one-minute buckets, seconds.
    #[serde(default = "default_operating_limit")]
    pub operating_limit_s: f64,
    /// How a batch is charged to the operating budget.
    #[serde(default)]
    pub batch_billing: BatchBilling,
    /// Random error injection, decided before anything is executed.
    #[serde(default)]
    pub faults: Option<Faults>,
}

impl Default for Portal {
    fn default() -> Self {
        Portal {
            rate_limit: default_rate_limit(),
            setowner_error_code: String::new(),
            sonet_group_get_past_end: PastEnd::default(),
            user_get_bare_email: BareEmail::default(),
            setowner_admin: SetOwnerAdmin::default(),
            workgroup_members_inactive: InactiveMembers::default(),
            oauth_rotation: OAuthRotation::default(),
            insufficient_scope_status: default_scope_status(),
            user_no_department: NoDepartment::default(),
            latency_ms: 0,
            command_ms: 0,
            operating_limit_s: default_operating_limit(),
            batch_billing: BatchBilling::default(),
            faults: None,
        }
    }
}

fn default_rate_limit() -> Option<RateLimit> {
    Some(RateLimit {
        burst: 50.0,
        per_second: 2.0,
    })
}

fn default_operating_limit() -> f64 {
    480.0
}

fn default_scope_status() -> u16 {
    401
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub burst: f64,
    pub per_second: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PastEnd {
    /// Legacy `CDBResult::NavStart` clamps the page number to the last page [inferred].
    #[default]
    LastPage,
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BareEmail {
    /// SQL LIKE without added wildcards: case-insensitive, `%` and `_` are wildcards.
    #[default]
    Like,
    /// Case-insensitive equality.
    Exact,
}

/// `portal.setowner_admin` (rules §4: a webhook has no admin-mode session, so an admin who is
/// not the owner most likely gets "Insufficient permissions"; UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetOwnerAdmin {
    #[default]
    Deny,
    Allow,
}

/// `portal.workgroup_members_inactive` (rules §8.6, UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InactiveMembers {
    /// Like `sonet_group.user.get`: relations of inactive users are left out.
    #[default]
    Exclude,
    Include,
}

/// `portal.oauth_rotation` (rules §5, UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthRotation {
    /// A refresh token works once: using it revokes it.
    #[default]
    Invalidate,
    /// The old refresh token keeps working after a refresh.
    Keep,
}

/// `portal.user_no_department` (rules §1.5 "Output", §8.1, UNCONFIRMED): both a NULL and a
/// serialized empty array exist in Bitrix's own `USER_TYPE` expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDepartment {
    /// No `UF_DEPARTMENT` key (the NULL state; `isset` fails in `getUserData`).
    #[default]
    Absent,
    /// `"UF_DEPARTMENT": null`.
    Null,
    /// `"UF_DEPARTMENT": []` (the serialized empty array).
    Empty,
    /// `"UF_DEPARTMENT": false`, which a defensive client should accept too.
    False,
}

impl NoDepartment {
    fn code(self) -> &'static str {
        match self {
            NoDepartment::Absent => "absent",
            NoDepartment::Null => "null",
            NoDepartment::Empty => "empty",
            NoDepartment::False => "false",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchBilling {
    /// The docs: the outer batch is free, each sub-command is charged to its own method.
    #[default]
    PerCommand,
    /// JSSDK's measurement: the whole batch is charged to the method `batch`.
    Batch,
}

/// `portal.faults` (documented in the module comment). `Default` is all rates 0.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rate_503: f64,
    #[serde(default)]
    pub rate_429: f64,
    #[serde(default)]
    pub rate_500: f64,
    /// Execute the request, then answer 502 with an HTML page, as if a proxy lost the
    /// response: the client cannot know whether its write happened.
    #[serde(default)]
    pub rate_lost: f64,
    /// Answer a proxy's 502 HTML page without executing anything.
    #[serde(default)]
    pub rate_502: f64,
    /// Execute the request, then answer 500 `INTERNAL_SERVER_ERROR`.
    #[serde(default)]
    pub rate_500_after: f64,
    /// Execute the request, then answer 200 with the JSON body cut in half.
    #[serde(default)]
    pub rate_truncated: f64,
    /// Execute the request, then hold the response for `slow_ms`.
    #[serde(default)]
    pub rate_slow: f64,
    /// How long `rate_slow` holds a response, in milliseconds.
    #[serde(default = "default_slow_ms")]
    pub slow_ms: u64,
    /// Per batch sub-command: answer it with an internal error instead of executing it.
    #[serde(default)]
    pub rate_cmd_error: f64,
}

fn default_slow_ms() -> u64 {
    40_000
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 0,
            rate_503: 0.0,
            rate_429: 0.0,
            rate_500: 0.0,
            rate_lost: 0.0,
            rate_502: 0.0,
            rate_500_after: 0.0,
            rate_truncated: 0.0,
            rate_slow: 0.0,
            slow_ms: default_slow_ms(),
            rate_cmd_error: 0.0,
        }
    }
}

impl Faults {
    /// The request-level rates, in band order.
    pub fn request_rates(&self) -> [f64; 8] {
        [
            self.rate_503,
            self.rate_429,
            self.rate_500,
            self.rate_lost,
            self.rate_502,
            self.rate_500_after,
            self.rate_truncated,
            self.rate_slow,
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub admin: bool,
    /// An extranet user (`USER_TYPE` `extranet`, no departments); else an employee.
    #[serde(default)]
    pub extranet: bool,
    /// `UF_DEPARTMENT`: the departments the user belongs to, in the order given.
    #[serde(default)]
    pub departments: Vec<i64>,
}

impl User {
    /// An active generated user `{prefix}{id}@example.com` named `{Prefix}{id}` (`prefix` is
    /// ASCII and not empty); user 1 is the administrator.
    pub fn generated(id: i64, prefix: &str, last_name: &str) -> User {
        User {
            id,
            email: format!("{prefix}{id}@example.com"),
            name: format!("{}{}{id}", prefix[..1].to_uppercase(), &prefix[1..]),
            last_name: last_name.into(),
            active: true,
            admin: id == 1,
            extranet: false,
            departments: Vec::new(),
        }
    }
}

/// A department of the company structure (an iblock section on the portal).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub id: i64,
    pub name: String,
    /// `IBLOCK_SECTION_ID`; `None` for a top-level department.
    #[serde(default)]
    pub parent: Option<i64>,
    /// `UF_HEAD`: the head's user id.
    #[serde(default)]
    pub head: Option<i64>,
    /// `SORT` (the iblock default is 500).
    #[serde(default = "default_sort")]
    pub sort: i64,
    /// `ACTIVE`; an inactive department hides itself and everything below it.
    #[serde(default = "yes")]
    pub active: bool,
}

fn default_sort() -> i64 {
    500
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default = "yes")]
    pub visible: bool,
    #[serde(default)]
    pub opened: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub project: bool,
    #[serde(default = "yes")]
    pub active: bool,
    /// `UF_SG_DEPT`: the departments Bitrix24 syncs the group's members from.
    #[serde(default)]
    pub departments: Vec<i64>,
    /// `INITIATE_PERMS`: who may invite.
    #[serde(default)]
    pub initiate_perms: InitiatePerms,
}

/// Who may invite to a group: the owner (`A`), owner and moderators (`E`), every member (`K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum InitiatePerms {
    A,
    E,
    #[default]
    K,
}

impl InitiatePerms {
    pub fn code(self) -> &'static str {
        match self {
            InitiatePerms::A => "A",
            InitiatePerms::E => "E",
            InitiatePerms::K => "K",
        }
    }

    /// May a user with relation `role` invite?
    pub fn allows(self, role: Role) -> bool {
        match self {
            InitiatePerms::A => role == Role::A,
            InitiatePerms::E => matches!(role, Role::A | Role::E),
            InitiatePerms::K => role.is_member(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub user: i64,
    pub role: Role,
    #[serde(default)]
    pub initiated_by: Option<Initiator>,
    /// The `MESSAGE` of the invite that created this `Z` row.
    #[serde(default)]
    pub message: Option<String>,
}

impl Member {
    /// A row of `role` with no initiator and no message.
    pub fn new(user: i64, role: Role) -> Member {
        Member {
            user,
            role,
            initiated_by: None,
            message: None,
        }
    }
}

/// Relation roles (reference §1.1). `T` is banned, `Z` pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Role {
    A,
    E,
    K,
    T,
    Z,
}

impl Role {
    pub fn code(self) -> &'static str {
        match self {
            Role::A => "A",
            Role::E => "E",
            Role::K => "K",
            Role::T => "T",
            Role::Z => "Z",
        }
    }

    /// `'<=ROLE' => 'K'`: owner, moderator, member.
    pub fn is_member(self) -> bool {
        matches!(self, Role::A | Role::E | Role::K)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Initiator {
    U,
    G,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub user: i64,
    pub code: String,
    /// The scopes granted; `None` (no key) is every scope.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

impl Webhook {
    /// Does this webhook grant any of `needed`?
    pub fn grants(&self, needed: &[&str]) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| needed.contains(&x.as_str())))
    }
}

/// The `oauth:` section: applications, issued access tokens and refresh tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth {
    #[serde(default)]
    pub clients: Vec<OAuthClient>,
    /// Lifetime of the access tokens `/oauth/token/` issues, seconds.
    #[serde(default = "default_access_ttl")]
    pub access_ttl_s: u64,
    #[serde(default)]
    pub tokens: Vec<AccessToken>,
    #[serde(default)]
    pub refresh_tokens: Vec<RefreshToken>,
}

impl Default for OAuth {
    fn default() -> Self {
        OAuth {
            clients: Vec::new(),
            access_ttl_s: default_access_ttl(),
            tokens: Vec::new(),
            refresh_tokens: Vec::new(),
        }
    }
}

fn default_access_ttl() -> u64 {
    3600
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessToken {
    pub access_token: String,
    pub user: i64,
    /// Unix seconds; the token is expired when `expires_at <= now`.
    pub expires_at: i64,
    /// The scopes granted; `None` (no key) is every scope.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshToken {
    pub refresh_token: String,
    pub client_id: String,
    pub user: i64,
    #[serde(default)]
    pub revoked: bool,
    /// The scopes of the grant, which the tokens it is exchanged for carry; `None` (no key)
    /// is every scope.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

impl State {
    pub fn user(&self, id: i64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn group(&self, id: i64) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn group_mut(&mut self, id: i64) -> Option<&mut Group> {
        self.groups.iter_mut().find(|g| g.id == id)
    }

    pub fn department(&self, id: i64) -> Option<&Department> {
        self.departments.iter().find(|d| d.id == id)
    }
}

impl Group {
    pub fn owner(&self) -> Option<i64> {
        self.members
            .iter()
            .find(|m| m.role == Role::A)
            .map(|m| m.user)
    }

    pub fn relation(&self, user: i64) -> Option<&Member> {
        self.members.iter().find(|m| m.user == user)
    }

    /// Visible to `user` without admin rights: `VISIBLE=Y` or a member (role ≤ K).
    pub fn visible_to(&self, user: i64) -> bool {
        self.visible || self.relation(user).is_some_and(|m| m.role.is_member())
    }
}

/// Read, parse and validate the state file. No error message contains a secret from the file
/// (a webhook code, token or client secret): validation names those items by position and
/// user, and parser messages (which may quote a scalar) are scrubbed of everything that looks
/// like the value of a `code`, `token` or `secret` key.
pub fn load(path: &Path) -> Result<State, SandboxError> {
    let text = std::fs::read_to_string(path).map_err(|source| SandboxError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parse and validate the text of a state file (see [`load`]).
pub fn parse(path: &Path, text: &str) -> Result<State, SandboxError> {
    let state: State = serde_norway::from_str(text).map_err(|e| {
        let loc = e.location();
        SandboxError::Parse {
            path: path.to_owned(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: scrub(&e.to_string(), text),
        }
    })?;
    check(&state).map_err(|p| {
        let at = p
            .field
            .as_deref()
            .and_then(|f| crate::sandbox::docspace::positions::Index::build(text).find(f));
        SandboxError::Invalid {
            path: path.to_owned(),
            line: at.map(|a| a.line),
            column: at.map(|a| a.column),
            message: scrub(&p.message, text),
        }
    })?;
    Ok(state)
}

/// The key endings whose values are secrets: webhook `code`s, `access_token`/`refresh_token`
/// and `client_secret`.
const SECRET_KEYS: &[&str] = &["code", "token", "secret"];

/// Every value in `text` that follows a secret key (`code: X`, `"refresh_token": "X"`), found
/// without parsing, since the text may not parse.
fn code_like_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in SECRET_KEYS {
        let mut rest = text;
        while let Some(i) = rest.find(key) {
            let after = &rest[i + key.len()..];
            rest = after;
            let after = after.trim_start_matches(['"', '\'', ' ', '\t']);
            let Some(after) = after.strip_prefix(':') else {
                continue;
            };
            let value: String = after
                .trim_start()
                .chars()
                .take_while(|c| !matches!(c, ',' | '}' | ']' | '\n' | '\r' | '#'))
                .collect();
            let value = value.trim().trim_matches(['"', '\'']).trim();
            if !value.is_empty() {
                out.push(value.to_owned());
            }
        }
    }
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out.dedup();
    out
}

/// `message` with every whole-word occurrence of a secret of `text` replaced by `***`.
fn scrub(message: &str, text: &str) -> String {
    let mut msg = message.to_owned();
    for code in code_like_values(text) {
        let mut out = String::with_capacity(msg.len());
        let mut rest = msg.as_str();
        while let Some(i) = rest.find(&code) {
            let before = rest[..i].chars().next_back();
            let after = rest[i + code.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            out.push_str(&rest[..i]);
            if word(before) || word(after) {
                out.push_str(&code);
            } else {
                out.push_str("***");
            }
            rest = &rest[i + code.len()..];
        }
        out.push_str(rest);
        msg = out;
    }
    msg
}

/// Check the invariants the emulator relies on; the message names the offending item.
pub fn validate(s: &State) -> Result<(), String> {
    check(s).map_err(|p| p.message)
}

/// A validation failure: what is wrong, and (when known) the path of the offending value in
/// the file (`departments[2].parent`), which [`parse`] turns into a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    field: Option<String>,
    message: String,
}

fn check(s: &State) -> Result<(), Problem> {
    let plain = |message| Problem {
        field: None,
        message,
    };
    validate_core(s).map_err(plain)?;
    validate_departments(s)
}

/// The `departments:` list and users' `departments`: unique positive ids, names, existing
/// parents without cycles, existing heads; users' departments exist, extranet users have none.
fn validate_departments(s: &State) -> Result<(), Problem> {
    let at = |field: String, message: String| Problem {
        field: Some(field),
        message,
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, d) in s.departments.iter().enumerate() {
        let here = format!("departments[{i}]");
        if d.id <= 0 {
            return Err(at(
                format!("{here}.id"),
                format!("department id {} must be positive", d.id),
            ));
        }
        if !seen.insert(d.id) {
            return Err(at(
                format!("{here}.id"),
                format!("duplicate department id {}", d.id),
            ));
        }
        if d.name.trim().is_empty() {
            return Err(at(
                format!("{here}.name"),
                format!("department {} has an empty name", d.id),
            ));
        }
    }
    for (i, d) in s.departments.iter().enumerate() {
        let here = format!("departments[{i}]");
        if let Some(p) = d.parent {
            if s.department(p).is_none() {
                return Err(at(
                    format!("{here}.parent"),
                    format!("department {}: parent department {p} does not exist", d.id),
                ));
            }
            if let Some(cycle) = parent_cycle(s, d.id) {
                let chain: Vec<String> = cycle.iter().map(i64::to_string).collect();
                return Err(at(
                    format!("{here}.parent"),
                    format!(
                        "department {}: its parents make a cycle ({})",
                        d.id,
                        chain.join(" → ")
                    ),
                ));
            }
        }
        if let Some(h) = d.head
            && s.user(h).is_none()
        {
            return Err(at(
                format!("{here}.head"),
                format!("department {}: head user {h} does not exist", d.id),
            ));
        }
    }
    for (i, u) in s.users.iter().enumerate() {
        if u.extranet && !u.departments.is_empty() {
            return Err(at(
                format!("users[{i}].departments"),
                format!("user {}: an extranet user has no departments", u.id),
            ));
        }
        let mut mine = std::collections::BTreeSet::new();
        for (j, d) in u.departments.iter().enumerate() {
            let field = format!("users[{i}].departments[{j}]");
            if s.department(*d).is_none() {
                return Err(at(
                    field,
                    format!("user {}: department {d} does not exist", u.id),
                ));
            }
            if !mine.insert(*d) {
                return Err(at(
                    field,
                    format!("user {}: department {d} is listed twice", u.id),
                ));
            }
        }
    }
    Ok(())
}

/// The cycle `id`'s parent chain runs into, from `id` back to `id`, if it is on one.
/// Parents must exist (checked first); a chain into a cycle elsewhere is reported there.
fn parent_cycle(s: &State, id: i64) -> Option<Vec<i64>> {
    let mut chain = vec![id];
    let mut cur = id;
    while let Some(p) = s.department(cur).and_then(|d| d.parent) {
        if p == id {
            chain.push(p);
            return Some(chain);
        }
        if chain.contains(&p) {
            // A cycle that `id` only leads into: its own members report it.
            return None;
        }
        chain.push(p);
        cur = p;
    }
    None
}

fn validate_core(s: &State) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for u in &s.users {
        if u.id <= 0 {
            return Err(format!("user id {} must be positive", u.id));
        }
        if !seen.insert(u.id) {
            return Err(format!("duplicate user id {}", u.id));
        }
    }
    let mut gseen = std::collections::BTreeSet::new();
    for g in &s.groups {
        if g.id <= 0 {
            return Err(format!("group id {} must be positive", g.id));
        }
        if !gseen.insert(g.id) {
            return Err(format!("duplicate group id {}", g.id));
        }
        let owners = g.members.iter().filter(|m| m.role == Role::A).count();
        if owners != 1 {
            return Err(format!(
                "group {} has {owners} owners (role A); exactly one is required",
                g.id
            ));
        }
        let mut mseen = std::collections::BTreeSet::new();
        for m in &g.members {
            if s.user(m.user).is_none() {
                return Err(format!(
                    "group {}: member user {} does not exist",
                    g.id, m.user
                ));
            }
            if !mseen.insert(m.user) {
                return Err(format!("group {}: user {} has two relations", g.id, m.user));
            }
            if m.initiated_by.is_some() && m.role != Role::Z {
                return Err(format!(
                    "group {}: user {}: initiated_by is only allowed on role Z",
                    g.id, m.user
                ));
            }
            if m.message.is_some() && m.role != Role::Z {
                return Err(format!(
                    "group {}: user {}: message is only allowed on role Z",
                    g.id, m.user
                ));
            }
        }
    }
    let mut wseen = std::collections::BTreeSet::new();
    // Webhooks are named by position, never by their code (a secret).
    for (i, w) in s.webhooks.iter().enumerate() {
        let n = i + 1;
        if s.user(w.user).is_none() {
            return Err(format!("webhook #{n}: user {} does not exist", w.user));
        }
        if w.code.is_empty() {
            return Err(format!("webhook #{n} (user {}) has an empty code", w.user));
        }
        if !wseen.insert((w.user, w.code.clone())) {
            return Err(format!(
                "webhook #{n} repeats the code of an earlier webhook of user {}",
                w.user
            ));
        }
        if let Some(bad) = bad_scope(w.scopes.as_deref()) {
            return Err(format!(
                "webhook #{n} (user {}): scope {bad:?} is not a scope name (lower-case letters, digits, _)",
                w.user
            ));
        }
    }
    if let Some(o) = &s.oauth {
        validate_oauth(s, o)?;
    }
    if !matches!(s.portal.insufficient_scope_status, 401 | 403) {
        return Err("portal.insufficient_scope_status must be 401 or 403".to_owned());
    }
    if let Some(r) = s.portal.rate_limit
        && (r.burst < 1.0 || r.per_second < 0.0)
    {
        return Err("portal.rate_limit needs burst >= 1 and per_second >= 0".to_owned());
    }
    if !matches!(s.portal.setowner_error_code.as_str(), "" | "0") {
        return Err("portal.setowner_error_code must be \"\" or \"0\"".to_owned());
    }
    if let Some(f) = s.portal.faults {
        let rates = f.request_rates();
        let sum: f64 = rates.iter().sum();
        if rates.iter().any(|r| r.is_nan() || *r < 0.0) || sum > 1.0 {
            return Err("portal.faults request rates must be >= 0 and sum to at most 1".to_owned());
        }
        if !(0.0..=1.0).contains(&f.rate_cmd_error) {
            return Err("portal.faults.rate_cmd_error must be between 0 and 1".to_owned());
        }
    }
    Ok(())
}

/// The first of `scopes` that is not a scope name.
fn bad_scope(scopes: Option<&[String]>) -> Option<&String> {
    scopes?.iter().find(|s| !scope_name_ok(s))
}

/// `[a-z][a-z0-9_]*`.
fn scope_name_ok(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The `oauth:` section. Clients, tokens and refresh tokens are named by position (and user),
/// never by a secret.
fn validate_oauth(s: &State, o: &OAuth) -> Result<(), String> {
    let mut ids = std::collections::BTreeSet::new();
    for (i, c) in o.clients.iter().enumerate() {
        let n = i + 1;
        if c.client_id.is_empty() || c.client_secret.is_empty() {
            return Err(format!(
                "oauth.clients #{n} needs a client_id and a client_secret"
            ));
        }
        if !ids.insert(c.client_id.as_str()) {
            return Err(format!(
                "oauth.clients #{n} repeats the client_id of an earlier client"
            ));
        }
    }
    if o.access_ttl_s == 0 {
        return Err("oauth.access_ttl_s must be at least 1".to_owned());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in o.tokens.iter().enumerate() {
        let n = i + 1;
        if s.user(t.user).is_none() {
            return Err(format!("oauth.tokens #{n}: user {} does not exist", t.user));
        }
        if t.access_token.is_empty() {
            return Err(format!("oauth.tokens #{n} (user {}) is empty", t.user));
        }
        if !seen.insert(t.access_token.as_str()) {
            return Err(format!(
                "oauth.tokens #{n} (user {}) repeats an earlier access token",
                t.user
            ));
        }
        if let Some(bad) = bad_scope(t.scopes.as_deref()) {
            return Err(format!(
                "oauth.tokens #{n} (user {}): scope {bad:?} is not a scope name (lower-case letters, digits, _)",
                t.user
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in o.refresh_tokens.iter().enumerate() {
        let n = i + 1;
        if s.user(r.user).is_none() {
            return Err(format!(
                "oauth.refresh_tokens #{n}: user {} does not exist",
                r.user
            ));
        }
        if !ids.contains(r.client_id.as_str()) {
            return Err(format!(
                "oauth.refresh_tokens #{n} (user {}): its client_id is not in oauth.clients",
                r.user
            ));
        }
        if r.refresh_token.is_empty() {
            return Err(format!(
                "oauth.refresh_tokens #{n} (user {}) is empty",
                r.user
            ));
        }
        if !seen.insert(r.refresh_token.as_str()) {
            return Err(format!(
                "oauth.refresh_tokens #{n} (user {}) repeats an earlier refresh token",
                r.user
            ));
        }
        if let Some(bad) = bad_scope(r.scopes.as_deref()) {
            return Err(format!(
                "oauth.refresh_tokens #{n} (user {}): scope {bad:?} is not a scope name (lower-case letters, digits, _)",
                r.user
            ));
        }
    }
    Ok(())
}

/// Write `state` to `path` atomically: the text goes to a temp file next to the real file,
/// which is flushed and renamed over it, so a reader or a crash sees the old state or the new
/// one, never a mix.
///
/// * A symlink is followed: the file it points to is replaced, and the link stays a link.
/// * The file keeps its permission bits (a new file gets the process's default).
/// * The temp file has one fixed name per state file, `.NAME.tmp` ([`temp_path`]): a killed
///   write leaves at most that one file, which the next write overwrites and
///   [`remove_stale_temp`] (called at start) deletes.
pub fn save(path: &Path, state: &State) -> Result<(), SandboxError> {
    let target = resolve(path);
    let err = |source: std::io::Error| SandboxError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = temp_path(&target);
    let existing = std::fs::metadata(&target).ok().map(|m| m.permissions());
    let write = || -> std::io::Result<()> {
        // A fresh file, never an existing one: `create_new` (O_EXCL) does not follow a
        // symlink planted at the temp name, so the state cannot be written through it.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Some(perm) = &existing {
            f.set_permissions(perm.clone())?;
        }
        f.write_all(render(state).as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &target)?;
        // Make the rename itself durable.
        if let Ok(dir) = std::fs::File::open(parent_dir(&target)) {
            let _ = dir.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

pub use crate::sandbox::lock::{parent_dir, resolve, sidecar};

/// The one temp file [`save`] uses for `target` (a resolved path).
pub fn temp_path(target: &Path) -> PathBuf {
    sidecar(target, "tmp")
}

/// Delete the temp file a killed write may have left next to the state file behind `path`.
pub fn remove_stale_temp(path: &Path) {
    let _ = std::fs::remove_file(temp_path(&resolve(path)));
}

/// Render the state as YAML in the documented shape (deterministic).
pub fn render(s: &State) -> String {
    let mut o = String::new();
    let p = &s.portal;
    let d = Portal::default();
    o.push_str("portal:\n");
    match p.rate_limit {
        Some(r) => {
            let _ = writeln!(
                o,
                "  rate_limit: {{ burst: {}, per_second: {} }}",
                num(r.burst),
                num(r.per_second)
            );
        }
        None => o.push_str("  rate_limit: null\n"),
    }
    if p.setowner_error_code != d.setowner_error_code {
        let _ = writeln!(
            o,
            "  setowner_error_code: {}",
            scalar(&p.setowner_error_code)
        );
    }
    if p.sonet_group_get_past_end != d.sonet_group_get_past_end {
        o.push_str("  sonet_group_get_past_end: empty\n");
    }
    if p.user_get_bare_email != d.user_get_bare_email {
        o.push_str("  user_get_bare_email: exact\n");
    }
    if p.setowner_admin != d.setowner_admin {
        o.push_str("  setowner_admin: allow\n");
    }
    if p.workgroup_members_inactive != d.workgroup_members_inactive {
        o.push_str("  workgroup_members_inactive: include\n");
    }
    if p.oauth_rotation != d.oauth_rotation {
        o.push_str("  oauth_rotation: keep\n");
    }
    if p.insufficient_scope_status != d.insufficient_scope_status {
        let _ = writeln!(
            o,
            "  insufficient_scope_status: {}",
            p.insufficient_scope_status
        );
    }
    if p.user_no_department != d.user_no_department {
        let _ = writeln!(o, "  user_no_department: {}", p.user_no_department.code());
    }
    if p.latency_ms != 0 {
        let _ = writeln!(o, "  latency_ms: {}", p.latency_ms);
    }
    if p.command_ms != 0 {
        let _ = writeln!(o, "  command_ms: {}", p.command_ms);
    }
    if p.operating_limit_s != d.operating_limit_s {
        let _ = writeln!(o, "  operating_limit_s: {}", num(p.operating_limit_s));
    }
    if p.batch_billing != d.batch_billing {
        o.push_str("  batch_billing: batch\n");
    }
    if let Some(f) = p.faults {
        let _ = writeln!(
            o,
            "  faults: {{ seed: {}, rate_503: {}, rate_429: {}, rate_500: {}, rate_lost: {} }}",
            f.seed,
            num(f.rate_503),
            num(f.rate_429),
            num(f.rate_500),
            num(f.rate_lost)
        );
        // Newer keys only when set, so older files round-trip byte for byte.
        let extra = [
            ("rate_502", f.rate_502),
            ("rate_500_after", f.rate_500_after),
            ("rate_truncated", f.rate_truncated),
            ("rate_slow", f.rate_slow),
            ("rate_cmd_error", f.rate_cmd_error),
        ];
        let mut more: Vec<String> = extra
            .iter()
            .filter(|(_, r)| *r != 0.0)
            .map(|(k, r)| format!("{k}: {}", num(*r)))
            .collect();
        if f.slow_ms != default_slow_ms() {
            more.push(format!("slow_ms: {}", f.slow_ms));
        }
        if !more.is_empty() {
            // Reopen the flow mapping written above.
            o.truncate(o.len() - " }\n".len());
            let _ = writeln!(o, ", {} }}", more.join(", "));
        }
    }
    o.push_str(if s.users.is_empty() {
        "users: []\n"
    } else {
        "users:\n"
    });
    for u in &s.users {
        let _ = write!(
            o,
            "  - {{ id: {}, email: {}, name: {}, last_name: {}, active: {}",
            u.id,
            scalar(&u.email),
            scalar(&u.name),
            scalar(&u.last_name),
            u.active
        );
        if u.admin {
            o.push_str(", admin: true");
        }
        if u.extranet {
            o.push_str(", extranet: true");
        }
        if !u.departments.is_empty() {
            let _ = write!(o, ", departments: [{}]", ids(&u.departments));
        }
        o.push_str(" }\n");
    }
    // Only when there is a tree, so files without one round-trip byte for byte.
    if !s.departments.is_empty() {
        o.push_str("departments:\n");
    }
    for d in &s.departments {
        let _ = write!(o, "  - {{ id: {}, name: {}", d.id, scalar(&d.name));
        if let Some(p) = d.parent {
            let _ = write!(o, ", parent: {p}");
        }
        if let Some(h) = d.head {
            let _ = write!(o, ", head: {h}");
        }
        if d.sort != default_sort() {
            let _ = write!(o, ", sort: {}", d.sort);
        }
        if !d.active {
            o.push_str(", active: false");
        }
        o.push_str(" }\n");
    }
    o.push_str(if s.groups.is_empty() {
        "groups: []\n"
    } else {
        "groups:\n"
    });
    for g in &s.groups {
        let _ = writeln!(o, "  - id: {}", g.id);
        let _ = writeln!(o, "    name: {}", scalar(&g.name));
        if !g.visible {
            o.push_str("    visible: false\n");
        }
        if g.opened {
            o.push_str("    opened: true\n");
        }
        if !g.description.is_empty() {
            let _ = writeln!(o, "    description: {}", scalar(&g.description));
        }
        if g.project {
            o.push_str("    project: true\n");
        }
        if !g.active {
            o.push_str("    active: false\n");
        }
        if !g.departments.is_empty() {
            let _ = writeln!(o, "    departments: [{}]", ids(&g.departments));
        }
        if g.initiate_perms != InitiatePerms::default() {
            let _ = writeln!(o, "    initiate_perms: {}", g.initiate_perms.code());
        }
        o.push_str("    members:\n");
        for m in &g.members {
            let _ = write!(o, "      - {{ user: {}, role: {}", m.user, m.role.code());
            match m.initiated_by {
                Some(Initiator::U) => o.push_str(", initiated_by: U"),
                Some(Initiator::G) => o.push_str(", initiated_by: G"),
                None => {}
            }
            if let Some(msg) = &m.message {
                let _ = write!(o, ", message: {}", scalar(msg));
            }
            o.push_str(" }\n");
        }
    }
    o.push_str(if s.webhooks.is_empty() {
        "webhooks: []\n"
    } else {
        "webhooks:\n"
    });
    for w in &s.webhooks {
        let _ = write!(o, "  - {{ user: {}, code: {}", w.user, scalar(&w.code));
        render_scopes(&mut o, w.scopes.as_deref());
        o.push_str(" }\n");
    }
    if let Some(a) = &s.oauth {
        render_oauth(&mut o, a);
    }
    o
}

fn render_oauth(o: &mut String, a: &OAuth) {
    o.push_str("oauth:\n");
    let list = |o: &mut String, key: &str, empty: bool| {
        let _ = writeln!(o, "  {key}:{}", if empty { " []" } else { "" });
    };
    list(o, "clients", a.clients.is_empty());
    for c in &a.clients {
        let _ = writeln!(
            o,
            "    - {{ client_id: {}, client_secret: {} }}",
            scalar(&c.client_id),
            scalar(&c.client_secret)
        );
    }
    if a.access_ttl_s != default_access_ttl() {
        let _ = writeln!(o, "  access_ttl_s: {}", a.access_ttl_s);
    }
    list(o, "tokens", a.tokens.is_empty());
    for t in &a.tokens {
        let _ = write!(
            o,
            "    - {{ access_token: {}, user: {}, expires_at: {}",
            scalar(&t.access_token),
            t.user,
            t.expires_at
        );
        render_scopes(o, t.scopes.as_deref());
        o.push_str(" }\n");
    }
    list(o, "refresh_tokens", a.refresh_tokens.is_empty());
    for r in &a.refresh_tokens {
        let _ = write!(
            o,
            "    - {{ refresh_token: {}, client_id: {}, user: {}",
            scalar(&r.refresh_token),
            scalar(&r.client_id),
            r.user
        );
        if r.revoked {
            o.push_str(", revoked: true");
        }
        render_scopes(o, r.scopes.as_deref());
        o.push_str(" }\n");
    }
}

/// `, scopes: [a, b]` when the scopes are given (not every scope).
fn render_scopes(o: &mut String, scopes: Option<&[String]>) {
    if let Some(scopes) = scopes {
        let names: Vec<String> = scopes.iter().map(|x| scalar(x)).collect();
        let _ = write!(o, ", scopes: [{}]", names.join(", "));
    }
}

/// `1, 2, 3`.
fn ids(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    ids.join(", ")
}

fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A string as a YAML flow scalar: plain when unambiguous, else JSON-style double-quoted.
fn scalar(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !s.ends_with(' ')
        && !s.contains("  ")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-' | '+' | ' '))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain_ok {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"portal:
  rate_limit: { burst: 50, per_second: 2 }
users:
  - { id: 1, email: admin@example.com, name: Ada, last_name: Admin, active: true, admin: true }
  - { id: 10, email: "bo,o@example.com", name: "Yes", last_name: "O'Neil \"x\"", active: false }
groups:
  - id: 15
    name: "Marketing: EU"
    visible: false
    members:
      - { user: 1, role: A }
      - { user: 10, role: Z, initiated_by: U }
webhooks:
  - { user: 1, code: sandboxcode0001 }
"#;

    #[test]
    fn render_round_trips() {
        let s: State = serde_norway::from_str(SAMPLE).unwrap();
        validate(&s).unwrap();
        let text = render(&s);
        let back: State = serde_norway::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(render(&back), text);
    }

    #[test]
    fn validation_messages() {
        let mut s: State = serde_norway::from_str(SAMPLE).unwrap();
        s.groups[0].members.push(Member {
            user: 1,
            role: Role::K,
            initiated_by: None,
            message: None,
        });
        assert_eq!(
            validate(&s).unwrap_err(),
            "group 15: user 1 has two relations"
        );
        s.groups[0].members[0].role = Role::K;
        assert!(validate(&s).unwrap_err().contains("0 owners"));
    }

    #[test]
    fn fault_settings_round_trip() {
        let plain = "portal:\n  faults: { seed: 3, rate_503: 0.1 }\nusers: []\n";
        let s: State = serde_norway::from_str(plain).unwrap();
        assert!(!render(&s).contains("slow_ms"), "defaults are not written");
        let yaml = "portal:\n  faults: { seed: 3, rate_503: 0.1, rate_slow: 0.2, slow_ms: 500, rate_cmd_error: 0.25 }\nusers: []\n";
        let s: State = serde_norway::from_str(yaml).unwrap();
        validate(&s).unwrap();
        let text = render(&s);
        assert!(
            text.contains("rate_slow: 0.2, rate_cmd_error: 0.25, slow_ms: 500 }"),
            "{text}"
        );
        let back: State = serde_norway::from_str(&text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn rate_limit_null_disables_and_missing_defaults() {
        let s: State = serde_norway::from_str("portal: { rate_limit: null }\nusers: []").unwrap();
        assert_eq!(s.portal.rate_limit, None);
        let s: State = serde_norway::from_str("users: []").unwrap();
        assert_eq!(s.portal.rate_limit, default_rate_limit());
    }

    const PEOPLE: &str = r#"portal:
  rate_limit: null
  setowner_admin: allow
  workgroup_members_inactive: include
  oauth_rotation: keep
  insufficient_scope_status: 403
users:
  - { id: 1, email: admin@example.com, name: Ada, last_name: Admin, active: true, admin: true }
  - { id: 11, email: ex@example.com, name: Ex, last_name: Tern, active: false, extranet: true }
groups:
  - id: 15
    name: Marketing
    departments: [8, 9]
    initiate_perms: E
    members:
      - { user: 1, role: A }
      - { user: 11, role: Z, initiated_by: G, message: "Join us, please" }
webhooks:
  - { user: 1, code: sandboxcode0001, scopes: [user_basic, sonet_group] }
oauth:
  clients:
    - { client_id: local.app1, client_secret: appsecret0001 }
  access_ttl_s: 60
  tokens:
    - { access_token: accesstoken0001, user: 1, expires_at: 1773850553 }
    - { access_token: accesstoken0002, user: 1, expires_at: 1773850553, scopes: [sonet_group, user_brief] }
  refresh_tokens:
    - { refresh_token: refreshtoken0001, client_id: local.app1, user: 1, revoked: true }
    - { refresh_token: refreshtoken0002, client_id: local.app1, user: 1, scopes: [user_brief] }
"#;

    #[test]
    fn people_keys_round_trip_byte_for_byte() {
        let s = parse(Path::new("p.yaml"), PEOPLE).unwrap();
        assert!(s.users[1].extranet);
        assert_eq!(s.groups[0].departments, [8, 9]);
        assert_eq!(s.groups[0].initiate_perms, InitiatePerms::E);
        assert_eq!(
            s.groups[0].members[1].message.as_deref(),
            Some("Join us, please")
        );
        assert_eq!(
            s.oauth.as_ref().unwrap().tokens[1].scopes,
            Some(vec!["sonet_group".to_owned(), "user_brief".to_owned()])
        );
        assert_eq!(s.oauth.as_ref().unwrap().tokens[0].scopes, None);
        assert_eq!(render(&s), PEOPLE);
    }

    #[test]
    fn people_defaults_are_not_written() {
        let s: State = serde_norway::from_str(SAMPLE).unwrap();
        assert_eq!(s.groups[0].initiate_perms, InitiatePerms::K);
        assert_eq!(s.webhooks[0].scopes, None);
        assert_eq!(s.portal.insufficient_scope_status, 401);
        let text = render(&s);
        for key in [
            "extranet",
            "departments",
            "initiate_perms",
            "message",
            "scopes",
            "oauth",
            "setowner_admin",
            "workgroup_members_inactive",
            "oauth_rotation",
            "insufficient_scope_status",
        ] {
            assert!(!text.contains(key), "{key} written:\n{text}");
        }
        // An oauth section with only defaults keeps its lists, not its defaults.
        let s = parse(
            Path::new("p.yaml"),
            "users: [{ id: 1 }]\noauth:\n  refresh_tokens: []\n",
        )
        .unwrap();
        assert!(
            render(&s).ends_with("oauth:\n  clients: []\n  tokens: []\n  refresh_tokens: []\n")
        );
    }

    #[test]
    fn oauth_errors_never_quote_secrets() {
        let bad = [
            // Unknown user of a token.
            PEOPLE.replace("user: 1, expires_at", "user: 7, expires_at"),
            // A refresh token of an unknown client.
            PEOPLE.replace("client_id: local.app1, user: 1", "client_id: other, user: 1"),
            // Duplicate access token.
            PEOPLE.replace(
                "    - { access_token: accesstoken0001, user: 1, expires_at: 1773850553 }\n",
                "    - { access_token: accesstoken0001, user: 1, expires_at: 1773850553 }\n    - { access_token: accesstoken0001, user: 1, expires_at: 1 }\n",
            ),
            // Parse errors quoting the secret scalars.
            PEOPLE.replace("expires_at: 1773850553", "expires_at: accesstoken0001"),
            PEOPLE.replace("revoked: true", "revoked: refreshtoken0001"),
            PEOPLE.replace("client_secret: appsecret0001 }", "client_secret: appsecret0001, x: appsecret0001 }"),
            PEOPLE.replace("access_ttl_s: 60", "access_ttl_s: appsecret0001"),
        ];
        for text in &bad {
            let e = parse(Path::new("p.yaml"), text).unwrap_err().to_string();
            for secret in [
                "accesstoken0001",
                "refreshtoken0001",
                "appsecret0001",
                "sandboxcode0001",
            ] {
                assert!(!e.contains(secret), "{secret} in {e}");
            }
        }
    }

    const TREE: &str = r#"portal:
  rate_limit: null
  user_no_department: empty
users:
  - { id: 1, email: a@example.com, name: A, last_name: B, active: true, admin: true, departments: [1] }
  - { id: 2, email: c@example.com, name: C, last_name: D, active: true, departments: [3, 2] }
  - { id: 3, email: e@example.com, name: E, last_name: F, active: true, extranet: true }
departments:
  - { id: 1, name: Acme, head: 1 }
  - { id: 3, name: "Sales: EU", parent: 2, sort: 100 }
  - { id: 2, name: Sales, parent: 1, head: 2, active: false }
groups: []
webhooks: []
"#;

    #[test]
    fn departments_round_trip_byte_for_byte() {
        let s = parse(Path::new("p.yaml"), TREE).unwrap();
        assert_eq!(s.users[1].departments, [3, 2]);
        assert_eq!(s.portal.user_no_department, NoDepartment::Empty);
        assert_eq!(
            s.departments[1],
            Department {
                id: 3,
                name: "Sales: EU".into(),
                parent: Some(2),
                head: None,
                sort: 100,
                active: true,
            }
        );
        assert_eq!(s.departments[0].sort, 500);
        assert_eq!(render(&s), TREE);
    }

    #[test]
    fn department_validation_names_the_value() {
        let problem = |text: &str| check(&serde_norway::from_str(text).unwrap()).unwrap_err();
        let p = problem(&TREE.replace("parent: 1, head: 2", "parent: 3, head: 2"));
        assert_eq!(p.field.as_deref(), Some("departments[1].parent"));
        assert_eq!(
            p.message,
            "department 3: its parents make a cycle (3 → 2 → 3)"
        );
        let p = problem(&TREE.replace("parent: 1, head: 2", "parent: 2, head: 2"));
        assert_eq!(
            (p.field.as_deref(), p.message.as_str()),
            (
                Some("departments[2].parent"),
                "department 2: its parents make a cycle (2 → 2)"
            )
        );
        let p = problem(&TREE.replace("head: 2", "head: 9"));
        assert_eq!(
            (p.field.as_deref(), p.message.as_str()),
            (
                Some("departments[2].head"),
                "department 2: head user 9 does not exist"
            )
        );
        let p = problem(&TREE.replace("departments: [3, 2]", "departments: [3, 3]"));
        assert_eq!(p.field.as_deref(), Some("users[1].departments[1]"));
        let p = problem(&TREE.replace("{ id: 3, name: \"Sales", "{ id: 0, name: \"Sales"));
        assert_eq!(p.message, "department id 0 must be positive");
        // Located through the text: line and column of the value.
        let e = parse(Path::new("p.yaml"), &TREE.replace("head: 2", "head: 9")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid state file p.yaml:11:44: department 2: head user 9 does not exist"
        );
        // Older messages stay without a position.
        let e = parse(Path::new("p.yaml"), "users: [{ id: 1 }, { id: 1 }]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid state file p.yaml: duplicate user id 1"
        );
    }

    #[test]
    fn parent_cycles() {
        let d = |id, parent| Department {
            id,
            name: "x".into(),
            parent,
            head: None,
            sort: 500,
            active: true,
        };
        let s = State {
            portal: Portal::default(),
            users: vec![],
            departments: vec![d(1, None), d(2, Some(3)), d(3, Some(2)), d(4, Some(2))],
            groups: vec![],
            webhooks: vec![],
            oauth: None,
        };
        assert_eq!(parent_cycle(&s, 1), None);
        assert_eq!(parent_cycle(&s, 2), Some(vec![2, 3, 2]));
        // 4 only leads into the cycle; 2 and 3 report it.
        assert_eq!(parent_cycle(&s, 4), None);
    }

    #[test]
    fn people_validation_messages() {
        let err = |text: String| parse(Path::new("p.yaml"), &text).unwrap_err().to_string();
        assert!(
            err(PEOPLE.replace("{ user: 1, role: A }", "{ user: 1, role: A, message: x }"))
                .contains("message is only allowed on role Z")
        );
        assert!(err(PEOPLE.replace("scopes: [user_basic", "scopes: [User")).contains("scope"));
        // Tokens' scopes are checked the same way, and named by position, not by the token.
        let e = err(PEOPLE.replace("scopes: [sonet_group, user_brief]", "scopes: [Sonet]"));
        assert!(
            e.contains("oauth.tokens #2 (user 1): scope \"Sonet\"") && !e.contains("token0002"),
            "{e}"
        );
        let e = err(PEOPLE.replace("scopes: [user_brief] }", "scopes: [\"a b\"] }"));
        assert!(
            e.contains("oauth.refresh_tokens #2 (user 1): scope \"a b\"")
                && !e.contains("token0002"),
            "{e}"
        );
        assert!(
            err(PEOPLE.replace(
                "insufficient_scope_status: 403",
                "insufficient_scope_status: 500"
            ))
            .contains("401 or 403")
        );
        assert!(
            err(PEOPLE.replace("initiate_perms: E", "initiate_perms: Z"))
                .contains("initiate_perms")
        );
        assert!(
            err(PEOPLE.replace("user: 1, revoked", "user: 1, used: true, revoked"))
                .contains("used")
        );
    }
}
