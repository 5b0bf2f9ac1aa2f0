//! The desired-state file: its format (version 1), parsing with positions, and validation.
//!
//! `parse` is pure (text in, `DesiredState` or every diagnostic out): reading the file happens
//! in the shell (`crate::run`). Every problem in a file is reported at once, each with the file,
//! line and column, the field path and the offending value; nothing is sent to a portal until
//! the file is clean.
//!
//! ```yaml
//! version: 1
//! groups:
//!   - id: 15                 # workgroup ID (required, > 0)
//!     name: Marketing        # optional label shown in plans
//!     owner: 1               # optional: checked and reported, never changed
//!     moderators: [10]       # role E
//!     members: [21, 22]      # role K
//!     prune: true            # default true: undeclared members are removed (owners never)
//! ```

use std::collections::BTreeMap;
use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use crate::model::{DesiredGroup, DesiredState, GroupId, Role, UserId};

/// The only format version this build understands.
pub const FORMAT_VERSION: i64 = 1;

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
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Parse and validate a spec file's text. `file` is only used in messages.
pub fn parse(file: &str, text: &str) -> Result<DesiredState, Diagnostics> {
    let mut cx = Cx {
        file,
        text,
        diags: Vec::new(),
    };
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => {
            let m = e.marker();
            cx.diags.push(Diagnostic {
                file: file.to_owned(),
                line: m.line(),
                column: m.col() + 1,
                path: String::new(),
                message: format!("invalid YAML: {}", e.info()),
            });
            return Err(Diagnostics(cx.diags));
        }
    };
    let desired = match docs.as_slice() {
        [] => {
            cx.at_pos(
                1,
                1,
                "",
                "the file is empty: expected `version: 1` and `groups:`",
            );
            None
        }
        [doc] => cx.root(doc),
        [_, second, ..] => {
            cx.at(second, "", "expected one YAML document, found several");
            None
        }
    };
    cx.diags.sort_by_key(|d| (d.line, d.column));
    match desired {
        Some(d) if cx.diags.is_empty() => Ok(d),
        _ => Err(Diagnostics(cx.diags)),
    }
}

struct Cx<'a> {
    file: &'a str,
    /// The source, to quote numbers as written (`1e3`, not `1000`).
    text: &'a str,
    diags: Vec<Diagnostic>,
}

type Node<'i> = MarkedYaml<'i>;

