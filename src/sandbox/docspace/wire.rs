//! The DocSpace wire format as the server writes it (reference §1.2, §4): the DTOs
//! (`GroupDto`, `GroupSummaryDto`, `EmployeeFullDto`, camelCase, null properties omitted, fields
//! in the server's declaration order), the success envelope, the validation-problem form, the
//! exception envelope, and GUID parsing as .NET does it. Types and pure encoders only: no state,
//! no HTTP.

use std::collections::BTreeMap;

use serde::Serialize;

/// `Guid.TryParse` as the route constraint `:guid` and query binding use it: the `D` form
/// (8-4-4-4-12), `N` (32 digits), `B` (`{D}`) and `P` (`(D)`), any case. Returns the
/// canonical lowercase `D` form.
pub fn parse_guid(s: &str) -> Option<String> {
    let s = s.trim();
    let inner = if let Some(x) = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        x
    } else if let Some(x) = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        x
    } else {
        s
    };
    let hex: String = match inner.len() {
        36 => {
            let ok = inner.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
            if !ok {
                return None;
            }
            inner.chars().filter(|c| *c != '-').collect()
        }
        32 if inner.len() == s.len() && inner.chars().all(|c| c.is_ascii_hexdigit()) => {
            inner.to_owned()
        }
        _ => return None,
    };
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// A GUID in a JSON body: System.Text.Json reads only the 36-character `D` form (any case).
pub fn parse_json_guid(s: &str) -> Option<String> {
    if s.len() == 36 { parse_guid(s) } else { None }
}

/// `GroupSummaryDto`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    pub id: String,
    pub name: String,
    /// The manager's `userName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_system: Option<bool>,
}

/// `EmployeeFullDto` (the fields the reference lists; enums as numbers).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Employee {
    pub id: String,
    pub display_name: String,
    pub avatar: String,
    pub avatar_original: String,
    pub avatar_max: String,
    pub avatar_medium: String,
    pub avatar_small: String,
    pub profile_url: String,
    pub has_avatar: bool,
    pub is_anonim: bool,
    pub first_name: String,
    pub last_name: String,
    pub user_name: String,
    pub email: String,
    /// 1 Active, 2 Terminated, 4 Pending.
    pub status: u8,
    /// 0 NotActivated, 1 Activated, 2 Pending.
    pub activation_status: u8,
    /// Omitted when the user is in no group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<GroupSummary>>,
    pub registration_date: String,
    pub is_admin: bool,
    pub is_room_admin: bool,
    #[serde(rename = "isLDAP")]
    pub is_ldap: bool,
    pub is_owner: bool,
    pub is_visitor: bool,
    pub is_collaborator: bool,
    #[serde(rename = "isSSO")]
    pub is_sso: bool,
}

/// `GroupDto`, in the declaration order of `GroupDto.cs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub name: String,
    pub parent: String,
    pub category: String,
    pub id: String,
    #[serde(rename = "isLDAP")]
    pub is_ldap: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_system: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<Employee>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Employee>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    pub members_count: usize,
}

/// What a success envelope's `response` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    Group(Box<Group>),
    Groups(Vec<Group>),
    Summaries(Vec<GroupSummary>),
    Employee(Box<Employee>),
    Employees(Vec<Employee>),
}

impl Payload {
    /// The envelope's default `count`: the array length, or 1 for one object.
    fn natural_count(&self) -> usize {
        match self {
            Payload::Group(_) | Payload::Employee(_) => 1,
            Payload::Groups(v) => v.len(),
            Payload::Summaries(v) => v.len(),
            Payload::Employees(v) => v.len(),
        }
    }
}

/// The exception classes the sandbox raises, with the `type` and `hresult` they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ItemNotFoundException`: 404.
    NotFound,
    /// `ArgumentException`: 400.
    Argument,
    /// `SecurityException`: 403, message always "Access denied".
    Security,
    /// Anything else: 500.
    Internal,
}

