//! The endpoints (reference §1, §2, §6): pure functions of (caller, request, state) that
//! answer an [`Outcome`]; writes change the state they are given. No HTTP, no I/O, no clock:
//! the server layer authenticates, checks scopes and limits, and persists.
//!
//! Each endpoint runs in the server's order: model binding and validation of the query and the
//! JSON body (400 in the success envelope), then the role check (`DemandPermissionsAsync`: 403
//! "Access denied"), then the lookups (404) and the change.
//!
//! Roles (reference §3): owner and admin may do everything; a room admin may read groups and
//! people; a user or guest may only read their own profile (`people/@self`, or looking
//! themselves up by e-mail, id or user name).

use std::cmp::Ordering;

use serde_json::Value;

use super::auth::Caller;
use super::routes::Endpoint;
use super::state::{self, NIL_UUID, State, Status, TerminatedMembers, User, UserType};
use super::wire::{
    self, ApiError, Employee, GroupSummary, Outcome, Payload, Problems, parse_guid, parse_json_guid,
};

/// What the server knows about a request that the endpoints need.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub endpoint: Endpoint,
    /// The route's parameter segments (see `routes::Route::params`).
    pub params: &'a [String],
    /// The query string's pairs, decoded, in order.
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
}

/// Where the portal is, for `profileUrl`.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    pub base_url: &'a str,
    /// Lookups by ID into the state being read, when the server has one for it (reads): an
    /// answer listing many members would otherwise scan every user and group for each.
    pub index: Option<std::sync::Arc<Index>>,
}

impl<'a> Ctx<'a> {
    /// A context without an index (everything is found by scanning the state).
    pub fn new(base_url: &'a str) -> Ctx<'a> {
        Ctx {
            base_url,
            index: None,
        }
    }

    fn groups_of<'s>(&self, st: &'s State, user: &str) -> Vec<&'s state::Group> {
        match &self.index {
            Some(ix) => ix
                .groups_of
                .get(user)
                .map(|is| is.iter().map(|&i| &st.groups[i]).collect())
                .unwrap_or_default(),
            None => st
                .groups
                .iter()
                .filter(|g| g.members.iter().any(|m| m == user))
                .collect(),
        }
    }

    fn user<'s>(&self, st: &'s State, id: &str) -> Option<&'s User> {
        match &self.index {
            Some(ix) => ix.users.get(id).map(|&i| &st.users[i]),
            None => st.user(id),
        }
    }
}

/// Where each user is in `State::users`, and each user's groups (indexes into
/// `State::groups`), for one unchanged state.
#[derive(Debug, Default)]
pub struct Index {
    users: std::collections::HashMap<String, usize>,
    groups_of: std::collections::HashMap<String, Vec<usize>>,
}

impl Index {
    pub fn of(st: &State) -> Index {
        let mut ix = Index::default();
        for (i, u) in st.users.iter().enumerate() {
            ix.users.insert(u.id.clone(), i);
        }
        for (i, g) in st.groups.iter().enumerate() {
            for m in &g.members {
                ix.groups_of.entry(m.clone()).or_default().push(i);
            }
        }
        ix
    }
}

/// Answer a read-only endpoint.
pub fn read(st: &State, caller: &Caller, req: &Request<'_>, ctx: &Ctx<'_>) -> Outcome {
    let q = Query(req.query);
    let r = match req.endpoint {
        Endpoint::ListGroups => list_groups(st, caller, &q, ctx),
        Endpoint::GetGroup => get_group(st, caller, &req.params[0], &q, ctx),
        Endpoint::GroupsOfUser => groups_of_user(st, caller, &req.params[0]),
        Endpoint::PeopleByEmail => people_by_email(st, caller, &q, ctx),
        Endpoint::PeopleGet => people_get(st, caller, &req.params[0], ctx),
        Endpoint::PeopleSelf => people_self(st, caller, ctx),
        Endpoint::PeopleList => people_list(st, caller, &q, ctx, false),
        Endpoint::PeopleFilter => people_list(st, caller, &q, ctx, true),
        _ => Err(Outcome::Error(ApiError::internal())),
    };
    r.unwrap_or_else(|o| o)
}

/// Answer an endpoint that may change `st`; `new_id` makes the id of a new group.
pub fn write(
    st: &mut State,
    caller: &Caller,
    req: &Request<'_>,
    ctx: &Ctx<'_>,
    new_id: &mut dyn FnMut() -> String,
) -> Outcome {
    let r = match req.endpoint {
        Endpoint::CreateGroup => create_group(st, caller, req, ctx, new_id),
        Endpoint::UpdateGroup => update_group(st, caller, req, ctx),
        Endpoint::DeleteGroup => delete_group(st, caller, &req.params[0]),
        Endpoint::AddMembers => members_change(st, caller, req, ctx, Change::Add),
        Endpoint::ReplaceMembers => members_change(st, caller, req, ctx, Change::Replace),
        Endpoint::RemoveMembers => members_change(st, caller, req, ctx, Change::Remove),
        Endpoint::SetManager => set_manager(st, caller, req, ctx),
        Endpoint::MoveMembers => move_members(st, caller, req, ctx),
        e if e.is_read() => Ok(read(st, caller, req, ctx)),
        _ => Err(Outcome::Error(ApiError::internal())),
    };
    r.unwrap_or_else(|o| o)
}

