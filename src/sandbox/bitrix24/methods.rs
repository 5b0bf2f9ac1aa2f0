//! The emulated REST methods (reference §1, §2; rules §1–§4): `sonet_group.*`, `user.get`,
//! `user.current`, `user.admin`, `socialnetwork.api.workgroup.get`, `department.get` and
//! `department.fields`. Each takes the caller,
//! the parsed PHP parameters and the portal state, and returns a PHP result value or a REST
//! error. Checks run in the order the references list them, with their exact texts. Which
//! scope a method needs is said here ([`scopes_for`]); the server enforces it.
//!
//! Pure: no HTTP, no clock, no file I/O; `batch` and the envelope live elsewhere.
//!
//! Parameter keys: `user.get` normalises case itself (`array_change_key_case`), so any case
//! works there, as on the portal. The real `sonet_group.*` handlers read `$arFields['GROUP_ID']`
//! verbatim (src SONET), so only the documented upper-case keys (`ID`, `GROUP_ID`, `USER_ID`,
//! `ROLE`, `MESSAGE`, `ORDER`, `FILTER`, `IS_ADMIN`) are read here too: `group_id` is ignored,
//! exactly as on a portal, where it reads as a missing parameter.
//!
//! Fidelity notes (source: `CSocNetLogRestService`, see the reference): `USER_ID` as a scalar
//! must be `intval > 0`, as an array only non-empty; `add` returns existing users once each in ID
//! order (the intranet user lookup); `update`/`delete` walk relations in relation order;
//! `invite` and `sonet_group.get` (without `IS_ADMIN=Y`) apply CHECK_PERMISSIONS to admins too;
//! `invite` then needs the group's `INITIATE_PERMS` (or a portal admin) and checks only that
//! each target exists, never ACTIVE; `setowner` is the owner's alone (rules §4, unless
//! `portal.setowner_admin: allow`) and also checks only existence.

use super::params::{self, Params, Value, list, obj, s};
use super::state::{
    BareEmail, Department, Group, InactiveMembers, Initiator, Member, NoDepartment, PastEnd,
    Portal, Role, SetOwnerAdmin, State, User,
};

/// Page size of every list method (`IRestService::LIST_LIMIT`).
pub const PAGE: i64 = 50;

/// Fixed dates reported for groups (the state file keeps none).
const GROUP_DATE: &str = "2024-01-01T00:00:00+00:00";

/// Who is calling: the webhook's or the access token's user, and what its scopes let it see.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user: i64,
    pub admin: bool,
    /// Whether the scopes allow the `EMAIL` user field ([`sees_emails`]).
    pub emails: bool,
}

/// A successful call: the handler's result plus the navigation keys the server lifts to the
/// top level of the envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub result: Value,
    pub total: Option<i64>,
    pub next: Option<i64>,
}

impl Output {
    fn plain(result: Value) -> Self {
        Output {
            result,
            total: None,
            next: None,
        }
    }
}

/// A REST error: HTTP status, `error` code and `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub description: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, description: &str) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            description: description.to_owned(),
        }
    }

    /// `new RestException('text')`: empty code, HTTP 400.
    fn sonet(description: &str) -> Self {
        ApiError::new(400, "", description)
    }

    pub fn method_not_found() -> Self {
        ApiError::new(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
    }
}

/// The methods this emulator knows (lowercase), `batch` excluded.
pub const METHODS: &[&str] = &[
    "sonet_group.get",
    "sonet_group.user.get",
    "sonet_group.user.add",
    "sonet_group.user.invite",
    "sonet_group.user.update",
    "sonet_group.user.delete",
    "sonet_group.setowner",
    "user.get",
    "user.current",
    "user.admin",
    "socialnetwork.api.workgroup.get",
    "department.get",
    "department.fields",
];

pub fn is_known(method: &str) -> bool {
    METHODS.contains(&method)
}

/// The scopes of which a webhook or token needs one to call `method` (rules §2.4, §1.5;
/// reference §2); empty for methods of the `basic` scope (`user.admin`) and `batch`, which
/// every caller may use.
pub fn scopes_for(method: &str) -> &'static [&'static str] {
    if method == "user.admin" {
        &[]
    } else if method.starts_with("sonet_group.") {
        &["sonet_group", "socialnetwork"]
    } else if method.starts_with("socialnetwork.api.") {
        &["socialnetwork"]
    } else if method.starts_with("user.") {
        &["user", "user_basic", "user_brief"]
    } else if method.starts_with("department.") {
        // rules §1.1, §1.7 [src INTR `OnRestServiceBuildDescription` key `department`].
        &["department"]
    } else {
        &[]
    }
}

/// Whether a webhook or token with `scopes` (`None`: every scope) may see users' e-mails:
/// `user_brief` allows the name fields, `ACTIVE` and `UF_DEPARTMENT` but not `EMAIL`, which
/// `user_basic` adds and `user` includes (rules §1.5 "Scopes", src USR
/// `ALLOWED_USER_NAME_FIELDS`, `ALLOWED_USER_BASIC_FIELDS`, `getAllowedUserFields`). Without
/// it `user.get` and `user.current` answer without `EMAIL`, and a filter on it is ignored
/// like any key on a field the scope does not allow (reference §2.1 "unknown keys are
/// silently ignored").
pub fn sees_emails(scopes: Option<&[String]>) -> bool {
    scopes.is_none_or(|s| s.iter().any(|x| x == "user" || x == "user_basic"))
}

/// Run one method (lowercase name) against `state`.
pub fn call(
    state: &mut State,
    caller: Caller,
    method: &str,
    params: &Params,
) -> Result<Output, ApiError> {
    // The server takes `start` out of the parameters itself (`intval`).
    let start = params::get(params, "start").map(Value::intval).unwrap_or(0);
    let without_start: Params;
    let rest: &Params = if params::get(params, "start").is_some() {
        without_start = params
            .iter()
            .filter(|(k, _)| k != "start")
            .cloned()
            .collect();
        &without_start
    } else {
        params
    };
    match method {
        "sonet_group.get" => sonet_group_get(state, caller, rest, start),
        "sonet_group.user.get" => group_user_get(state, caller, rest),
        "sonet_group.user.add" => group_user_add(state, caller, rest),
        "sonet_group.user.invite" => group_user_invite(state, caller, rest),
        "sonet_group.user.update" => group_user_update(state, caller, rest),
        "sonet_group.user.delete" => group_user_delete(state, caller, rest),
        "sonet_group.setowner" => set_owner(state, caller, rest),
        "user.get" => user_get(state, caller, &params::change_key_case(rest, false), start),
        "user.current" => user_current(state, caller),
        "user.admin" => Ok(Output::plain(Value::Bool(caller.admin))),
        "socialnetwork.api.workgroup.get" => workgroup_get(state, caller, rest),
        "department.get" => department_get(state, rest, start),
        "department.fields" => Ok(Output::plain(department_fields())),
        _ => Err(ApiError::method_not_found()),
    }
}

fn int_param(p: &Params, key: &str) -> i64 {
    params::get(p, key).map(Value::intval).unwrap_or(0)
}

