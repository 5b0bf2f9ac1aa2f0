//! The canonical text of a `Document`: fixed key order, block style, two-space indentation,
//! one node per line, comments where the document puts them. Text in, text out; no I/O.
//!
//! The document is first turned into a small generic tree (`Val`), which one printer writes.

use std::borrow::Cow;

use saphyr::Scalar;
use saphyr_parser::ScalarStyle;

use super::document::{
    Comments, Document, Field, Group, Item, LimitSettings, Portal, Portals, UserList,
};
use crate::model::{AddWith, GroupId, Limit, UserId};
use crate::spec::UserRef;

/// The canonical text of `doc` (after `Document::canonicalize` on a copy).
pub fn emit(doc: &Document) -> String {
    let mut doc = doc.clone();
    doc.canonicalize();
    write(&doc)
}

/// The text of a document already in canonical order.
pub(crate) fn write(doc: &Document) -> String {
    let mut out = String::new();
    for c in &doc.header {
        line(&mut out, 0, &comment_text(c));
    }
    if !doc.header.is_empty() {
        out.push('\n');
    }
    let mut entries = vec![Entry::scalar(
        "version",
        doc.version.value.to_string(),
        &doc.version.comments,
    )];
    if let Some(p) = &doc.portals {
        entries.push(portals(p));
    }
    if let Some(list) = &doc.protected {
        entries.push(users("protected", list));
    }
    push_field(&mut entries, "add_with", &doc.add_with, add_with);
    push_field(&mut entries, "invite_message", &doc.invite_message, |s| {
        scalar(s).into_owned()
    });
    if let Some(l) = &doc.limits {
        entries.push(limits(l));
    }
    entries.push(Entry {
        key: Cow::Borrowed("groups"),
        comments: &doc.groups.comments,
        value: Val::Seq(
            doc.groups.groups.iter().map(group).collect(),
            &doc.groups.end,
            true,
        ),
    });
    map(&mut out, 0, &entries, &[], None);
    if !doc.footer.is_empty() {
        out.push('\n');
        for c in &doc.footer {
            line(&mut out, 0, &comment_text(c));
        }
    }
    out
}

/// A value in the generic tree.
enum Val<'a> {
    Scalar(String),
    /// Entries and the comments after them.
    Map(Vec<Entry<'a>>, &'a [String]),
    /// Items, the comments after them, and whether a blank line separates the items.
    Seq(Vec<SeqItem<'a>>, &'a [String], bool),
}

struct Entry<'a> {
    key: Cow<'a, str>,
    comments: &'a Comments,
    value: Val<'a>,
}

impl<'a> Entry<'a> {
    fn scalar(key: &'a str, value: String, comments: &'a Comments) -> Entry<'a> {
        Entry {
            key: Cow::Borrowed(key),
            comments,
            value: Val::Scalar(value),
        }
    }
}

struct SeqItem<'a> {
    comments: &'a Comments,
    value: Val<'a>,
}

fn push_field<'a, T>(
    entries: &mut Vec<Entry<'a>>,
    key: &'a str,
    field: &'a Option<Field<T>>,
    text: impl Fn(&T) -> String,
) {
    if let Some(f) = field {
        entries.push(Entry::scalar(key, text(&f.value), &f.comments));
    }
}

fn add_with(a: &AddWith) -> String {
    match a {
        AddWith::Add => "add",
        AddWith::Invite => "invite",
    }
    .to_owned()
}

fn limit(l: &Limit) -> String {
    match l {
        Limit::Count(n) => n.to_string(),
        Limit::Percent(p) => format!("{p}%"),
    }
}

fn user(u: &UserRef) -> String {
    match u {
        UserRef::Id(UserId::Num(n)) => n.to_string(),
        UserRef::Id(UserId::Uuid(u)) => u.to_string(),
        UserRef::Email(e) => scalar(e).into_owned(),
    }
}

fn group_id(id: &GroupId) -> String {
    match id {
        GroupId::Num(n) => n.to_string(),
        GroupId::Uuid(u) => u.to_string(),
    }
}

fn users<'a>(key: &'a str, list: &'a UserList) -> Entry<'a> {
    Entry {
        key: Cow::Borrowed(key),
        comments: &list.comments,
        value: Val::Seq(list.users.iter().map(item).collect(), &list.end, false),
    }
}

fn item(u: &Item) -> SeqItem<'_> {
    SeqItem {
        comments: &u.comments,
        value: Val::Scalar(user(&u.value)),
    }
}

