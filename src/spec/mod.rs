//! The desired-state file: its format (version 1), parsing with positions, and validation.
//!
//! `parse_bytes` and `parse` are pure (bytes or text in, `DesiredState` or diagnostics out):
//! reading the file happens in the shell (`crate::load`), which must read at most
//! `MAX_FILE_BYTES + 1` bytes. Every problem in a file is reported at once (the first
//! `MAX_DIAGNOSTICS` in file order, then a count of the rest), each with the file, line and
//! column, the field path and the offending value; nothing is sent to a portal until the file
//! is clean.
//!
//! ```yaml
//! version: 1
//! protected: [7]             # optional: never removed or demoted in any group
//! limits:                    # optional: mass-removal limits (defaults below)
//!   max_removals: 25%        # per group: a count (5) or a percent (25%) of its current
//!                            #   non-owner members; a percent applies from 10 such members
//!   allow_empty: false       # true lets a plan remove every non-owner member of a group
//!                            #   that has 4 or more (refused by default)
//!   max_total_removals: 25%  # the whole run: of all current memberships of declared groups
//!                            #   (a percent applies from 10 memberships)
//! groups:
//!   - id: 15                 # workgroup ID (required, > 0)
//!     name: Marketing        # optional label shown in plans
//!     owner: 1               # optional: checked and reported, never changed
//!     moderators: [10]       # role E
//!     members: [21, 22]      # role K
//!     prune: true            # default true: undeclared members are removed (owners never)
//!     protected: [10]        # optional: never removed or demoted in this group
//!     limits: { max_removals: 5, allow_empty: true }   # override the file's limits here
//! ```
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

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;

use crate::model::{DesiredGroup, DesiredState, GroupId, Limit, Limits, Role, Setting, UserId};
use tree::{Kind, Node, Pos, TreeError};

/// The only format version this build understands.
pub const FORMAT_VERSION: i64 = 1;

