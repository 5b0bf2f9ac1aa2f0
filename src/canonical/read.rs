//! Reading a valid roster file into a `Document` with every comment placed on a node.
//!
//! saphyr-parser reports no comments, so they are found in the text: a `#` at the start of a
//! line or after a space or tab, outside every scalar (scalars' extents come from the
//! parser's events; a quoted scalar's end is found here, as the parser's span runs on to the
//! end of its line). The file's entries (`key: value`) and list items are the nodes a
//! comment can belong to ("units", numbered in document order). A comment after other text
//! on its line belongs to the outermost unit lying wholly on that line, else to the unit
//! that starts (else ends) there; a comment on a line of its own belongs to the next unit,
//! unless it is indented deeper than that unit: then it ends the innermost block closing
//! before it whose indentation it reaches. Whatever cannot be placed so is refused.
//! Pure: text in, a document or a refusal out.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle};

use super::document::{
    Comments, Document, Field, Group, Groups, Item, LimitSettings, Portal, Portals, UserList,
};
use crate::model::{AddWith, GroupId, Limit, System, UserId, Uuid};
use crate::spec::UserRef;

/// 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
}

/// Why a file is not formatted, at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub kind: RefusalKind,
    pub at: Pos,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusalKind {
    Comment,
    Unsupported,
    Internal,
}

fn refuse<T>(kind: RefusalKind, at: Pos, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        kind,
        at,
        message: message.into(),
    })
}

/// A comment found in the text.
#[derive(Debug, Clone)]
pub(crate) struct RawComment {
    pub at: Pos,
    /// From the `#` to the end of the line, trailing spaces and tabs left out.
    pub text: String,
    /// Nothing but spaces and tabs before it on its line.
    pub full_line: bool,
}

/// A scalar's extent: start inclusive, end exclusive.
struct ScalarSpan {
    start: Pos,
    end: Pos,
    quote: Option<char>,
    block: bool,
}

