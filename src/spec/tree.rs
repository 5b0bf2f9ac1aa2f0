//! A compact YAML tree with positions, built from the parser's event stream under hard limits.
//!
//! saphyr's own loader expands aliases (by cloning) and keeps large nodes; a roster file needs
//! neither. This builder keeps scalars resolved (core schema) with their line and column,
//! refuses aliases instead of expanding them, stops at `MAX_DEPTH` levels of nesting (before the
//! parser's or the drop's stacks grow), and stops at the first syntax error. Memory is linear
//! in the input: about 40 bytes per node plus the text of strings. No I/O.

use std::borrow::Cow;

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// The deepest nesting accepted. A roster file needs 4 (root, groups, a group, its limits).
pub const MAX_DEPTH: usize = 32;

/// 1-based line and column (in characters), as editors count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

#[derive(Debug)]
pub struct Node<'i> {
    pub pos: Pos,
    pub kind: Kind<'i>,
}

#[derive(Debug)]
pub enum Kind<'i> {
    Null,
    Bool(bool),
    /// An integer, with its text when that is not the plain decimal form (`0x10`, `+5`).
    Int(i64, Option<Box<str>>),
    /// A float (or an integer too large for i64), as written.
    Float(Box<str>),
    Str(Cow<'i, str>),
    /// A tagged scalar that does not fit its core-schema tag (`!!int abc`), with the tag.
    BadTag(Box<str>),
    /// An alias (`*name`): never expanded.
    Alias,
    Seq(Vec<Node<'i>>),
    Map(Vec<(Node<'i>, Node<'i>)>),
}

/// Why the stream could not be turned into a tree; the position is where it happened.
#[derive(Debug, PartialEq, Eq)]
pub enum TreeError {
    Syntax(Pos, String),
    TooDeep(Pos),
    SeveralDocuments(Pos),
}

fn pos(span: &Span) -> Pos {
    let m = span.start;
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

/// A container being filled: its node, and for a mapping the key waiting for its value.
struct Open<'i> {
    node: Node<'i>,
    key: Option<Node<'i>>,
}

/// Parse `text` into at most one document's tree. `Ok(None)` for an empty stream.
pub fn build(text: &str) -> Result<Option<Node<'_>>, TreeError> {
    let mut stack: Vec<Open<'_>> = Vec::new();
    let mut root: Option<Node<'_>> = None;
    let mut documents = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = match item {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                let at = Pos {
                    line: u32::try_from(m.line()).unwrap_or(u32::MAX),
                    column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
                };
                return Err(TreeError::Syntax(at, e.info().to_owned()));
            }
        };
        let at = pos(&span);
        let node = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(TreeError::SeveralDocuments(at));
                }
                continue;
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(TreeError::TooDeep(at));
                }
                let kind = if matches!(event, Event::SequenceStart(..)) {
                    Kind::Seq(Vec::new())
                } else {
                    Kind::Map(Vec::new())
                };
                stack.push(Open {
                    node: Node { pos: at, kind },
                    key: None,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(open) => open.node,
                None => continue,
            },
            Event::Scalar(value, style, _anchor, tag) => Node {
                pos: at,
                kind: scalar(value, style, tag.as_deref()),
            },
            Event::Alias(_) => Node {
                pos: at,
                kind: Kind::Alias,
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {
                continue;
            }
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(open) => match &mut open.node.kind {
                Kind::Seq(items) => items.push(node),
                Kind::Map(entries) => match open.key.take() {
                    None => open.key = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                _ => unreachable!("only containers are pushed"),
            },
        }
    }
    Ok(root)
}

fn scalar<'i>(value: Cow<'i, str>, style: ScalarStyle, tag: Option<&saphyr::Tag>) -> Kind<'i> {
    let tag_text = tag.map(|t| {
        if t.is_yaml_core_schema() {
            format!("!!{}", t.suffix)
        } else {
            t.to_string()
        }
    });
    let written: Box<str> = value.as_ref().into();
    let tag = tag.map(|t| Cow::Owned(t.clone()));
    match Scalar::parse_from_cow_and_metadata(value, style, tag.as_ref()) {
        None => Kind::BadTag(tag_text.unwrap_or_default().into()),
        Some(Scalar::Null) => Kind::Null,
        Some(Scalar::Boolean(b)) => Kind::Bool(b),
        Some(Scalar::Integer(n)) => {
            let canonical = n.to_string() == *written;
            Kind::Int(n, (!canonical).then_some(written))
        }
        Some(Scalar::FloatingPoint(_)) => Kind::Float(written),
        Some(Scalar::String(s)) => Kind::Str(s),
    }
}
