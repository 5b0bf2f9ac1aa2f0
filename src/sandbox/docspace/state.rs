//! The emulated DocSpace portal's state and its YAML file: types, loading with validation
//! (errors name the file, line, column and field), and the atomic write-back. It owns the file
//! format; it must not know HTTP or any endpoint. The shape is documented in the parent
//! module ([`super`]).
//!
//! API keys and personal access tokens are secrets: no validation or parser message quotes
//! them (validation names items by position, and parser messages are scrubbed of every value
//! that follows a `key` or `token` key).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde::Deserialize;

use super::SandboxError;
use super::positions::{Index, has_top_level_key};
use crate::sandbox::lock::{parent_dir, resolve, sidecar};

/// The whole file: everything lives under the top-level key `docspace`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    /// `None` for `docspace:` with no value (an empty portal) or a missing key (refused).
    docspace: Option<State>,
}

/// The portal: settings, users, groups and credentials.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The rate limiter (reference §5); absent = off, like a self-hosted server.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Random error injection; absent = none.
    #[serde(default)]
    pub faults: Option<Faults>,
    /// Milliseconds added to every answer of the API.
    #[serde(default)]
    pub latency_ms: u64,
    /// The body of a 401 (reference §3 and open item 1: empty, inferred; UNCONFIRMED).
    #[serde(default)]
    pub unauthorized_body: UnauthorizedBody,
    /// Whether terminated members appear in `members` and `membersCount` and are moved or
    /// replaced (reference §6: they drop out, inferred; UNCONFIRMED).
    #[serde(default)]
    pub terminated_members: TerminatedMembers,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    #[serde(default)]
    pub tokens: Vec<Token>,
}

/// `docspace.rate_limit`. Limits are per user (per client IP for callers without valid
/// credentials) and chained: a request must pass every one.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default)]
    pub enabled: bool,
    /// Sliding window of 60 s.
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    /// GET requests in flight at once (no queue).
    #[serde(default = "default_concurrent_get")]
    pub concurrent_get: u32,
    /// Non-GET requests in flight at once (no queue).
    #[serde(default = "default_concurrent_write")]
    pub concurrent_write: u32,
    /// POST and PUT requests per fixed window of a day, from the first one.
    #[serde(default = "default_post_put_per_day")]
    pub post_put_per_day: u32,
    /// What `X-RateLimit-Reset` carries (UNCONFIRMED).
    #[serde(default)]
    pub reset: ResetHeader,
    /// Send `X-RateLimit-Limit/Remaining/Reset` on admitted requests too (UNCONFIRMED).
    #[serde(default)]
    pub headers_on_success: bool,
    /// Give a 429 of a concurrency limit headers (`Retry-After: 1`, limit, remaining 0); the
    /// limiter SRV uses sends none there.
    #[serde(default)]
    pub concurrency_headers: bool,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            enabled: false,
            per_minute: default_per_minute(),
            concurrent_get: default_concurrent_get(),
            concurrent_write: default_concurrent_write(),
            post_put_per_day: default_post_put_per_day(),
            reset: ResetHeader::default(),
            headers_on_success: false,
            concurrency_headers: false,
        }
    }
}

fn default_per_minute() -> u32 {
    1500
}
fn default_concurrent_get() -> u32 {
    50
}
fn default_concurrent_write() -> u32 {
    15
}
fn default_post_put_per_day() -> u32 {
    10_000
}

/// The meaning of `X-RateLimit-Reset` (reference §5: UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetHeader {
    /// Seconds until the window frees a slot (DOC: "the remaining window in seconds").
    #[default]
    Seconds,
    /// The unix second at which it does (the server's OpenAPI filter).
    Epoch,
    /// Not sent (what RRL's sliding-window lease carries at the commit read).
    None,
}