/// The largest spec file roster reads: 10 MiB (a file of 10,000 groups × 100 members is ~6 MiB).
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// At most this many diagnostics are kept (the first in file order); the rest are counted.
pub const MAX_DIAGNOSTICS: usize = 100;

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
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<DesiredState, Diagnostics> {
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
pub fn parse(file: &str, text: &str) -> Result<DesiredState, Diagnostics> {
    let mut cx = Cx {
        file,
        kept: BinaryHeap::new(),
        seq: 0,
        omitted: 0,
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

    fn root(&mut self, doc: &Node) -> Option<DesiredState> {
        let fields = self.fields(doc, "", &["version", "protected", "limits", "groups"])?;
        let mut version = None;
        let mut groups = None;
        let mut protected = BTreeSet::new();
        let mut limits = Limits::default();
        let before = self.count();
        for (key, v) in fields {
            match key {
                "version" => version = Some(v),
                "groups" => groups = Some(v),
                "protected" => protected = self.protected(v, key),
                "limits" => limits = self.limits(v, key, true),
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
        (self.count() == before).then_some(DesiredState {
            groups,
            protected,
            limits,
        })
    }

    fn groups(&mut self, node: &Node) -> Option<BTreeMap<GroupId, DesiredGroup>> {
        if matches!(node.kind, Kind::Null) {
            // `groups:` with nothing under it: an empty desired state is valid.
            return Some(BTreeMap::new());
        }
        let Kind::Seq(items) = &node.kind else {
            self.at(node, "groups", || {
                format!("expected a list of groups, found {}", describe(node))
            });
            return None;
        };
        let mut groups = BTreeMap::new();
        let mut first_seen: BTreeMap<GroupId, u32> = BTreeMap::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("groups[{i}]");
            let (group, id) = self.group(item, &path);
            ok &= group.is_some();
            let Some((id, id_node)) = id else { continue };
            if let Some(&line) = first_seen.get(&id) {
                self.at(id_node, &format!("{path}.id"), || {
                    format!(
                        "duplicate group {}: already declared on line {line}",
                        describe(id_node)
                    )
                });
                ok = false;
                continue;
            }
            first_seen.insert(id, item.pos.line);
            if let Some(group) = group {
                groups.insert(id, group);
            }
        }
        ok.then_some(groups)
    }

    /// One group: the group if it is valid, and its ID (with its node) whenever the ID itself
    /// is valid, so duplicates are found even in groups with other problems.
    #[allow(clippy::type_complexity)]
    fn group<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        path: &str,
    ) -> (Option<DesiredGroup>, Option<(GroupId, &'n Node<'i>)>) {
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
            ],
        ) else {
            return (None, None);
        };
        let before = self.count();
        let mut id = None;
        let mut id_reported = false;
        let mut name = None;
        let mut owner = None;
        let mut prune = true;
        let mut protected = BTreeSet::new();
        let mut limits = Limits::default();
        // (user, role, node, field path) in file order, to report a user listed twice.
        let mut listed: Vec<(UserId, Role, &Node, String)> = Vec::new();
        for (key, v) in fields {
            let fpath = join(path, key);
            match key {
                "id" => {
                    id = self
                        .positive(v, &fpath, "group ID")
                        .map(|n| (GroupId(n), v));
                    id_reported = id.is_none();
                }
                "name" => match &v.kind {
                    Kind::Str(s) => name = Some(s.to_string()),
                    _ => self.at(v, &fpath, || {
                        format!("expected a string, found {}", describe(v))
                    }),
                },
                "owner" => {
                    if let Some(n) = self.positive(v, &fpath, "user ID") {
                        owner = Some(UserId(n));
                        listed.push((UserId(n), Role::Owner, v, fpath));
                    }
                }
                "prune" => match &v.kind {
                    Kind::Bool(b) => prune = *b,
                    _ => self.at(v, &fpath, || {
                        format!("expected true or false, found {}", describe(v))
                    }),
                },
                "moderators" | "members" => {
                    let role = if key == "moderators" {
                        Role::Moderator
                    } else {
                        Role::Member
                    };
                    for (user, n, p) in self.user_list(v, &fpath) {
                        listed.push((user, role, n, p));
                    }
                }
                "protected" => protected = self.protected(v, &fpath),
                "limits" => limits = self.limits(v, &fpath, false),
                _ => unreachable!("filtered by fields()"),
            }
        }
        let mut members = BTreeMap::new();
        let mut seen: BTreeMap<UserId, (Role, u32)> = BTreeMap::new();
        for (user, role, n, p) in listed {
            if let Some(&(first_role, line)) = seen.get(&user) {
                let first = match first_role {
                    Role::Owner => "owner",
                    Role::Moderator => "moderators",
                    Role::Member => "members",
                };
                self.at(n, &p, || {
                    format!("user {user} is listed twice in this group (first under `{first}` on line {line})")
                });
                continue;
            }
            seen.insert(user, (role, n.pos.line));
            if role != Role::Owner {
                members.insert(user, role);
            }
        }
        let Some((id, id_node)) = id else {
            if !id_reported {
                self.at(node, path, || {
                    "missing field `id` (the workgroup ID)".to_owned()
                });
            }
            return (None, None);
        };
        if self.count() != before {
            return (None, Some((id, id_node)));
        }
        let group = DesiredGroup {
            id,
            name,
            owner,
            members,
            inactive: BTreeMap::new(),
            prune,
            prune_explicit: false,
            add_with: Default::default(),
            invite_message: None,
            protected,
            limits,
            line: node.pos.line as usize,
        };
        (Some(group), Some((id, id_node)))
    }

    fn user_list<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        path: &str,
    ) -> Vec<(UserId, &'n Node<'i>, String)> {
        if matches!(node.kind, Kind::Null) {
            return Vec::new();
        }
        let Kind::Seq(items) = &node.kind else {
            self.at(node, path, || {
                format!("expected a list of user IDs, found {}", describe(node))
            });
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(n) = self.positive_at(item, || format!("{path}[{i}]"), "user ID") {
                out.push((UserId(n), item, format!("{path}[{i}]")));
            }
        }
        out
    }

    /// `protected: [ids]`: positive user IDs, each once.
    fn protected(&mut self, node: &Node, path: &str) -> BTreeSet<UserId> {
        let mut out = BTreeSet::new();
        let mut lines: BTreeMap<UserId, u32> = BTreeMap::new();
        for (user, n, p) in self.user_list(node, path) {
            if let Some(&line) = lines.get(&user) {
                self.at(n, &p, || {
                    format!("user {user} is listed twice in `protected` (first on line {line})")
                });
                continue;
            }
            lines.insert(user, n.pos.line);
            out.insert(user);
        }
        out
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
