//! The route table (reference §1, §2): which endpoint a method and path name, with ASP.NET's
//! matching rules — literals case-insensitive, `{id}` segments constrained to GUIDs (so a
//! non-UUID id matches nothing and answers 404), one trailing slash ignored, literal segments
//! preferred over parameters. Pure; no state, no HTTP types.

/// The endpoints the sandbox implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListGroups,
    CreateGroup,
    GetGroup,
    UpdateGroup,
    DeleteGroup,
    GroupsOfUser,
    AddMembers,
    ReplaceMembers,
    RemoveMembers,
    SetManager,
    MoveMembers,
    PeopleList,
    PeopleByEmail,
    PeopleFilter,
    PeopleSelf,
    PeopleGet,
}

impl Endpoint {
    /// Reads nothing but the state (GET).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Endpoint::ListGroups
                | Endpoint::GetGroup
                | Endpoint::GroupsOfUser
                | Endpoint::PeopleList
                | Endpoint::PeopleByEmail
                | Endpoint::PeopleFilter
                | Endpoint::PeopleSelf
                | Endpoint::PeopleGet
        )
    }

    /// Under `/api/2.0/people` (else `/api/2.0/group`).
    pub fn is_people(self) -> bool {
        matches!(
            self,
            Endpoint::PeopleList
                | Endpoint::PeopleByEmail
                | Endpoint::PeopleFilter
                | Endpoint::PeopleSelf
                | Endpoint::PeopleGet
        )
    }
}

/// The prefix of every API route.
pub const API_PREFIX: &str = "/api/2.0/";

/// Method, template below [`API_PREFIX`], endpoint. `{name}` is a GUID segment, `{name*}` any
/// segment. Literal routes come before the parameter routes they would otherwise shadow.
const ROUTES: &[(&str, &str, Endpoint)] = &[
    ("GET", "group", Endpoint::ListGroups),
    ("POST", "group", Endpoint::CreateGroup),
    ("GET", "group/user/{userid}", Endpoint::GroupsOfUser),
    ("GET", "group/{id}", Endpoint::GetGroup),
    ("PUT", "group/{id}", Endpoint::UpdateGroup),
    ("DELETE", "group/{id}", Endpoint::DeleteGroup),
    ("PUT", "group/{id}/members", Endpoint::AddMembers),
    ("POST", "group/{id}/members", Endpoint::ReplaceMembers),
    ("DELETE", "group/{id}/members", Endpoint::RemoveMembers),
    ("PUT", "group/{id}/manager", Endpoint::SetManager),
    (
        "PUT",
        "group/{fromId}/members/{toId}",
        Endpoint::MoveMembers,
    ),
    ("GET", "people", Endpoint::PeopleList),
    ("GET", "people/email", Endpoint::PeopleByEmail),
    ("GET", "people/filter", Endpoint::PeopleFilter),
    ("GET", "people/@self", Endpoint::PeopleSelf),
    ("GET", "people/{userid*}", Endpoint::PeopleGet),
];

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    /// `METHOD /api/2.0/TEMPLATE`, the name it is counted under.
    pub key: String,
    /// The parameter segments in order: GUIDs canonical (lowercase `D` form), others
    /// percent-decoded as sent.
    pub params: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Found(Route),
    /// The path names a route, but not for this method (405).
    WrongMethod,
    /// No route (404).
    NotFound,
}

/// The name requests without a route are counted under.
pub const UNKNOWN_ROUTE: &str = "(unknown)";

/// Match `method` and `path` (without the query string).
pub fn resolve(method: &str, path: &str) -> Match {
    let Some(segments) = segments(path) else {
        return Match::NotFound;
    };
    let mut wrong_method = false;
    for (m, template, endpoint) in ROUTES {
        let Some(params) = match_template(template, &segments) else {
            continue;
        };
        if *m != method {
            wrong_method = true;
            continue;
        }
        return Match::Found(Route {
            endpoint: *endpoint,
            key: format!("{m} {API_PREFIX}{}", template.replace('*', "")),
            params,
        });
    }
    if wrong_method {
        Match::WrongMethod
    } else {
        Match::NotFound
    }
}

