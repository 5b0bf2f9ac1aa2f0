//! The desired-state file: its format (version 1), parsing with positions, and validation.
//!
//! `parse_bytes` and `parse` are pure (bytes or text in, a `Spec` or diagnostics out):
//! reading the file happens in the shell (`crate::load`), which must read at most
//! `MAX_FILE_BYTES + 1` bytes. Every problem in a file is reported at once (the first
//! `MAX_DIAGNOSTICS` in file order, then a count of the rest), each with the file, line and
//! column, the field path and the offending value; nothing is sent to a portal until the file
//! is clean. A `Spec` still names users and groups as the file does (by ID, e-mail or name,
//! each with its position): `crate::resolve` turns it into a `model::DesiredState`, with what
//! the portal says about them, or offline for files that use IDs only.
//!
//! ```yaml
//! version: 1
//! protected: [7, boss@example.com]   # optional: never removed or demoted in any group
//! add_with: add              # optional: how new members come in, for every group:
//!                            #   add (at once; needs an administrator) or invite
//! invite_message: Welcome!   # optional: the invitation's text (add_with: invite)
//! limits:                    # optional: mass-removal limits (defaults below)
//!   max_removals: 25%        # per group: a count (5) or a percent (25%) of its current
//!                            #   non-owner members; a percent applies from 10 such members
//!   allow_empty: false       # true lets a plan remove every non-owner member of a group
//!                            #   that has 4 or more (refused by default)
//!   max_total_removals: 25%  # the whole run: of all current memberships of declared groups
//!                            #   (a percent applies from 10 memberships)
//! groups:
//!   - id: 15                 # workgroup ID (> 0); `id`, `name` or both are required
//!     name: Marketing        # the group's exact name on the portal: with `id`, a label
//!                            #   checked against the portal's (a warning if it differs);
//!                            #   without, the group is looked up by it
//!     owner: 1               # optional: checked and reported; changed only with
//!                            #   --allow-owner-change
//!     moderators: [10]       # role E
//!     members: [anna@example.com, 22]   # role K
//!     prune: true            # default true: undeclared members are removed (owners never);
//!                            #   a department-synced group is pruned only if this is
//!                            #   written as true
//!     protected: [10]        # optional: never removed or demoted in this group
//!     add_with: invite       # optional: overrides the file's add_with
//!     invite_message: Hi     # optional: overrides the file's invite_message
//!     limits: { max_removals: 5, allow_empty: true }   # override the file's limits here
//! ```
//!
//! **Users** are a positive ID or an e-mail address wherever a user is accepted (`owner`,
//! `moderators`, `members`, `protected`): a string with exactly one `@`, something before and
//! after it, no whitespace or control characters, at most 254 characters. E-mail addresses
//! are matched case-insensitively and exactly (never as patterns). A user listed twice in a
//! group (the same ID, or the same address in any case) is an error here; the same user by
//! address and by ID is found by `resolve`. **Groups** are listed once by ID and once by name
//! (among the groups given by name only).
//!
//! **Limits.** A group's `limits:` overrides the top-level `limits:` field by field, which
//! overrides the defaults (`max_removals: 25%`, `allow_empty: false`,
//! `max_total_removals: 25%`). `max_total_removals` exists only at the top. A count applies
//! whatever the size; a percent is a whole number from 0 to 100 and applies only where there
//! are at least 10 memberships to take it of (`plan::PERCENT_FLOOR`). `0` or `0%` forbids
//! removals; `100%` or a large count switches a limit off. The checks run on the plan
//! (`plan::check_limits`); `--allow-mass-removal` overrides them for one run.
//!
//! **Protected users** are treated like owners: where the file would remove or demote them the
//! plan shows a skipped entry instead. Promoting one (member to moderator) and adding one are
//! ordinary changes.
//!
//! **Hostile input.** Files over `MAX_FILE_BYTES` are refused; input must be UTF-8 (a leading
//! BOM is allowed; the first invalid byte is reported with its line and column); nesting
//! deeper than `tree::MAX_DEPTH` levels, aliases (`*name`), several documents and duplicate
//! fields are errors. Memory stays linear in the file and time near-linear; text from the file
//! is escaped before it is echoed, so a key cannot send terminal escape sequences.

mod tree;

use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;

use crate::model::{AddWith, GroupId, Limit, Limits, Role, Setting, System, UserId, Uuid};
use tree::{Kind, Node, Pos, TreeError};

/// The only format version this build understands.
pub const FORMAT_VERSION: i64 = 1;

/// The largest spec file roster reads: 10 MiB (a file of 10,000 groups × 100 members is ~6 MiB).
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// At most this many diagnostics are kept (the first in file order); the rest are counted.
pub const MAX_DIAGNOSTICS: usize = 100;

/// The longest text field (`invite_message:`) accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Values echoed in messages are cut to this many characters.
const MAX_ECHO: usize = 40;

/// One problem in a spec file, located at a line and column (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Field path such as `groups[1].members[0]`; empty for file-level problems.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", escape(&self.file), self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// The problems found in one file: the first `MAX_DIAGNOSTICS` in file order, and how many
/// more there were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics {
    pub shown: Vec<Diagnostic>,
    /// Problems found but not kept (beyond `MAX_DIAGNOSTICS`).
    pub omitted: usize,
}

impl Diagnostics {
    /// Every problem found, shown or not.
    pub fn total(&self) -> usize {
        self.shown.len() + self.omitted
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.shown.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.omitted > 0 {
            write!(f, "\n… and {} more problem(s)", self.omitted)?;
        }
        Ok(())
    }
}

/// The field a reference was written in, for its path in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Id,
    Name,
    Owner,
    Manager,
    Portal,
    Moderators,
    Members,
    Protected,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Name => "name",
            Field::Owner => "owner",
            Field::Manager => "manager",
            Field::Portal => "portal",
            Field::Moderators => "moderators",
            Field::Members => "members",
            Field::Protected => "protected",
        }
    }
}

/// A reference's field path, kept compact (a file may hold millions of references) and
/// written out only for messages: `groups[1].members[0]`, `protected[2]`, `groups[0].owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath {
    /// The group's index in `groups:`; `None` for the top-level `protected:`.
    pub group: Option<u32>,
    pub field: Field,
    /// The index in the list; `None` for a scalar field (`owner`, `id`, `name`).
    pub index: Option<u32>,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(g) = self.group {
            write!(f, "groups[{g}].")?;
        }
        f.write_str(self.field.as_str())?;
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        Ok(())
    }
}

/// Where a reference was written: 1-based line and column (in characters) in `Spec::file`,
/// and its field path. `Spec::diagnostic` turns it into a message's location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct At {
    pub line: u32,
    pub column: u32,
    pub path: FieldPath,
}

