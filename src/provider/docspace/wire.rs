//! DocSpace's JSON, read by key and tolerantly (reference §1.2, §4): the response envelope
//! (success, error, and the validation answer in the success wrapper), `GroupDto` and
//! `EmployeeFullDto`, and the rate-limit headers of a 429. Pure: no I/O, no clock (the time a
//! header is compared with is passed in).
//!
//! Tolerance: properties may come in any order, unknown ones are ignored, and every property
//! roster does not strictly need may be missing (`type`, `stack` and `hresult` of an error;
//! `status` of a user; `manager` of a group). IDs are read in either letter case. Numbers and
//! flags are also taken as strings ("1", "true"), as a proxy or another server version may
//! write them.

use std::time::Duration;

use serde_json::Value;

use crate::model::{CurrentGroup, Person, Role, UserId, Uuid};

/// A successful answer: the envelope's `response` and, for lists, `total` (how many rows
/// match in all).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub response: Value,
    pub total: Option<u64>,
}

/// What an HTTP answer says, before the request it answers is known.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx with the success envelope (`status` 0 or absent, a `response` property).
    Ok(Envelope),
    /// 204, no body (`DELETE group/{id}`).
    NoContent,
    /// The portal said no: the error envelope (`{"error":{"message":…},"status":1}`), the
    /// validation answer in the success wrapper (`status: 1`, `response` a
    /// `ValidationProblemDetails`), or an error status with an empty body (401; a scope's 403;
    /// 429). `message` is the portal's text, when it gave one.
    Refused {
        status: u16,
        message: Option<String>,
    },
    /// Not the documented JSON: an HTML page, a 200 without `response`, text cut off.
    /// `truncated`: the JSON ends early (the answer was cut off).
    Malformed {
        status: u16,
        what: String,
        truncated: bool,
    },
}

/// Read an answer's status and body (already scrubbed of secrets).
pub fn read_answer(status: u16, body: &str) -> Answer {
    let ok = (200..300).contains(&status);
    if body.trim().is_empty() {
        return match status {
            204 => Answer::NoContent,
            _ if ok => Answer::Malformed {
                status,
                what: "an empty answer".into(),
                truncated: false,
            },
            _ => Answer::Refused {
                status,
                message: None,
            },
        };
    }
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return Answer::Malformed {
                status,
                what: format!("not JSON: {:?}", snippet(body)),
                truncated: e.is_eof(),
            };
        }
    };
    let Some(obj) = v.as_object() else {
        return if ok {
            Answer::Malformed {
                status,
                what: format!("not the envelope: {:?}", snippet(body)),
                truncated: false,
            }
        } else {
            Answer::Refused {
                status,
                message: None,
            }
        };
    };
    let envelope_status = obj.get("status").and_then(number);
    let status_code = obj
        .get("statusCode")
        .and_then(number)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| *s >= 400);
    if let Some(error) = obj.get("error") {
        return Answer::Refused {
            status: refused_status(status, status_code),
            message: error_message(error),
        };
    }
    if envelope_status == Some(1) || !ok {
        return Answer::Refused {
            status: refused_status(status, status_code),
            message: obj.get("response").and_then(validation_message),
        };
    }
    match obj.get("response") {
        Some(response) => Answer::Ok(Envelope {
            response: response.clone(),
            total: obj.get("total").and_then(number),
        }),
        None => Answer::Malformed {
            status,
            what: "the answer has no `response`".into(),
            truncated: false,
        },
    }
}

/// The status of a refusal: the HTTP status, unless a 2xx carries an error (then the
/// envelope's `statusCode`, else 400).
fn refused_status(http: u16, status_code: Option<u16>) -> u16 {
    if (200..300).contains(&http) {
        status_code.unwrap_or(400)
    } else {
        http
    }
}

/// `error.message` (an object's), or the error itself when it is a string.
fn error_message(error: &Value) -> Option<String> {
    match error {
        Value::String(s) => text(s),
        Value::Object(o) => o.get("message").and_then(Value::as_str).and_then(text),
        _ => None,
    }
}