/// The percent-decoded segments after `/api/2.0/`, or None for another path.
fn segments(path: &str) -> Option<Vec<String>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut parts = path.split('/');
    if parts.next() != Some("") {
        return None;
    }
    if !parts.next()?.eq_ignore_ascii_case("api") || parts.next()? != "2.0" {
        return None;
    }
    let rest: Vec<String> = parts.map(percent_decode).collect();
    if rest.is_empty() || rest.iter().any(String::is_empty) {
        return None;
    }
    Some(rest)
}

fn match_template(template: &str, segments: &[String]) -> Option<Vec<String>> {
    let parts: Vec<&str> = template.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (t, s) in parts.iter().zip(segments) {
        if let Some(name) = t.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            if name.ends_with('*') {
                params.push(s.clone());
            } else {
                params.push(super::wire::parse_guid(s)?);
            }
        } else if !t.eq_ignore_ascii_case(s) {
            return None;
        }
    }
    Some(params)
}

/// `%XX` decoded (invalid escapes kept as written, the result read as UTF-8 lossily).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "c652dba3-210e-436d-b264-df5ceda0a48e";

    fn found(method: &str, path: &str) -> (Endpoint, String, Vec<String>) {
        match resolve(method, path) {
            Match::Found(r) => (r.endpoint, r.key, r.params),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn routes_and_constraints() {
        assert_eq!(
            found("GET", "/api/2.0/group"),
            (Endpoint::ListGroups, "GET /api/2.0/group".into(), vec![])
        );
        assert_eq!(found("GET", "/API/2.0/Group/").0, Endpoint::ListGroups);
        let upper = format!("/api/2.0/group/{}/members", G.to_uppercase());
        assert_eq!(
            found("DELETE", &upper),
            (
                Endpoint::RemoveMembers,
                "DELETE /api/2.0/group/{id}/members".into(),
                vec![G.into()]
            )
        );
        assert_eq!(
            found("PUT", &format!("/api/2.0/group/{G}/members/{G}")).1,
            "PUT /api/2.0/group/{fromId}/members/{toId}"
        );
        assert_eq!(
            found("GET", &format!("/api/2.0/group/user/{G}")).0,
            Endpoint::GroupsOfUser
        );
        assert_eq!(resolve("GET", "/api/2.0/group/abc"), Match::NotFound);
        assert_eq!(
            resolve("DELETE", "/api/2.0/group/10001/members"),
            Match::NotFound
        );
        assert_eq!(resolve("GET", "/api/2.0/group/user/ada"), Match::NotFound);
        assert_eq!(
            resolve("PATCH", &format!("/api/2.0/group/{G}")),
            Match::WrongMethod
        );
        assert_eq!(
            resolve("GET", &format!("/api/2.0/group/{G}/members")),
            Match::WrongMethod
        );
        assert_eq!(resolve("GET", "/api/2.0//group"), Match::NotFound);
        assert_eq!(resolve("GET", "/api/2.1/group"), Match::NotFound);
        assert_eq!(resolve("GET", "/other"), Match::NotFound);
    }

    #[test]
    fn people_literals_beat_the_user_parameter() {
        assert_eq!(
            found("GET", "/api/2.0/people/email").0,
            Endpoint::PeopleByEmail
        );
        assert_eq!(
            found("GET", "/api/2.0/people/Filter").0,
            Endpoint::PeopleFilter
        );
        assert_eq!(
            found("GET", "/api/2.0/people/%40self").0,
            Endpoint::PeopleSelf
        );
        assert_eq!(
            found("GET", "/api/2.0/people/ada.b"),
            (
                Endpoint::PeopleGet,
                "GET /api/2.0/people/{userid}".into(),
                vec!["ada.b".into()]
            )
        );
        assert_eq!(
            found("GET", "/api/2.0/people/a%20b").2,
            vec!["a b".to_owned()]
        );
        assert_eq!(resolve("POST", "/api/2.0/people/email"), Match::WrongMethod);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%2"), "a@b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