fn limits(l: &LimitSettings) -> Entry<'_> {
    let mut entries = Vec::new();
    push_field(&mut entries, "max_removals", &l.max_removals, limit);
    push_field(&mut entries, "allow_empty", &l.allow_empty, bool::to_string);
    push_field(
        &mut entries,
        "max_total_removals",
        &l.max_total_removals,
        limit,
    );
    Entry {
        key: Cow::Borrowed("limits"),
        comments: &l.comments,
        value: Val::Map(entries, &l.end),
    }
}

fn portals(p: &Portals) -> Entry<'_> {
    Entry {
        key: Cow::Borrowed("portals"),
        comments: &p.comments,
        value: Val::Map(p.portals.iter().map(portal).collect(), &p.end),
    }
}

fn portal(p: &Portal) -> Entry<'_> {
    let mut settings = Vec::new();
    push_field(&mut settings, "url_env", &p.url_env, |s| {
        scalar(s).into_owned()
    });
    push_field(&mut settings, "key_env", &p.key_env, |s| {
        scalar(s).into_owned()
    });
    let system = Entry {
        key: Cow::Borrowed(p.system.value.key()),
        comments: &p.system.comments,
        value: Val::Map(settings, &p.settings_end),
    };
    Entry {
        key: scalar(&p.name),
        comments: &p.comments,
        value: Val::Map(vec![system], &p.end),
    }
}

fn group(g: &Group) -> SeqItem<'_> {
    let mut e = Vec::new();
    push_field(&mut e, "id", &g.id, group_id);
    push_field(&mut e, "name", &g.name, |s| scalar(s).into_owned());
    push_field(&mut e, "portal", &g.portal, |s| scalar(s).into_owned());
    push_field(&mut e, "owner", &g.owner, user);
    push_field(&mut e, "manager", &g.manager, user);
    for (key, list) in [
        ("moderators", &g.moderators),
        ("members", &g.members),
        ("protected", &g.protected),
    ] {
        if let Some(list) = list {
            e.push(users(key, list));
        }
    }
    push_field(&mut e, "prune", &g.prune, bool::to_string);
    push_field(&mut e, "add_with", &g.add_with, add_with);
    push_field(&mut e, "invite_message", &g.invite_message, |s| {
        scalar(s).into_owned()
    });
    if let Some(l) = &g.limits {
        e.push(limits(l));
    }
    SeqItem {
        comments: &g.comments,
        value: Val::Map(e, &g.end),
    }
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn line(out: &mut String, n: usize, text: &str) {
    indent(out, n);
    out.push_str(text);
    out.push('\n');
}

fn lines(out: &mut String, n: usize, comments: &[String]) {
    for c in comments {
        line(out, n, &comment_text(c));
    }
}

/// ` # a` (and ` # b` after it when two comments share the line), or nothing.
fn trailing(out: &mut String, comments: &[&Option<String>]) {
    for c in comments.iter().copied().flatten() {
        out.push_str("  ");
        out.push_str(&comment_text(c));
    }
    out.push('\n');
}