/// An endpoint's early exit.
type Step<T> = Result<T, Outcome>;

fn deny() -> Outcome {
    Outcome::Error(ApiError::access_denied())
}

/// Owner, admin or room admin: may read groups and people.
fn demand_read(caller: &Caller) -> Step<()> {
    if caller.kind.is_admin() || caller.kind == UserType::RoomAdmin {
        Ok(())
    } else {
        Err(deny())
    }
}

/// Owner or admin: may change groups.
fn demand_write(caller: &Caller) -> Step<()> {
    if caller.kind.is_admin() {
        Ok(())
    } else {
        Err(deny())
    }
}

fn invalid_if_any(p: Problems) -> Step<()> {
    if p.is_empty() {
        Ok(())
    } else {
        Err(Outcome::Invalid(p))
    }
}

fn add_problem(p: &mut Problems, key: &str, message: String) {
    p.entry(key.to_owned()).or_default().push(message);
}

// ---------------------------------------------------------------------------------------------
// Query binding (case-insensitive names, first value wins)

struct Query<'a>(&'a [(String, String)]);

impl Query<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// An `int` (optional, `default` when absent or empty).
    fn int(&self, name: &str, default: i64, p: &mut Problems) -> i64 {
        match self.get(name).map(str::trim) {
            None | Some("") => default,
            Some(v) => match v.parse::<i32>() {
                Ok(n) => i64::from(n),
                Err(_) => {
                    add_problem(p, name, format!("The value '{v}' is not valid for {name}."));
                    default
                }
            },
        }
    }

    fn bool(&self, name: &str, p: &mut Problems) -> Option<bool> {
        let v = self.get(name)?.trim();
        if v.eq_ignore_ascii_case("true") {
            Some(true)
        } else if v.eq_ignore_ascii_case("false") {
            Some(false)
        } else if v.is_empty() {
            None
        } else {
            add_problem(p, name, format!("The value '{v}' is not valid for {name}."));
            None
        }
    }

    fn guid(&self, name: &str, p: &mut Problems) -> Option<String> {
        let v = self.get(name)?;
        if v.trim().is_empty() {
            return None;
        }
        let g = parse_guid(v);
        if g.is_none() {
            add_problem(p, name, format!("The value '{v}' is not valid for {name}."));
        }
        g
    }

    /// An enum bound from its number or (case-insensitive) name; `None` when absent.
    fn choice(&self, name: &str, options: &[(&str, i64)], p: &mut Problems) -> Option<i64> {
        let v = self.get(name)?.trim();
        if v.is_empty() {
            return None;
        }
        let hit = options.iter().find(|(n, code)| {
            n.eq_ignore_ascii_case(v) || v.parse::<i64>().is_ok_and(|x| x == *code)
        });
        if hit.is_none() {
            add_problem(p, name, format!("The value '{v}' is not valid for {name}."));
        }
        hit.map(|(_, c)| *c)
    }

    /// `sortOrder`: `0`/`Ascending` (default) or `1`/`Descending`.
    fn descending(&self, p: &mut Problems) -> bool {
        self.choice("sortOrder", &[("ascending", 0), ("descending", 1)], p) == Some(1)
    }

    /// `filterValue`, trimmed and lower-cased; `None` when absent or blank.
    fn filter(&self) -> Option<String> {
        self.get("filterValue")
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty())
    }
}

// ---------------------------------------------------------------------------------------------
// JSON body binding

/// The JSON object of a request that takes a body, or the 400/415 the binder answers.
fn body_object(req: &Request<'_>) -> Step<serde_json::Map<String, Value>> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        let mut p = Problems::new();
        add_problem(&mut p, "", "A non-empty request body is required.".into());
        return Err(Outcome::Invalid(p));
    }
    if !req.content_type.is_some_and(is_json_type) {
        return Err(Outcome::UnsupportedMediaType);
    }
    match serde_json::from_slice::<Value>(req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => {
            let mut p = Problems::new();
            add_problem(
                &mut p,
                "$",
                "The JSON value could not be converted to the request type. Path: $".into(),
            );
            Err(Outcome::Invalid(p))
        }
        Err(e) => {
            let mut p = Problems::new();
            add_problem(
                &mut p,
                "$",
                format!("The request body is not valid JSON: {e}. Path: $"),
            );
            Err(Outcome::Invalid(p))
        }
    }
}

fn is_json_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Property names bind case-insensitively (`PropertyNameCaseInsensitive`).
fn prop<'a>(m: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn guid_problem(p: &mut Problems, path: &str) {
    add_problem(
        p,
        path,
        format!("The JSON value could not be converted to System.Guid. Path: {path}"),
    );
}