enum SynKind<'i> {
    Scalar(Cow<'i, str>, ScalarStyle, usize),
    /// Items with their unit numbers; `[`/`]` positions for a flow sequence.
    Seq(Vec<(usize, Syn<'i>)>, Option<(Pos, Pos)>),
    /// Entries with their unit numbers; `{`/`}` positions for a flow mapping.
    Map(Vec<(usize, Syn<'i>, Syn<'i>)>, Option<(Pos, Pos)>),
}

struct Syn<'i> {
    start: Pos,
    kind: SynKind<'i>,
}

struct Open<'i> {
    start: Pos,
    seq: bool,
    items: Vec<(usize, Syn<'i>)>,
    entries: Vec<(usize, Syn<'i>, Syn<'i>)>,
    key: Option<(usize, Syn<'i>)>,
    /// The unit number of the item or entry this container is the value of.
    pending: Option<usize>,
}

/// The parsed text: its tree, its scalars and how many units it has.
struct Parsed<'i> {
    root: Syn<'i>,
    scalars: Vec<ScalarSpan>,
    units: usize,
}

fn marker(m: saphyr_parser::Marker) -> Pos {
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

/// The event stream as a tree, refusing anchors and tags (the document has no place for them).
fn parse(text: &str) -> Result<Parsed<'_>, Refusal> {
    let mut stack: Vec<Open<'_>> = Vec::new();
    let mut root = None;
    let mut scalars = Vec::new();
    let mut units = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = match item {
            Ok(x) => x,
            Err(e) => {
                return refuse(
                    RefusalKind::Internal,
                    marker(*e.marker()),
                    format!("invalid YAML: {}", e.info()),
                );
            }
        };
        let at = marker(span.start);
        // A node starting as an item or as a key is a new unit.
        let mut new_unit = || match stack.last() {
            Some(open) if open.seq || open.key.is_none() => {
                units += 1;
                Some(units - 1)
            }
            _ => None,
        };
        let (node, unit) = match event {
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return refuse(
                        RefusalKind::Unsupported,
                        at,
                        "anchors (`&name`) and tags (`!tag`) have no place in the canonical form; remove them",
                    );
                }
                let unit = new_unit();
                let quote = match style {
                    ScalarStyle::SingleQuoted => Some('\''),
                    ScalarStyle::DoubleQuoted => Some('"'),
                    _ => None,
                };
                scalars.push(ScalarSpan {
                    start: at,
                    end: marker(span.end),
                    quote,
                    block: matches!(style, ScalarStyle::Literal | ScalarStyle::Folded),
                });
                let kind = SynKind::Scalar(value, style, scalars.len() - 1);
                (Syn { start: at, kind }, unit)
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if anchor != 0 || tag.is_some() {
                    return refuse(
                        RefusalKind::Unsupported,
                        at,
                        "anchors (`&name`) and tags (`!tag`) have no place in the canonical form; remove them",
                    );
                }
                let pending = new_unit();
                stack.push(Open {
                    start: at,
                    seq: matches!(event, Event::SequenceStart(..)),
                    items: Vec::new(),
                    entries: Vec::new(),
                    key: None,
                    pending,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = stack.pop() else { continue };
                // A flow collection's end is its `]`/`}`; a block one's is empty.
                let flow = (span.start != span.end).then_some((open.start, at));
                let kind = if open.seq {
                    SynKind::Seq(open.items, flow)
                } else {
                    SynKind::Map(open.entries, flow)
                };
                (
                    Syn {
                        start: open.start,
                        kind,
                    },
                    open.pending,
                )
            }
            Event::Alias(_) => {
                return refuse(
                    RefusalKind::Unsupported,
                    at,
                    "aliases (`*name`) are not supported in roster files",
                );
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => continue,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(open) if open.seq => open.items.push((unit.unwrap_or_default(), node)),
            Some(open) => match open.key.take() {
                None => open.key = Some((unit.unwrap_or_default(), node)),
                Some((id, key)) => open.entries.push((id, key, node)),
            },
        }
    }
    match root {
        Some(root) => Ok(Parsed {
            root,
            scalars,
            units,
        }),
        None => refuse(RefusalKind::Internal, Pos::default(), "the file is empty"),
    }
}

/// The text's characters, by line.
struct Text {
    chars: Vec<char>,
    /// Each line's first character's index in `chars`.
    line_starts: Vec<usize>,
}

impl Text {
    fn new(text: &str) -> Text {
        let chars: Vec<char> = text.chars().collect();
        let mut line_starts = vec![0];
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\r' if chars.get(i + 1) == Some(&'\n') => {
                    i += 2;
                    line_starts.push(i);
                }
                '\n' | '\r' => {
                    i += 1;
                    line_starts.push(i);
                }
                _ => i += 1,
            }
        }
        Text { chars, line_starts }
    }

    /// The characters of a line before column `col`.
    fn before(&self, at: Pos) -> &[char] {
        let start = self.line_starts[(at.line as usize - 1).min(self.line_starts.len() - 1)];
        let end = (start + at.col as usize - 1).min(self.chars.len());
        &self.chars[start..end]
    }
}

/// What the lexer found: comments, blank lines, and the scalars' true ends.
struct Lexed {
    comments: Vec<RawComment>,
    blank_lines: Vec<u32>,
}