impl ErrorKind {
    fn type_name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "ASC.Common.Web.ItemNotFoundException",
            ErrorKind::Argument => "System.ArgumentException",
            ErrorKind::Security => "System.Security.SecurityException",
            ErrorKind::Internal => "System.Exception",
        }
    }
    /// Illustrative values (reference §4: UNCONFIRMED): the .NET defaults of each class.
    fn hresult(self) -> i64 {
        match self {
            ErrorKind::NotFound | ErrorKind::Internal => -2146233088,
            ErrorKind::Argument => -2147024809,
            ErrorKind::Security => -2146233078,
        }
    }
    fn status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Argument => 400,
            ErrorKind::Security => 403,
            ErrorKind::Internal => 500,
        }
    }
}

/// An exception answered by `CustomExceptionHandler`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn group_not_found() -> Self {
        ApiError {
            kind: ErrorKind::NotFound,
            message: "The group could not be found".into(),
        }
    }
    pub fn user_not_found() -> Self {
        ApiError {
            kind: ErrorKind::NotFound,
            message: "The user could not be found".into(),
        }
    }
    pub fn access_denied() -> Self {
        ApiError {
            kind: ErrorKind::Security,
            message: "Access denied".into(),
        }
    }
    pub fn argument(message: impl Into<String>) -> Self {
        ApiError {
            kind: ErrorKind::Argument,
            message: message.into(),
        }
    }
    pub fn internal() -> Self {
        ApiError {
            kind: ErrorKind::Internal,
            message: "Internal server error".into(),
        }
    }
    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

/// Model-binding and validation failures, by key (`count`, `$.members[0]`, `GroupName`).
pub type Problems = BTreeMap<String, Vec<String>>;

/// What an endpoint answers, before the envelope is put around it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 200 in the success envelope; `count` and `total` when the endpoint sets them.
    Ok {
        payload: Payload,
        count: Option<usize>,
        total: Option<usize>,
    },
    /// 204 without a body.
    NoContent,
    /// 415 without a body: a body that is not JSON (by its `Content-Type`).
    UnsupportedMediaType,
    /// 400 in the success envelope (`status: 1`) around a `ValidationProblemDetails`.
    Invalid(Problems),
    /// An exception envelope.
    Error(ApiError),
}

impl Outcome {
    pub fn ok(payload: Payload) -> Outcome {
        Outcome::Ok {
            payload,
            count: None,
            total: None,
        }
    }
}

#[derive(Serialize)]
struct Link<'a> {
    href: &'a str,
    action: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Success<'a, T: Serialize> {
    response: &'a T,
    count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<usize>,
    links: [Link<'a>; 1],
    status: u8,
    status_code: u16,
}

#[derive(Serialize)]
struct ValidationProblem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    errors: &'a Problems,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hresult: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
    status: u8,
    status_code: u16,
}

/// The status and body of an outcome; `href` is the full request URL and `action` its method,
/// for `links`. `None` is no body (204).
pub fn encode(outcome: &Outcome, href: &str, action: &str) -> (u16, Option<Vec<u8>>) {
    let link = || [Link { href, action }];
    match outcome {
        Outcome::Ok {
            payload,
            count,
            total,
        } => {
            let env = Success {
                response: payload,
                count: count.unwrap_or_else(|| payload.natural_count()),
                total: *total,
                links: link(),
                status: 0,
                status_code: 200,
            };
            (200, Some(serde_json::to_vec(&env).unwrap_or_default()))
        }
        Outcome::NoContent => (204, None),
        Outcome::UnsupportedMediaType => (415, None),
        Outcome::Invalid(errors) => {
            let problem = ValidationProblem {
                kind: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                title: "One or more validation errors occurred.",
                status: 400,
                errors,
            };
            let env = Success {
                response: &problem,
                count: 1,
                total: None,
                links: link(),
                status: 1,
                status_code: 400,
            };
            (400, Some(serde_json::to_vec(&env).unwrap_or_default()))
        }
        Outcome::Error(e) => (e.status(), Some(error_body(e, true))),
    }
}