/// A `Guid?` property: absent or null is `None`.
fn json_guid(m: &serde_json::Map<String, Value>, name: &str, p: &mut Problems) -> Option<String> {
    match prop(m, name)? {
        Value::Null => None,
        Value::String(s) => {
            let g = parse_json_guid(s);
            if g.is_none() {
                guid_problem(p, &format!("$.{name}"));
            }
            g
        }
        _ => {
            guid_problem(p, &format!("$.{name}"));
            None
        }
    }
}

/// A `Guid[]?` property: absent or null is `None`.
fn json_guids(
    m: &serde_json::Map<String, Value>,
    name: &str,
    p: &mut Problems,
) -> Option<Vec<String>> {
    match prop(m, name)? {
        Value::Null => None,
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                match v.as_str().and_then(parse_json_guid) {
                    Some(g) => out.push(g),
                    None => guid_problem(p, &format!("$.{name}[{i}]")),
                }
            }
            Some(out)
        }
        _ => {
            add_problem(
                p,
                &format!("$.{name}"),
                format!(
                    "The JSON value could not be converted to System.Collections.Generic.IEnumerable`1[System.Guid]. Path: $.{name}"
                ),
            );
            None
        }
    }
}

/// A `string?` property: absent or null is `None`.
fn json_string(m: &serde_json::Map<String, Value>, name: &str, p: &mut Problems) -> Option<String> {
    match prop(m, name)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        _ => {
            add_problem(
                p,
                &format!("$.{name}"),
                format!("The JSON value could not be converted to System.String. Path: $.{name}"),
            );
            None
        }
    }
}

/// `[StringLength(128)]` on a group name.
fn check_name_length(name: &str, p: &mut Problems) {
    if name.chars().count() > 128 {
        add_problem(
            p,
            "GroupName",
            "The field GroupName must be a string with a maximum length of 128.".into(),
        );
    }
}

fn blank_name() -> Outcome {
    Outcome::Error(ApiError::argument(
        "The value cannot be an empty string or composed entirely of whitespace. (Parameter 'groupName')",
    ))
}

// ---------------------------------------------------------------------------------------------
// DTOs from the state

fn employee(st: &State, u: &User, ctx: &Ctx<'_>) -> Employee {
    let mut groups: Vec<&state::Group> = ctx.groups_of(st, &u.id);
    groups.sort_by(|a, b| title_order(&a.name, &b.name).then_with(|| a.id.cmp(&b.id)));
    let groups: Vec<GroupSummary> = groups.iter().map(|g| summary(st, g, ctx)).collect();
    let display = format!("{} {}", u.first_name, u.last_name)
        .trim()
        .to_owned();
    let avatar = |size: &str| format!("/static/images/default_user_photo_size_{size}.png");
    Employee {
        id: u.id.clone(),
        display_name: display,
        avatar: avatar("82-82"),
        avatar_original: avatar("200-200"),
        avatar_max: avatar("200-200"),
        avatar_medium: avatar("48-48"),
        avatar_small: avatar("32-32"),
        profile_url: format!(
            "{}/accounts/people/filter?search={}",
            ctx.base_url,
            form_urlencoded::byte_serialize(u.email.as_bytes()).collect::<String>()
        ),
        has_avatar: false,
        is_anonim: false,
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        user_name: u.user_name().to_owned(),
        email: u.email.clone(),
        status: u.status.code(),
        activation_status: match u.status {
            Status::Pending => 2,
            _ => 1,
        },
        groups: (!groups.is_empty()).then_some(groups),
        registration_date: "2024-01-01T00:00:00.0000000+00:00".to_owned(),
        is_admin: u.kind.is_admin(),
        is_room_admin: u.kind == UserType::RoomAdmin,
        is_ldap: false,
        is_owner: u.kind == UserType::Owner,
        is_visitor: u.kind == UserType::Guest,
        is_collaborator: u.kind == UserType::User,
        is_sso: false,
    }
}

fn summary(st: &State, g: &state::Group, ctx: &Ctx<'_>) -> GroupSummary {
    GroupSummary {
        id: g.id.clone(),
        name: g.name.clone(),
        manager: g
            .manager
            .as_deref()
            .and_then(|m| ctx.user(st, m))
            .map(|u| u.user_name().to_owned()),
        is_system: None,
    }
}

/// The members `GetUsersByGroupAsync` lists (see `terminated_members`), in joining order.
fn listed_members<'a>(st: &'a State, g: &state::Group) -> Vec<&'a User> {
    listed_members_in(st, g, &Ctx::new(""))
}

/// `listed_members`, finding users through the context's index when it has one.
fn listed_members_in<'a>(st: &'a State, g: &state::Group, ctx: &Ctx<'_>) -> Vec<&'a User> {
    g.members
        .iter()
        .filter_map(|m| ctx.user(st, m))
        .filter(|u| {
            st.terminated_members == TerminatedMembers::Show || u.status != Status::Terminated
        })
        .collect()
}