/// Find the comments: one pass over the text, skipping the scalars.
fn lex(text: &Text, scalars: &mut [ScalarSpan]) -> Result<Lexed, Refusal> {
    let chars = &text.chars;
    let mut out = Lexed {
        comments: Vec::new(),
        blank_lines: Vec::new(),
    };
    let (mut i, mut at) = (0usize, Pos { line: 1, col: 1 });
    let mut prev = '\n';
    let mut only_space = true;
    let mut next = 0usize;
    let step = |i: &mut usize, at: &mut Pos, prev: &mut char| {
        let c = chars[*i];
        if c == '\r' && chars.get(*i + 1) == Some(&'\n') {
            *i += 1;
        }
        *i += 1;
        if c == '\n' || c == '\r' {
            *at = Pos {
                line: at.line + 1,
                col: 1,
            };
        } else {
            at.col += 1;
        }
        *prev = c;
    };
    while i < chars.len() {
        while next < scalars.len() && scalars[next].start < at {
            if scalars[next].start != scalars[next].end {
                return refuse(
                    RefusalKind::Internal,
                    scalars[next].start,
                    "a scalar's extent could not be read",
                );
            }
            next += 1;
        }
        if next < scalars.len() && scalars[next].start == at {
            let s = &mut scalars[next];
            next += 1;
            if s.start == s.end {
                continue;
            }
            only_space = false;
            if let Some(q) = s.quote {
                if chars[i] != q {
                    return refuse(RefusalKind::Internal, at, "a quoted scalar was not found");
                }
                step(&mut i, &mut at, &mut prev);
                loop {
                    let Some(&c) = chars.get(i) else {
                        return refuse(RefusalKind::Internal, at, "a quoted scalar does not end");
                    };
                    if c == '\\' && q == '"' {
                        step(&mut i, &mut at, &mut prev);
                        if i < chars.len() {
                            step(&mut i, &mut at, &mut prev);
                        }
                    } else if c == q && q == '\'' && chars.get(i + 1) == Some(&'\'') {
                        step(&mut i, &mut at, &mut prev);
                        step(&mut i, &mut at, &mut prev);
                    } else if c == q {
                        step(&mut i, &mut at, &mut prev);
                        break;
                    } else {
                        step(&mut i, &mut at, &mut prev);
                    }
                }
                s.end = at;
            } else {
                let mut last = at;
                while i < chars.len() && at < s.end {
                    let c = chars[i];
                    step(&mut i, &mut at, &mut prev);
                    if !c.is_whitespace() {
                        last = at;
                    }
                }
                if s.block {
                    s.end = last;
                }
            }
            continue;
        }
        let c = chars[i];
        match c {
            '\n' | '\r' => {
                if only_space {
                    out.blank_lines.push(at.line);
                }
                only_space = true;
                step(&mut i, &mut at, &mut prev);
            }
            '#' if prev == '\n' || prev == '\r' || prev == ' ' || prev == '\t' => {
                let start = at;
                let mut body = String::new();
                while i < chars.len() && !matches!(chars[i], '\n' | '\r') {
                    body.push(chars[i]);
                    step(&mut i, &mut at, &mut prev);
                }
                let text = body.trim_end_matches([' ', '\t']).to_owned();
                out.comments.push(RawComment {
                    at: start,
                    text,
                    full_line: only_space,
                });
                // The line is not blank, whatever it holds.
                only_space = false;
            }
            '#' => {
                return refuse(
                    RefusalKind::Internal,
                    at,
                    "a `#` outside every value that does not start a comment",
                );
            }
            '%' if at.col == 1 => {
                return refuse(
                    RefusalKind::Unsupported,
                    at,
                    "directives (`%YAML`, `%TAG`) have no place in the canonical form; remove them",
                );
            }
            c => {
                if c != ' ' && c != '\t' {
                    only_space = false;
                }
                step(&mut i, &mut at, &mut prev);
            }
        }
    }
    Ok(out)
}

/// The comments of a text, in order (for the check that formatting keeps each one).
pub(crate) fn comments(text: &str) -> Result<Vec<RawComment>, Refusal> {
    let mut parsed = parse(text)?;
    Ok(lex(&Text::new(text), &mut parsed.scalars)?.comments)
}

/// An entry or a list item.
#[derive(Debug, Clone, Copy, Default)]
struct Unit {
    start: Pos,
    end: Pos,
    parent: Option<u32>,
    depth: u32,
    /// The column of its key, or of its `- `.
    indent: u32,
    /// Its value's container, if it is a list or a mapping.
    container: Option<Container>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Container {
    /// The column of its keys or `- ` (`None` when empty).
    indent: Option<u32>,
    /// For a flow container: its brackets.
    flow: Option<Flow>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    open: Pos,
    close: Pos,
    map: bool,
}

struct Units<'a> {
    units: Vec<Unit>,
    scalars: &'a [ScalarSpan],
    text: &'a Text,
}

