//! The canonical form of a desired-state file, comments kept: `roster fmt` and `roster import`.
//!
//! A `Document` is a roster file as a tree of its fields, each node with its comments (full
//! lines before it, one at the end of its line), plus the file's header and footer comments.
//! `format` reads a valid file into one and writes it back canonically; `emit` writes one that
//! `roster import` built. Pure: text in, text out; reading and writing files is the shell's.
//!
//! **The canonical text.** Keys in a fixed order (`version`, `portals`, `protected`,
//! `add_with`, `invite_message`, `limits`, `groups`; in a group `id`, `name`, `portal`,
//! `owner`/`manager`, `moderators`, `members`, `protected`, `prune`, `add_with`,
//! `invite_message`, `limits`; in `limits` `max_removals`, `allow_empty`,
//! `max_total_removals`); block style everywhere (one user per line, so changes are line
//! diffs), `[]`/`{}` only for what is empty; two-space indentation, lists indented under their
//! key; groups sorted by portal (a group without `portal:` counts as on the first portal), then
//! by ID (Bitrix24 numbers numerically, DocSpace UUIDs as text, lower case), then the groups
//! given by name only, by name ignoring case; users in each list by ID, then by e-mail
//! ignoring case, each user once; portals in file order (the plan's order); a blank line
//! between groups, after the header and before the footer, nowhere else; a comment at the end
//! of a line two spaces after its text; scalars plain unless YAML would read them otherwise,
//! then double-quoted with escapes (control characters, line separators and bidirectional
//! controls always escaped); `\n` line ends and a final newline.
//!
//! **What `format` keeps.** The file's meaning (checked: the output parses to the same `Spec`,
//! order, positions and removed repeats aside) and every comment, exactly once (checked).
//! A comment after text on its line stays at the end of the line of the outermost field or
//! list item lying wholly on that line (`members: [a, b]  # x` annotates `members:`; in a
//! one-user flow list, `members: [a]  # x`, it annotates the user), else of the one starting
//! there (`members:  # x`), else of the one ending there (a value spanning lines). A comment on a
//! line of its own goes before the next field or item; when it is indented deeper than that
//! next node, it ends the block closing before it (the innermost one whose indentation it
//! reaches), so `# fay is not listed` after a group's last field stays at the end of that
//! group. Comments before the file's first field up to its last blank line are the header;
//! comments after the last field in column 1 are the footer. A user repeated within one list
//! is removed (the first kept, with the repeats' comments).
//!
//! **What `format` refuses** (`FormatError`, with the file, line and column): a file
//! `spec::parse` refuses (its diagnostics; except users repeated within one list); a comment
//! inside a flow mapping (`{ … }`) that spans lines; a comment between a key and its value;
//! a comment after several list items sharing a line of a flow list that began on an earlier
//! line; a comment on a line holding no field or list item (`- # x`, `--- # x`); a second
//! comment for a field that already has one on its line; anchors, tags and directives.
//! **Not kept**: blank lines, indentation, quoting and flow style, `---`/`...`, a byte order
//! mark, `\r\n` line ends, alignment of comments.

mod document;
mod emit;
mod read;

#[cfg(test)]
mod tests;

pub use document::{
    Comments, Document, Field, Group, Groups, Item, LimitSettings, Portal, Portals, UserList,
    comment,
};
pub use emit::emit;

use crate::model::{AddWith, Limit, Limits, System};
use crate::spec::{self, Diagnostics, Field as SpecField, GroupRef, Spec, UserRef, escape};

/// Why a file was not formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The file is not a valid roster file.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// A comment that cannot be kept with what it annotates.
    #[error("{}:{line}:{column}: {message}", escape(file))]
    Comment {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// YAML the canonical form has no place for (anchors, tags, directives).
    #[error("{}:{line}:{column}: {message}", escape(file))]
    Unsupported {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A bug: the canonical text would not keep the file's meaning or comments. Nothing is to
    /// be written.
    #[error(
        "{}: not formatted: {message} (a bug in roster fmt; please report it)",
        escape(file)
    )]
    Internal { file: String, message: String },
}

impl FormatError {
    fn from_refusal(file: &str, r: read::Refusal) -> FormatError {
        let (line, column) = (r.at.line as usize, r.at.col as usize);
        let file = file.to_owned();
        match r.kind {
            read::RefusalKind::Comment => FormatError::Comment {
                file,
                line,
                column,
                message: r.message,
            },
            read::RefusalKind::Unsupported => FormatError::Unsupported {
                file,
                line,
                column,
                message: r.message,
            },
            read::RefusalKind::Internal => FormatError::Internal {
                file,
                message: format!("line {line}, column {column}: {}", r.message),
            },
        }
    }
}