impl ResetHeader {
    fn name(self) -> &'static str {
        match self {
            ResetHeader::Seconds => "seconds",
            ResetHeader::Epoch => "epoch",
            ResetHeader::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnauthorizedBody {
    /// A bare 401 (the authorization filter's challenge).
    #[default]
    Empty,
    /// `{"error":{"message":"Unauthorized"},"status":1,"statusCode":401}` (AuthenticationException).
    Envelope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminatedMembers {
    /// `GetUsersByGroupAsync` with the default status filter: terminated users are left out.
    #[default]
    Hide,
    Show,
}

/// `docspace.faults`: see the parent module. `Default` is all rates 0.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rate_429: f64,
    #[serde(default)]
    pub rate_500: f64,
    #[serde(default)]
    pub rate_lost: f64,
    #[serde(default)]
    pub rate_502: f64,
    #[serde(default)]
    pub rate_500_after: f64,
    #[serde(default)]
    pub rate_truncated: f64,
    #[serde(default)]
    pub rate_slow: f64,
    #[serde(default = "default_slow_ms")]
    pub slow_ms: u64,
}

fn default_slow_ms() -> u64 {
    40_000
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 0,
            rate_429: 0.0,
            rate_500: 0.0,
            rate_lost: 0.0,
            rate_502: 0.0,
            rate_500_after: 0.0,
            rate_truncated: 0.0,
            rate_slow: 0.0,
            slow_ms: default_slow_ms(),
        }
    }
}

impl Faults {
    /// The rates in band order (see the parent module).
    pub fn rates(&self) -> [f64; 7] {
        [
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

/// `EmployeeStatus`: 1 Active, 2 Terminated, 4 Pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Active,
    Terminated,
    Pending,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Terminated => "terminated",
            Status::Pending => "pending",
        }
    }
    /// The `EmployeeStatus` number.
    pub fn code(self) -> u8 {
        match self {
            Status::Active => 1,
            Status::Terminated => 2,
            Status::Pending => 4,
        }
    }
}

/// The portal role (reference §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    Owner,
    Admin,
    RoomAdmin,
    #[default]
    User,
    Guest,
}

impl UserType {
    pub fn name(self) -> &'static str {
        match self {
            UserType::Owner => "owner",
            UserType::Admin => "admin",
            UserType::RoomAdmin => "room_admin",
            UserType::User => "user",
            UserType::Guest => "guest",
        }
    }
    /// Owner or DocSpace admin.
    pub fn is_admin(self) -> bool {
        matches!(self, UserType::Owner | UserType::Admin)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Lowercase hyphenated UUID.
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// The `userName`; default: the e-mail's local part.
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub status: Status,
    #[serde(default, rename = "type")]
    pub kind: UserType,
}

impl User {
    /// The `userName` the API shows.
    pub fn user_name(&self) -> &str {
        match &self.user_name {
            Some(n) => n,
            None => self.email.split('@').next().unwrap_or(&self.email),
        }
    }

    /// May be added to a group or made its manager (`TransferUserToDepartmentAsync`): not
    /// terminated and not a guest.
    pub fn joinable(&self) -> bool {
        self.status != Status::Terminated && self.kind != UserType::Guest
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    pub name: String,
    /// Always also in `members`.
    #[serde(default)]
    pub manager: Option<String>,
    /// In the order they joined.
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub user: String,
    /// `sk-` and 64 lowercase hex digits.
    pub key: String,
    /// `None` (no key in the file) is every scope, as `["*"]` is.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub user: String,
    pub token: String,
}

impl State {
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn group_mut(&mut self, id: &str) -> Option<&mut Group> {
        self.groups.iter_mut().find(|g| g.id == id)
    }