/// `USER_ID` as an int, a numeric string or an array of them, checked as the handlers do:
/// a scalar must be `intval > 0`, an array must be non-empty (its elements are not checked;
/// bad ones simply match nobody). `None` means `Wrong user IDs`. Each entry keeps the value
/// as it arrived, for `invite`, which echoes its input.
fn user_ids(p: &Params) -> Option<Vec<(i64, Value)>> {
    match params::get(p, "USER_ID").unwrap_or(&Value::Null) {
        Value::Arr(a) if a.is_empty() => None,
        Value::Arr(a) => Some(a.iter().map(|(_, v)| (v.intval(), v.clone())).collect()),
        v if v.intval() <= 0 => None,
        v => Some(vec![(v.intval(), v.clone())]),
    }
}

fn yn(b: bool) -> Value {
    s(if b { "Y" } else { "N" })
}

/// Can `caller` see `group` (the CHECK_PERMISSIONS rule)? Admins see everything.
fn sees(caller: Caller, g: &Group) -> bool {
    caller.admin || g.visible_to(caller.user)
}

// ---------------------------------------------------------------------------------------------
// sonet_group.get

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Num(i64),
    Text(String),
}

/// The fields [`group_field`] knows.
const GROUP_FIELDS: &[&str] = &[
    "ID",
    "NAME",
    "DESCRIPTION",
    "OWNER_ID",
    "ACTIVE",
    "VISIBLE",
    "OPENED",
    "CLOSED",
    "PROJECT",
    "SITE_ID",
    "SUBJECT_ID",
    "IS_EXTRANET",
];

fn group_field(g: &Group, name: &str) -> Option<Field> {
    Some(match name {
        "ID" => Field::Num(g.id),
        "NAME" => Field::Text(g.name.clone()),
        "DESCRIPTION" => Field::Text(g.description.clone()),
        "OWNER_ID" => Field::Num(g.owner().unwrap_or(0)),
        "ACTIVE" => Field::Text(yn_str(g.active)),
        "VISIBLE" => Field::Text(yn_str(g.visible)),
        "OPENED" => Field::Text(yn_str(g.opened)),
        "CLOSED" => Field::Text("N".to_owned()),
        "PROJECT" => Field::Text(yn_str(g.project)),
        "SITE_ID" => Field::Text("s1".to_owned()),
        "SUBJECT_ID" => Field::Num(1),
        // A site filter on the portal (reference §1.2, "sonet_group.get FILTER"): every
        // sandbox group is on the intranet site, so `Y` matches none and `N` all.
        "IS_EXTRANET" => Field::Text("N".to_owned()),
        _ => return None,
    })
}

fn yn_str(b: bool) -> String {
    if b { "Y" } else { "N" }.to_owned()
}

/// The prefixes `checkGroupFilter` accepts; keys with any other prefix are dropped.
const GROUP_FILTER_PREFIXES: &[&str] = &[
    "", "!", "<", "<=", ">", ">=", "><", "!><", "?", "=", "!=", "%", "!%",
];

/// Split `>=ID` into (`>=`, `ID`): the prefix is the leading run of non-word characters.
fn split_prefix(key: &str) -> (&str, &str) {
    let cut = key
        .find(|c: char| c.is_alphanumeric() || c == '_')
        .unwrap_or(key.len());
    (&key[..cut], &key[cut..])
}

fn cmp_field(f: &Field, v: &Value) -> std::cmp::Ordering {
    match f {
        Field::Num(n) => n.cmp(&v.intval()),
        Field::Text(t) => t.to_lowercase().cmp(&v.to_php_string().to_lowercase()),
    }
}

fn eq_field(f: &Field, v: &Value) -> bool {
    match v {
        Value::Arr(a) => a.iter().any(|(_, x)| eq_field(f, x)),
        _ => cmp_field(f, v).is_eq(),
    }
}

fn contains_ci(hay: &Field, needle: &Value) -> bool {
    let h = match hay {
        Field::Num(n) => n.to_string(),
        Field::Text(t) => t.to_lowercase(),
    };
    h.contains(&needle.to_php_string().to_lowercase())
}

fn group_filter_match(f: &Field, op: &str, v: &Value) -> bool {
    use std::cmp::Ordering::*;
    let between = || match v {
        Value::Arr(a) if a.len() >= 2 => {
            cmp_field(f, &a[0].1) != Less && cmp_field(f, &a[1].1) != Greater
        }
        _ => false,
    };
    match op {
        "" | "=" => eq_field(f, v),
        "!" | "!=" => !eq_field(f, v),
        "<" => cmp_field(f, v) == Less,
        "<=" => cmp_field(f, v) != Greater,
        ">" => cmp_field(f, v) == Greater,
        ">=" => cmp_field(f, v) != Less,
        "><" => between(),
        "!><" => !between(),
        "%" | "?" => contains_ci(f, v),
        "!%" => !contains_ci(f, v),
        _ => true,
    }
}

fn group_json(g: &Group) -> Value {
    let members = g.members.iter().filter(|m| m.role.is_member()).count();
    obj([
        ("ID", s(g.id.to_string())),
        ("SITE_ID", s("s1")),
        ("NAME", s(g.name.clone())),
        ("DESCRIPTION", s(g.description.clone())),
        ("DATE_CREATE", s(GROUP_DATE)),
        ("DATE_UPDATE", s(GROUP_DATE)),
        ("ACTIVE", yn(g.active)),
        ("VISIBLE", yn(g.visible)),
        ("OPENED", yn(g.opened)),
        ("CLOSED", s("N")),
        ("SUBJECT_ID", s("1")),
        ("OWNER_ID", s(g.owner().unwrap_or(0).to_string())),
        ("KEYWORDS", s("")),
        ("NUMBER_OF_MEMBERS", s(members.to_string())),
        ("DATE_ACTIVITY", s(GROUP_DATE)),
        ("SUBJECT_NAME", s("Workgroups")),
        ("PROJECT", yn(g.project)),
    ])
}

