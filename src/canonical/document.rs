//! The document model of a roster file: the spec's fields as written, each node with its
//! comments. `canonical::format` builds one from a file; `roster import` builds one from a
//! portal. `Document::canonicalize` puts it in the canonical order. Plain data, no I/O.

use std::cmp::Ordering;

use crate::model::{AddWith, GroupId, Limit, System, UserId};
use crate::spec::UserRef;

/// A comment's text as written, from its `#` to the end of its line (trailing spaces left out).
/// Build one with `comment("Anna Smith")` (`# Anna Smith`).
pub fn comment(text: &str) -> String {
    if text.is_empty() {
        "#".to_owned()
    } else {
        format!("# {text}")
    }
}

/// The comments of one node: full lines before it, and one at the end of its first line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comments {
    /// Full-line comments just before the node, in order, each with its `#`.
    pub leading: Vec<String>,
    /// The comment on the node's line, with its `#`.
    pub trailing: Option<String>,
}

impl Comments {
    pub fn is_empty(&self) -> bool {
        self.leading.is_empty() && self.trailing.is_none()
    }

    /// Another node's comments added to these: its full lines after ours, its line comment on
    /// our line when that is free, else as a full line.
    pub fn absorb(&mut self, other: Comments) {
        self.leading.extend(other.leading);
        match (&self.trailing, other.trailing) {
            (_, None) => {}
            (None, t) => self.trailing = t,
            (Some(_), Some(t)) => self.leading.push(t),
        }
    }
}

/// A `key: value` line, or a list item, with its comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<T> {
    pub value: T,
    pub comments: Comments,
}

impl<T> Field<T> {
    pub fn new(value: T) -> Field<T> {
        Field {
            value,
            comments: Comments::default(),
        }
    }

    /// With `# text` at the end of its line.
    pub fn comment(mut self, text: &str) -> Field<T> {
        self.comments.trailing = Some(comment(text));
        self
    }
}

/// A user in a list: `- anna@example.com  # Anna Smith`.
pub type Item = Field<UserRef>;

impl Field<UserRef> {
    /// A user by e-mail address.
    pub fn email(address: &str) -> Item {
        Field::new(UserRef::Email(address.to_owned()))
    }

    /// A user by portal ID.
    pub fn id(id: UserId) -> Item {
        Field::new(UserRef::Id(id))
    }
}

/// A list of users (`moderators:`, `members:`, `protected:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserList {
    /// The comments of the `key:` line.
    pub comments: Comments,
    pub users: Vec<Item>,
    /// Full-line comments after the last user, at the users' indentation.
    pub end: Vec<String>,
}

impl UserList {
    pub fn new(users: impl IntoIterator<Item = Item>) -> UserList {
        UserList {
            users: users.into_iter().collect(),
            ..UserList::default()
        }
    }
}

/// A `limits:` mapping (the file's or a group's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSettings {
    pub comments: Comments,
    pub max_removals: Option<Field<Limit>>,
    pub allow_empty: Option<Field<bool>>,
    /// Only in the file's `limits:`.
    pub max_total_removals: Option<Field<Limit>>,
    pub end: Vec<String>,
}

/// One of `portals:`: `NAME:` then `bitrix24:` or `docspace:` with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    /// The comments of the `NAME:` line.
    pub comments: Comments,
    pub name: String,
    /// The system, with the comments of its `bitrix24:`/`docspace:` line.
    pub system: Field<System>,
    pub url_env: Option<Field<String>>,
    /// DocSpace only.
    pub key_env: Option<Field<String>>,
    /// Full-line comments after the settings, at their indentation.
    pub settings_end: Vec<String>,
    /// Full-line comments after the system, at its indentation.
    pub end: Vec<String>,
}

impl Portal {
    pub fn new(name: &str, system: System) -> Portal {
        Portal {
            comments: Comments::default(),
            name: name.to_owned(),
            system: Field::new(system),
            url_env: None,
            key_env: None,
            settings_end: Vec::new(),
            end: Vec::new(),
        }
    }
}

/// `portals:`. Portals keep their order: it is the order of the plan's sections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Portals {
    pub comments: Comments,
    pub portals: Vec<Portal>,
    pub end: Vec<String>,
}