/// An ASP.NET `ValidationProblemDetails` (`title`, `errors: {field: [messages]}`) as one
/// line: `title (field: message; …)`.
fn validation_message(v: &Value) -> Option<String> {
    let obj = v.as_object()?;
    let title = obj.get("title").and_then(Value::as_str).and_then(text);
    let details: Vec<String> = obj
        .get("errors")
        .and_then(Value::as_object)
        .map(|errors| {
            errors
                .iter()
                .map(|(field, messages)| {
                    let messages: Vec<&str> = match messages {
                        Value::Array(m) => m.iter().filter_map(Value::as_str).collect(),
                        Value::String(m) => vec![m.as_str()],
                        _ => Vec::new(),
                    };
                    format!("{field}: {}", messages.join(", "))
                })
                .collect()
        })
        .unwrap_or_default();
    match (title, details.is_empty()) {
        (Some(t), true) => Some(t),
        (Some(t), false) => Some(format!("{t} ({})", details.join("; "))),
        (None, false) => Some(details.join("; ")),
        (None, true) => None,
    }
}

/// The first 120 characters of `body`, whitespace collapsed, for messages.
fn snippet(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(120).collect()
}

/// Trimmed, and `None` when nothing is left.
fn text(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// A non-negative integer written as a number or a string.
pub fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A flag written as a bool, a string (`"true"`, `"false"`) or 0/1.
fn flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        _ => None,
    }
}

/// A UUID property (`"c652dba3-…"`), `None` when missing, malformed or the empty GUID
/// (DocSpace's "none").
pub fn uuid(v: Option<&Value>) -> Option<Uuid> {
    v.and_then(Value::as_str)
        .and_then(|s| Uuid::parse(s.trim()))
        .filter(|u| !u.is_nil())
}

/// `EmployeeFullDto.status`: 1 Active, 2 Terminated, 4 Pending (reference §1.2).
pub const STATUS_TERMINATED: u64 = 2;

/// What roster reads of an `EmployeeFullDto` (people lookups, a group's manager and members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Employee {
    pub id: Uuid,
    pub email: Option<String>,
    /// `displayName`, else `firstName lastName`.
    pub name: Option<String>,
    /// `status`, when given.
    pub status: Option<u64>,
    pub is_admin: bool,
    pub is_owner: bool,
    /// `isVisitor`: a guest.
    pub is_visitor: bool,
    /// Whether the object had any property beyond its ID (a full profile, worth keeping as
    /// what roster knows of the user).
    pub profile: bool,
}

impl Employee {
    pub fn terminated(&self) -> bool {
        self.status == Some(STATUS_TERMINATED)
    }

    /// The user as roster shows and checks them. Active unless terminated: a pending user
    /// (invited to the portal, not yet signed in) can be made a member, so resolving them as
    /// inactive would keep roster from adding someone the portal accepts. A guest is marked
    /// extranet: DocSpace groups skip guests.
    pub fn person(&self) -> Person {
        Person {
            id: UserId::Uuid(self.id),
            email: self.email.clone(),
            name: self.name.clone(),
            // Who can be a group's member: DocSpace skips terminated users and guests when
            // they are added (§1.4), so the plan shows them as not added, never as changes.
            active: !self.terminated() && !self.is_visitor,
            extranet: self.is_visitor,
        }
    }
}

/// An `EmployeeFullDto`, or `None` without a usable `id`.
pub fn employee(v: &Value) -> Option<Employee> {
    let obj = v.as_object()?;
    let id = uuid(obj.get("id"))?;
    let get_text = |key: &str| obj.get(key).and_then(Value::as_str).and_then(text);
    let name = get_text("displayName").or_else(|| {
        let full = [get_text("firstName"), get_text("lastName")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        (!full.is_empty()).then_some(full)
    });
    let is = |key: &str| obj.get(key).and_then(flag).unwrap_or(false);
    Some(Employee {
        id,
        email: get_text("email"),
        name,
        status: obj.get("status").and_then(number),
        is_admin: is("isAdmin"),
        is_owner: is("isOwner"),
        is_visitor: is("isVisitor"),
        profile: obj.len() > 1,
    })
}

/// The users of a list answer (`GET people`): every row with a usable ID.
pub fn employees(v: &Value) -> Result<Vec<Employee>, String> {
    match v {
        Value::Array(rows) => Ok(rows.iter().filter_map(employee).collect()),
        other => Err(format!("expected a list of users, got {}", kind(other))),
    }
}

/// What roster reads of a `GroupDto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: Option<Uuid>,
    pub name: Option<String>,
    pub manager: Option<Employee>,
    /// `members`; `None` when the answer has none (lists, or `includeMembers=false`).
    pub members: Option<Vec<Employee>>,
    pub members_count: Option<u64>,
}

impl Group {
    /// Whether `user` is in the group: a member, or the manager (who is always also a member,
    /// §1.2; a manager missing from `members` is read as one all the same).
    pub fn has(&self, user: Uuid) -> bool {
        self.manager_id() == Some(user) || self.members.iter().flatten().any(|m| m.id == user)
    }