/// The exception envelope; `with_stack` adds `type`, `stack` and `hresult`.
pub fn error_body(e: &ApiError, with_stack: bool) -> Vec<u8> {
    let env = ErrorEnvelope {
        error: ErrorBody {
            message: &e.message,
            kind: with_stack.then(|| e.kind.type_name()),
            stack: with_stack.then(|| {
                format!(
                    "   at {}: {}\n   at ASC.Api.Core (roster DocSpace sandbox)",
                    e.kind.type_name(),
                    e.message
                )
            }),
            hresult: with_stack.then(|| e.kind.hresult()),
        },
        status: 1,
        status_code: e.status(),
    };
    serde_json::to_vec(&env).unwrap_or_default()
}

/// The body of a 401 as an `AuthenticationException` writes it (no stack trace).
pub fn unauthorized_envelope() -> Vec<u8> {
    let env = ErrorEnvelope {
        error: ErrorBody {
            message: "Unauthorized",
            kind: None,
            stack: None,
            hresult: None,
        },
        status: 1,
        status_code: 401,
    };
    serde_json::to_vec(&env).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_as_dotnet_parses_them() {
        let d = "c652dba3-210e-436d-b264-df5ceda0a48e";
        for s in [
            d,
            "C652DBA3-210E-436D-B264-DF5CEDA0A48E",
            "c652dba3210e436db264df5ceda0a48e",
            "{c652dba3-210e-436d-b264-df5ceda0a48e}",
            "(c652dba3-210e-436d-b264-df5ceda0a48e)",
            " c652dba3-210e-436d-b264-df5ceda0a48e ",
        ] {
            assert_eq!(parse_guid(s).as_deref(), Some(d), "{s}");
        }
        for s in [
            "",
            "abc",
            "10001",
            "c652dba3-210e-436d-b264-df5ceda0a48",
            "c652dba3-210e-436d-b264_df5ceda0a48e",
            "g652dba3-210e-436d-b264-df5ceda0a48e",
            "{c652dba3210e436db264df5ceda0a48e}",
        ] {
            assert_eq!(parse_guid(s), None, "{s}");
        }
        assert_eq!(parse_json_guid("c652dba3210e436db264df5ceda0a48e"), None);
        assert_eq!(
            parse_json_guid("C652DBA3-210E-436D-B264-DF5CEDA0A48E").as_deref(),
            Some(d)
        );
    }

    #[test]
    fn envelopes() {
        let (status, body) = encode(
            &Outcome::Ok {
                payload: Payload::Summaries(vec![GroupSummary {
                    id: "i".into(),
                    name: "n".into(),
                    manager: None,
                    is_system: None,
                }]),
                count: None,
                total: Some(7),
            },
            "http://h/api/2.0/x",
            "GET",
        );
        assert_eq!(status, 200);
        assert_eq!(
            String::from_utf8(body.unwrap()).unwrap(),
            r#"{"response":[{"id":"i","name":"n"}],"count":1,"total":7,"links":[{"href":"http://h/api/2.0/x","action":"GET"}],"status":0,"statusCode":200}"#
        );
        let mut p = Problems::new();
        p.insert("count".into(), vec!["bad".into()]);
        let (status, body) = encode(&Outcome::Invalid(p), "u", "GET");
        assert_eq!(status, 400);
        assert_eq!(
            String::from_utf8(body.unwrap()).unwrap(),
            r#"{"response":{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.1","title":"One or more validation errors occurred.","status":400,"errors":{"count":["bad"]}},"count":1,"links":[{"href":"u","action":"GET"}],"status":1,"statusCode":400}"#
        );
        assert_eq!(encode(&Outcome::NoContent, "u", "DELETE"), (204, None));
        assert_eq!(
            String::from_utf8(unauthorized_envelope()).unwrap(),
            r#"{"error":{"message":"Unauthorized"},"status":1,"statusCode":401}"#
        );
    }
}