/// One group. A trailing comment in `comments` goes on its `- ` line (after the first
/// field's own, if that has one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub comments: Comments,
    pub id: Option<Field<GroupId>>,
    pub name: Option<Field<String>>,
    pub portal: Option<Field<String>>,
    /// Bitrix24's `owner:`.
    pub owner: Option<Field<UserRef>>,
    /// DocSpace's `manager:`.
    pub manager: Option<Field<UserRef>>,
    pub moderators: Option<UserList>,
    pub members: Option<UserList>,
    pub protected: Option<UserList>,
    pub prune: Option<Field<bool>>,
    pub add_with: Option<Field<AddWith>>,
    pub invite_message: Option<Field<String>>,
    pub limits: Option<LimitSettings>,
    /// Full-line comments after the group's last field, at the fields' indentation.
    pub end: Vec<String>,
}

impl Group {
    /// A group by ID (`- id: 15`); `.comment("Marketing")` puts its name beside it.
    pub fn by_id(id: GroupId) -> Group {
        Group {
            id: Some(Field::new(id)),
            ..Group::default()
        }
    }

    /// A group by its exact name (`- name: Marketing`).
    pub fn by_name(name: &str) -> Group {
        Group {
            name: Some(Field::new(name.to_owned())),
            ..Group::default()
        }
    }

    /// With `# text` at the end of its `- ` line.
    pub fn comment(mut self, text: &str) -> Group {
        self.comments.trailing = Some(comment(text));
        self
    }
}

/// `groups:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    pub comments: Comments,
    pub groups: Vec<Group>,
    /// Full-line comments after the last group, at the groups' indentation.
    pub end: Vec<String>,
}

/// A whole roster file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Comment lines at the top of the file, followed by a blank line.
    pub header: Vec<String>,
    pub version: Field<i64>,
    pub portals: Option<Portals>,
    pub protected: Option<UserList>,
    pub add_with: Option<Field<AddWith>>,
    pub invite_message: Option<Field<String>>,
    pub limits: Option<LimitSettings>,
    pub groups: Groups,
    /// Comment lines at the end of the file, after a blank line.
    pub footer: Vec<String>,
}

impl Default for Document {
    fn default() -> Document {
        Document::new()
    }
}

impl Document {
    /// `version: 1` and no groups.
    pub fn new() -> Document {
        Document {
            header: Vec::new(),
            version: Field::new(crate::spec::FORMAT_VERSION),
            portals: None,
            protected: None,
            add_with: None,
            invite_message: None,
            limits: None,
            groups: Groups::default(),
            footer: Vec::new(),
        }
    }

    /// The canonical order: groups by portal (a group without `portal:` on the file's first
    /// portal), then by ID (numbers, then UUIDs), then the groups given by name only, by name
    /// ignoring case; users in each list by ID, then by e-mail ignoring case, each user once
    /// (the first kept, the repeats' comments added to it). Nothing else changes.
    pub fn canonicalize(&mut self) {
        if let Some(list) = &mut self.protected {
            canonical_users(list);
        }
        let first_portal = self
            .portals
            .as_ref()
            .and_then(|p| p.portals.first())
            .map(|p| p.name.clone())
            .unwrap_or_default();
        for g in &mut self.groups.groups {
            for list in [&mut g.moderators, &mut g.members, &mut g.protected]
                .into_iter()
                .flatten()
            {
                canonical_users(list);
            }
        }
        self.groups.groups.sort_by_cached_key(|g| {
            let portal = g
                .portal
                .as_ref()
                .map_or_else(|| first_portal.clone(), |p| p.value.clone());
            let key = match (&g.id, &g.name) {
                (Some(id), _) => GroupKey::Id(id.value),
                (None, Some(n)) => GroupKey::Name(n.value.to_lowercase(), n.value.clone()),
                (None, None) => GroupKey::Neither,
            };
            (portal, key)
        });
    }
}

/// A group's place within its portal.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum GroupKey {
    Id(GroupId),
    Name(String, String),
    Neither,
}

/// A user's place in a list; equal keys are the same user.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum UserKey {
    Id(UserId),
    Email(String),
}

fn user_key(u: &UserRef) -> UserKey {
    match u {
        UserRef::Id(id) => UserKey::Id(*id),
        UserRef::Email(e) => UserKey::Email(e.to_lowercase()),
    }
}

/// Sort a list (stable, so the first of a repeated user stays first) and drop the repeats,
/// keeping their comments on the user kept.
fn canonical_users(list: &mut UserList) {
    list.users.sort_by_cached_key(|u| user_key(&u.value));
    let mut kept: Vec<Item> = Vec::with_capacity(list.users.len());
    for u in list.users.drain(..) {
        match kept.last_mut() {
            Some(last) if user_key(&last.value).cmp(&user_key(&u.value)) == Ordering::Equal => {
                last.comments.absorb(u.comments);
            }
            _ => kept.push(u),
        }
    }
    list.users = kept;
}