impl Cx<'_> {
    fn at_pos(&mut self, line: usize, column: usize, path: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn at(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        let m = node.span.start;
        self.at_pos(m.line(), m.col() + 1, path, message);
    }

    /// Iterate a mapping's entries, reporting non-string and unknown keys.
    fn fields<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        path: &str,
        known: &[&str],
    ) -> Option<Vec<(&'n str, &'n Node<'i>)>> {
        let YamlData::Mapping(map) = &node.data else {
            self.at(
                node,
                path,
                format!("expected a mapping, found {}", self.describe(node)),
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let Some(key) = k.data.as_str() else {
                self.at(
                    k,
                    path,
                    format!("expected a field name, found {}", describe(k)),
                );
                continue;
            };
            if !known.contains(&key) {
                let hint = known.join(", ");
                self.at(
                    k,
                    &join(path, key),
                    format!("unknown field `{key}`; expected one of: {hint}"),
                );
                continue;
            }
            out.push((key, v));
        }
        Some(out)
    }

    fn root(&mut self, doc: &Node) -> Option<DesiredState> {
        let fields = self.fields(doc, "", &["version", "groups"])?;
        let mut version = None;
        let mut groups = None;
        for (key, v) in fields {
            match key {
                "version" => version = Some(v),
                "groups" => groups = Some(v),
                _ => unreachable!("filtered by fields()"),
            }
        }
        let mut ok = true;
        match version {
            None => {
                self.at(doc, "", "missing field `version` (expected `version: 1`)");
                ok = false;
            }
            Some(v) => match scalar_int(v) {
                Some(FORMAT_VERSION) => {}
                _ => {
                    self.at(
                        v,
                        "version",
                        format!(
                            "unsupported version {}; this roster understands version {FORMAT_VERSION}",
                            self.describe(v)
                        ),
                    );
                    ok = false;
                }
            },
        }
        let Some(groups) = groups else {
            self.at(doc, "", "missing field `groups`");
            return None;
        };
        let state = self.groups(groups);
        if ok { state } else { None }
    }

    fn groups(&mut self, node: &Node) -> Option<DesiredState> {
        if matches!(node.data, YamlData::Value(Scalar::Null)) {
            // `groups:` with nothing under it: an empty desired state is valid.
            return Some(DesiredState::default());
        }
        let YamlData::Sequence(items) = &node.data else {
            self.at(
                node,
                "groups",
                format!("expected a list of groups, found {}", self.describe(node)),
            );
            return None;
        };
        let mut state = DesiredState::default();
        let mut first_seen: BTreeMap<GroupId, usize> = BTreeMap::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("groups[{i}]");
            let (group, id) = self.group(item, &path);
            ok &= group.is_some();
            let Some((id, id_node)) = id else { continue };
            if let Some(line) = first_seen.get(&id) {
                self.at(
                    id_node,
                    &format!("{path}.id"),
                    format!(
                        "duplicate group {}: already declared on line {line}",
                        self.describe(id_node)
                    ),
                );
                ok = false;
                continue;
            }
            first_seen.insert(id, item.span.start.line());
            if let Some(group) = group {
                state.groups.insert(id, group);
            }
        }
        if ok { Some(state) } else { None }
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
            &["id", "name", "owner", "moderators", "members", "prune"],
        ) else {
            return (None, None);
        };
        let errors_before = self.diags.len();
        let mut id = None;
        let mut name = None;
        let mut owner = None;
        let mut prune = true;
        // (user, role, node, field path) in file order, to report a user listed twice.
        let mut listed: Vec<(UserId, Role, &Node, String)> = Vec::new();
        for (key, v) in fields {
            let fpath = join(path, key);
            match key {
                "id" => {
                    id = self
                        .positive(v, &fpath, "group ID")
                        .map(|n| (GroupId(n), v))
                }
                "name" => match &v.data {
                    YamlData::Value(Scalar::String(s)) => name = Some(s.to_string()),
                    _ => self.at(
                        v,
                        &fpath,
                        format!("expected a string, found {}", self.describe(v)),
                    ),
                },
                "owner" => {
                    if let Some(n) = self.positive(v, &fpath, "user ID") {
                        owner = Some(UserId(n));
                        listed.push((UserId(n), Role::Owner, v, fpath));
                    }
                }
                "prune" => match &v.data {
                    YamlData::Value(Scalar::Boolean(b)) => prune = *b,
                    _ => self.at(
                        v,
                        &fpath,
                        format!("expected true or false, found {}", self.describe(v)),
                    ),
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
                _ => unreachable!("filtered by fields()"),
            }
        }
        let mut members = BTreeMap::new();
        let mut seen: BTreeMap<UserId, (Role, usize)> = BTreeMap::new();
        for (user, role, n, p) in listed {
            if let Some((first_role, line)) = seen.get(&user) {
                let first = match first_role {
                    Role::Owner => "owner",
                    Role::Moderator => "moderators",
                    Role::Member => "members",
                };
                self.at(
                    n,
                    &p,
                    format!("user {user} is listed twice in this group (first under `{first}` on line {line})"),
                );
                continue;
            }
            seen.insert(user, (role, n.span.start.line()));
            if role != Role::Owner {
                members.insert(user, role);
            }
        }
        let Some((id, id_node)) = id else {
            if !self
                .diags
                .iter()
                .skip(errors_before)
                .any(|d| d.path == join(path, "id"))
            {
                self.at(node, path, "missing field `id` (the workgroup ID)");
            }
            return (None, None);
        };
        if self.diags.len() != errors_before {
            return (None, Some((id, id_node)));
        }
        let group = DesiredGroup {
            id,
            name,
            owner,
            members,
            prune,
            line: node.span.start.line(),
        };
        (Some(group), Some((id, id_node)))
    }

    fn user_list<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        path: &str,
    ) -> Vec<(UserId, &'n Node<'i>, String)> {
        if matches!(node.data, YamlData::Value(Scalar::Null)) {
            return Vec::new();
        }
        let YamlData::Sequence(items) = &node.data else {
            self.at(
                node,
                path,
                format!("expected a list of user IDs, found {}", self.describe(node)),
            );
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let p = format!("{path}[{i}]");
                self.positive(item, &p, "user ID")
                    .map(|n| (UserId(n), item, p))
            })
            .collect()
    }

    fn positive(&mut self, node: &Node, path: &str, what: &str) -> Option<u64> {
        match scalar_int(node) {
            Some(n) if n > 0 => Some(n as u64),
            _ => {
                self.at(
                    node,
                    path,
                    format!(
                        "{what} must be a positive integer, found {}",
                        self.describe(node)
                    ),
                );
                None
            }
        }
    }
}

fn scalar_int(node: &Node) -> Option<i64> {
    match &node.data {
        YamlData::Value(Scalar::Integer(n)) => Some(*n),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Cx<'_> {
    /// A short description of a node for messages: the value as written for scalars.
    fn describe(&self, node: &Node) -> String {
        if let YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_)) = &node.data {
            // A plain scalar runs to the next flow delimiter, line end or comment.
            let rest: String = self.text.chars().skip(node.span.start.index()).collect();
            let end = rest.find([',', ']', '}', '\n', '\r']).unwrap_or(rest.len());
            // A comment starts at a `#` after white space (space or tab).
            let value = &rest[..end];
            let comment = value
                .char_indices()
                .find(|&(i, c)| c == '#' && value[..i].ends_with([' ', '\t']))
                .map_or(value.len(), |(i, _)| i);
            let written = value[..comment].trim();
            if !written.is_empty() {
                return written.to_owned();
            }
        }
        describe(node)
    }
}

/// A short description of a node for messages: the value itself for scalars.
fn describe(node: &Node) -> String {
    match &node.data {
        YamlData::Value(Scalar::Null) => "null".to_owned(),
        YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
        YamlData::Value(Scalar::Integer(n)) => n.to_string(),
        YamlData::Value(Scalar::FloatingPoint(f)) => f.to_string(),
        YamlData::Value(Scalar::String(s)) => format!("{:?}", s.as_ref()),
        YamlData::Representation(s, _, _) => format!("{:?}", s.as_ref()),
        YamlData::Sequence(_) => "a list".to_owned(),
        YamlData::Mapping(_) => "a mapping".to_owned(),
        YamlData::Tagged(tag, _) => format!("a value tagged {tag}"),
        YamlData::Alias(_) => "an alias".to_owned(),
        YamlData::BadValue => "an unreadable value".to_owned(),
    }
}

#[cfg(test)]
mod tests;