/// A value from the file with the place it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub at: At,
}

/// A user as the file names them: by portal ID, or by e-mail address (as written; matched
/// case-insensitively and exactly by `resolve`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UserRef {
    Id(UserId),
    Email(String),
}

impl fmt::Display for UserRef {
    /// `21` or the e-mail address, escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::Id(id) => write!(f, "{id}"),
            UserRef::Email(e) => f.write_str(&escape(e)),
        }
    }
}

/// A workgroup as the file names it: by ID, or by its exact name on the portal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupRef {
    Id(GroupId),
    Name(String),
}

/// A portal the file declares under `portals:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSpec {
    /// Its name in the file (`crm`), which groups give as `portal:`.
    pub name: String,
    pub system: System,
    /// The environment variable holding its address (default `ROSTER_<NAME>_URL`).
    pub url_env: String,
    /// DocSpace: the environment variable holding the API key or personal access token
    /// (default `ROSTER_<NAME>_API_KEY`). `None` for Bitrix24, whose webhook URL carries it.
    pub key_env: Option<String>,
    /// 1-based line of its entry.
    pub line: usize,
}

/// `NAME` as an environment variable's part: upper case, other characters as `_`.
fn env_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// One group as written, references unresolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The group: its `id` when given (authoritative), else its `name`.
    pub group: Located<GroupRef>,
    /// The file's `name:`, when written. With an `id` it is only a label, checked against the
    /// portal's name (a warning on mismatch).
    pub name: Option<Located<String>>,
    pub owner: Option<Located<UserRef>>,
    pub moderators: Vec<Located<UserRef>>,
    pub members: Vec<Located<UserRef>>,
    pub protected: Vec<Located<UserRef>>,
    /// `prune:` as written (`None`: not written; the default is true).
    pub prune: Option<bool>,
    /// `add_with:` as written (`None`: the file's, else `add`).
    pub add_with: Option<AddWith>,
    /// `invite_message:` as written (`None`: the file's).
    pub invite_message: Option<String>,
    pub limits: Limits,
    /// 1-based line of the group's entry.
    pub line: usize,
    /// `portal:` as written: the name of one of the file's `portals:`.
    pub portal: Option<Located<String>>,
    /// Where each field's key was written (line, column), for checks that depend on the
    /// group's system.
    pub keys: Vec<(&'static str, u32, u32)>,
}

impl GroupSpec {
    /// The declared users with their role, in the order owner, moderators, members.
    pub fn users(&self) -> impl Iterator<Item = (Role, &Located<UserRef>)> {
        self.owner
            .iter()
            .map(|u| (Role::Owner, u))
            .chain(self.moderators.iter().map(|u| (Role::Moderator, u)))
            .chain(self.members.iter().map(|u| (Role::Member, u)))
    }
}

/// A valid desired-state file, references unresolved (`crate::resolve` turns it into a
/// `DesiredState`). Groups are in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The file name, for messages.
    pub file: String,
    /// The top-level `protected:`.
    pub protected: Vec<Located<UserRef>>,
    pub limits: Limits,
    /// The top-level `add_with:`: the default for every group.
    pub add_with: Option<AddWith>,
    /// The top-level `invite_message:`: the default for every group.
    pub invite_message: Option<String>,
    pub groups: Vec<GroupSpec>,
    /// The file's `portals:`, in file order; empty for a single-portal file (Bitrix24, the
    /// portal given by `--portal`).
    pub portals: Vec<PortalSpec>,
}

impl Spec {
    /// A diagnostic about the reference written at `at`.
    pub fn diagnostic(&self, at: &At, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: at.line as usize,
            column: at.column as usize,
            path: at.path.to_string(),
            message,
        }
    }

    /// How many memberships the file declares (owners, moderators and members).
    pub fn memberships(&self) -> usize {
        self.groups.iter().map(|g| g.users().count()).sum()
    }

    /// The index in `portals` of the portal a group lives on (`None` for a single-portal
    /// file). A valid spec names a declared portal for every group.
    pub fn portal_of(&self, group: &GroupSpec) -> Option<usize> {
        match (&group.portal, self.portals.len()) {
            (_, 0) => None,
            (None, _) => Some(0),
            (Some(name), _) => self.portals.iter().position(|p| p.name == name.value),
        }
    }

    /// The system a group lives on.
    pub fn system_of(&self, group: &GroupSpec) -> System {
        self.portal_of(group)
            .map_or(System::Bitrix24, |i| self.portals[i].system)
    }

    /// Keep only the groups `selectors` name (`--group`): each selector is a group's ID as
    /// written, or its `name:` (ignoring case), optionally `PORTAL/…` for a file with
    /// `portals:`. Every selector must match at least one group: the selectors that match none
    /// are returned as the error, and the spec is left as it was.
    pub fn retain_groups(&mut self, selectors: &[String]) -> Result<(), Vec<String>> {
        if selectors.is_empty() {
            return Ok(());
        }
        let matches = |spec: &Spec, g: &GroupSpec, sel: &str| {
            let (portal, sel) = match sel.split_once('/') {
                Some((p, rest)) if !spec.portals.is_empty() => (Some(p), rest),
                _ => (None, sel),
            };
            if let Some(p) = portal {
                let here = spec.portal_of(g).map(|i| spec.portals[i].name.as_str());
                if here != Some(p) {
                    return false;
                }
            }
            let sel = sel.trim().trim_start_matches('#');
            let by_id = match &g.group.value {
                GroupRef::Id(id) => id.to_string().eq_ignore_ascii_case(sel),
                GroupRef::Name(_) => false,
            };
            let by_name = g
                .name
                .as_ref()
                .map(|n| n.value.as_str())
                .or(match &g.group.value {
                    GroupRef::Name(n) => Some(n.as_str()),
                    GroupRef::Id(_) => None,
                })
                .is_some_and(|n| n.to_lowercase() == sel.to_lowercase());
            by_id || by_name
        };
        let unmatched: Vec<String> = selectors
            .iter()
            .filter(|sel| !self.groups.iter().any(|g| matches(self, g, sel)))
            .cloned()
            .collect();
        if !unmatched.is_empty() {
            return Err(unmatched);
        }
        let keep: Vec<bool> = self
            .groups
            .iter()
            .map(|g| selectors.iter().any(|sel| matches(self, g, sel)))
            .collect();
        let mut keep = keep.into_iter();
        self.groups.retain(|_| keep.next().unwrap_or(false));
        Ok(())
    }

    /// The file cut into one spec per portal (in `portals:` order; portals no group uses are
    /// left out), each with its groups and the top-level settings; the top-level `protected:`
    /// keeps, for each portal, the e-mails and the IDs of that portal's kind. A single-portal
    /// file gives itself, with `None`.
    pub fn split(self) -> Vec<(Option<PortalSpec>, Spec)> {
        if self.portals.is_empty() {
            return vec![(None, self)];
        }
        let mut parts: Vec<(Option<PortalSpec>, Spec)> = self
            .portals
            .iter()
            .map(|p| {
                let protected = self
                    .protected
                    .iter()
                    .filter(|u| match &u.value {
                        UserRef::Email(_) => true,
                        UserRef::Id(id) => id.uuid().is_some() == p.system.takes_uuids(),
                    })
                    .cloned()
                    .collect();
                (
                    Some(p.clone()),
                    Spec {
                        file: self.file.clone(),
                        protected,
                        limits: self.limits,
                        add_with: self.add_with,
                        invite_message: self.invite_message.clone(),
                        groups: Vec::new(),
                        portals: vec![p.clone()],
                    },
                )
            })
            .collect();
        for g in &self.groups {
            if let Some(i) = self.portal_of(g) {
                parts[i].1.groups.push(g.clone());
            }
        }
        parts.retain(|(_, s)| !s.groups.is_empty());
        parts
    }
}