fn group_dto(st: &State, g: &state::Group, include_members: bool, ctx: &Ctx<'_>) -> wire::Group {
    let members = listed_members_in(st, g, ctx);
    wire::Group {
        name: g.name.clone(),
        parent: NIL_UUID.to_owned(),
        category: NIL_UUID.to_owned(),
        id: g.id.clone(),
        is_ldap: false,
        is_system: None,
        manager: g
            .manager
            .as_deref()
            .and_then(|m| ctx.user(st, m))
            .map(|u| employee(st, u, ctx)),
        members: include_members.then(|| members.iter().map(|u| employee(st, u, ctx)).collect()),
        shared: None,
        members_count: members.len(),
    }
}

fn group_outcome(st: &State, id: &str, ctx: &Ctx<'_>) -> Outcome {
    match st.group(id) {
        Some(g) => Outcome::ok(Payload::Group(Box::new(group_dto(st, g, true, ctx)))),
        None => Outcome::Error(ApiError::group_not_found()),
    }
}

/// Titles compare ignoring case, then as written.
fn title_order(a: &str, b: &str) -> Ordering {
    a.to_lowercase()
        .cmp(&b.to_lowercase())
        .then_with(|| a.cmp(b))
}

/// `startIndex`/`count` paging: negative offsets count as 0.
fn page<T>(items: Vec<T>, start: i64, count: Option<i64>) -> Vec<T> {
    let start = usize::try_from(start.max(0)).unwrap_or(usize::MAX);
    let it = items.into_iter().skip(start);
    match count {
        Some(c) => it
            .take(usize::try_from(c.max(0)).unwrap_or(usize::MAX))
            .collect(),
        None => it.collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Groups: reads

fn list_groups(st: &State, caller: &Caller, q: &Query<'_>, ctx: &Ctx<'_>) -> Step<Outcome> {
    let mut p = Problems::new();
    let count = q.int("count", 100, &mut p);
    if !p.contains_key("count") && !(1..=100).contains(&count) {
        add_problem(
            &mut p,
            "count",
            "The field count must be between 1 and 100.".into(),
        );
    }
    let start = q.int("startIndex", 0, &mut p);
    let user = q.guid("userId", &mut p);
    let manager = q.bool("manager", &mut p).unwrap_or(false);
    let descending = q.descending(&mut p);
    invalid_if_any(p)?;
    demand_read(caller)?;
    let filter = q.filter();
    let mut groups: Vec<&state::Group> = st
        .groups
        .iter()
        .filter(|g| {
            filter
                .as_ref()
                .is_none_or(|f| g.name.to_lowercase().contains(f.as_str()))
        })
        .filter(|g| match &user {
            None => true,
            Some(u) if manager => g.manager.as_deref() == Some(u.as_str()),
            Some(u) => g.members.contains(u),
        })
        .collect();
    let sort_by = q.get("sortBy").unwrap_or("").trim().to_ascii_lowercase();
    let manager_name = |g: &state::Group| {
        g.manager
            .as_deref()
            .and_then(|m| st.user(m))
            .map(|u| u.first_name.to_lowercase())
            .unwrap_or_default()
    };
    groups.sort_by(|a, b| {
        let primary = match sort_by.as_str() {
            "manager" => manager_name(a).cmp(&manager_name(b)),
            "memberscount" => listed_members(st, a)
                .len()
                .cmp(&listed_members(st, b).len()),
            _ => Ordering::Equal,
        };
        let o = primary
            .then_with(|| title_order(&a.name, &b.name))
            .then_with(|| a.id.cmp(&b.id));
        if descending { o.reverse() } else { o }
    });
    let total = groups.len();
    let dtos: Vec<wire::Group> = page(groups, start, Some(count))
        .into_iter()
        .map(|g| group_dto(st, g, false, ctx))
        .collect();
    Ok(Outcome::Ok {
        count: Some(dtos.len()),
        total: Some(total),
        payload: Payload::Groups(dtos),
    })
}

fn get_group(st: &State, caller: &Caller, id: &str, q: &Query<'_>, ctx: &Ctx<'_>) -> Step<Outcome> {
    let mut p = Problems::new();
    let include = q.bool("includeMembers", &mut p).unwrap_or(true);
    invalid_if_any(p)?;
    demand_read(caller)?;
    let g = st
        .group(id)
        .ok_or_else(|| Outcome::Error(ApiError::group_not_found()))?;
    Ok(Outcome::ok(Payload::Group(Box::new(group_dto(
        st, g, include, ctx,
    )))))
}

fn groups_of_user(st: &State, caller: &Caller, user: &str) -> Step<Outcome> {
    demand_read(caller)?;
    let mut groups: Vec<&state::Group> = st
        .groups
        .iter()
        .filter(|g| g.members.iter().any(|m| m == user))
        .collect();
    groups.sort_by(|a, b| title_order(&a.name, &b.name).then_with(|| a.id.cmp(&b.id)));
    Ok(Outcome::ok(Payload::Summaries(
        groups
            .iter()
            .map(|g| summary(st, g, &Ctx::new("")))
            .collect(),
    )))
}

// ---------------------------------------------------------------------------------------------
// Groups: writes

/// Can `id` join a group or manage it (`TransferUserToDepartmentAsync`)?
fn joinable(st: &State, id: &str) -> bool {
    id != NIL_UUID && st.user(id).is_some_and(User::joinable)
}

/// Add `user` to `group` (no duplicate); `manager` also makes them its manager.
fn transfer(st: &mut State, group: &str, user: &str, manager: bool) {
    if !joinable(st, user) {
        return;
    }
    let Some(g) = st.group_mut(group) else { return };
    if manager {
        g.manager = Some(user.to_owned());
    }
    if !g.members.iter().any(|m| m == user) {
        g.members.push(user.to_owned());
    }
}

/// Take `user` out of `group`; a manager loses the role too (reference §6). Unknown users and
/// non-members are a no-op.
fn remove_from(st: &mut State, group: &str, user: &str) {
    if user == NIL_UUID || st.user(user).is_none() {
        return;
    }
    let Some(g) = st.group_mut(group) else { return };
    g.members.retain(|m| m != user);
    if g.manager.as_deref() == Some(user) {
        g.manager = None;
    }
}

fn create_group(
    st: &mut State,
    caller: &Caller,
    req: &Request<'_>,
    ctx: &Ctx<'_>,
    new_id: &mut dyn FnMut() -> String,
) -> Step<Outcome> {
    let body = body_object(req)?;
    let mut p = Problems::new();
    let name = json_string(&body, "groupName", &mut p);
    let manager = json_guid(&body, "groupManager", &mut p);
    let members = json_guids(&body, "members", &mut p).unwrap_or_default();
    if !p.keys().any(|k| k == "$.groupName") {
        match &name {
            None => add_problem(
                &mut p,
                "GroupName",
                "The GroupName field is required.".into(),
            ),
            Some(n) if n.is_empty() => add_problem(
                &mut p,
                "GroupName",
                "The GroupName field is required.".into(),
            ),
            Some(n) => check_name_length(n, &mut p),
        }
    }
    invalid_if_any(p)?;
    demand_write(caller)?;
    let name = name.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(blank_name());
    }
    let manager = manager.filter(|m| m != NIL_UUID);
    // Every listed user must be able to join; validation runs before anything is created.
    if manager.iter().chain(&members).any(|u| !joinable(st, u)) {
        return Err(Outcome::Error(ApiError {
            kind: wire::ErrorKind::Argument,
            message: "The user could not be found".into(),
        }));
    }
    let id = loop {
        let id = new_id();
        if st.group(&id).is_none() && st.user(&id).is_none() {
            break id;
        }
    };
    st.groups.push(state::Group {
        id: id.clone(),
        name,
        manager: None,
        members: Vec::new(),
    });
    if let Some(m) = &manager {
        transfer(st, &id, m, true);
    }
    for m in &members {
        transfer(st, &id, m, false);
    }
    Ok(group_outcome(st, &id, ctx))
}

fn update_group(
    st: &mut State,
    caller: &Caller,
    req: &Request<'_>,
    ctx: &Ctx<'_>,
) -> Step<Outcome> {
    let id = &req.params[0];
    let body = body_object(req)?;
    let mut p = Problems::new();
    let name = json_string(&body, "groupName", &mut p);
    let manager = json_guid(&body, "groupManager", &mut p);
    let add = json_guids(&body, "membersToAdd", &mut p).unwrap_or_default();
    let remove = json_guids(&body, "membersToRemove", &mut p).unwrap_or_default();
    if let Some(n) = &name {
        check_name_length(n, &mut p);
    }
    invalid_if_any(p)?;
    demand_write(caller)?;
    if st.group(id).is_none() {
        return Err(Outcome::Error(ApiError::group_not_found()));
    }
    // 1. Rename. 2. Manager (absent, empty GUID or a user who cannot join: skipped). 3. Add.
    // 4. Remove.
    if let Some(n) = name {
        if n.trim().is_empty() {
            return Err(blank_name());
        }
        if let Some(g) = st.group_mut(id) {
            g.name = n;
        }
    }
    if let Some(m) = manager {
        transfer(st, id, &m, true);
    }
    for m in &add {
        transfer(st, id, m, false);
    }
    for m in &remove {
        remove_from(st, id, m);
    }
    Ok(group_outcome(st, id, ctx))
}

fn delete_group(st: &mut State, caller: &Caller, id: &str) -> Step<Outcome> {
    demand_write(caller)?;
    if st.group(id).is_none() {
        return Err(Outcome::Error(ApiError::group_not_found()));
    }
    st.groups.retain(|g| g.id != id);
    Ok(Outcome::NoContent)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Replace,
    Remove,
}

fn members_change(
    st: &mut State,
    caller: &Caller,
    req: &Request<'_>,
    ctx: &Ctx<'_>,
    change: Change,
) -> Step<Outcome> {
    let id = &req.params[0];
    let body = body_object(req)?;
    let mut p = Problems::new();
    let members = json_guids(&body, "members", &mut p).unwrap_or_default();
    invalid_if_any(p)?;
    demand_write(caller)?;
    if st.group(id).is_none() {
        return Err(Outcome::Error(ApiError::group_not_found()));
    }
    match change {
        Change::Add => {
            for m in &members {
                transfer(st, id, m, false);
            }
        }
        Change::Remove => {
            for m in &members {
                remove_from(st, id, m);
            }
        }
        Change::Replace => {
            let mut seen = std::collections::BTreeSet::new();
            let valid: Vec<&String> = members
                .iter()
                .filter(|m| joinable(st, m) && seen.insert(m.as_str()))
                .collect();
            if valid.is_empty() {
                return Err(Outcome::Error(ApiError::argument("Members")));
            }
            let current: Vec<String> = st
                .group(id)
                .map(|g| listed_members(st, g).iter().map(|u| u.id.clone()).collect())
                .unwrap_or_default();
            for m in &current {
                remove_from(st, id, m);
            }
            for m in valid {
                transfer(st, id, m, false);
            }
        }
    }
    Ok(group_outcome(st, id, ctx))
}

fn set_manager(st: &mut State, caller: &Caller, req: &Request<'_>, ctx: &Ctx<'_>) -> Step<Outcome> {
    let id = &req.params[0];
    let body = body_object(req)?;
    let mut p = Problems::new();
    let user = match prop(&body, "userId") {
        None | Some(Value::Null) => {
            add_problem(&mut p, "userId", "The userId field is required.".into());
            None
        }
        Some(_) => json_guid(&body, "userId", &mut p),
    };
    invalid_if_any(p)?;
    demand_write(caller)?;
    if st.group(id).is_none() {
        return Err(Outcome::Error(ApiError::group_not_found()));
    }
    let user = user.unwrap_or_default();
    if user == NIL_UUID || st.user(&user).is_none() {
        return Err(Outcome::Error(ApiError::user_not_found()));
    }
    // A guest or terminated user: 200, nothing changes.
    transfer(st, id, &user, true);
    Ok(group_outcome(st, id, ctx))
}

fn move_members(
    st: &mut State,
    caller: &Caller,
    req: &Request<'_>,
    ctx: &Ctx<'_>,
) -> Step<Outcome> {
    let (from, to) = (&req.params[0], &req.params[1]);
    demand_write(caller)?;
    let Some(g) = st.group(from) else {
        return Err(Outcome::Error(ApiError::group_not_found()));
    };
    if st.group(to).is_none() {
        return Err(Outcome::Error(ApiError::group_not_found()));
    }
    let users: Vec<String> = listed_members(st, g).iter().map(|u| u.id.clone()).collect();
    for u in &users {
        transfer(st, to, u, false);
        remove_from(st, from, u);
    }
    Ok(group_outcome(st, to, ctx))
}

// ---------------------------------------------------------------------------------------------
// People

/// A user or guest may see only themselves.
fn demand_view(caller: &Caller, target: &User) -> Step<()> {
    if caller.kind.is_admin() || caller.kind == UserType::RoomAdmin || caller.user == target.id {
        Ok(())
    } else {
        Err(deny())
    }
}

fn profile(st: &State, caller: &Caller, u: Option<&User>, ctx: &Ctx<'_>) -> Step<Outcome> {
    let u = u.ok_or_else(|| Outcome::Error(ApiError::user_not_found()))?;
    demand_view(caller, u)?;
    Ok(Outcome::ok(Payload::Employee(Box::new(employee(
        st, u, ctx,
    )))))
}

fn people_by_email(st: &State, caller: &Caller, q: &Query<'_>, ctx: &Ctx<'_>) -> Step<Outcome> {
    let email = q.get("email").map(str::trim).unwrap_or("");
    if email.is_empty() {
        let mut p = Problems::new();
        add_problem(&mut p, "email", "The Email field is required.".into());
        return Err(Outcome::Invalid(p));
    }
    let u = st
        .users
        .iter()
        .find(|u| u.email.eq_ignore_ascii_case(email));
    profile(st, caller, u, ctx)
}

fn people_get(st: &State, caller: &Caller, id: &str, ctx: &Ctx<'_>) -> Step<Outcome> {
    let u = match parse_guid(id) {
        Some(g) => st.user(&g),
        None => st
            .users
            .iter()
            .find(|u| u.user_name().eq_ignore_ascii_case(id)),
    };
    profile(st, caller, u, ctx)
}

fn people_self(st: &State, caller: &Caller, ctx: &Ctx<'_>) -> Step<Outcome> {
    profile(st, caller, st.user(&caller.user), ctx)
}

/// `GET people` (active users) and `GET people/filter` (`filter`: the extended filters).
fn people_list(
    st: &State,
    caller: &Caller,
    q: &Query<'_>,
    ctx: &Ctx<'_>,
    filter: bool,
) -> Step<Outcome> {
    let mut p = Problems::new();
    let count = q.int("count", 0, &mut p);
    let start = q.int("startIndex", 0, &mut p);
    let descending = q.descending(&mut p);
    let (status, activation, group, kind, admins) = if filter {
        (
            q.choice(
                "employeeStatus",
                &[("active", 1), ("terminated", 2), ("pending", 4), ("all", 7)],
                &mut p,
            ),
            q.choice(
                "activationStatus",
                &[("notactivated", 0), ("activated", 1), ("pending", 2)],
                &mut p,
            ),
            q.guid("groupId", &mut p),
            q.choice(
                "employeeType",
                &[
                    ("all", 0),
                    ("roomadmin", 1),
                    ("guest", 2),
                    ("docspaceadmin", 3),
                    ("user", 4),
                ],
                &mut p,
            ),
            q.bool("isAdministrator", &mut p),
        )
    } else {
        (Some(1), None, None, None, None)
    };
    invalid_if_any(p)?;
    demand_read(caller)?;
    let text = q.filter();
    // Without employeeStatus the filter lists active and pending users (`EmployeeStatus.Default`).
    let status_mask = status.unwrap_or(1 | 4);
    let mut users: Vec<&User> = st
        .users
        .iter()
        .filter(|u| i64::from(u.status.code()) & status_mask != 0)
        .filter(|u| {
            activation.is_none_or(|a| {
                a == match u.status {
                    Status::Pending => 2,
                    _ => 1,
                }
            })
        })
        .filter(|u| {
            group
                .as_ref()
                .is_none_or(|g| st.group(g).is_some_and(|g| g.members.contains(&u.id)))
        })
        .filter(|u| {
            kind.is_none_or(|k| {
                k == 0
                    || k == match u.kind {
                        UserType::RoomAdmin => 1,
                        UserType::Guest => 2,
                        UserType::Owner | UserType::Admin => 3,
                        UserType::User => 4,
                    }
            })
        })
        .filter(|u| admins.is_none_or(|a| a == u.kind.is_admin()))
        .filter(|u| {
            text.as_ref().is_none_or(|t| {
                [
                    &u.first_name,
                    &u.last_name,
                    &format!("{} {}", u.first_name, u.last_name),
                    &u.email,
                    &u.user_name().to_owned(),
                ]
                .iter()
                .any(|f| f.to_lowercase().contains(t.as_str()))
            })
        })
        .collect();
    users.sort_by(|a, b| {
        let key = |u: &User| format!("{} {}", u.first_name, u.last_name).to_lowercase();
        let o = key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id));
        if descending { o.reverse() } else { o }
    });
    let total = users.len();
    let dtos: Vec<Employee> = page(users, start, (count > 0).then_some(count))
        .into_iter()
        .map(|u| employee(st, u, ctx))
        .collect();
    Ok(Outcome::Ok {
        count: Some(dtos.len()),
        total: Some(total),
        payload: Payload::Employees(dtos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADA: &str = "00000000-0000-4000-8000-000000000001";
    const BO: &str = "00000000-0000-4000-8000-000000000002";
    const CY: &str = "00000000-0000-4000-8000-000000000003";
    const GUS: &str = "00000000-0000-4000-8000-000000000004";
    const G1: &str = "00000000-0000-4000-8000-0000000000a1";

    fn user(id: &str, name: &str, kind: UserType, status: Status) -> User {
        User {
            id: id.into(),
            email: format!("{}@example.com", name.to_lowercase()),
            first_name: name.into(),
            last_name: "X".into(),
            user_name: None,
            status,
            kind,
        }
    }

    fn portal() -> State {
        State {
            users: vec![
                user(ADA, "Ada", UserType::Owner, Status::Active),
                user(BO, "Bo", UserType::User, Status::Active),
                user(CY, "Cy", UserType::User, Status::Terminated),
                user(GUS, "Gus", UserType::Guest, Status::Active),
            ],
            groups: vec![state::Group {
                id: G1.into(),
                name: "Design".into(),
                manager: Some(BO.into()),
                members: vec![BO.into(), CY.into()],
            }],
            ..State::default()
        }
    }

    fn admin() -> Caller {
        Caller {
            user: ADA.into(),
            kind: UserType::Owner,
            scopes: None,
        }
    }

    /// Run `endpoint` with a JSON body; the changed state and the outcome.
    fn check(endpoint: Endpoint, params: &[&str], body: &str) -> (State, Outcome) {
        let mut st = portal();
        let params: Vec<String> = params.iter().map(|s| s.to_string()).collect();
        let req = Request {
            endpoint,
            params: &params,
            query: &[],
            body: body.as_bytes(),
            content_type: Some("application/json"),
        };
        let ctx = Ctx::new("http://h");
        let mut ids = 0;
        let out = write(&mut st, &admin(), &req, &ctx, &mut || {
            ids += 1;
            format!("00000000-0000-4000-8000-0000000000f{ids}")
        });
        (st, out)
    }

    fn members(st: &State, id: &str) -> (Option<String>, Vec<String>) {
        let g = st.group(id).unwrap();
        (g.manager.clone(), g.members.clone())
    }

    #[test]
    fn removing_the_manager_leaves_no_manager() {
        let body = format!(r#"{{"members":["{BO}","{BO}","{ADA}","{NIL_UUID}"]}}"#);
        let (st, out) = check(Endpoint::RemoveMembers, &[G1], &body);
        assert!(matches!(out, Outcome::Ok { .. }), "{out:?}");
        assert_eq!(members(&st, G1), (None, vec![CY.to_owned()]));
    }

    #[test]
    fn set_manager_rules() {
        let (st, _) = check(
            Endpoint::SetManager,
            &[G1],
            &format!(r#"{{"userId":"{ADA}"}}"#),
        );
        assert_eq!(
            members(&st, G1),
            (Some(ADA.into()), vec![BO.into(), CY.into(), ADA.into()])
        );
        for who in [GUS, CY] {
            let (st, out) = check(
                Endpoint::SetManager,
                &[G1],
                &format!(r#"{{"userId":"{who}"}}"#),
            );
            assert!(matches!(out, Outcome::Ok { .. }));
            assert_eq!(st, portal(), "{who}");
        }
        for body in [
            r#"{}"#,
            r#"{"userId":null}"#,
            r#"{"userId":""}"#,
            r#"{"userId":5}"#,
        ] {
            assert!(matches!(
                check(Endpoint::SetManager, &[G1], body).1,
                Outcome::Invalid(_)
            ));
        }
        let body = format!(r#"{{"userId":"{NIL_UUID}"}}"#);
        assert_eq!(
            check(Endpoint::SetManager, &[G1], &body).1,
            Outcome::Error(ApiError::user_not_found())
        );
    }

    #[test]
    fn replace_needs_one_valid_member() {
        let body = format!(r#"{{"members":["{GUS}","{CY}"]}}"#);
        let (st, out) = check(Endpoint::ReplaceMembers, &[G1], &body);
        assert_eq!(out, Outcome::Error(ApiError::argument("Members")));
        assert_eq!(st, portal());
        let body = format!(r#"{{"members":["{ADA}","{GUS}"]}}"#);
        let (st, _) = check(Endpoint::ReplaceMembers, &[G1], &body);
        // The listed members went (the manager with them); the hidden terminated one stays.
        assert_eq!(members(&st, G1), (None, vec![CY.into(), ADA.into()]));
    }

    #[test]
    fn create_validates_before_creating() {
        let body = format!(r#"{{"groupName":"New","groupManager":"{ADA}","members":["{GUS}"]}}"#);
        let (st, out) = check(Endpoint::CreateGroup, &[], &body);
        assert!(matches!(out, Outcome::Error(ref e) if e.status() == 400));
        assert_eq!(st, portal());
        let body = format!(r#"{{"groupName":"New","groupManager":"{ADA}","members":[]}}"#);
        let (st, _) = check(Endpoint::CreateGroup, &[], &body);
        let id = "00000000-0000-4000-8000-0000000000f1";
        assert_eq!(members(&st, id), (Some(ADA.into()), vec![ADA.into()]));
        for body in [r#"{"groupName":"   "}"#, r#"{"groupName":""}"#, r#"{}"#] {
            let (st, out) = check(Endpoint::CreateGroup, &[], body);
            assert_ne!(out, Outcome::NoContent);
            assert!(!matches!(out, Outcome::Ok { .. }), "{body}");
            assert_eq!(st, portal());
        }
    }

    #[test]
    fn move_members_skips_guests_and_clears_the_old_manager() {
        let mut st = portal();
        st.groups[0].members.push(GUS.into());
        st.groups.push(state::Group {
            id: "00000000-0000-4000-8000-0000000000a2".into(),
            name: "To".into(),
            manager: None,
            members: vec![],
        });
        let params = vec![
            G1.to_owned(),
            "00000000-0000-4000-8000-0000000000a2".to_owned(),
        ];
        let req = Request {
            endpoint: Endpoint::MoveMembers,
            params: &params,
            query: &[],
            body: b"",
            content_type: None,
        };
        let out = write(&mut st, &admin(), &req, &Ctx::new(""), &mut String::new);
        assert!(matches!(out, Outcome::Ok { .. }));
        assert_eq!(members(&st, G1), (None, vec![CY.into()]));
        assert_eq!(members(&st, &params[1]), (None, vec![BO.into()]));
    }
}