    pub fn rate_limit(&self) -> RateLimit {
        self.rate_limit.unwrap_or_default()
    }
}

/// Is `s` a UUID as DocSpace writes them: 8-4-4-4-12 lowercase hex digits?
pub fn is_canonical_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

/// The empty GUID, which means "none".
pub const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Is `k` an API key as `ApiKeyManager.GenerateApiKey` makes them?
pub fn is_api_key(k: &str) -> bool {
    k.strip_prefix("sk-").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// Read, parse and validate the state file.
pub fn load(path: &Path) -> Result<State, SandboxError> {
    let text = std::fs::read_to_string(path).map_err(|source| SandboxError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parse and validate the text of a state file (see [`load`]).
pub fn parse(path: &Path, text: &str) -> Result<State, SandboxError> {
    if !has_top_level_key(text, "docspace") {
        return Err(SandboxError::Parse {
            path: path.to_owned(),
            line: Some(1),
            column: Some(1),
            message: "not a DocSpace state file: it needs the top-level key `docspace`".into(),
        });
    }
    let shape: FileShape = serde_norway::from_str(text).map_err(|e| {
        let loc = e.location();
        let mut message = e.to_string();
        // The position is given in front; drop serde_norway's own " at line L column C".
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        SandboxError::Parse {
            path: path.to_owned(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: scrub(&message, text),
        }
    })?;
    let state = shape.docspace.unwrap_or_default();
    validate(&state).map_err(|p| {
        let index = Index::build(text);
        let at = index.find(&p.field);
        SandboxError::Invalid {
            path: path.to_owned(),
            line: at.map(|a| a.line),
            column: at.map(|a| a.column),
            field: p.field,
            message: scrub(&p.message, text),
        }
    })?;
    Ok(state)
}

/// A validation failure: the path of the offending value and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        message: message.into(),
    }
}

/// The literal path segments after `people/` that shadow a `userName`.
const RESERVED_USER_NAMES: &[&str] = &["email", "filter", "@self", "search", "@search"];

/// Check the invariants the emulator relies on. Secrets are never quoted: API keys and
/// tokens are named by their position.
pub fn validate(s: &State) -> Result<(), Problem> {
    use std::collections::BTreeMap;
    let root = "docspace";
    if let Some(r) = s.rate_limit {
        let f = format!("{root}.rate_limit");
        for (k, v) in [
            ("per_minute", r.per_minute),
            ("concurrent_get", r.concurrent_get),
            ("concurrent_write", r.concurrent_write),
            ("post_put_per_day", r.post_put_per_day),
        ] {
            if v == 0 {
                return Err(problem(format!("{f}.{k}"), "must be at least 1"));
            }
        }
    }
    if let Some(fl) = s.faults {
        let f = format!("{root}.faults");
        let names = [
            "rate_429",
            "rate_500",
            "rate_lost",
            "rate_502",
            "rate_500_after",
            "rate_truncated",
            "rate_slow",
        ];
        for (name, r) in names.iter().zip(fl.rates()) {
            if r.is_nan() || !(0.0..=1.0).contains(&r) {
                return Err(problem(
                    format!("{f}.{name}"),
                    "must be a probability between 0 and 1",
                ));
            }
        }
        if fl.rates().iter().sum::<f64>() > 1.0 + 1e-9 {
            return Err(problem(f, "the rates must add up to at most 1"));
        }
    }
    // id → the path of the item that has it, for "also the id of …" messages.
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    let mut emails: BTreeMap<String, usize> = BTreeMap::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut owner: Option<usize> = None;
    for (i, u) in s.users.iter().enumerate() {
        let at = format!("{root}.users[{i}]");
        check_uuid(&format!("{at}.id"), &u.id)?;
        if let Some(first) = ids.insert(&u.id, at.clone()) {
            return Err(problem(
                format!("{at}.id"),
                format!("{} is also the id of {first}", u.id),
            ));
        }
        let email = u.email.trim();
        if email.is_empty() || !email.contains('@') || email != u.email {
            return Err(problem(
                format!("{at}.email"),
                "needs an e-mail address (with '@', no surrounding spaces)",
            ));
        }
        if let Some(first) = emails.insert(u.email.to_lowercase(), i) {
            return Err(problem(
                format!("{at}.email"),
                format!(
                    "{} is also the e-mail of {root}.users[{first}] (compared ignoring case)",
                    u.email
                ),
            ));
        }
        let name = u.user_name();
        let name_field = if u.user_name.is_some() {
            format!("{at}.user_name")
        } else {
            format!("{at}.email")
        };
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(problem(
                name_field,
                "the user name must not be empty or contain spaces or '/'",
            ));
        }
        if RESERVED_USER_NAMES.contains(&name.to_lowercase().as_str())
            || super::wire::parse_guid(name).is_some()
        {
            return Err(problem(
                name_field,
                format!(
                    "user name {name:?} cannot be looked up by GET people/{{userid}} (a route or a UUID); set another user_name"
                ),
            ));
        }
        if let Some(first) = names.insert(name.to_lowercase(), i) {
            return Err(problem(
                name_field,
                format!(
                    "user name {name:?} is also the user name of {root}.users[{first}] (compared ignoring case; without user_name it is the e-mail's local part)"
                ),
            ));
        }
        if u.kind == UserType::Owner {
            if let Some(first) = owner {
                return Err(problem(
                    format!("{at}.type"),
                    format!("a portal has one owner, and {root}.users[{first}] is it"),
                ));
            }
            owner = Some(i);
        }
    }
    let user_exists = |field: String, id: &str| -> Result<(), Problem> {
        check_uuid(&field, id)?;
        if s.user(id).is_none() {
            return Err(problem(
                field,
                format!("user {id} is not in docspace.users"),
            ));
        }
        Ok(())
    };
    for (i, g) in s.groups.iter().enumerate() {
        let at = format!("{root}.groups[{i}]");
        check_uuid(&format!("{at}.id"), &g.id)?;
        if let Some(first) = ids.insert(&g.id, at.clone()) {
            return Err(problem(
                format!("{at}.id"),
                format!("{} is also the id of {first}", g.id),
            ));
        }
        if g.name.trim().is_empty() || g.name.chars().count() > 128 {
            return Err(problem(
                format!("{at}.name"),
                "a group name has 1 to 128 characters, not all spaces",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (j, m) in g.members.iter().enumerate() {
            user_exists(format!("{at}.members[{j}]"), m)?;
            if !seen.insert(m.as_str()) {
                return Err(problem(
                    format!("{at}.members[{j}]"),
                    format!("user {m} is listed twice"),
                ));
            }
        }
        if let Some(m) = &g.manager {
            user_exists(format!("{at}.manager"), m)?;
            if !seen.contains(m.as_str()) {
                return Err(problem(
                    format!("{at}.manager"),
                    format!(
                        "user {m} is not in members; the manager is always also a member (reference §1.2): add it to members"
                    ),
                ));
            }
        }
    }
    let mut keys = std::collections::BTreeSet::new();
    for (i, k) in s.api_keys.iter().enumerate() {
        let at = format!("{root}.api_keys[{i}]");
        user_exists(format!("{at}.user"), &k.user)?;
        if !is_api_key(&k.key) {
            return Err(problem(
                format!("{at}.key"),
                "an API key is \"sk-\" followed by 64 lowercase hex digits",
            ));
        }
        if !keys.insert(k.key.as_str()) {
            return Err(problem(
                format!("{at}.key"),
                "repeats the key of an earlier entry",
            ));
        }
        for (j, sc) in k.scopes.iter().flatten().enumerate() {
            if !scope_ok(sc) {
                return Err(problem(
                    format!("{at}.scopes[{j}]"),
                    format!("{sc:?} is not a scope: \"*\" or NAME:read / NAME:write"),
                ));
            }
        }
    }
    for (i, t) in s.tokens.iter().enumerate() {
        let at = format!("{root}.tokens[{i}]");
        user_exists(format!("{at}.user"), &t.user)?;
        if t.token.is_empty() || !t.token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(problem(
                format!("{at}.token"),
                "a token is printable ASCII without spaces (it travels in a header)",
            ));
        }
        if t.token.starts_with("sk-") {
            return Err(problem(
                format!("{at}.token"),
                "a token must not start with \"sk-\": `Bearer sk-…` is always read as an API key",
            ));
        }
        if !keys.insert(t.token.as_str()) {
            return Err(problem(format!("{at}.token"), "repeats an earlier token"));
        }
    }
    Ok(())
}

fn check_uuid(field: &str, id: &str) -> Result<(), Problem> {
    if !is_canonical_uuid(id) {
        return Err(problem(
            field,
            format!("{id:?} is not a UUID in lowercase hyphenated form (8-4-4-4-12 hex digits)"),
        ));
    }
    if id == NIL_UUID {
        return Err(problem(
            field,
            "the empty UUID means \"none\" and cannot be an id",
        ));
    }
    Ok(())
}

/// `*` or `name:read` / `name:write` (names of lower-case letters, `.` and `_`).
fn scope_ok(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some((name, access)) = s.split_once(':') else {
        return false;
    };
    matches!(access, "read" | "write")
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
}

/// Every value in `text` that follows a secret key (`key: X`, `"token": "X"`), found without
/// parsing, since the text may not parse.
fn secret_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["key", "token"] {
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

/// `message` with every occurrence of a secret of `text` replaced by `***`.
fn scrub(message: &str, text: &str) -> String {
    let mut msg = message.to_owned();
    for secret in secret_values(text) {
        msg = msg.replace(&secret, "***");
    }
    msg
}

/// Write `state` to `path` atomically: the text goes to a fresh temp file next to the real
/// file (`.NAME.tmp`, created with O_EXCL so a planted symlink is never followed), which is
/// fsynced and renamed over it, then the directory is fsynced. A reader or a crash sees the old
/// state or the new one, never a mix. A symlinked state file is followed (the link stays a
/// link) and the file keeps its permission bits.
pub fn save(path: &Path, state: &State) -> Result<(), SandboxError> {
    let target = resolve(path);
    let tmp = temp_path(&target);
    let existing = std::fs::metadata(&target).ok().map(|m| m.permissions());
    let write = || -> std::io::Result<()> {
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
        if let Ok(dir) = std::fs::File::open(parent_dir(&target)) {
            let _ = dir.sync_all();
        }
        Ok(())
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        SandboxError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

/// The one temp file [`save`] uses for `target` (a resolved path).
pub fn temp_path(target: &Path) -> std::path::PathBuf {
    sidecar(target, "tmp")
}

/// Delete the temp file a killed write may have left next to the state file behind `path`.
pub fn remove_stale_temp(path: &Path) {
    let _ = std::fs::remove_file(temp_path(&resolve(path)));
}

/// Render the state as YAML in the documented shape (deterministic): settings only when they
/// differ from the defaults (`rate_limit` and `faults` whenever present), then users, groups,
/// API keys and tokens in list order. Comments are not preserved.
pub fn render(s: &State) -> String {
    let mut o = String::from("docspace:\n");
    if let Some(r) = s.rate_limit {
        let d = RateLimit::default();
        let _ = write!(
            o,
            "  rate_limit: {{ enabled: {}, per_minute: {}, concurrent_get: {}, concurrent_write: {}",
            r.enabled, r.per_minute, r.concurrent_get, r.concurrent_write
        );
        if r.post_put_per_day != d.post_put_per_day {
            let _ = write!(o, ", post_put_per_day: {}", r.post_put_per_day);
        }
        if r.reset != d.reset {
            let _ = write!(o, ", reset: {}", r.reset.name());
        }
        if r.headers_on_success {
            o.push_str(", headers_on_success: true");
        }
        if r.concurrency_headers {
            o.push_str(", concurrency_headers: true");
        }
        o.push_str(" }\n");
    }
    if let Some(f) = s.faults {
        let _ = write!(o, "  faults: {{ seed: {}", f.seed);
        let rates = [
            ("rate_429", f.rate_429),
            ("rate_500", f.rate_500),
            ("rate_lost", f.rate_lost),
            ("rate_502", f.rate_502),
            ("rate_500_after", f.rate_500_after),
            ("rate_truncated", f.rate_truncated),
            ("rate_slow", f.rate_slow),
        ];
        for (k, r) in rates {
            if r != 0.0 {
                let _ = write!(o, ", {k}: {r:?}");
            }
        }
        if f.slow_ms != default_slow_ms() {
            let _ = write!(o, ", slow_ms: {}", f.slow_ms);
        }
        o.push_str(" }\n");
    }
    if s.latency_ms != 0 {
        let _ = writeln!(o, "  latency_ms: {}", s.latency_ms);
    }
    if s.unauthorized_body != UnauthorizedBody::default() {
        o.push_str("  unauthorized_body: envelope\n");
    }
    if s.terminated_members != TerminatedMembers::default() {
        o.push_str("  terminated_members: show\n");
    }
    list_key(&mut o, "users", s.users.is_empty());
    for u in &s.users {
        let _ = write!(
            o,
            "    - {{ id: {}, email: {}, first_name: {}, last_name: {}",
            scalar(&u.id),
            scalar(&u.email),
            scalar(&u.first_name),
            scalar(&u.last_name)
        );
        if let Some(n) = &u.user_name {
            let _ = write!(o, ", user_name: {}", scalar(n));
        }
        let _ = writeln!(
            o,
            ", status: {}, type: {} }}",
            u.status.name(),
            u.kind.name()
        );
    }
    list_key(&mut o, "groups", s.groups.is_empty());
    for g in &s.groups {
        let _ = writeln!(o, "    - id: {}", scalar(&g.id));
        let _ = writeln!(o, "      name: {}", scalar(&g.name));
        if let Some(m) = &g.manager {
            let _ = writeln!(o, "      manager: {}", scalar(m));
        }
        if g.members.is_empty() {
            o.push_str("      members: []\n");
        } else {
            o.push_str("      members:\n");
            for m in &g.members {
                let _ = writeln!(o, "        - {}", scalar(m));
            }
        }
    }
    list_key(&mut o, "api_keys", s.api_keys.is_empty());
    for k in &s.api_keys {
        let _ = write!(
            o,
            "    - {{ user: {}, key: {}",
            scalar(&k.user),
            scalar(&k.key)
        );
        if let Some(sc) = &k.scopes {
            let names: Vec<String> = sc.iter().map(|x| scalar(x)).collect();
            let _ = write!(o, ", scopes: [{}]", names.join(", "));
        }
        o.push_str(" }\n");
    }
    list_key(&mut o, "tokens", s.tokens.is_empty());
    for t in &s.tokens {
        let _ = writeln!(
            o,
            "    - {{ user: {}, token: {} }}",
            scalar(&t.user),
            scalar(&t.token)
        );
    }
    o
}

fn list_key(o: &mut String, key: &str, empty: bool) {
    let _ = writeln!(o, "  {key}:{}", if empty { " []" } else { "" });
}

/// A string as a YAML flow scalar: plain when unambiguous (a UUID, or a word starting with a
/// letter), else JSON-style double-quoted (a valid YAML double-quoted scalar).
fn scalar(s: &str) -> String {
    let plain_ok = is_canonical_uuid(s)
        || (s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && !s.ends_with(' ')
            && !s.contains("  ")
            && s.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-' | '+' | ' ')
            })
            && !matches!(
                s.to_ascii_lowercase().as_str(),
                "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
            ));
    if plain_ok {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn sample() -> String {
        format!(
            r#"docspace:
  rate_limit: {{ enabled: true, per_minute: 10, concurrent_get: 2, concurrent_write: 1, reset: epoch }}
  faults: {{ seed: 3, rate_429: 0.1, slow_ms: 500 }}
  latency_ms: 7
  users:
    - {{ id: 6e7b3c1a-0000-4000-8000-000000000001, email: ada@example.com, first_name: Ada, last_name: Admin, status: active, type: owner }}
    - {{ id: 6e7b3c1a-0000-4000-8000-000000000002, email: bo@example.com, first_name: "Yes", last_name: "O'Neil \"x\"", user_name: bo.b, status: terminated, type: guest }}
  groups:
    - id: 6e7b3c1a-0000-4000-8000-0000000000a1
      name: "Design: EU"
      manager: 6e7b3c1a-0000-4000-8000-000000000001
      members:
        - 6e7b3c1a-0000-4000-8000-000000000001
        - 6e7b3c1a-0000-4000-8000-000000000002
    - id: 6e7b3c1a-0000-4000-8000-0000000000a2
      name: Empty
      members: []
  api_keys:
    - {{ user: 6e7b3c1a-0000-4000-8000-000000000001, key: {KEY}, scopes: ["*", "accounts:read"] }}
  tokens:
    - {{ user: 6e7b3c1a-0000-4000-8000-000000000002, token: "9tok/en+=" }}
"#
        )
    }

    fn err(text: &str) -> String {
        parse(Path::new("p.yaml"), text).unwrap_err().to_string()
    }

    #[test]
    fn render_round_trips_byte_for_byte() {
        let text = sample();
        let s = parse(Path::new("p.yaml"), &text).unwrap();
        assert_eq!(s.users[1].user_name(), "bo.b");
        assert_eq!(s.users[0].user_name(), "ada");
        assert_eq!(render(&s), text);
    }

    #[test]
    fn defaults_are_not_written() {
        let s = parse(Path::new("p.yaml"), "docspace:\n").unwrap();
        assert_eq!(s, State::default());
        assert_eq!(
            render(&s),
            "docspace:\n  users: []\n  groups: []\n  api_keys: []\n  tokens: []\n"
        );
        let s = parse(
            Path::new("p.yaml"),
            "docspace:\n  users:\n    - { id: 6e7b3c1a-0000-4000-8000-000000000001, email: a@x }\n",
        )
        .unwrap();
        assert_eq!(s.users[0].status, Status::Active);
        assert_eq!(s.users[0].kind, UserType::User);
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let text = sample().replace(
            "      manager: 6e7b3c1a-0000-4000-8000-000000000001\n      members:\n        - 6e7b3c1a-0000-4000-8000-000000000001\n",
            "      manager: 6e7b3c1a-0000-4000-8000-000000000001\n      members:\n",
        );
        assert_eq!(
            err(&text),
            "invalid state file p.yaml:11:16: docspace.groups[0].manager: user \
             6e7b3c1a-0000-4000-8000-000000000001 is not in members; the manager is always \
             also a member (reference §1.2): add it to members"
        );
        let text = sample().replace("0000000000a2", "0000000000A2");
        let e = err(&text);
        assert!(
            e.starts_with("invalid state file p.yaml:15:11: docspace.groups[1].id: "),
            "{e}"
        );
        let text = sample().replace("8000-0000000000a2", "8000-000000000001");
        assert!(err(&text).contains("is also the id of docspace.users[0]"));
        let text = sample().replace("type: guest", "type: owner");
        assert!(err(&text).contains("p.yaml:7:"), "{}", err(&text));
        assert!(err(&text).contains("docspace.users[1].type: a portal has one owner"));
        let text = sample().replace("bo@example.com", "ADA@example.com");
        assert!(err(&text).contains("docspace.users[1].email: ADA@example.com is also"));
        let text = sample().replace("user_name: bo.b", "user_name: email");
        assert!(err(&text).contains("docspace.users[1].user_name: user name \"email\""));
        let text = sample().replace("\"accounts:read\"", "accounts");
        assert!(err(&text).contains("docspace.api_keys[0].scopes[1]: \"accounts\" is not"));
        let text = sample().replace("per_minute: 10", "per_minute: 0");
        assert!(err(&text).contains("p.yaml:2:"));
        let text = sample().replace("rate_429: 0.1", "rate_429: 0.9, rate_500: 0.2");
        assert!(err(&text).contains("docspace.faults: the rates must add up to at most 1"));
        // Unknown keys and wrong types come from the parser, with the path.
        let e = err(&sample().replace("latency_ms: 7", "latency: 7"));
        assert!(
            e.starts_with("cannot parse state file p.yaml:4:3: docspace: unknown field `latency`"),
            "{e}"
        );
        assert!(
            err(&sample().replace("type: owner", "type: boss"))
                .contains("docspace.users[0].type: unknown variant `boss`")
        );
        assert!(err("users: []\n").contains("needs the top-level key `docspace`"));
    }

    #[test]
    fn secrets_are_never_quoted() {
        let bad = [
            sample().replace(KEY, &KEY.replace('a', "A")),
            sample().replace(
                "user: 6e7b3c1a-0000-4000-8000-000000000001, key",
                "user: 6e7b3c1a-0000-4000-8000-000000000009, key",
            ),
            sample().replace("scopes: [\"*\", \"accounts:read\"]", "scopes: 5"),
            sample().replace("token: \"9tok/en+=\"", "token: \"9tok/en+=\", x: 1"),
            sample().replace("token: \"9tok/en+=\"", &format!("token: \"{KEY}\"")),
            sample().replace("\"9tok/en+=\"", "\"9tok en\""),
        ];
        for (i, text) in bad.iter().enumerate() {
            let e = parse(Path::new("p.yaml"), text)
                .map(|_| format!("case {i} loaded"))
                .unwrap_or_else(|e| e.to_string());
            assert!(e.contains("p.yaml"), "{e}");
            for secret in [KEY, &KEY.replace('a', "A"), "9tok/en+=", "9tok en"] {
                assert!(!e.contains(secret), "{secret} in {e}");
            }
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(scalar("Ada Admin"), "Ada Admin");
        assert_eq!(
            scalar("00000000-0000-4000-8000-000000000001"),
            "00000000-0000-4000-8000-000000000001"
        );
        assert_eq!(scalar("*"), "\"*\"");
        assert_eq!(scalar("accounts:read"), "\"accounts:read\"");
        assert_eq!(scalar("no"), "\"no\"");
        assert_eq!(scalar("12"), "\"12\"");
        assert_eq!(scalar(""), "\"\"");
    }
}