impl Units<'_> {
    /// Fill in the units under `node`; returns the node's end and, for a container, its
    /// indentation and brackets.
    fn walk(
        &mut self,
        node: &Syn<'_>,
        parent: Option<u32>,
        depth: u32,
    ) -> (Option<Pos>, Option<Container>) {
        match &node.kind {
            SynKind::Scalar(_, _, sid) => {
                let s = &self.scalars[*sid];
                ((s.start != s.end).then_some(s.end), None)
            }
            SynKind::Seq(items, flow) => {
                let mut end = None;
                let mut indent = None;
                for (id, item) in items {
                    let dash = self.dash(item.start);
                    let (e, c) = self.walk(item, Some(*id as u32), depth + 1);
                    let u = &mut self.units[*id];
                    u.start = item.start;
                    u.end = e.unwrap_or(item.start);
                    u.parent = parent;
                    u.depth = depth;
                    u.indent = dash;
                    u.container = c;
                    indent.get_or_insert(dash);
                    end = Some(u.end);
                }
                closed(end, indent, *flow, false)
            }
            SynKind::Map(entries, flow) => {
                let mut end = None;
                let mut indent = None;
                for (id, key, value) in entries {
                    let key_end = self.walk(key, None, depth + 1).0;
                    let (e, c) = self.walk(value, Some(*id as u32), depth + 1);
                    let u = &mut self.units[*id];
                    u.start = key.start;
                    u.end = e.or(key_end).unwrap_or(key.start);
                    u.parent = parent;
                    u.depth = depth;
                    u.indent = key.start.col;
                    u.container = c;
                    indent.get_or_insert(key.start.col);
                    end = Some(u.end);
                }
                closed(end, indent, *flow, true)
            }
        }
    }

    /// The column of the `- ` before an item starting at `at`, if it is on the same line.
    fn dash(&self, at: Pos) -> u32 {
        let before = self.text.before(at);
        let trimmed = before.len()
            - before
                .iter()
                .rev()
                .take_while(|c| **c == ' ' || **c == '\t')
                .count();
        if trimmed > 0
            && before[trimmed - 1] == '-'
            && (trimmed == 1 || matches!(before[trimmed - 2], ' ' | '\t'))
        {
            trimmed as u32
        } else {
            at.col
        }
    }
}

/// Where a comment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Leading(usize),
    Trailing(usize),
    End(usize),
    Header,
    Footer,
}

struct Placer<'a> {
    units: &'a [Unit],
    by_end_line: Option<HashMap<u32, Vec<usize>>>,
}