/// The longest e-mail address accepted, in characters.
pub const MAX_EMAIL_CHARS: usize = 254;

/// Why `s` is not an e-mail address as roster accepts them (exactly one `@`, something on
/// both sides, no whitespace or control characters, at most `MAX_EMAIL_CHARS`), or `None`.
pub fn email_problem(s: &str) -> Option<&'static str> {
    let Some((local, domain)) = s.split_once('@') else {
        return Some("");
    };
    if domain.contains('@') {
        Some(" (an e-mail address has exactly one @)")
    } else if local.is_empty() || domain.is_empty() {
        Some(" (an e-mail address needs a name before the @ and a domain after it)")
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some(" (an e-mail address has no spaces or control characters)")
    } else if s.chars().count() > MAX_EMAIL_CHARS {
        Some(" (an e-mail address has at most 254 characters)")
    } else if batch_reference(s).is_some() {
        Some(
            " (it contains a `$result`, `$next`, `$total`, `$time` or `$error` reference, which Bitrix24's batch would replace; give the user by ID)",
        )
    } else {
        None
    }
}

/// The first Bitrix24 batch reference in `s` (`$result`, `$next`, `$total`, `$time` or
/// `$error`, any case): the portal replaces these inside every command of a `batch`
/// (reference §3, `processBatchElement`), after decoding, so no encoding protects text that
/// holds one. Such text is refused rather than sent changed.
pub fn batch_reference(s: &str) -> Option<&str> {
    const WORDS: [&str; 5] = ["result", "next", "total", "time", "error"];
    s.match_indices('$').find_map(|(i, _)| {
        let rest = &s[i + 1..];
        WORDS.iter().find_map(|w| {
            rest.get(..w.len())
                .filter(|head| head.eq_ignore_ascii_case(w))
                .map(|_| &s[i..i + 1 + w.len()])
        })
    })
}

fn batch_reference_message(what: &str, r: &str, advice: &str) -> String {
    format!(
        "the {what} contains {}, a Bitrix24 batch reference that the portal would replace with another command's result; {advice}",
        escape(r)
    )
}