/// The canonical text of a roster file, comments kept. `file` is only used in messages.
pub fn format(file: &str, text: &str) -> Result<String, FormatError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let before = spec::parse_allowing_repeats(file, text).map_err(FormatError::Invalid)?;
    let (mut doc, comments_before) =
        read::document(text).map_err(|r| FormatError::from_refusal(file, r))?;
    doc.canonicalize();
    let out = emit::write(&doc);
    // The output must mean what the input meant, and hold the same comments.
    let internal = |message: String| FormatError::Internal {
        file: file.to_owned(),
        message,
    };
    let after = spec::parse(file, &out)
        .map_err(|d| internal(format!("the canonical text does not validate: {d}")))?;
    if Meaning::of(&before) != Meaning::of(&after) {
        return Err(internal(
            "the canonical text would not mean the same".to_owned(),
        ));
    }
    let comments_after =
        read::comments(&out).map_err(|r| internal(format!("its comments: {}", r.message)))?;
    let mut a: Vec<&str> = comments_before.iter().map(|c| c.text.as_str()).collect();
    let mut b: Vec<&str> = comments_after.iter().map(|c| c.text.as_str()).collect();
    a.sort_unstable();
    b.sort_unstable();
    if a != b {
        return Err(internal(
            "the canonical text would not keep every comment".to_owned(),
        ));
    }
    Ok(out)
}

/// What a `Spec` means, without order, positions or repeats: two files with the same meaning
/// plan the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meaning {
    protected: Vec<UserRef>,
    limits: LimitValues,
    add_with: Option<AddWith>,
    invite_message: Option<String>,
    /// Portals in order: name, system, url_env, key_env.
    portals: Vec<(String, System, String, Option<String>)>,
    groups: Vec<GroupMeaning>,
}

type LimitValues = (Option<Limit>, Option<bool>, Option<Limit>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupMeaning {
    portal: Option<String>,
    group: GroupRef,
    name: Option<String>,
    /// The owner or manager, and which word the file used.
    owner: Option<(UserRef, bool)>,
    moderators: Vec<UserRef>,
    members: Vec<UserRef>,
    protected: Vec<UserRef>,
    prune: Option<bool>,
    add_with: Option<bool>,
    invite_message: Option<String>,
    limits: (Option<String>, Option<bool>, Option<String>),
}

fn limit_values(l: &Limits) -> LimitValues {
    (
        l.max_removals.map(|s| s.value),
        l.allow_empty.map(|s| s.value),
        l.max_total_removals.map(|s| s.value),
    )
}

/// A list's users, sorted, each once (as `Document::canonicalize` keeps them).
fn user_set(list: &[spec::Located<UserRef>]) -> Vec<UserRef> {
    let mut out: Vec<UserRef> = Vec::with_capacity(list.len());
    let key = |u: &UserRef| match u {
        UserRef::Id(id) => (Some(*id), String::new()),
        UserRef::Email(e) => (None, e.to_lowercase()),
    };
    let mut sorted: Vec<&UserRef> = list.iter().map(|u| &u.value).collect();
    sorted.sort_by_cached_key(|u| {
        let (id, e) = key(u);
        (id.is_none(), id, e)
    });
    for u in sorted {
        if out.last().is_none_or(|l| key(l) != key(u)) {
            out.push(u.clone());
        }
    }
    out
}

impl Meaning {
    pub(crate) fn of(spec: &Spec) -> Meaning {
        let show = |l: Option<Limit>| l.map(|l| format!("{l:?}"));
        let mut groups: Vec<GroupMeaning> = spec
            .groups
            .iter()
            .map(|g| GroupMeaning {
                portal: g.portal.as_ref().map(|p| p.value.clone()),
                group: g.group.value.clone(),
                name: g.name.as_ref().map(|n| n.value.clone()),
                owner: g
                    .owner
                    .as_ref()
                    .map(|o| (o.value.clone(), o.at.path.field == SpecField::Manager)),
                moderators: user_set(&g.moderators),
                members: user_set(&g.members),
                protected: user_set(&g.protected),
                prune: g.prune,
                add_with: g.add_with.map(|a| a == AddWith::Invite),
                invite_message: g.invite_message.clone(),
                limits: {
                    let (a, b, c) = limit_values(&g.limits);
                    (show(a), b, show(c))
                },
            })
            .collect();
        groups.sort();
        Meaning {
            protected: user_set(&spec.protected),
            limits: limit_values(&spec.limits),
            add_with: spec.add_with,
            invite_message: spec.invite_message.clone(),
            portals: spec
                .portals
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.system,
                        p.url_env.clone(),
                        p.key_env.clone(),
                    )
                })
                .collect(),
            groups,
        }
    }
}