impl Placer<'_> {
    fn ancestors_or_self(&self, u: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(u), |&u| self.units[u].parent.map(|p| p as usize))
    }

    fn is_ancestor_or_self(&self, a: usize, u: usize) -> bool {
        self.ancestors_or_self(u).any(|x| x == a)
    }

    fn contains(&self, u: usize, at: Pos) -> bool {
        let u = &self.units[u];
        u.start < at && at < u.end
    }

    /// The first unit starting after `at`.
    fn first_after(&self, at: Pos) -> usize {
        self.units.partition_point(|u| u.start <= at)
    }

    /// Refuse a comment inside a flow mapping's braces; the innermost flow sequence holding
    /// the comment, if any.
    fn flow(&self, last: usize, at: Pos) -> Result<Option<usize>, Refusal> {
        let mut seq = None;
        for u in self.ancestors_or_self(last) {
            if let Some(Container { flow: Some(f), .. }) = self.units[u].container
                && f.open < at
                && at < f.close
            {
                if f.map {
                    return refuse(
                        RefusalKind::Comment,
                        at,
                        "a comment inside a flow mapping (`{ … }`) that spans lines cannot be kept with what it annotates; write the mapping in block style",
                    );
                }
                seq.get_or_insert(u);
            }
        }
        Ok(seq)
    }

    fn place(&mut self, c: &RawComment) -> Result<Slot, Refusal> {
        let at = c.at;
        let next = self.first_after(at);
        let Some(last) = next.checked_sub(1) else {
            if c.full_line {
                return Ok(Slot::Header);
            }
            return refuse(
                RefusalKind::Comment,
                at,
                "a comment on a line without a field or list item cannot be placed",
            );
        };
        let flow_seq = self.flow(last, at)?;
        if !c.full_line {
            return self.trailing(at).map(Slot::Trailing);
        }
        let n = self.units.len();
        if let Some(seq) = flow_seq {
            return Ok(if next < n && self.units[next].parent == Some(seq as u32) {
                Slot::Leading(next)
            } else {
                Slot::End(seq)
            });
        }
        let inside = self.ancestors_or_self(last).find(|&u| self.contains(u, at));
        if let Some(e) = inside
            && !(next < n && self.is_ancestor_or_self(e, next))
        {
            return refuse(
                RefusalKind::Comment,
                at,
                "a comment between a key and its value cannot be kept with what it annotates; move it above the key",
            );
        }
        if next == n {
            if at.col == 1 {
                return Ok(Slot::Footer);
            }
            return Ok(self
                .blocks(last, None)
                .iter()
                .find(|(_, indent)| *indent <= at.col)
                .map_or(Slot::Footer, |&(u, _)| Slot::End(u)));
        }
        if at.col <= self.units[next].indent {
            return Ok(Slot::Leading(next));
        }
        let closing = self.blocks(last, Some(next));
        Ok(match closing.iter().find(|(_, indent)| *indent <= at.col) {
            Some(&(u, _)) => Slot::End(u),
            None => closing
                .last()
                .map_or(Slot::Leading(next), |&(u, _)| Slot::End(u)),
        })
    }

    /// The blocks (containers with contents) that `last` is in, innermost first, with their
    /// indentation: those not holding `stop`.
    fn blocks(&self, last: usize, stop: Option<usize>) -> Vec<(usize, u32)> {
        self.ancestors_or_self(last)
            .filter(|&u| stop.is_none_or(|s| !self.is_ancestor_or_self(u, s)))
            .filter_map(|u| match self.units[u].container {
                Some(Container {
                    indent: Some(indent),
                    ..
                }) => Some((u, indent)),
                _ => None,
            })
            .collect()
    }

    /// The unit a comment after other text on line `at.line` belongs to.
    fn trailing(&mut self, at: Pos) -> Result<usize, Refusal> {
        let line = at.line;
        let lo = self.units.partition_point(|u| u.start.line < line);
        let hi = self.units.partition_point(|u| u.start.line <= line);
        let wholly: Vec<usize> = (lo..hi)
            .filter(|&u| self.units[u].end.line == line)
            .collect();
        let outermost: Vec<usize> = wholly
            .iter()
            .copied()
            .filter(|&u| {
                self.units[u]
                    .parent
                    .is_none_or(|p| !wholly.contains(&(p as usize)))
            })
            .collect();
        match outermost.as_slice() {
            // A one-user flow list (`members: [ed@example.com]  # new`): the comment is the
            // user's, as it will be on the user's own line.
            [one]
                if self.units[*one]
                    .container
                    .is_some_and(|c| c.flow.is_some_and(|f| !f.map))
                    && self.units.get(one + 1).is_some_and(|c| {
                        c.parent == Some(*one as u32) && c.container.is_none()
                    })
                    && self
                        .units
                        .get(one + 2)
                        .is_none_or(|c| c.parent != Some(*one as u32)) =>
            {
                return Ok(one + 1);
            }
            [one] => return Ok(*one),
            [first, rest @ ..] => {
                // Several items or entries share the line: the unit holding them all, if it
                // starts on this line.
                let holder = self
                    .ancestors_or_self(*first)
                    .skip(1)
                    .filter(|&a| rest.iter().all(|&r| self.is_ancestor_or_self(a, r)))
                    .find(|&a| self.units[a].start.line == line);
                return match holder {
                    Some(h) => Ok(h),
                    None => refuse(
                        RefusalKind::Comment,
                        at,
                        "a comment after several list items on one line cannot be kept with what it annotates; put each item on its own line",
                    ),
                };
            }
            [] => {}
        }
        if hi > lo {
            return Ok(hi - 1);
        }
        let units = self.units;
        let by_end = self.by_end_line.get_or_insert_with(|| {
            let mut m: HashMap<u32, Vec<usize>> = HashMap::new();
            for (i, u) in units.iter().enumerate() {
                m.entry(u.end.line).or_default().push(i);
            }
            m
        });
        let ending = by_end
            .get(&line)
            .and_then(|v| v.iter().copied().max_by_key(|&u| (units[u].depth, u)));
        match ending {
            Some(u) => Ok(u),
            None => refuse(
                RefusalKind::Comment,
                at,
                "a comment on a line without a field or list item cannot be placed",
            ),
        }
    }
}

/// Comments by the slot they go to, each with its position (for a refusal).
#[derive(Default)]
struct Placed {
    leading: HashMap<usize, Vec<(Pos, String)>>,
    trailing: HashMap<usize, (Pos, String)>,
    end: HashMap<usize, Vec<(Pos, String)>>,
    header: Vec<String>,
    footer: Vec<String>,
}

