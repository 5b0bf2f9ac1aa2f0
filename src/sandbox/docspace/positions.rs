//! Where things are in a YAML text: an index from a value's path (`docspace.users[2].id`) to
//! its 1-based line and column, read from the parser's event stream, so that validation errors
//! can point at the offending value. Also the cheap top-level check [`has_top_level_key`].
//! Pure functions of the text; no I/O.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span};

/// 1-based line and column (in characters), as editors count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// The position of every value (and of every mapping key, under `PATH#key`) in the first
/// document of a text. Paths join mapping keys with `.` and add `[i]` for sequence items; the
/// root is `""`. Aliases are recorded where they appear and never expanded. On a syntax error
/// the index holds what came before it.
#[derive(Debug, Default)]
pub struct Index {
    at: HashMap<String, Pos>,
}

enum Frame {
    /// A mapping at `path`: the key read and waiting for its value, if any.
    Map { path: String, key: Option<String> },
    /// A sequence at `path` and the index of its next item.
    Seq { path: String, next: usize },
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Index {
    pub fn build(text: &str) -> Index {
        let mut at = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0;
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let here = pos(&span);
            // The path of a node starting now, or None when it is a mapping key.
            let value_path = |stack: &mut Vec<Frame>| -> Option<String> {
                match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Seq { path, next }) => {
                        let p = format!("{path}[{next}]");
                        *next += 1;
                        Some(p)
                    }
                    Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
                }
            };
            match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        break;
                    }
                }
                Event::Scalar(value, ..) => match value_path(&mut stack) {
                    Some(p) => {
                        at.insert(p, here);
                    }
                    None => {
                        if let Some(Frame::Map { path, key }) = stack.last_mut() {
                            at.insert(format!("{}#key", join(path, &value)), here);
                            *key = Some(value.into_owned());
                        }
                    }
                },
                Event::Alias(_) => match value_path(&mut stack) {
                    Some(p) => {
                        at.insert(p, here);
                    }
                    None => {
                        // An alias as a key: keep the mapping's key/value rhythm.
                        if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                            *key = Some("*".to_owned());
                        }
                    }
                },
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    let path = match value_path(&mut stack) {
                        Some(p) => p,
                        None => {
                            // A complex key: index it under a name no real key has.
                            if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                                *key = Some("?".to_owned());
                            }
                            "?".to_owned()
                        }
                    };
                    at.insert(path.clone(), here);
                    stack.push(if matches!(event, Event::SequenceStart(..)) {
                        Frame::Seq { path, next: 0 }
                    } else {
                        Frame::Map { path, key: None }
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        Index { at }
    }

    /// The position of the value at `path`, else of its nearest recorded ancestor.
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(x) = self.at.get(p) {
                return Some(*x);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// The position of the key `path` names (`docspace.users[0].id` → the `id` key).
    pub fn find_key(&self, path: &str) -> Option<Pos> {
        self.at.get(&format!("{path}#key")).copied()
    }
}

/// Does the first document's top-level mapping have the key `key`? Read from the event
/// stream up to that key, so a syntax error later in the text does not hide it.
pub fn has_top_level_key(text: &str, key: &str) -> bool {
    let mut depth = 0usize;
    // At depth 1, whether the next node is a key.
    let mut expect_key = true;
    let mut root_is_map = false;
    for item in Parser::new_from_str(text) {
        let Ok((event, _)) = item else { return false };
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if depth == 0 {
                    root_is_map = matches!(event, Event::MappingStart(..));
                    if !root_is_map {
                        return false;
                    }
                } else if depth == 1 {
                    // A complex key (never `key`) or a value.
                    expect_key = !expect_key;
                }
                depth += 1;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return false;
                }
            }
            Event::Scalar(value, ..) => {
                if depth == 0 {
                    return false;
                }
                if depth == 1 {
                    if expect_key && root_is_map && value == key {
                        return true;
                    }
                    expect_key = !expect_key;
                }
            }
            Event::Alias(_) if depth == 1 => expect_key = !expect_key,
            Event::DocumentEnd => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# a comment
docspace:
  latency_ms: 5
  users:
    - { id: a, email: x@y }
    - id: b
      email: z@y
  groups: []
";

    #[test]
    fn paths_and_positions() {
        let ix = Index::build(TEXT);
        let at = |p: &str| ix.find(p).map(|x| (x.line, x.column));
        assert_eq!(at("docspace.latency_ms"), Some((3, 15)));
        assert_eq!(at("docspace.users[0].id"), Some((5, 13)));
        assert_eq!(at("docspace.users[0].email"), Some((5, 23)));
        assert_eq!(at("docspace.users[1].email"), Some((7, 14)));
        assert_eq!(at("docspace.groups"), Some((8, 11)));
        // Missing values fall back to the nearest ancestor.
        assert_eq!(at("docspace.users[1].status"), at("docspace.users[1]"));
        assert_eq!(at("docspace.groups[0].id"), at("docspace.groups"));
        assert_eq!(
            ix.find_key("docspace.users[1].email")
                .map(|x| (x.line, x.column)),
            Some((7, 7))
        );
    }

    #[test]
    fn top_level_key() {
        assert!(has_top_level_key(TEXT, "docspace"));
        assert!(!has_top_level_key(TEXT, "users"));
        assert!(!has_top_level_key(
            "portal:\n  docspace: 1\nusers: []\n",
            "docspace"
        ));
        assert!(has_top_level_key("users: []\ndocspace: {}\n", "docspace"));
        assert!(has_top_level_key(
            "{ a: [1, {docspace: 1}], docspace: x }",
            "docspace"
        ));
        assert!(!has_top_level_key("{ a: [1, {docspace: 1}] }", "docspace"));
        assert!(!has_top_level_key("- docspace\n", "docspace"));
        assert!(!has_top_level_key("docspace", "docspace"));
        assert!(!has_top_level_key("", "docspace"));
        // A syntax error after the key does not hide it; one before it does.
        assert!(has_top_level_key("docspace:\n  users: [\n", "docspace"));
        assert!(!has_top_level_key("a: [\ndocspace: {}\n", "docspace"));
    }
}