/// A mapping's entries at `n` columns. `item` is the sequence item this mapping is (its first
/// entry then goes on the `- ` line, two columns left, with the item's comments).
fn map(out: &mut String, n: usize, entries: &[Entry<'_>], end: &[String], item: Option<&Comments>) {
    if entries.is_empty() {
        if let Some(c) = item {
            lines(out, n - 2, &c.leading);
            lines(out, n - 2, end);
            indent(out, n - 2);
            out.push_str("- {}");
            trailing(out, &[&c.trailing]);
        }
        return;
    }
    for (i, e) in entries.iter().enumerate() {
        let first_of_item = item.filter(|_| i == 0);
        let (col, dash) = match first_of_item {
            Some(c) => {
                lines(out, n - 2, &c.leading);
                (n - 2, true)
            }
            None => (n, false),
        };
        lines(out, col, &e.comments.leading);
        // An empty list or mapping is written `[]`/`{}`: comments after its (absent) contents
        // go before it, where they stay on the next formatting.
        let empty = match &e.value {
            Val::Map(m, end) if m.is_empty() => Some(("{}", *end)),
            Val::Seq(s, end, _) if s.is_empty() => Some(("[]", *end)),
            _ => None,
        };
        if let Some((_, end)) = empty {
            lines(out, col, end);
        }
        indent(out, col);
        if dash {
            out.push_str("- ");
        }
        out.push_str(&e.key);
        out.push(':');
        let item_trailing = first_of_item.map_or(&None, |c| &c.trailing);
        let line_comments = [item_trailing, &e.comments.trailing];
        match (&e.value, empty) {
            (_, Some((text, _))) => {
                out.push(' ');
                out.push_str(text);
                trailing(out, &line_comments);
            }
            (Val::Scalar(s), None) => {
                out.push(' ');
                out.push_str(s);
                trailing(out, &line_comments);
            }
            (Val::Map(m, end), None) => {
                trailing(out, &line_comments);
                map(out, n + 2, m, end, None);
            }
            (Val::Seq(s, end, spaced), None) => {
                trailing(out, &line_comments);
                seq(out, n + 2, s, end, *spaced);
            }
        }
    }
    lines(out, n, end);
}

/// A sequence's items at `n` columns (the `- `).
fn seq(out: &mut String, n: usize, items: &[SeqItem<'_>], end: &[String], spaced: bool) {
    for (i, it) in items.iter().enumerate() {
        if spaced && i > 0 {
            out.push('\n');
        }
        match &it.value {
            Val::Scalar(s) => {
                lines(out, n, &it.comments.leading);
                indent(out, n);
                out.push_str("- ");
                out.push_str(s);
                trailing(out, &[&it.comments.trailing]);
            }
            Val::Map(entries, end) => map(out, n + 2, entries, end, Some(it.comments)),
            // Not produced: no list holds lists.
            Val::Seq(..) => {}
        }
    }
    lines(out, n, end);
}

/// A comment as it is written: from `#`, on one line, with only printable characters.
fn comment_text(c: &str) -> Cow<'_, str> {
    let c = c.trim_end_matches([' ', '\t']);
    let clean = c.starts_with('#') && !c.chars().any(breaks_comment);
    if clean {
        return Cow::Borrowed(c);
    }
    let mut out = String::with_capacity(c.len() + 2);
    if !c.starts_with('#') {
        out.push_str("# ");
    }
    for ch in c.chars() {
        if breaks_comment(ch) {
            out.extend(ch.escape_unicode());
        } else {
            out.push(ch);
        }
    }
    Cow::Owned(out)
}

/// Characters a comment cannot hold as they are: line breaks, what YAML does not allow, and a
/// byte order mark (the parser refuses one inside a document). Everything else in a comment is
/// kept as written.
fn breaks_comment(c: char) -> bool {
    let printable = matches!(c, '\t' | ' '..='~' | '\u{85}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}';
    !printable || c == '\u{FEFF}'
}

/// Characters written escaped in a scalar: line breaks, other control characters, characters YAML does not
/// allow, and the Unicode line separators and bidirectional controls (so the text shows what
/// it holds).
fn needs_escape(c: char) -> bool {
    let printable = matches!(c, '\t' | ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}';
    !printable
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// A string as a YAML scalar: plain when that reads back as the same string, else
/// double-quoted with escapes.
pub(crate) fn scalar(s: &str) -> Cow<'_, str> {
    if plain_is_safe(s) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(quoted(s))
    }
}

/// Whether `s` written plain (as a block mapping's value or key, or a block list's item) reads
/// back as the string `s`.
pub(crate) fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let last = s.chars().next_back().unwrap_or(first);
    if "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || first.is_whitespace()
        || last.is_whitespace()
        || last == ':'
        || s.contains(": ")
        || s.contains(" #")
        || s.chars()
            .any(|c| needs_escape(c) || c == '\t' || c == '\u{85}')
    {
        return false;
    }
    // Plain text that YAML 1.1 readers (PyYAML, yamllint's truthy rule, older Ruby and Go
    // libraries) take as a boolean, a merge key, a sexagesimal number or a date: quoted, so
    // the file means the same to every tool that reads it.
    if yaml11_special(s) {
        return false;
    }
    // Plain text that the core schema reads as something else (null, true, 12, 0x1F, .inf).
    matches!(
        Scalar::parse_from_cow_and_metadata(Cow::Borrowed(s), ScalarStyle::Plain, None),
        Some(Scalar::String(_))
    )
}

/// YAML 1.1's other readings of plain text: `y`/`n`/`yes`/`no`/`on`/`off` (any case), the
/// merge key `<<`, `~`, base-60 numbers (`12:30`, `1:2:3`) and dates (`2001-12-14`).
fn yaml11_special(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "<<" | "~"
    ) {
        return true;
    }
    let sexagesimal = s.contains(':')
        && s.split(':').enumerate().all(|(i, part)| {
            let digits = part.trim_start_matches(['+', '-']);
            !digits.is_empty()
                && digits
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'_')
                && (i == 0 || !part.starts_with(['+', '-']))
        });
    let date = s.len() >= 8
        && s.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && s.split(['-', 'T', 't', ' ', ':', '.', 'Z', 'z', '+'])
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        && s.matches('-').count() >= 2;
    sexagesimal || date
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) || c == '\u{85}' => {
                let n = u32::from(c);
                if n <= 0xFFFF {
                    out.push_str(&format!("\\u{n:04X}"));
                } else {
                    out.push_str(&format!("\\U{n:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