impl Placed {
    fn comments(&mut self, unit: usize) -> Comments {
        Comments {
            leading: self
                .leading
                .remove(&unit)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, t)| t)
                .collect(),
            trailing: self.trailing.remove(&unit).map(|(_, t)| t),
        }
    }

    fn end(&mut self, unit: usize) -> Vec<String> {
        self.end
            .remove(&unit)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// The first comment not taken by the document, if any.
    fn left_over(&self) -> Option<Pos> {
        let leading = self.leading.values().flatten().map(|(p, _)| *p);
        let end = self.end.values().flatten().map(|(p, _)| *p);
        let trailing = self.trailing.values().map(|(p, _)| *p);
        leading.chain(end).chain(trailing).min()
    }
}

/// Read a valid roster file (checked by `spec::parse` first) into a document. Also returns
/// the file's comments, for the check that each is kept.
pub(crate) fn document(text: &str) -> Result<(Document, Vec<RawComment>), Refusal> {
    let mut parsed = parse(text)?;
    let text_chars = Text::new(text);
    let lexed = lex(&text_chars, &mut parsed.scalars)?;
    let mut walker = Units {
        units: vec![Unit::default(); parsed.units],
        scalars: &parsed.scalars,
        text: &text_chars,
    };
    walker.walk(&parsed.root, None, 0);
    let units = walker.units;
    let mut placer = Placer {
        units: &units,
        by_end_line: None,
    };
    let mut placed = Placed::default();
    let mut before_first: Vec<&RawComment> = Vec::new();
    for c in &lexed.comments {
        match placer.place(c)? {
            Slot::Header => before_first.push(c),
            Slot::Footer => placed.footer.push(c.text.clone()),
            Slot::Leading(u) => placed
                .leading
                .entry(u)
                .or_default()
                .push((c.at, c.text.clone())),
            Slot::End(u) => placed
                .end
                .entry(u)
                .or_default()
                .push((c.at, c.text.clone())),
            Slot::Trailing(u) => {
                if let Some((first, _)) = placed.trailing.get(&u) {
                    return refuse(
                        RefusalKind::Comment,
                        c.at,
                        format!(
                            "a second comment for the entry that line {} already comments; move it above the entry",
                            first.line
                        ),
                    );
                }
                placed.trailing.insert(u, (c.at, c.text.clone()));
            }
        }
    }
    // The comments before the first entry: up to the last blank line among them, the file's
    // header; the rest belong to the first entry.
    if let (Some(first_comment), Some(first_unit)) = (before_first.first(), units.first()) {
        let split = lexed
            .blank_lines
            .iter()
            .copied()
            .filter(|&b| b > first_comment.at.line && b < first_unit.start.line)
            .max()
            .unwrap_or(0);
        for c in before_first {
            if c.at.line < split {
                placed.header.push(c.text.clone());
            } else {
                placed
                    .leading
                    .entry(0)
                    .or_default()
                    .push((c.at, c.text.clone()));
            }
        }
    }
    let mut build = Build {
        placed,
        scalars: &parsed.scalars,
    };
    let mut doc = build.root(&parsed.root)?;
    if let Some(at) = build.placed.left_over() {
        return refuse(
            RefusalKind::Internal,
            at,
            "this comment found no place in the canonical form",
        );
    }
    doc.header = std::mem::take(&mut build.placed.header);
    doc.footer = std::mem::take(&mut build.placed.footer);
    Ok((doc, lexed.comments))
}

struct Build<'a> {
    placed: Placed,
    scalars: &'a [ScalarSpan],
}

fn unexpected<T>(node: &Syn<'_>) -> Result<T, Refusal> {
    refuse(
        RefusalKind::Internal,
        node.start,
        "the file's structure was not understood",
    )
}

fn scalar_of<'n>(node: &'n Syn<'_>) -> Option<Scalar<'n>> {
    match &node.kind {
        SynKind::Scalar(value, style, _) => {
            Scalar::parse_from_cow_and_metadata(Cow::Borrowed(value.as_ref()), *style, None)
        }
        _ => None,
    }
}

fn text_of(node: &Syn<'_>) -> Result<String, Refusal> {
    match scalar_of(node) {
        Some(Scalar::String(s)) => Ok(s.into_owned()),
        _ => unexpected(node),
    }
}