/// Escape control characters (terminal escape sequences) and bidirectional overrides in text
/// taken from a file or a command line, leaving everything else as it is.
pub fn escape(s: &str) -> String {
    let risky =
        |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(risky) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if risky(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `escape`, cut to `MAX_ECHO` characters.
fn echo(s: &str) -> String {
    if s.chars().count() <= MAX_ECHO {
        return escape(s);
    }
    let head: String = s.chars().take(MAX_ECHO).collect();
    format!("{}… ({} characters)", escape(&head), s.chars().count())
}

/// Parse and validate a spec file's bytes: the size limit, UTF-8 (a BOM is allowed), then
/// `parse`. `file` is only used in messages.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Spec, Diagnostics> {
    let one = |line: usize, column: usize, message: String| Diagnostics {
        shown: vec![Diagnostic {
            file: file.to_owned(),
            line,
            column,
            path: String::new(),
            message,
        }],
        omitted: 0,
    };
    if bytes.len() > MAX_FILE_BYTES {
        return Err(one(
            1,
            1,
            format!(
                "the file is larger than {} MiB (spec::MAX_FILE_BYTES), the most roster reads",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(one(
            1,
            1,
            "the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"
                .to_owned(),
        ));
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(body) {
        Ok(text) => parse(file, text),
        Err(e) => {
            let valid = std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or_default();
            let (line, column) = end_position(valid);
            let byte = body[e.valid_up_to()];
            Err(one(
                line,
                column,
                format!("the file is not valid UTF-8 (byte 0x{byte:02X}); roster reads UTF-8 only"),
            ))
        }
    }
}

/// The 1-based line and column just after `text`, counting line breaks as YAML does (`\r\n`,
/// `\r` or `\n`) and columns in characters.
fn end_position(text: &str) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    let mut prev = '\0';
    for c in text.chars() {
        match c {
            '\n' if prev == '\r' => {}
            '\n' | '\r' => (line, column) = (line + 1, 1),
            _ => column += 1,
        }
        prev = c;
    }
    (line, column)
}

/// YAML 1.2's `c-printable`: tab, line breaks, and printable Unicode.
fn printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}'
}

/// Each line's length in characters, counting line breaks as YAML does (`\r\n`, `\r`, `\n`).
fn line_lengths(text: &str) -> Vec<usize> {
    let mut lengths = vec![0usize];
    let mut prev = '\0';
    for c in text.chars() {
        match c {
            '\n' if prev == '\r' => {}
            '\n' | '\r' => lengths.push(0),
            _ => *lengths.last_mut().expect("never empty") += 1,
        }
        prev = c;
    }
    lengths
}

/// A position moved inside the text whose `line_lengths` are given: the parser puts the end of
/// a file without a final newline (and empty values there) on the next line, and may count a
/// column past the line's end.
fn clamp(lengths: &[usize], line: usize, column: usize) -> (usize, usize) {
    match lengths.get(line.wrapping_sub(1)) {
        Some(&n) => (line, column.clamp(1, n + 1)),
        None => (lengths.len(), lengths.last().map_or(1, |n| n + 1)),
    }
}

/// Whether a diagnostic's `line` and `column` lie within `bytes` (its end included), counted
/// as the diagnostics count them. Tests and the fuzz target check every diagnostic with it.
pub fn position_is_inside(bytes: &[u8], line: usize, column: usize) -> bool {
    let lengths = line_lengths(&String::from_utf8_lossy(bytes));
    line >= 1 && column >= 1 && lengths.get(line - 1).is_some_and(|&n| column <= n + 1)
}

/// Parse and validate a spec file's text. `file` is only used in messages.
pub fn parse(file: &str, text: &str) -> Result<Spec, Diagnostics> {
    parse_with(file, text, false)
}

/// `parse`, except that a user repeated within one list (`moderators`, `members`, a
/// `protected`) is not an error: the repeats are left out of the `Spec`. For
/// `canonical::format`, which removes them from the text. A user in two lists of a group is
/// still an error.
pub(crate) fn parse_allowing_repeats(file: &str, text: &str) -> Result<Spec, Diagnostics> {
    parse_with(file, text, true)
}

fn parse_with(file: &str, text: &str, repeats_allowed: bool) -> Result<Spec, Diagnostics> {
    let mut cx = Cx {
        file,
        kept: BinaryHeap::new(),
        seq: 0,
        omitted: 0,
        repeats_allowed,
    };
    if text.len() > MAX_FILE_BYTES {
        return parse_bytes(file, text.as_bytes());
    }
    // YAML allows only printable characters; saphyr-parser reports some of these errors at a
    // column past the line's end, so find the first one here, exactly.
    if let Some(i) = text.find(|c: char| !printable(c)) {
        let (line, column) = end_position(&text[..i]);
        let c = text[i..].chars().next().unwrap_or_default();
        cx.at_pos(pos(line as u32, column as u32), "", || {
            format!(
                "the character U+{:04X} is not allowed in a YAML file (only printable characters, tab and line breaks are)",
                u32::from(c)
            )
        });
        return Err(Diagnostics {
            shown: cx.kept.into_iter().map(|k| k.diag).collect(),
            omitted: 0,
        });
    }
    let desired = match tree::build(text) {
        Ok(None) => {
            cx.at_pos(pos(1, 1), "", || {
                "the file is empty: expected `version: 1` and `groups:`".to_owned()
            });
            None
        }
        Ok(Some(doc)) => cx.root(&doc),
        Err(TreeError::Syntax(at, info)) => {
            cx.at_pos(at, "", || format!("invalid YAML: {}", escape(&info)));
            None
        }
        Err(TreeError::TooDeep(at)) => {
            cx.at_pos(at, "", || {
                format!(
                    "nested more than {} levels deep; a roster file needs 4",
                    tree::MAX_DEPTH
                )
            });
            None
        }
        Err(TreeError::SeveralDocuments(at)) => {
            cx.at_pos(at, "", || {
                "expected one YAML document, found several".to_owned()
            });
            None
        }
    };
    let omitted = cx.omitted;
    let mut shown: Vec<Diagnostic> = cx
        .kept
        .into_sorted_vec()
        .into_iter()
        .map(|k| k.diag)
        .collect();
    if !shown.is_empty() {
        let lengths = line_lengths(text);
        for d in &mut shown {
            (d.line, d.column) = clamp(&lengths, d.line, d.column);
        }
        shown.sort_by_key(|d| (d.line, d.column));
    }
    match desired {
        Some(d) if shown.is_empty() => Ok(d),
        _ => Err(Diagnostics { shown, omitted }),
    }
}

fn pos(line: u32, column: u32) -> Pos {
    Pos { line, column }
}

/// A kept diagnostic, ordered by position, then by the order found: the heap's top is the
/// last one in file order.
struct Kept {
    at: Pos,
    seq: u64,
    diag: Diagnostic,
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Kept {}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Cx<'a> {
    file: &'a str,
    /// The first `MAX_DIAGNOSTICS` diagnostics by position (a max-heap on position).
    kept: BinaryHeap<Kept>,
    seq: u64,
    omitted: usize,
    /// A user repeated within one list is left out instead of reported (`parse_allowing_repeats`).
    repeats_allowed: bool,
}

impl Cx<'_> {
    /// Record a problem. The message is only built when the diagnostic is kept, so a file of a
    /// million errors costs a million comparisons, not a million messages.
    fn at_pos(&mut self, at: Pos, path: &str, message: impl FnOnce() -> String) {
        self.seq += 1;
        if self.kept.len() >= MAX_DIAGNOSTICS {
            let last = self.kept.peek().map(|k| k.at);
            if last.is_some_and(|last| at >= last) {
                self.omitted += 1;
                return;
            }
            self.kept.pop();
            self.omitted += 1;
        }
        let d = Diagnostic {
            file: self.file.to_owned(),
            line: at.line as usize,
            column: at.column as usize,
            path: path.to_owned(),
            message: message(),
        };
        self.kept.push(Kept {
            at,
            seq: self.seq,
            diag: d,
        });
    }

    fn at(&mut self, node: &Node, path: &str, message: impl FnOnce() -> String) {
        self.at_pos(node.pos, path, message);
    }

    /// Problems recorded so far (kept or not), to tell whether a part of the file was clean.
    fn count(&self) -> u64 {
        self.seq
    }

    /// A mapping's entries with known keys, reporting non-string, unknown and repeated keys.
    fn fields<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        path: &str,
        known: &[&'static str],
    ) -> Option<Vec<(&'static str, &'n Node<'i>)>> {
        let Kind::Map(map) = &node.kind else {
            self.at(node, path, || {
                format!("expected a mapping, found {}", describe(node))
            });
            return None;
        };
        let mut out: Vec<(&'static str, &'n Node<'i>)> = Vec::new();
        let mut first: BTreeMap<&'static str, u32> = BTreeMap::new();
        for (k, v) in map {
            let Kind::Str(key) = &k.kind else {
                self.at(k, path, || {
                    format!("expected a field name, found {}", describe(k))
                });
                continue;
            };
            let Some(&known_key) = known.iter().find(|&&n| n == key.as_ref()) else {
                self.at(k, &join(path, &echo(key)), || {
                    format!(
                        "unknown field `{}`; expected one of: {}",
                        echo(key),
                        known.join(", ")
                    )
                });
                continue;
            };
            if let Some(line) = first.get(known_key) {
                let line = *line;
                self.at(k, &join(path, known_key), || {
                    format!("field `{known_key}` is given twice (first on line {line})")
                });
                continue;
            }
            first.insert(known_key, k.pos.line);
            out.push((known_key, v));
        }
        Some(out)
    }

    fn root(&mut self, doc: &Node) -> Option<Spec> {
        let fields = self.fields(
            doc,
            "",
            &[
                "version",
                "protected",
                "limits",
                "add_with",
                "invite_message",
                "portals",
                "groups",
            ],
        )?;
        let mut version = None;
        let mut groups = None;
        let mut protected = Vec::new();
        let mut limits = Limits::default();
        let mut add_with = None;
        let mut invite_message = None;
        let mut portals = Vec::new();
        let mut had_portals = false;
        let before = self.count();
        for (key, v) in fields {
            match key {
                "version" => version = Some(v),
                "portals" => {
                    had_portals = true;
                    portals = self.portals(v);
                }
                "groups" => groups = Some(v),
                "protected" => protected = self.protected(v, None),
                "limits" => limits = self.limits(v, key, true),
                "add_with" => add_with = self.add_with(v, key),
                "invite_message" => invite_message = self.text(v, key),
                _ => unreachable!("filtered by fields()"),
            }
        }
        match version {
            None => self.at(doc, "", || {
                "missing field `version` (expected `version: 1`)".to_owned()
            }),
            Some(v) => match &v.kind {
                Kind::Int(FORMAT_VERSION, None) => {}
                _ => self.at(v, "version", || {
                    format!(
                        "unsupported version {}; this roster understands version {FORMAT_VERSION}",
                        describe(v)
                    )
                }),
            },
        }
        let Some(groups) = groups else {
            self.at(doc, "", || "missing field `groups`".to_owned());
            return None;
        };
        let groups = self.groups(groups)?;
        let spec = Spec {
            file: self.file.to_owned(),
            protected,
            limits,
            add_with,
            invite_message,
            groups,
            portals,
        };
        self.systems(&spec, had_portals);
        (self.count() == before).then_some(spec)
    }

    /// `portals: {NAME: {bitrix24: {url_env?}} | {docspace: {url_env?, key_env?}}}`.
    fn portals(&mut self, node: &Node) -> Vec<PortalSpec> {
        let mut out = Vec::new();
        let Kind::Map(map) = &node.kind else {
            self.at(node, "portals", || {
                format!(
                    "expected a mapping of portal names to systems, such as `portals: {{crm: {{bitrix24: {{}}}}, docs: {{docspace: {{}}}}}}`, found {}",
                    describe(node)
                )
            });
            return out;
        };
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for (k, v) in map {
            let name = match &k.kind {
                Kind::Str(n)
                    if !n.is_empty()
                        && n.len() <= 64
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    n.to_string()
                }
                _ => {
                    self.at(k, "portals", || {
                        format!(
                            "a portal name is 1 to 64 letters, digits, `_` or `-`, found {}",
                            describe(k)
                        )
                    });
                    continue;
                }
            };
            let path = format!("portals.{name}");
            if let Some(line) = seen.get(&name) {
                let line = *line;
                self.at(k, &path, || {
                    format!("portal `{name}` is declared twice (first on line {line})")
                });
                continue;
            }
            seen.insert(name.clone(), k.pos.line);
            let Some(fields) = self.fields(v, &path, &["bitrix24", "docspace"]) else {
                continue;
            };
            let [(system, settings)] = fields.as_slice() else {
                self.at(v, &path, || {
                    "a portal is exactly one system: `bitrix24: {…}` or `docspace: {…}`".to_owned()
                });
                continue;
            };
            let system = match *system {
                "docspace" => System::DocSpace,
                _ => System::Bitrix24,
            };
            let spath = format!("{path}.{}", system.key());
            let mut url_env = format!("ROSTER_{}_URL", env_part(&name));
            let mut key_env = system
                .takes_uuids()
                .then(|| format!("ROSTER_{}_API_KEY", env_part(&name)));
            if !matches!(settings.kind, Kind::Null) {
                let known: &[&'static str] = match system {
                    System::Bitrix24 => &["url_env"],
                    System::DocSpace => &["url_env", "key_env"],
                };
                for (key, val) in self.fields(settings, &spath, known).unwrap_or_default() {
                    let fpath = format!("{spath}.{key}");
                    let Some(var) = self.env_name(val, &fpath) else {
                        continue;
                    };
                    match key {
                        "url_env" => url_env = var,
                        _ => key_env = Some(var),
                    }
                }
            }
            out.push(PortalSpec {
                name,
                system,
                url_env,
                key_env,
                line: k.pos.line as usize,
            });
        }
        if out.is_empty() && seen.is_empty() {
            self.at(node, "portals", || {
                "`portals:` declares no portal; leave it out for a single Bitrix24 portal"
                    .to_owned()
            });
        }
        out
    }

    /// An environment variable's name: letters, digits and `_`, not starting with a digit.
    fn env_name(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s)
                if !s.is_empty()
                    && !s.starts_with(|c: char| c.is_ascii_digit())
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Some(s.to_string())
            }
            _ => {
                self.at(node, path, || {
                    format!(
                        "expected the name of an environment variable (letters, digits and `_`), found {}",
                        describe(node)
                    )
                });
                None
            }
        }
    }

    /// The checks that depend on each group's system: its portal is declared, its IDs are of
    /// the system's kind (Bitrix24 numbers, DocSpace UUIDs), and it uses only the fields its
    /// system has (DocSpace: `manager:` and `members:`; Bitrix24: `owner:`, `moderators:`,
    /// invitations).
    fn systems(&mut self, spec: &Spec, had_portals: bool) {
        for (gi, g) in spec.groups.iter().enumerate() {
            let key_at = |name: &str| {
                g.keys
                    .iter()
                    .find(|(k, _, _)| *k == name)
                    .map(|&(_, l, c)| pos(l, c))
            };
            let system = match (&g.portal, spec.portals.len()) {
                // `portals:` was written but none of it was valid: that is the error to fix.
                (_, 0) if had_portals => continue,
                (Some(p), 0) => {
                    self.at_pos(pos(p.at.line, p.at.column), &format!("groups[{gi}].portal"), || {
                        format!(
                            "the file declares no `portals:`, so there is no portal {} to put the group on",
                            echo(&p.value)
                        )
                    });
                    continue;
                }
                (None, n) if n > 1 => {
                    let names: Vec<&str> = spec.portals.iter().map(|p| p.name.as_str()).collect();
                    self.at_pos(pos(g.group.at.line, g.group.at.column), &format!("groups[{gi}]"), || {
                        format!(
                            "missing field `portal`: the file declares several portals ({}), so each group says which it lives on",
                            names.join(", ")
                        )
                    });
                    continue;
                }
                (Some(p), _) if !spec.portals.iter().any(|d| d.name == p.value) => {
                    let names: Vec<&str> = spec.portals.iter().map(|p| p.name.as_str()).collect();
                    self.at_pos(
                        pos(p.at.line, p.at.column),
                        &format!("groups[{gi}].portal"),
                        || {
                            format!(
                                "no portal \"{}\" in `portals:`; declared: {}",
                                echo(&p.value),
                                names.join(", ")
                            )
                        },
                    );
                    continue;
                }
                _ => spec.system_of(g),
            };
            let refused: &[(&str, &str)] = match system {
                System::Bitrix24 => &[(
                    "manager",
                    "a Bitrix24 workgroup has an `owner:`, not a `manager:`",
                )],
                System::DocSpace => &[
                    (
                        "owner",
                        "a DocSpace group has a `manager:` (its head), not an `owner:`",
                    ),
                    (
                        "moderators",
                        "a DocSpace group has no moderators: only a `manager:` and `members:`",
                    ),
                    (
                        "add_with",
                        "DocSpace adds members directly; it has no invitations to a group",
                    ),
                    (
                        "invite_message",
                        "DocSpace adds members directly; it has no invitations to a group",
                    ),
                ],
            };
            for (field, why) in refused {
                if let Some(at) = key_at(field) {
                    self.at_pos(at, &format!("groups[{gi}].{field}"), || (*why).to_owned());
                }
            }
            let kind = |uuid: bool| if uuid { "a UUID" } else { "a number" };
            let short = match system {
                System::Bitrix24 => "Bitrix24",
                System::DocSpace => "DocSpace",
            };
            if let GroupRef::Id(id) = &g.group.value
                && id.uuid().is_some() != system.takes_uuids()
            {
                let at = g.group.at;
                self.at_pos(pos(at.line, at.column), &at.path.to_string(), || {
                    format!(
                        "a {} group's ID is {}, found {id}",
                        short,
                        kind(system.takes_uuids())
                    )
                });
            }
            for u in g
                .owner
                .iter()
                .chain(&g.moderators)
                .chain(&g.members)
                .chain(&g.protected)
            {
                if let UserRef::Id(id) = &u.value
                    && id.uuid().is_some() != system.takes_uuids()
                {
                    self.at_pos(pos(u.at.line, u.at.column), &u.at.path.to_string(), || {
                        format!(
                            "a {} user's ID is {} (or give the e-mail address), found {id}",
                            short,
                            kind(system.takes_uuids())
                        )
                    });
                }
            }
        }
        // The top-level `protected:` applies to every portal of its IDs' kind: an ID of a kind
        // no declared portal has is a mistake.
        let has = |uuid: bool| {
            if spec.portals.is_empty() {
                !uuid
            } else {
                spec.portals.iter().any(|p| p.system.takes_uuids() == uuid)
            }
        };
        for u in &spec.protected {
            if let UserRef::Id(id) = &u.value {
                let uuid = id.uuid().is_some();
                if !has(uuid) {
                    self.at_pos(pos(u.at.line, u.at.column), &u.at.path.to_string(), || {
                        format!(
                            "{id} is a {} user ID, and the file has no {} portal",
                            if uuid { "DocSpace" } else { "Bitrix24" },
                            if uuid { "DocSpace" } else { "Bitrix24" },
                        )
                    });
                }
            }
        }
    }

    fn groups(&mut self, node: &Node) -> Option<Vec<GroupSpec>> {
        if matches!(node.kind, Kind::Null) {
            // `groups:` with nothing under it: an empty desired state is valid.
            return Some(Vec::new());
        }
        let Kind::Seq(items) = &node.kind else {
            self.at(node, "groups", || {
                format!("expected a list of groups, found {}", describe(node))
            });
            return None;
        };
        // Every group that is valid on its own is kept, even when others are not, so the checks
        // that need the whole file (`systems`) still report on them: all problems at once.
        let mut groups = Vec::with_capacity(items.len());
        // A group is one per portal: the same ID or name may be on two portals.
        let mut first_seen: BTreeMap<(Option<String>, GroupRef), u32> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let (group, key) = self.group(item, i);
            let Some((key, key_node)) = key else { continue };
            let portal = match &item.kind {
                Kind::Map(map) => map.iter().find_map(|(k, v)| match (&k.kind, &v.kind) {
                    (Kind::Str(k), Kind::Str(v)) if k.as_ref() == "portal" => Some(v.to_string()),
                    _ => None,
                }),
                _ => None,
            };
            let key = (portal, key);
            if let Some(&line) = first_seen.get(&key) {
                let field = match key.1 {
                    GroupRef::Id(_) => "id",
                    GroupRef::Name(_) => "name",
                };
                self.at(key_node, &format!("groups[{i}].{field}"), || {
                    format!(
                        "duplicate group {}: already declared on line {line}",
                        describe(key_node)
                    )
                });
                continue;
            }
            first_seen.insert(key, item.pos.line);
            groups.extend(group);
        }
        Some(groups)
    }

    /// One group: the group if it is valid, and its key (its ID, or its name when it has no
    /// ID) with its node whenever the key itself is valid, so duplicates are found even in
    /// groups with other problems.
    #[allow(clippy::type_complexity)]
    fn group<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        index: usize,
    ) -> (Option<GroupSpec>, Option<(GroupRef, &'n Node<'i>)>) {
        let path = format!("groups[{index}]");
        let path = path.as_str();
        let Some(fields) = self.fields(
            node,
            path,
            &[
                "id",
                "name",
                "owner",
                "moderators",
                "members",
                "prune",
                "protected",
                "limits",
                "add_with",
                "invite_message",
                "manager",
                "portal",
            ],
        ) else {
            return (None, None);
        };
        let keys: Vec<(&'static str, u32, u32)> = match &node.kind {
            Kind::Map(map) => map
                .iter()
                .filter_map(|(k, _)| match &k.kind {
                    Kind::Str(name) => fields
                        .iter()
                        .find(|(f, _)| *f == name.as_ref())
                        .map(|(f, _)| (*f, k.pos.line, k.pos.column)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let at = |n: &Node, field, i: Option<usize>| At {
            line: n.pos.line,
            column: n.pos.column,
            path: FieldPath {
                group: Some(index),
                field,
                index: i.map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
            },
        };
        let before = self.count();
        let mut id = None;
        let mut key_reported = false;
        let mut name: Option<(Located<String>, &Node)> = None;
        let mut owner = None;
        let mut moderators = Vec::new();
        let mut members = Vec::new();
        let mut prune = None;
        let mut protected = Vec::new();
        let mut limits = Limits::default();
        let mut add_with = None;
        let mut invite_message = None;
        let mut portal = None;
        for (key, v) in fields {
            let fpath = join(path, key);
            match key {
                "id" => {
                    id = match &v.kind {
                        Kind::Str(s) => match Uuid::parse(s) {
                            Some(u) if u.is_nil() => {
                                self.at(v, &fpath, || {
                                    "the empty UUID is DocSpace's \"none\", not a group".to_owned()
                                });
                                None
                            }
                            Some(u) => Some((GroupId::Uuid(u), v)),
                            None => {
                                self.at(v, &fpath, || {
                                    format!(
                                        "a group ID is a positive integer (Bitrix24) or a UUID such as 3f2b6c1e-8d4a-4e7b-9c0d-1a2b3c4d5e6f (DocSpace), found {}",
                                        describe(v)
                                    )
                                });
                                None
                            }
                        },
                        _ => self
                            .positive(v, &fpath, "group ID")
                            .map(|n| (GroupId::Num(n), v)),
                    };
                    key_reported |= id.is_none();
                }
                "portal" => match &v.kind {
                    Kind::Str(s) => {
                        portal = Some(Located {
                            value: s.to_string(),
                            at: at(v, Field::Portal, None),
                        })
                    }
                    _ => self.at(v, &fpath, || {
                        format!(
                            "expected a portal's name from `portals:`, found {}",
                            describe(v)
                        )
                    }),
                },
                "manager" if owner.is_some() => self.at(v, &fpath, || {
                    "give either `owner:` (Bitrix24) or `manager:` (DocSpace), not both".to_owned()
                }),
                "manager" => {
                    owner = self
                        .user(v, at(v, Field::Manager, None))
                        .map(|value| Located {
                            value,
                            at: at(v, Field::Manager, None),
                        });
                }
                "name" => match &v.kind {
                    Kind::Str(s) if batch_reference(s).is_some() => {
                        key_reported = true;
                        let r = batch_reference(s).unwrap_or_default();
                        self.at(v, &fpath, || {
                            batch_reference_message("name", r, "give the group by `id:`")
                        })
                    }
                    Kind::Str(s) if !s.trim().is_empty() => {
                        let value = s.to_string();
                        name = Some((
                            Located {
                                value,
                                at: at(v, Field::Name, None),
                            },
                            v,
                        ));
                    }
                    Kind::Str(_) => {
                        key_reported = true;
                        self.at(v, &fpath, || "a group name must not be empty".to_owned())
                    }
                    _ => {
                        key_reported = true;
                        self.at(v, &fpath, || {
                            format!("expected a string, found {}", describe(v))
                        })
                    }
                },
                "owner" if owner.is_some() => self.at(v, &fpath, || {
                    "give either `owner:` (Bitrix24) or `manager:` (DocSpace), not both".to_owned()
                }),
                "owner" => {
                    owner = self
                        .user(v, at(v, Field::Owner, None))
                        .map(|value| Located {
                            value,
                            at: at(v, Field::Owner, None),
                        });
                }
                "prune" => match &v.kind {
                    Kind::Bool(b) => prune = Some(*b),
                    _ => self.at(v, &fpath, || {
                        format!("expected true or false, found {}", describe(v))
                    }),
                },
                "moderators" => moderators = self.user_list(v, Some(index), Field::Moderators),
                "members" => members = self.user_list(v, Some(index), Field::Members),
                "protected" => protected = self.protected(v, Some(index)),
                "limits" => limits = self.limits(v, &fpath, false),
                "add_with" => add_with = self.add_with(v, &fpath),
                "invite_message" => invite_message = self.text(v, &fpath),
                _ => unreachable!("filtered by fields()"),
            }
        }
        if self.repeats_allowed {
            for list in [&mut moderators, &mut members] {
                let mut keys = std::collections::BTreeSet::new();
                list.retain(|u| keys.insert(UserKey::of(&u.value)));
            }
        }
        // A user listed twice (by the same ID, or the same e-mail in any case) is an error at
        // the second mention; the same user by e-mail and by ID is found by `resolve`.
        let mut seen: BTreeMap<UserKey, (Field, u32)> = BTreeMap::new();
        let listed = owner
            .iter()
            .chain(&moderators)
            .chain(&members)
            .map(|u| (u, u.at.path.field));
        for (u, field) in listed {
            let key = UserKey::of(&u.value);
            if let Some(&(first, line)) = seen.get(&key) {
                self.at_pos(pos(u.at.line, u.at.column), &u.at.path.to_string(), || {
                    format!(
                        "user {} is listed twice in this group (first under `{}` on line {line})",
                        u.value,
                        first.as_str()
                    )
                });
                continue;
            }
            seen.insert(key, (field, u.at.line));
        }
        let key = match (id, &name) {
            (Some((id, n)), _) => Some((GroupRef::Id(id), n)),
            (None, Some((name, n))) => Some((GroupRef::Name(name.value.clone()), *n)),
            (None, None) => None,
        };
        let Some((group, key_node)) = key else {
            if !key_reported {
                self.at(node, path, || {
                    "missing field `id` or `name` (the workgroup ID, or its exact name on the portal)"
                        .to_owned()
                });
            }
            return (None, None);
        };
        if self.count() != before {
            return (None, Some((group, key_node)));
        }
        let field = match group {
            GroupRef::Id(_) => Field::Id,
            GroupRef::Name(_) => Field::Name,
        };
        let spec = GroupSpec {
            group: Located {
                value: group.clone(),
                at: at(key_node, field, None),
            },
            name: name.map(|(n, _)| n),
            owner,
            moderators,
            members,
            protected,
            prune,
            add_with,
            invite_message,
            limits,
            line: node.pos.line as usize,
            portal,
            keys,
        };
        (Some(spec), Some((group, key_node)))
    }

    /// A user: a positive ID or an e-mail address. `at` is only used for the message.
    fn user(&mut self, node: &Node, at: At) -> Option<UserRef> {
        let why = match &node.kind {
            Kind::Int(n, _) if *n > 0 => return Some(UserRef::Id(UserId::Num(*n as u64))),
            Kind::Str(s) if !s.contains('@') && Uuid::parse(s).is_some_and(|u| !u.is_nil()) => {
                return Uuid::parse(s).map(|u| UserRef::Id(UserId::Uuid(u)));
            }
            Kind::Str(s) if Uuid::parse(s).is_some() => {
                " (the empty UUID is DocSpace's \"nobody\")"
            }
            Kind::Str(s) => match email_problem(s) {
                None => return Some(UserRef::Email(s.to_string())),
                Some(why) => why,
            },
            _ => "",
        };
        self.at_pos(pos(at.line, at.column), &at.path.to_string(), || {
            format!(
                "expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found {}{why}",
                describe(node)
            )
        });
        None
    }

    fn user_list(
        &mut self,
        node: &Node,
        group: Option<u32>,
        field: Field,
    ) -> Vec<Located<UserRef>> {
        if matches!(node.kind, Kind::Null) {
            return Vec::new();
        }
        let Kind::Seq(items) = &node.kind else {
            let path = FieldPath {
                group,
                field,
                index: None,
            };
            self.at(node, &path.to_string(), || {
                format!(
                    "expected a list of users (IDs or e-mail addresses), found {}",
                    describe(node)
                )
            });
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = At {
                line: item.pos.line,
                column: item.pos.column,
                path: FieldPath {
                    group,
                    field,
                    index: Some(u32::try_from(i).unwrap_or(u32::MAX)),
                },
            };
            if let Some(value) = self.user(item, at) {
                out.push(Located { value, at });
            }
        }
        out
    }

    /// `protected: [users]` (of a group, or the top-level one): each user once.
    fn protected(&mut self, node: &Node, group: Option<u32>) -> Vec<Located<UserRef>> {
        let mut out = Vec::new();
        let mut lines: BTreeMap<UserKey, u32> = BTreeMap::new();
        for u in self.user_list(node, group, Field::Protected) {
            let key = UserKey::of(&u.value);
            if let Some(&line) = lines.get(&key) {
                if self.repeats_allowed {
                    continue;
                }
                self.at_pos(pos(u.at.line, u.at.column), &u.at.path.to_string(), || {
                    format!(
                        "user {} is listed twice in `protected` (first on line {line})",
                        u.value
                    )
                });
                continue;
            }
            lines.insert(key, u.at.line);
            out.push(u);
        }
        out
    }

    /// `add_with: add|invite`.
    fn add_with(&mut self, node: &Node, path: &str) -> Option<AddWith> {
        match &node.kind {
            Kind::Str(s) if s == "add" => Some(AddWith::Add),
            Kind::Str(s) if s == "invite" => Some(AddWith::Invite),
            _ => {
                self.at(node, path, || {
                    format!("expected `add` or `invite`, found {}", describe(node))
                });
                None
            }
        }
    }

    /// A text field (`invite_message:`): a string of at most `MAX_TEXT_CHARS` characters,
    /// without control characters (line breaks and tabs allowed) or batch references.
    fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s)
                if s.chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\t')) =>
            {
                self.at(node, path, || {
                    "the text has a control character (only line breaks and tabs are allowed)"
                        .to_owned()
                });
                None
            }
            Kind::Str(s) if batch_reference(s).is_some() => {
                let r = batch_reference(s).unwrap_or_default();
                self.at(node, path, || {
                    batch_reference_message("text", r, "reword it")
                });
                None
            }
            Kind::Str(s) if s.chars().count() <= MAX_TEXT_CHARS => Some(s.to_string()),
            Kind::Str(s) => {
                let n = s.chars().count();
                self.at(node, path, || {
                    format!("the text has {n} characters; at most {MAX_TEXT_CHARS} are allowed")
                });
                None
            }
            _ => {
                self.at(node, path, || {
                    format!("expected a string, found {}", describe(node))
                });
                None
            }
        }
    }

    /// A `limits:` mapping; `top` allows `max_total_removals`.
    fn limits(&mut self, node: &Node, path: &str, top: bool) -> Limits {
        let mut limits = Limits::default();
        let Some(fields) = self.fields(
            node,
            path,
            &["max_removals", "allow_empty", "max_total_removals"],
        ) else {
            return limits;
        };
        for (key, v) in fields {
            let fpath = join(path, key);
            let line = v.pos.line as usize;
            match key {
                "max_removals" => {
                    limits.max_removals = self.limit(v, &fpath).map(|value| Setting { value, line })
                }
                "max_total_removals" if !top => self.at(v, &fpath, || {
                    "`max_total_removals` limits the whole run: set it in the top-level `limits:`"
                        .to_owned()
                }),
                "max_total_removals" => {
                    limits.max_total_removals =
                        self.limit(v, &fpath).map(|value| Setting { value, line })
                }
                "allow_empty" => match &v.kind {
                    Kind::Bool(b) => limits.allow_empty = Some(Setting { value: *b, line }),
                    _ => self.at(v, &fpath, || {
                        format!("expected true or false, found {}", describe(v))
                    }),
                },
                _ => unreachable!("filtered by fields()"),
            }
        }
        limits
    }

    /// A limit: a count (`5`) or a whole percent (`25%`).
    fn limit(&mut self, node: &Node, path: &str) -> Option<Limit> {
        match &node.kind {
            Kind::Int(n, _) if *n >= 0 => return Some(Limit::Count(*n as u64)),
            Kind::Str(s) => {
                let digits = s.strip_suffix('%').map(str::trim_end).unwrap_or_default();
                let whole = !digits.is_empty()
                    && digits.len() <= 3
                    && digits.bytes().all(|b| b.is_ascii_digit());
                if let (true, Ok(p @ 0..=100)) = (whole, digits.parse::<u8>()) {
                    return Some(Limit::Percent(p));
                }
            }
            _ => {}
        }
        self.at(node, path, || {
            format!(
                "expected a count (such as 5) or a percent from 0% to 100% (such as 25%), found {}",
                describe(node)
            )
        });
        None
    }

    fn positive(&mut self, node: &Node, path: &str, what: &str) -> Option<u64> {
        self.positive_at(node, || path.to_owned(), what)
    }

    /// A positive integer; the path is only built when there is a problem to report.
    fn positive_at(
        &mut self,
        node: &Node,
        path: impl FnOnce() -> String,
        what: &str,
    ) -> Option<u64> {
        match node.kind {
            Kind::Int(n, _) if n > 0 => Some(n as u64),
            _ => {
                let path = path();
                self.at(node, &path, || {
                    format!(
                        "{what} must be a positive integer, found {}",
                        describe(node)
                    )
                });
                None
            }
        }
    }
}