fn sonet_group_get(
    state: &State,
    caller: Caller,
    p: &Params,
    start: i64,
) -> Result<Output, ApiError> {
    let mut filters: Vec<(String, String, Value)> = Vec::new();
    if let Some(Value::Arr(f)) = params::get(p, "FILTER") {
        for (k, v) in f {
            // checkGroupFilter: `^([^a-zA-Z]*)(.*)`.
            let cut = k.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(k.len());
            let (op, field) = (&k[..cut], k[cut..].to_uppercase());
            // Unknown fields match everything; dropping them here keeps a FILTER of many keys
            // from costing (keys × groups).
            if !GROUP_FILTER_PREFIXES.contains(&op)
                || field == "CHECK_PERMISSIONS"
                || !GROUP_FIELDS.contains(&field.as_str())
            {
                continue;
            }
            filters.push((op.to_owned(), field, v.clone()));
        }
    }
    if let Some(gid) = params::get(p, "GROUP_ID")
        .map(Value::intval)
        .filter(|g| *g > 0)
    {
        filters.push(("=".to_owned(), "ID".to_owned(), Value::Int(gid)));
    }
    // IS_ADMIN=Y skips the permission check, for admins only; everyone else (admins too,
    // without IS_ADMIN) sees visible groups and groups they belong to.
    let is_admin_mode =
        caller.admin && params::get(p, "IS_ADMIN").is_some_and(|v| v.to_php_string() == "Y");
    let mut rows: Vec<&Group> = state
        .groups
        .iter()
        .filter(|g| is_admin_mode || g.visible_to(caller.user))
        .filter(|g| {
            filters
                .iter()
                .all(|(op, field, v)| match group_field(g, field) {
                    Some(f) => group_filter_match(&f, op, v),
                    None => true, // unknown fields are ignored
                })
        })
        .collect();

    // ORDER: {"ID":"DESC"} unless an array is given (an empty one means no order); unknown
    // fields are ignored; ties fall back to ID ascending.
    let mut order: Vec<(String, bool)> = Vec::new();
    match params::get(p, "ORDER") {
        Some(Value::Arr(o)) => {
            for (k, v) in o {
                let field = k.to_uppercase();
                if GROUP_FIELDS.contains(&field.as_str()) {
                    let desc = v.to_php_string().eq_ignore_ascii_case("desc");
                    order.push((field, desc));
                }
            }
        }
        _ => order.push(("ID".to_owned(), true)),
    }
    rows.sort_by(|a, b| {
        for (field, desc) in &order {
            let (Some(fa), Some(fb)) = (group_field(a, field), group_field(b, field)) else {
                continue;
            };
            let ord = match (&fa, &fb) {
                (Field::Num(x), Field::Num(y)) => x.cmp(y),
                (Field::Text(x), Field::Text(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
                _ => std::cmp::Ordering::Equal,
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        a.id.cmp(&b.id)
    });

    let nav = legacy_nav(rows.len(), start, state.portal.sonet_group_get_past_end);
    let page: Vec<Value> = rows[nav.from..nav.to]
        .iter()
        .map(|g| group_json(g))
        .collect();
    Ok(Output {
        result: list(page),
        total: Some(nav.total),
        next: nav.next,
    })
}

/// One page of a legacy (non-ORM) list: rows `from..to`, `total` and `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Nav {
    from: usize,
    to: usize,
    total: i64,
    next: Option<i64>,
}

/// Legacy page navigation over `n` rows (reference §1.2 "sonet_group.get pagination", rules
/// §1.1 "Paging"; src SRV `IRestService::getNavData/setNavData`): page = `floor(start/50)+1`,
/// `next` = `page*50` while pages remain, `total` the record count. `start < 0` is
/// `nTopCount`: the first 50, no navigation, `total` the page's length. A page past the end
/// is the last page or empty (`portal.sonet_group_get_past_end`, UNCONFIRMED).
fn legacy_nav(n: usize, start: i64, past_end: PastEnd) -> Nav {
    let page = PAGE as usize;
    if start < 0 {
        let to = n.min(page);
        return Nav {
            from: 0,
            to,
            total: to as i64,
            next: None,
        };
    }
    let total = n as i64;
    let pages = (total + PAGE - 1) / PAGE;
    let mut page_no = start / PAGE + 1;
    if page_no > pages && past_end == PastEnd::LastPage {
        page_no = pages.max(1);
    }
    let from = usize::try_from((page_no - 1) * PAGE)
        .unwrap_or(usize::MAX)
        .min(n);
    let to = from.saturating_add(page).min(n);
    let next = page_no.checked_mul(PAGE).filter(|x| *x < total);
    Nav {
        from,
        to,
        total,
        next,
    }
}

// ---------------------------------------------------------------------------------------------
// sonet_group.user.*

fn group_user_get(state: &State, caller: Caller, p: &Params) -> Result<Output, ApiError> {
    let gid = int_param(p, "ID");
    if gid <= 0 {
        return Err(ApiError::sonet("Wrong socialnetwork group ID"));
    }
    let g = state
        .group(gid)
        .filter(|g| sees(caller, g))
        .ok_or_else(|| ApiError::sonet("Socialnetwork group not found"))?;
    let rows = g
        .members
        .iter()
        .filter(|m| m.role.is_member())
        .filter(|m| state.user(m.user).is_some_and(|u| u.active))
        .map(|m| {
            obj([
                ("USER_ID", s(m.user.to_string())),
                ("ROLE", s(m.role.code())),
            ])
        });
    Ok(Output::plain(list(rows)))
}

fn group_user_add(state: &mut State, caller: Caller, p: &Params) -> Result<Output, ApiError> {
    let gid = int_param(p, "GROUP_ID");
    if gid <= 0 {
        return Err(ApiError::sonet("Wrong group ID"));
    }
    if !caller.admin {
        return Err(ApiError::sonet("No permissions to add users"));
    }
    let ids = user_ids(p).ok_or_else(|| ApiError::sonet("Wrong user IDs"))?;
    if state.group(gid).is_none() {
        return Err(ApiError::sonet("Socialnetwork group not found"));
    }
    // The intranet user lookup (`@ID`) keeps existing users only, once each, in ID order.
    let mut wanted: Vec<i64> = ids
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| state.user(*id).is_some())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut added = Vec::new();
    let Some(g) = state.group_mut(gid) else {
        return Err(ApiError::sonet("Socialnetwork group not found"));
    };
    for id in wanted {
        if g.relation(id).is_some() {
            continue;
        }
        g.members.push(Member::new(id, Role::K));
        added.push(s(id.to_string()));
    }
    Ok(Output::plain(list(added)))
}

fn group_user_invite(state: &mut State, caller: Caller, p: &Params) -> Result<Output, ApiError> {
    let gid = int_param(p, "GROUP_ID");
    if gid <= 0 {
        return Err(ApiError::sonet("Wrong group ID"));
    }
    let ids = user_ids(p).ok_or_else(|| ApiError::sonet("Wrong user IDs"))?;
    // CHECK_PERMISSIONS is applied here even to admins (rules §3.1).
    let g = state
        .group(gid)
        .filter(|g| g.visible_to(caller.user))
        .ok_or_else(|| ApiError::sonet("Socialnetwork group not found"))?;
    // SendRequestToJoinGroup: the caller passes the group's INITIATE_PERMS, or is an admin.
    let may_invite = caller.admin
        || g.relation(caller.user)
            .is_some_and(|m| g.initiate_perms.allows(m.role));
    let message = params::get(p, "MESSAGE")
        .map(Value::to_php_string)
        .filter(|m| !m.is_empty());
    let mut invited = Vec::new();
    for (id, raw) in ids {
        // Existence only: nothing checks ACTIVE or USER_TYPE (rules §3.1).
        let exists = state.user(id).is_some();
        let Some(g) = state.group_mut(gid) else { break };
        if !may_invite || id == caller.user || !exists || g.relation(id).is_some() {
            continue;
        }
        g.members.push(Member {
            user: id,
            role: Role::Z,
            initiated_by: Some(Initiator::G),
            message: message.clone(),
        });
        invited.push(raw);
    }
    Ok(Output::plain(list(invited)))
}

fn group_user_update(state: &mut State, caller: Caller, p: &Params) -> Result<Output, ApiError> {
    let gid = int_param(p, "GROUP_ID");
    if gid <= 0 {
        return Err(ApiError::sonet("Wrong group ID"));
    }
    if !caller.admin {
        return Err(ApiError::sonet("No permissions to update users role"));
    }
    let role = match params::get(p, "ROLE").map(Value::to_php_string).as_deref() {
        Some("E") => Role::E,
        Some("K") => Role::K,
        _ => return Err(ApiError::sonet("Incorrect role code")),
    };
    let ids = user_ids(p).ok_or_else(|| ApiError::sonet("Wrong user IDs"))?;
    let g = state
        .group_mut(gid)
        .ok_or_else(|| ApiError::sonet("Socialnetwork group not found"))?;
    // The handler walks the group's relations (relation order), not the input list.
    let wanted: Vec<i64> = ids.iter().map(|(id, _)| *id).collect();
    let mut changed = Vec::new();
    for m in g.members.iter_mut().filter(|m| wanted.contains(&m.user)) {
        if m.role == Role::A || m.role == role {
            continue;
        }
        // A pending (Z) or banned (T) row becomes E/K like any other (reference §1.2).
        m.role = role;
        m.initiated_by = None;
        m.message = None;
        changed.push(s(m.user.to_string()));
    }
    Ok(Output::plain(list(changed)))
}

fn group_user_delete(state: &mut State, caller: Caller, p: &Params) -> Result<Output, ApiError> {
    let gid = int_param(p, "GROUP_ID");
    if gid <= 0 {
        return Err(ApiError::sonet("Wrong group ID"));
    }
    if !caller.admin {
        return Err(ApiError::sonet("No permissions to update users role"));
    }
    let ids = user_ids(p).ok_or_else(|| ApiError::sonet("Wrong user IDs"))?;
    let g = state
        .group_mut(gid)
        .ok_or_else(|| ApiError::sonet("Socialnetwork group not found"))?;
    // Relation order, as in update; the owner is kept.
    let wanted: Vec<i64> = ids.iter().map(|(id, _)| *id).collect();
    let mut removed = Vec::new();
    g.members.retain(|m| {
        let drop = wanted.contains(&m.user) && m.role != Role::A;
        if drop {
            removed.push(s(m.user.to_string()));
        }
        !drop
    });
    Ok(Output::plain(list(removed)))
}

/// `sonet_group.setowner` (rules §4): checks in the source's order; only the current owner
/// may call it (a webhook has no admin-mode session), unless `portal.setowner_admin: allow`.
fn set_owner(state: &mut State, caller: Caller, p: &Params) -> Result<Output, ApiError> {
    let err = |portal: &Portal, text: &str| ApiError::new(400, &portal.setowner_error_code, text);
    let gid = int_param(p, "GROUP_ID");
    if gid <= 0 {
        return Err(err(&state.portal, "Invalid workgroup/project ID"));
    }
    let uid = int_param(p, "USER_ID");
    if uid <= 0 {
        return Err(err(&state.portal, "Invalid user ID"));
    }
    // The lookup skips CHECK_PERMISSIONS for module admins (checked without session).
    let Some(g) = state.group(gid).filter(|g| sees(caller, g)) else {
        return Err(err(&state.portal, "Invalid workgroup/project ID"));
    };
    let owner = g.owner();
    let admin_may = caller.admin && state.portal.setowner_admin == SetOwnerAdmin::Allow;
    if owner != Some(caller.user) && !admin_may {
        return Err(err(
            &state.portal,
            "Insufficient permissions to complete the operation.",
        ));
    }
    // SetOwner checks only that the user exists: not ACTIVE, not USER_TYPE.
    if state.user(uid).is_none() {
        return Err(err(&state.portal, "Cannot complete operation."));
    }
    if owner == Some(uid) {
        return Ok(Output::plain(Value::Bool(true)));
    }
    let Some(g) = state.group_mut(gid) else {
        return Err(err(&state.portal, "Cannot complete operation."));
    };
    for m in g.members.iter_mut() {
        if m.role == Role::A {
            m.role = Role::K;
        }
    }
    // The new owner's row of any role (K, E, Z, T) becomes A; else a new A row.
    match g.members.iter_mut().find(|m| m.user == uid) {
        Some(m) => {
            m.role = Role::A;
            m.initiated_by = None;
            m.message = None;
        }
        None => g.members.push(Member::new(uid, Role::A)),
    }
    Ok(Output::plain(Value::Bool(true)))
}

// ---------------------------------------------------------------------------------------------
// socialnetwork.api.workgroup.get

/// `socialnetwork.api.workgroup.get` (rules §2.1, §3.3; DOCS-EN
/// `api-reference/sonet-group/socialnetwork-api-workgroup-get.md`): parameters wrapped in
/// `params`, ids as JSON ints. Admins see every group; others visible groups and their own.
fn workgroup_get(state: &State, caller: Caller, p: &Params) -> Result<Output, ApiError> {
    let wrapped: &[(String, Value)] = match params::get(p, "params") {
        Some(Value::Arr(a)) => a,
        _ => &[],
    };
    let gid = params::get(wrapped, "groupId").map_or(0, Value::intval);
    if gid <= 0 {
        return Err(ApiError::new(
            400,
            "SONET_CONTROLLER_WORKGROUP_EMPTY",
            "No value for the workgroup ID was provided.",
        ));
    }
    let g = state
        .group(gid)
        .filter(|g| sees(caller, g))
        .ok_or_else(|| {
            ApiError::new(
                400,
                "SONET_CONTROLLER_WORKGROUP_NOT_FOUND",
                "Workgroup not found.",
            )
        })?;
    let select: Vec<String> = match params::get(wrapped, "select") {
        Some(Value::Arr(a)) => a.iter().map(|(_, v)| v.to_php_string()).collect(),
        _ => Vec::new(),
    };
    let selected = |name: &str| select.iter().any(|s| s == name);
    let include_inactive = state.portal.workgroup_members_inactive == InactiveMembers::Include;
    let shown = |m: &&Member| include_inactive || state.user(m.user).is_some_and(|u| u.active);
    let rows: Vec<&Member> = g.members.iter().filter(shown).collect();
    let ids = |keep: &dyn Fn(&Member) -> bool| {
        list(
            rows.iter()
                .filter(|m| keep(m))
                .map(|m| Value::Int(m.user))
                .collect::<Vec<_>>(),
        )
    };
    let invited = |m: &Member| m.role == Role::Z && m.initiated_by == Some(Initiator::G);
    let awaiting = |m: &Member| m.role == Role::Z && m.initiated_by != Some(Initiator::G);
    // The counters are the stored ones: active users only (CSocNetGroup::SetStat).
    let active_count = |keep: &dyn Fn(Role) -> bool| {
        g.members
            .iter()
            .filter(|m| keep(m.role) && state.user(m.user).is_some_and(|u| u.active))
            .count() as i64
    };
    let mut out: Vec<(String, Value)> = vec![
        ("ID".into(), Value::Int(g.id)),
        ("ACTIVE".into(), yn(g.active)),
        ("SITE_ID".into(), s("s1")),
        ("SUBJECT_ID".into(), Value::Int(1)),
        ("NAME".into(), s(g.name.clone())),
        ("DESCRIPTION".into(), s(g.description.clone())),
        ("KEYWORDS".into(), s("")),
        ("CLOSED".into(), s("N")),
        ("VISIBLE".into(), yn(g.visible)),
        ("OPENED".into(), yn(g.opened)),
        ("DATE_CREATE".into(), s(WORKGROUP_DATE)),
        ("DATE_UPDATE".into(), s(WORKGROUP_DATE)),
        ("DATE_ACTIVITY".into(), s(WORKGROUP_DATE)),
        ("IMAGE_ID".into(), Value::Int(0)),
        ("AVATAR_TYPE".into(), s("folder")),
        ("OWNER_ID".into(), Value::Int(g.owner().unwrap_or(0))),
        ("INITIATE_PERMS".into(), s(g.initiate_perms.code())),
        (
            "NUMBER_OF_MEMBERS".into(),
            Value::Int(active_count(&Role::is_member)),
        ),
        (
            "NUMBER_OF_MODERATORS".into(),
            Value::Int(active_count(&|r| matches!(r, Role::A | Role::E))),
        ),
        ("PROJECT".into(), yn(g.project)),
        ("PROJECT_DATE_START".into(), Value::Null),
        ("PROJECT_DATE_FINISH".into(), Value::Null),
        ("LANDING".into(), s("N")),
        ("SCRUM_OWNER_ID".into(), Value::Int(0)),
        ("SCRUM_SPRINT_DURATION".into(), Value::Int(0)),
        ("SCRUM_TASK_RESPONSIBLE".into(), s("")),
        (
            "TYPE".into(),
            s(if g.project { "project" } else { "group" }),
        ),
        ("MEMBERS".into(), ids(&|m| m.role.is_member())),
        ("ORDINARY_MEMBERS".into(), ids(&|m| m.role == Role::K)),
        ("INVITED_MEMBERS".into(), ids(&invited)),
        ("MODERATOR_MEMBERS".into(), ids(&|m| m.role == Role::E)),
        ("SITE_IDS".into(), list([s("s1")])),
    ];
    if selected("DEPARTMENTS") {
        let depts = g.departments.iter().map(|d| Value::Int(*d));
        out.push(("DEPARTMENTS".into(), list(depts.collect::<Vec<_>>())));
    }
    if selected("LIST_OF_MEMBERS_AWAITING_INVITE") {
        let people = rows.iter().filter(|m| awaiting(m)).map(|m| {
            let name = state
                .user(m.user)
                .map(|u| format!("{} {}", u.name, u.last_name).trim().to_owned())
                .unwrap_or_default();
            obj([
                ("id", Value::Int(m.user)),
                ("name", s(name)),
                ("photo", s("")),
            ])
        });
        out.push((
            "LIST_OF_MEMBERS_AWAITING_INVITE".into(),
            list(people.collect::<Vec<_>>()),
        ));
    }
    if selected("GROUP_MEMBERS_LIST") {
        let people = rows
            .iter()
            .filter(|m| m.role.is_member() || m.role == Role::Z)
            .map(|m| {
                obj([
                    ("id", Value::Int(m.user)),
                    ("invited", Value::Bool(invited(m))),
                    ("isAwaiting", Value::Bool(awaiting(m))),
                    ("isMember", Value::Bool(m.role.is_member())),
                ])
            });
        out.push((
            "GROUP_MEMBERS_LIST".into(),
            list(people.collect::<Vec<_>>()),
        ));
    }
    Ok(Output::plain(Value::Arr(out)))
}

/// Dates of `socialnetwork.api.workgroup.get` (`DD.MM.YYYY hh:mm:ss`; the state keeps none).
const WORKGROUP_DATE: &str = "01.01.2024 00:00:00";

// ---------------------------------------------------------------------------------------------
// department.get / department.fields

/// The filter keys `prepareDeptData` copies (exact, case-sensitive), and the only values
/// `sort` takes [src INTR `$arAllowedDepartmentFields`].
const DEPARTMENT_FIELDS: &[&str] = &["ID", "NAME", "SORT", "PARENT", "UF_HEAD"];

/// `department.fields` (rules §1.2; DOCS-EN `api-reference/departments/department-fields.md`
/// example): the fixed five fields with their English labels.
fn department_fields() -> Value {
    obj([
        ("ID", s("ID")),
        ("NAME", s("Department Name")),
        ("SORT", s("Sorting Order")),
        ("PARENT", s("Parent Department")),
        ("UF_HEAD", s("Manager")),
    ])
}

/// One condition of `department.get`'s filter, after `prepareDeptData`'s casts.
#[derive(Debug, Clone, PartialEq)]
enum DeptCond {
    /// `ID` (`intval`, an array is `IN`).
    Id(Vec<i64>),
    /// `NAME`: SQL `LIKE` on each value (an array is OR).
    Name(Vec<String>),
    /// `PARENT` (→ `SECTION_ID`): a scalar ≤ 0 is `IBLOCK_SECTION_ID IS NULL`.
    Top,
    Parent(Vec<i64>),
    /// `UF_HEAD` (exact through the user-field layer).
    Head(Vec<i64>),
}

/// `intval` of a scalar, `array_map("intval")` of an array.
fn intvals(v: &Value) -> Vec<i64> {
    match v {
        Value::Arr(a) => a.iter().map(|(_, x)| x.intval()).collect(),
        x => vec![x.intval()],
    }
}

/// `prepareDeptData` [src INTR]: only the exact keys of [`DEPARTMENT_FIELDS`] are copied;
/// `SORT` is copied but `CAllIBlockSection::GetFilter` has no case for it (a no-op, rules §1.1
/// [src IBS; inferred]); `GLOBAL_ACTIVE = 'Y'` is added by the caller. A `null` `ID`, `NAME`
/// or `UF_HEAD` adds no condition (`isset` fails) [inferred]; a `null` `PARENT` still reaches
/// `GetFilter`, where `(int)null <= 0` means the top level [inferred].
fn department_filter(query: &[(String, Value)]) -> Vec<DeptCond> {
    let mut out = Vec::new();
    for (key, v) in query {
        let cond = match key.as_str() {
            "ID" if *v != Value::Null => DeptCond::Id(intvals(v)),
            "NAME" if *v != Value::Null => DeptCond::Name(match v {
                Value::Arr(a) => a.iter().map(|(_, x)| x.to_php_string()).collect(),
                x => vec![x.to_php_string()],
            }),
            "PARENT" => match v {
                Value::Arr(_) => DeptCond::Parent(intvals(v)),
                x if x.intval() <= 0 => DeptCond::Top,
                x => DeptCond::Parent(vec![x.intval()]),
            },
            "UF_HEAD" if *v != Value::Null => DeptCond::Head(intvals(v)),
            _ => continue,
        };
        out.push(cond);
    }
    out
}

fn department_matches(d: &Department, c: &DeptCond) -> bool {
    match c {
        DeptCond::Id(ids) => ids.contains(&d.id),
        // `BS.NAME LIKE '<value>'`: exact unless `%`/`_`, case-insensitive (rules §1.1).
        DeptCond::Name(names) => names.iter().any(|n| like(&d.name, n)),
        DeptCond::Top => d.parent.is_none(),
        DeptCond::Parent(ids) => d.parent.is_some_and(|p| ids.contains(&p)),
        DeptCond::Head(ids) => d.head.is_some_and(|h| ids.contains(&h)),
    }
}

/// The departments in `LEFT_MARGIN` order, i.e. depth-first pre-order: every parent before
/// its children (rules §1.1 "Sorting" [inferred from nested-set margins]). Siblings come in
/// `SORT`, then `NAME` order, as `CIBlockSection::ReSort` numbers the margins [inferred];
/// ties by ID. Only departments whose every ancestor is active are listed (`GLOBAL_ACTIVE`):
/// an inactive department hides its whole subtree.
fn department_tree(depts: &[Department]) -> Vec<&Department> {
    let mut children: std::collections::HashMap<Option<i64>, Vec<&Department>> =
        std::collections::HashMap::new();
    for d in depts {
        children.entry(d.parent).or_default().push(d);
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| {
            (a.sort, a.name.to_lowercase(), a.id).cmp(&(b.sort, b.name.to_lowercase(), b.id))
        });
    }
    let mut out = Vec::with_capacity(depts.len());
    // An explicit stack (validation rules out cycles; deep trees cannot overflow it).
    let mut stack: Vec<&Department> = children
        .get(&None)
        .map(|l| l.iter().rev().copied().collect())
        .unwrap_or_default();
    while let Some(d) = stack.pop() {
        if !d.active {
            continue;
        }
        out.push(d);
        if let Some(kids) = children.get(&Some(d.id)) {
            stack.extend(kids.iter().rev().copied());
        }
    }
    out
}

/// `prepareSort` [src INTR]: keys case-insensitive (`array_change_key_case`), `SORT` a string
/// naming one of [`DEPARTMENT_FIELDS`] (any case), `ORDER` `DESC` or anything else → `ASC`;
/// otherwise `LEFT_MARGIN ASC` (`None`).
fn department_sort(query: &[(String, Value)]) -> Option<(String, bool)> {
    let q = params::change_key_case(query, true);
    let Some(Value::Str(field)) = params::get(&q, "SORT") else {
        return None;
    };
    let field = field.to_uppercase();
    if !DEPARTMENT_FIELDS.contains(&field.as_str()) {
        return None;
    }
    let desc =
        matches!(params::get(&q, "ORDER"), Some(Value::Str(o)) if o.to_uppercase() == "DESC");
    Some((field, desc))
}

/// `department.get` (rules §1.1) [src INTR `departmentGet`, `prepareSort`, `prepareDeptData`,
/// `getDeptData`; src SRV paging]. An array `FILTER` replaces the whole query (then `sort` and
/// `order` are read inside it); otherwise the top-level params are the filter. Only the
/// lower-case `start` pages (the server takes it out before the handler runs); `START` is
/// neither paging nor a filter key.
fn department_get(state: &State, p: &Params, start: i64) -> Result<Output, ApiError> {
    let query: &[(String, Value)] = match params::get(p, "FILTER") {
        Some(Value::Arr(f)) => f,
        _ => p,
    };
    let conds = department_filter(query);
    let tree = department_tree(&state.departments);
    // Position in the tree: the order of ties under any other sort [inferred].
    let mut rows: Vec<(usize, &Department)> = tree
        .into_iter()
        .enumerate()
        .filter(|(_, d)| conds.iter().all(|c| department_matches(d, c)))
        .collect();
    if let Some((field, desc)) = department_sort(query) {
        rows.sort_by(|(ia, a), (ib, b)| {
            let ord = match field.as_str() {
                "ID" => a.id.cmp(&b.id),
                "NAME" => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
                "SORT" => a.sort.cmp(&b.sort),
                // No `parent` case in `CIBlockSection::GetList`: TIMESTAMP_X order, which
                // the state does not keep; ID (creation order) stands in [inferred].
                "PARENT" => a.id.cmp(&b.id),
                // UNCONFIRMED (rules §8.3): by the head's id, departments without one first
                // (SQL NULLs sort first ascending).
                _ => a.head.cmp(&b.head),
            };
            let ord = if desc { ord.reverse() } else { ord };
            ord.then(ia.cmp(ib))
        });
    }
    let nav = legacy_nav(rows.len(), start, state.portal.sonet_group_get_past_end);
    let page: Vec<Value> = rows[nav.from..nav.to]
        .iter()
        .map(|(_, d)| department_json(d))
        .collect();
    Ok(Output {
        result: list(page),
        total: Some(nav.total),
        next: nav.next,
    })
}

/// `getDeptData` [src INTR]: `ID` and `PARENT` strings, `SORT` an int, `UF_HEAD` the head's
/// id as a string; a key only when set, so the top level has no `PARENT` and a department
/// without a head no `UF_HEAD`.
fn department_json(d: &Department) -> Value {
    let mut fields = vec![
        ("ID".to_owned(), s(d.id.to_string())),
        ("NAME".to_owned(), s(d.name.clone())),
        ("SORT".to_owned(), Value::Int(d.sort)),
    ];
    if let Some(p) = d.parent {
        fields.push(("PARENT".to_owned(), s(p.to_string())));
    }
    if let Some(h) = d.head {
        fields.push(("UF_HEAD".to_owned(), s(h.to_string())));
    }
    Value::Arr(fields)
}

// ---------------------------------------------------------------------------------------------
// user.get / user.current

/// A user as `user.get` and `user.current` give it; `EMAIL` only when the caller's scopes
/// allow it ([`sees_emails`]). `UF_DEPARTMENT` is an array of ints (in every user scope, rules
/// §1.5 "Scopes"); for a user without departments it is what `portal.user_no_department`
/// says (UNCONFIRMED, rules §8.1), by default absent.
fn user_json(u: &User, caller: Caller, no_department: NoDepartment) -> Value {
    let mut fields = vec![
        ("ID", s(u.id.to_string())),
        ("ACTIVE", Value::Bool(u.active)),
        ("NAME", s(u.name.clone())),
        ("LAST_NAME", s(u.last_name.clone())),
    ];
    if caller.emails {
        fields.push(("EMAIL", s(u.email.clone())));
    }
    let departments = if u.departments.is_empty() {
        match no_department {
            NoDepartment::Absent => None,
            NoDepartment::Null => Some(Value::Null),
            NoDepartment::Empty => Some(list([])),
            NoDepartment::False => Some(Value::Bool(false)),
        }
    } else {
        Some(list(u.departments.iter().map(|d| Value::Int(*d))))
    };
    if let Some(d) = departments {
        fields.push(("UF_DEPARTMENT", d));
    }
    fields.push(("USER_TYPE", s(user_type(u))));
    Value::Arr(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// `USER_TYPE` (rules §1.5): `extranet` for extranet users, else `employee`.
fn user_type(u: &User) -> &'static str {
    if u.extranet { "extranet" } else { "employee" }
}

/// The user fields this emulator stores; filter keys on other fields are ignored.
const USER_FIELDS: &[&str] = &["ID", "ACTIVE", "NAME", "LAST_NAME", "EMAIL", "USER_TYPE"];

fn user_field(u: &User, name: &str) -> Option<Field> {
    Some(match name {
        "ID" => Field::Num(u.id),
        "ACTIVE" => Field::Text(yn_str(u.active)),
        "NAME" => Field::Text(u.name.clone()),
        "LAST_NAME" => Field::Text(u.last_name.clone()),
        "EMAIL" => Field::Text(u.email.clone()),
        "USER_TYPE" => Field::Text(user_type(u).to_owned()),
        _ => return None,
    })
}

/// SQL LIKE, case-insensitive: `%` any run, `_` one character. The greedy wildcard matcher
/// (remember the last `%`, retry one character further on a mismatch) takes O(text × pattern)
/// at worst, never the exponential time of naive backtracking, so a pattern of many `%`
/// cannot hold the state lock.
fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let (mut ti, mut pi) = (0, 0);
    // The position after the last `%` seen, and where in the text it started matching.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '%' {
            pi += 1;
            star = Some((pi, ti));
        } else if pi < p.len() && (p[pi] == '_' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// The `ACTIVE` filter value as `prepareUserValue` normalises it (rules §1.5 `ACTIVE`
/// [src USR]): `($value && $value !== 'N') ? 'Y' : 'N'`, so `true`, `"Y"`, `1` and even the
/// string `"false"` are `Y`, while `false`, `0`, `"0"`, `""`, `null` and `"N"` are `N`. Applied
/// to the whole value, as the source does (a non-empty array is `Y`).
fn active_value(v: &Value) -> Value {
    let active = v.truthy() && !matches!(v, Value::Str(x) if x == "N");
    s(if active { "Y" } else { "N" })
}

/// A `UF_DEPARTMENT` filter: "has any of" (`=`, `@` or no prefix), or its negation
/// (`!`, `!=`, `!@`). A scalar is wrapped into an array (`prepareUserValue`); each value is
/// matched as an int against the user's multi-valued field, without recursion into
/// sub-departments (rules §1.5 [src USR; inferred]).
#[derive(Debug, Clone, PartialEq)]
struct DeptFilter {
    negate: bool,
    ids: std::collections::HashSet<i64>,
}

impl DeptFilter {
    fn parse(op: &str, v: &Value) -> Option<DeptFilter> {
        let negate = match op {
            "" | "=" | "@" => false,
            "!" | "!=" | "!@" => true,
            _ => return None,
        };
        Some(DeptFilter {
            negate,
            ids: intvals(v).into_iter().collect(),
        })
    }

    fn matches(&self, u: &User) -> bool {
        u.departments.iter().any(|d| self.ids.contains(d)) != self.negate
    }
}

/// The values of a filter list, ready for membership tests.
struct ValueSet {
    nums: std::collections::HashSet<i64>,
    texts: std::collections::HashSet<String>,
}

fn in_list(f: &Field, v: &Value) -> bool {
    match v {
        Value::Arr(_) => eq_field(f, v),
        other => other
            .to_php_string()
            .split(',')
            .any(|x| eq_field(f, &s(x.trim()))),
    }
}

fn user_filter_match(portal: &Portal, field: &str, f: &Field, op: &str, v: &Value) -> bool {
    use std::cmp::Ordering::*;
    let text = match f {
        Field::Num(n) => n.to_string(),
        Field::Text(t) => t.clone(),
    };
    let pat = v.to_php_string();
    match op {
        "" => match (f, field) {
            (Field::Num(_), _) | (_, "ACTIVE" | "USER_TYPE") => eq_field(f, v),
            (_, "EMAIL") if portal.user_get_bare_email == BareEmail::Exact => eq_field(f, v),
            _ => match v {
                Value::Arr(a) => a.iter().any(|(_, x)| like(&text, &x.to_php_string())),
                _ => like(&text, &pat),
            },
        },
        "=" => eq_field(f, v),
        "!" | "!=" => !eq_field(f, v),
        "<" => cmp_field(f, v) == Less,
        "<=" => cmp_field(f, v) != Greater,
        ">" => cmp_field(f, v) == Greater,
        ">=" => cmp_field(f, v) != Less,
        "@" => in_list(f, v),
        "!@" => !in_list(f, v),
        "%" => contains_ci(f, v),
        "!%" => !contains_ci(f, v),
        "=%" | "%=" => like(&text, &pat),
        "!=%" | "!%=" => !like(&text, &pat),
        _ => true,
    }
}

fn user_get(state: &State, caller: Caller, p: &Params, start: i64) -> Result<Output, ApiError> {
    // Legacy quirk: without an array FILTER, the top-level params are the filter.
    let filter: &[(String, Value)] = match params::get(p, "filter") {
        Some(Value::Arr(f)) => f,
        _ => p,
    };
    let mut conds: Vec<(String, String, Value)> = Vec::new();
    let mut dept_filters: Vec<DeptFilter> = Vec::new();
    // `HAS_DEPARTAMENT: "Y"` (sic): a non-empty `UF_DEPARTMENT` (rules §1.5 [src USR]).
    let mut has_department = false;
    for (k, v) in filter {
        let (op, field) = split_prefix(k);
        if field.eq_ignore_ascii_case("UF_DEPARTMENT") {
            dept_filters.extend(DeptFilter::parse(op, v));
            continue;
        }
        if op.is_empty() && field.eq_ignore_ascii_case("HAS_DEPARTAMENT") {
            has_department |= v.to_php_string() == "Y";
            continue;
        }
        // Most keys of a large filter name no field: check before allocating.
        if !USER_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(field)) {
            continue;
        }
        let field = field.to_ascii_uppercase();
        let known_op = matches!(
            op,
            "" | ">="
                | ">"
                | "<="
                | "<"
                | "@"
                | "!@"
                | "%"
                | "=%"
                | "%="
                | "!%"
                | "!=%"
                | "!%="
                | "="
                | "!="
                | "!"
        );
        // A field the scope does not allow is not a filter field at all: ignored.
        if !known_op
            || !USER_FIELDS.contains(&field.as_str())
            || (field == "EMAIL" && !caller.emails)
        {
            continue;
        }
        let v = if field == "ACTIVE" {
            active_value(v)
        } else {
            v.clone()
        };
        conds.push((op.to_owned(), field, v));
    }
    // A list (`@FIELD` or `=FIELD` with an array) is matched through a set, built once, so a
    // filter of 50 e-mails over 10,000 users costs 10,000 lookups, not 500,000 comparisons.
    // Same meaning as `eq_field`: numbers by value, text case-insensitively.
    let sets: Vec<Option<ValueSet>> = conds
        .iter()
        .map(|(op, _, v)| match (op.as_str(), v) {
            ("@" | "=", Value::Arr(a)) => Some(ValueSet {
                nums: a.iter().map(|(_, x)| x.intval()).collect(),
                texts: a
                    .iter()
                    .map(|(_, x)| x.to_php_string().to_lowercase())
                    .collect(),
            }),
            _ => None,
        })
        .collect();
    let mut rows: Vec<&User> = state
        .users
        .iter()
        .filter(|u| !has_department || !u.departments.is_empty())
        .filter(|u| dept_filters.iter().all(|f| f.matches(u)))
        .filter(|u| {
            conds
                .iter()
                .zip(&sets)
                .all(|((op, field, v), set)| match (user_field(u, field), set) {
                    (Some(Field::Num(n)), Some(set)) => set.nums.contains(&n),
                    (Some(Field::Text(t)), Some(set)) => set.texts.contains(&t.to_lowercase()),
                    (Some(f), None) => user_filter_match(&state.portal, field, &f, op, v),
                    (None, _) => true,
                })
        })
        .collect();
    // SORT + ORDER only together; otherwise ID ASC.
    let sort = params::get(p, "sort").map(Value::to_php_string);
    let order = params::get(p, "order").map(Value::to_php_string);
    if let (Some(field), Some(dir)) = (sort, order) {
        let field = field.to_uppercase();
        let desc = dir.eq_ignore_ascii_case("desc");
        rows.sort_by(|a, b| {
            let ord = match (user_field(a, &field), user_field(b, &field)) {
                (Some(Field::Num(x)), Some(Field::Num(y))) => x.cmp(&y),
                (Some(Field::Text(x)), Some(Field::Text(y))) => {
                    x.to_lowercase().cmp(&y.to_lowercase())
                }
                _ => a.id.cmp(&b.id),
            };
            let ord = if desc { ord.reverse() } else { ord };
            ord.then(a.id.cmp(&b.id))
        });
    } else {
        rows.sort_by_key(|u| u.id);
    }
    let fast = start < 0;
    let offset = start.max(0) as usize;
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(PAGE as usize)
        .map(|u| user_json(u, caller, state.portal.user_no_department))
        .collect();
    if page.is_empty() {
        // prepareUserGetResult returns early: no `total` key at all.
        return Ok(Output::plain(list([])));
    }
    let count = page.len() as i64;
    let (total, next) = if fast {
        (0, None)
    } else {
        let total = rows.len() as i64;
        let next = (start + count < total).then_some(start + count);
        (total, next)
    };
    Ok(Output {
        result: list(page),
        total: Some(total),
        next,
    })
}

fn user_current(state: &State, caller: Caller) -> Result<Output, ApiError> {
    let u = state
        .user(caller.user)
        .ok_or_else(|| ApiError::new(401, "NO_AUTH_FOUND", "Wrong authorization data"))?;
    Ok(Output::plain(user_json(
        u,
        caller,
        state.portal.user_no_department,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_sql_semantics() {
        assert!(like("Ivan", "Iv%"));
        assert!(like("ivan", "IV%"));
        assert!(!like("Ivan", "Iv"));
        assert!(like("a_b@x.com", "a_b@x.com"));
        assert!(like("axb@x.com", "a_b@x.com"));
        assert!(!like("ab@x.com", "a_b@x.com"));
        assert!(like("ab", "%%a%%b%%"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("aaab", "%ab"));
        assert!(like("abcbc", "a%bc"));
        assert!(!like("abcbd", "a%bc"));
        assert!(like("xay", "x%a%y"));
    }

    #[test]
    fn like_with_many_wildcards_is_fast() {
        let pattern = format!("{}b", "%a".repeat(5_000));
        let text = "a".repeat(200);
        let started = std::time::Instant::now();
        assert!(!like(&text, &pattern));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn legacy_nav_pages() {
        let nav = |n, start| {
            let x = legacy_nav(n, start, PastEnd::LastPage);
            (x.from, x.to, x.total, x.next)
        };
        assert_eq!(nav(120, 0), (0, 50, 120, Some(50)));
        assert_eq!(nav(120, 49), (0, 50, 120, Some(50)));
        assert_eq!(nav(120, 50), (50, 100, 120, Some(100)));
        assert_eq!(nav(120, 100), (100, 120, 120, None));
        assert_eq!(nav(100, 50), (50, 100, 100, None));
        assert_eq!(nav(0, 0), (0, 0, 0, None));
        assert_eq!(nav(120, -1), (0, 50, 50, None));
        // Past the end: the last page, or nothing.
        assert_eq!(nav(60, 500), (50, 60, 60, None));
        let x = legacy_nav(60, 500, PastEnd::Empty);
        assert_eq!((x.from, x.to, x.next), (60, 60, None));
        let x = legacy_nav(60, i64::MAX, PastEnd::Empty);
        assert_eq!((x.from, x.to, x.next), (60, 60, None));
    }

    fn dept(id: i64, parent: Option<i64>, sort: i64, name: &str, active: bool) -> Department {
        Department {
            id,
            name: name.into(),
            parent,
            head: None,
            sort,
            active,
        }
    }

    #[test]
    fn department_tree_is_pre_order_and_globally_active() {
        let depts = [
            dept(5, Some(1), 500, "b", true),
            dept(1, None, 500, "root", true),
            dept(2, Some(1), 100, "z", true),
            dept(3, Some(2), 500, "x", true),
            dept(4, Some(1), 500, "A", true),
            dept(6, Some(1), 500, "c", false),
            dept(7, Some(6), 500, "d", true),
            dept(8, None, 10, "second root", true),
        ];
        let order: Vec<i64> = department_tree(&depts).iter().map(|d| d.id).collect();
        assert_eq!(order, [8, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn department_filter_keeps_exact_keys_and_casts() {
        let p = |j: serde_json::Value| -> Params {
            match Value::from_json(&j) {
                Value::Arr(a) => a,
                _ => unreachable!(),
            }
        };
        assert_eq!(
            department_filter(&p(serde_json::json!({
                "ID": "7", "PARENT": 0, "name": "x", ">ID": 1, "SORT": 5, "UF_HEAD": [1, "2"]
            }))),
            [
                DeptCond::Id(vec![7]),
                DeptCond::Top,
                DeptCond::Head(vec![1, 2])
            ]
        );
        assert_eq!(
            department_filter(&p(
                serde_json::json!({"PARENT": null, "ID": null, "NAME": "S%"})
            )),
            // `json!` sorts the keys: ID, NAME, PARENT.
            [DeptCond::Name(vec!["S%".into()]), DeptCond::Top]
        );
        assert_eq!(
            department_filter(&p(serde_json::json!({"PARENT": [0, "3"]}))),
            [DeptCond::Parent(vec![0, 3])]
        );
    }

    #[test]
    fn active_is_normalised_like_php() {
        let y = |v: Value| active_value(&v) == s("Y");
        assert!(y(Value::Bool(true)) && y(s("Y")) && y(s("false")) && y(Value::Int(2)));
        assert!(y(s("n")), "only an upper-case N is inactive");
        for v in [
            Value::Bool(false),
            Value::Int(0),
            s("0"),
            s(""),
            s("N"),
            Value::Null,
        ] {
            assert!(!y(v.clone()), "{v:?}");
        }
    }

    #[test]
    fn prefixes_split() {
        assert_eq!(split_prefix(">=ID"), (">=", "ID"));
        assert_eq!(split_prefix("ID"), ("", "ID"));
        assert_eq!(split_prefix("!><ID"), ("!><", "ID"));
        assert_eq!(split_prefix("~ID"), ("~", "ID"));
    }
}