fn int_of(node: &Syn<'_>) -> Result<i64, Refusal> {
    match scalar_of(node) {
        Some(Scalar::Integer(n)) => Ok(n),
        _ => unexpected(node),
    }
}

fn bool_of(node: &Syn<'_>) -> Result<bool, Refusal> {
    match scalar_of(node) {
        Some(Scalar::Boolean(b)) => Ok(b),
        _ => unexpected(node),
    }
}

fn is_null(node: &Syn<'_>) -> bool {
    matches!(scalar_of(node), Some(Scalar::Null))
}

fn positive(node: &Syn<'_>) -> Result<u64, Refusal> {
    u64::try_from(int_of(node)?).or_else(|_| unexpected(node))
}

fn user_of(node: &Syn<'_>) -> Result<UserRef, Refusal> {
    match scalar_of(node) {
        Some(Scalar::Integer(_)) => Ok(UserRef::Id(UserId::Num(positive(node)?))),
        Some(Scalar::String(s)) if !s.contains('@') => match Uuid::parse(&s) {
            Some(u) => Ok(UserRef::Id(UserId::Uuid(u))),
            None => unexpected(node),
        },
        Some(Scalar::String(s)) => Ok(UserRef::Email(s.into_owned())),
        _ => unexpected(node),
    }
}

fn limit_of(node: &Syn<'_>) -> Result<Limit, Refusal> {
    match scalar_of(node) {
        Some(Scalar::Integer(_)) => Ok(Limit::Count(positive(node)?)),
        Some(Scalar::String(s)) => s
            .strip_suffix('%')
            .and_then(|d| d.trim_end().parse::<u8>().ok())
            .map(Limit::Percent)
            .map_or_else(|| unexpected(node), Ok),
        _ => unexpected(node),
    }
}

fn add_with_of(node: &Syn<'_>) -> Result<AddWith, Refusal> {
    match text_of(node)?.as_str() {
        "add" => Ok(AddWith::Add),
        "invite" => Ok(AddWith::Invite),
        _ => unexpected(node),
    }
}

type Entries<'s, 'i> = &'s [(usize, Syn<'i>, Syn<'i>)];

fn entries<'s, 'i>(node: &'s Syn<'i>) -> Result<Entries<'s, 'i>, Refusal> {
    match &node.kind {
        SynKind::Map(e, _) => Ok(e),
        _ if is_null(node) => Ok(&[]),
        _ => unexpected(node),
    }
}

fn items<'s, 'i>(node: &'s Syn<'i>) -> Result<&'s [(usize, Syn<'i>)], Refusal> {
    match &node.kind {
        SynKind::Seq(i, _) => Ok(i),
        _ if is_null(node) => Ok(&[]),
        _ => unexpected(node),
    }
}