/// A user reference compared for duplicates: the ID, or the e-mail address in lower case.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum UserKey {
    Id(UserId),
    Email(String),
}

impl UserKey {
    fn of(u: &UserRef) -> UserKey {
        match u {
            UserRef::Id(id) => UserKey::Id(*id),
            UserRef::Email(e) => UserKey::Email(e.to_lowercase()),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A short description of a node for messages: scalars as written (numbers) or quoted and
/// escaped (strings), cut to `MAX_ECHO` characters.
fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Null => "null".to_owned(),
        Kind::Bool(b) => b.to_string(),
        Kind::Int(n, None) => n.to_string(),
        Kind::Int(_, Some(written)) | Kind::Float(written) => echo(written),
        Kind::Str(s) if s.chars().count() > MAX_ECHO => {
            let head: String = s.chars().take(MAX_ECHO).collect();
            format!("{head:?}… ({} characters)", s.chars().count())
        }
        Kind::Str(s) => format!("{:?}", s.as_ref()),
        Kind::BadTag(tag) => format!("a value that does not fit its tag {}", echo(tag)),
        Kind::Alias => "an alias (aliases are not supported in roster files)".to_owned(),
        Kind::Seq(_) => "a list".to_owned(),
        Kind::Map(_) => "a mapping".to_owned(),
    }
}

#[cfg(test)]
mod tests;