    pub fn manager_id(&self) -> Option<Uuid> {
        self.manager.as_ref().map(|m| m.id)
    }

    /// The group as the planner sees it: the manager as `Role::Owner`, everyone else a member;
    /// no invitations, requests or departments (DocSpace has none), permissions and visibility
    /// unknown. Fails when the answer lists no members though it says it has some: reading it
    /// as empty would plan every declared member as an add.
    pub fn current(&self) -> Result<CurrentGroup, String> {
        let Some(members) = &self.members else {
            if self.members_count.unwrap_or(1) > 0 {
                return Err("the answer has no `members` list".into());
            }
            return Ok(self.with_members(&[]));
        };
        Ok(self.with_members(members))
    }

    fn with_members(&self, members: &[Employee]) -> CurrentGroup {
        let mut group = CurrentGroup {
            name: self.name.clone(),
            ..CurrentGroup::default()
        };
        for m in members {
            group.members.insert(UserId::Uuid(m.id), Role::Member);
        }
        if let Some(manager) = self.manager_id() {
            group.members.insert(UserId::Uuid(manager), Role::Owner);
        }
        group
    }
}

/// A `GroupDto`. The manager may be an `EmployeeFullDto` or (tolerated) a bare UUID string; an
/// empty-GUID or unreadable manager is no manager. Members without a usable ID are skipped.
pub fn group(v: &Value) -> Result<Group, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected a group, got {}", kind(v)))?;
    let manager = match obj.get("manager") {
        Some(m @ Value::Object(_)) => employee(m),
        Some(id @ Value::String(_)) => uuid(Some(id)).map(|id| Employee {
            id,
            email: None,
            name: None,
            status: None,
            is_admin: false,
            is_owner: false,
            is_visitor: false,
            profile: false,
        }),
        _ => None,
    };
    let members = match obj.get("members") {
        Some(Value::Array(rows)) => Some(rows.iter().filter_map(employee).collect()),
        None | Some(Value::Null) => None,
        Some(other) => return Err(format!("`members` is {}, not a list", kind(other))),
    };
    Ok(Group {
        id: uuid(obj.get("id")),
        name: obj.get("name").and_then(Value::as_str).map(str::to_owned),
        manager,
        members,
        members_count: obj.get("membersCount").and_then(number),
    })
}

/// The groups of a list answer (`GET group`), with their IDs and names: rows without either
/// are skipped.
pub fn groups(v: &Value) -> Result<Vec<(Uuid, String)>, String> {
    let Value::Array(rows) = v else {
        return Err(format!("expected a list of groups, got {}", kind(v)));
    };
    Ok(rows
        .iter()
        .filter_map(|row| {
            let g = group(row).ok()?;
            Some((g.id?, g.name?))
        })
        .collect())
}

/// `an object`, `a string`, … for messages about unexpected JSON.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a flag",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Values of `X-RateLimit-Reset` at or above this are a Unix time, not a number of seconds
/// (2001-09-09): the header's meaning is unconfirmed (reference §5), and no window of the
/// portal is anywhere near 30 years long.
const EPOCH_FROM: u64 = 1_000_000_000;

/// How long a 429 asks roster to wait, from its `Retry-After` (integer seconds, preferred)
/// or, without one, its `X-RateLimit-Reset` (seconds to wait, or the Unix time the window
/// resets; `now_unix` is the current Unix time). `None` when neither says (an HTTP-date
/// `Retry-After` is not read).
/// The window's size from `X-RateLimit-Limit`: `1500`, or the documented example's form
/// `100/30m` (the number of requests; roster keeps to it within a minute, which is stricter).
pub fn window_limit(value: &str) -> Option<usize> {
    let digits: String = value
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|n| *n > 0)
}

pub fn rate_limit_wait(
    retry_after: Option<&str>,
    reset: Option<&str>,
    now_unix: u64,
) -> Option<Duration> {
    let seconds = |s: &str| -> Option<u64> {
        let s = s.trim();
        s.parse::<u64>().ok().or_else(|| {
            s.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.ceil() as u64)
        })
    };
    if let Some(s) = retry_after.and_then(seconds) {
        return Some(Duration::from_secs(s));
    }
    let reset = reset.and_then(seconds)?;
    // Milliseconds since the epoch, just in case.
    let reset = if reset >= EPOCH_FROM * 1000 {
        reset / 1000
    } else {
        reset
    };
    Some(Duration::from_secs(if reset >= EPOCH_FROM {
        reset.saturating_sub(now_unix)
    } else {
        reset
    }))
}