impl Build<'_> {
    fn field<T>(&mut self, unit: usize, value: T) -> Field<T> {
        Field {
            value,
            comments: self.placed.comments(unit),
        }
    }

    fn root(&mut self, root: &Syn<'_>) -> Result<Document, Refusal> {
        let _ = self.scalars;
        let mut doc = Document::new();
        let mut version = None;
        for (id, k, v) in entries(root)? {
            let id = *id;
            match text_of(k)?.as_str() {
                "version" => version = Some(self.field(id, int_of(v)?)),
                "portals" => doc.portals = Some(self.portals(id, v)?),
                "protected" => doc.protected = Some(self.users(id, v)?),
                "add_with" => doc.add_with = Some(self.field(id, add_with_of(v)?)),
                "invite_message" => doc.invite_message = Some(self.field(id, text_of(v)?)),
                "limits" => doc.limits = Some(self.limits(id, v)?),
                "groups" => {
                    let comments = self.placed.comments(id);
                    let mut groups = Vec::new();
                    for (gid, g) in items(v)? {
                        groups.push(self.group(*gid, g)?);
                    }
                    doc.groups = Groups {
                        comments,
                        groups,
                        end: self.placed.end(id),
                    };
                }
                _ => return unexpected(k),
            }
        }
        match version {
            Some(v) => doc.version = v,
            None => return unexpected(root),
        }
        Ok(doc)
    }

    fn users(&mut self, unit: usize, node: &Syn<'_>) -> Result<UserList, Refusal> {
        let comments = self.placed.comments(unit);
        let mut users: Vec<Item> = Vec::new();
        for (id, u) in items(node)? {
            users.push(self.field(*id, user_of(u)?));
        }
        Ok(UserList {
            comments,
            users,
            end: self.placed.end(unit),
        })
    }

    fn limits(&mut self, unit: usize, node: &Syn<'_>) -> Result<LimitSettings, Refusal> {
        let mut l = LimitSettings {
            comments: self.placed.comments(unit),
            ..LimitSettings::default()
        };
        for (id, k, v) in entries(node)? {
            match text_of(k)?.as_str() {
                "max_removals" => l.max_removals = Some(self.field(*id, limit_of(v)?)),
                "allow_empty" => l.allow_empty = Some(self.field(*id, bool_of(v)?)),
                "max_total_removals" => l.max_total_removals = Some(self.field(*id, limit_of(v)?)),
                _ => return unexpected(k),
            }
        }
        l.end = self.placed.end(unit);
        Ok(l)
    }

    fn portals(&mut self, unit: usize, node: &Syn<'_>) -> Result<Portals, Refusal> {
        let comments = self.placed.comments(unit);
        let mut portals = Vec::new();
        for (pid, name, value) in entries(node)? {
            let comments = self.placed.comments(*pid);
            let [(sid, system, settings)] = entries(value)? else {
                return unexpected(value);
            };
            let system = match text_of(system)?.as_str() {
                "bitrix24" => System::Bitrix24,
                "docspace" => System::DocSpace,
                _ => return unexpected(system),
            };
            let mut p = Portal::new(&text_of(name)?, system);
            p.comments = comments;
            p.system = self.field(*sid, system);
            for (eid, k, v) in entries(settings)? {
                let f = Some(self.field(*eid, text_of(v)?));
                match text_of(k)?.as_str() {
                    "url_env" => p.url_env = f,
                    "key_env" => p.key_env = f,
                    _ => return unexpected(k),
                }
            }
            p.settings_end = self.placed.end(*sid);
            p.end = self.placed.end(*pid);
            portals.push(p);
        }
        Ok(Portals {
            comments,
            portals,
            end: self.placed.end(unit),
        })
    }

    fn group(&mut self, unit: usize, node: &Syn<'_>) -> Result<Group, Refusal> {
        let mut g = Group {
            comments: self.placed.comments(unit),
            ..Group::default()
        };
        for (id, k, v) in entries(node)? {
            let id = *id;
            match text_of(k)?.as_str() {
                "id" => {
                    let value = match scalar_of(v) {
                        Some(Scalar::Integer(_)) => GroupId::Num(positive(v)?),
                        Some(Scalar::String(s)) => match Uuid::parse(&s) {
                            Some(u) => GroupId::Uuid(u),
                            None => return unexpected(v),
                        },
                        _ => return unexpected(v),
                    };
                    g.id = Some(self.field(id, value));
                }
                "name" => g.name = Some(self.field(id, text_of(v)?)),
                "portal" => g.portal = Some(self.field(id, text_of(v)?)),
                "owner" => g.owner = Some(self.field(id, user_of(v)?)),
                "manager" => g.manager = Some(self.field(id, user_of(v)?)),
                "moderators" => g.moderators = Some(self.users(id, v)?),
                "members" => g.members = Some(self.users(id, v)?),
                "protected" => g.protected = Some(self.users(id, v)?),
                "prune" => g.prune = Some(self.field(id, bool_of(v)?)),
                "add_with" => g.add_with = Some(self.field(id, add_with_of(v)?)),
                "invite_message" => g.invite_message = Some(self.field(id, text_of(v)?)),
                "limits" => g.limits = Some(self.limits(id, v)?),
                _ => return unexpected(k),
            }
        }
        g.end = self.placed.end(unit);
        Ok(g)
    }
}

/// A list's or mapping's end and container: a flow collection ends after its closing bracket.
fn closed(
    end: Option<Pos>,
    indent: Option<u32>,
    flow: Option<(Pos, Pos)>,
    map: bool,
) -> (Option<Pos>, Option<Container>) {
    let end = match flow {
        Some((_, close)) => Some(Pos {
            line: close.line,
            col: close.col + 1,
        }),
        None => end,
    };
    (
        end,
        Some(Container {
            indent,
            flow: flow.map(|(open, close)| Flow { open, close, map }),
        }),
    )
}
