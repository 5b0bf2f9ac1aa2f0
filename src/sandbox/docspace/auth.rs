//! Authentication and authorization (reference §3): which scheme a request's credentials
//! select, who the caller is, and whether an API key's scopes cover a route. Pure functions
//! of header values and the state; no HTTP types, no I/O. No error or log line here quotes a
//! credential.
//!
//! Scheme selection, as `BaseStartup`'s ForwardDefaultSelector does it:
//!
//! | `Authorization` | scheme |
//! |---|---|
//! | none | cookie: the `asc_auth_key` cookie |
//! | `Basic …` | basic: the sandbox has no passwords, so always refused |
//! | `Bearer sk-…` ("Bearer " exactly, case-sensitive) | API key |
//! | `Bearer <JWT>` (`eyJ…` with two dots) | OAuth2 JWT: not emulated, refused |
//! | anything else, a raw token included | cookie: the cookie if sent, else the header value with a `Bearer ` prefix removed, as a personal access token |
//!
//! So a raw `sk-…` key falls to the cookie scheme and is refused (it is no session token),
//! while personal access tokens work raw or with `Bearer `.

use super::state::{State, Status, UserType};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub kind: UserType,
    /// The API key's scopes; `None` for a personal access token (the user's full rights).
    pub scopes: Option<Vec<String>>,
}

/// The credential a request presents, once a scheme is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    ApiKey(&'a str),
    Token(&'a str),
    /// A scheme the sandbox does not emulate (Basic, JWT), or a header that is not text.
    Unsupported,
    None,
}

/// The name of the session cookie.
pub const AUTH_COOKIE: &str = "asc_auth_key";

/// Pick the scheme from the `Authorization` header value and the `Cookie` header values.
pub fn credential<'a>(authorization: Option<&'a [u8]>, cookies: &[&'a [u8]]) -> Credential<'a> {
    let cookie = cookies
        .iter()
        .filter_map(|c| std::str::from_utf8(c).ok())
        .flat_map(|c| c.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == AUTH_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|v| !v.is_empty());
    let Some(raw) = authorization else {
        return cookie.map_or(Credential::None, Credential::Token);
    };
    let Ok(header) = std::str::from_utf8(raw) else {
        return Credential::Unsupported;
    };
    if header.starts_with("Basic ") {
        return Credential::Unsupported;
    }
    if let Some(rest) = header.strip_prefix("Bearer ") {
        if rest.starts_with("sk-") {
            return Credential::ApiKey(rest);
        }
        if is_jwt(rest) {
            return Credential::Unsupported;
        }
    }
    if let Some(c) = cookie {
        return Credential::Token(c);
    }
    let token = header.strip_prefix("Bearer ").unwrap_or(header);
    if token.is_empty() {
        Credential::None
    } else {
        Credential::Token(token)
    }
}

/// `eyJ…` in three dot-separated base64url parts.
fn is_jwt(s: &str) -> bool {
    s.starts_with("eyJ")
        && s.split('.').count() == 3
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The caller a credential belongs to: only active users sign in.
pub fn identify(state: &State, credential: &Credential<'_>) -> Option<Caller> {
    let (user, scopes) = match credential {
        Credential::ApiKey(k) => {
            let key = state.api_keys.iter().find(|a| a.key == *k)?;
            let scopes = key.scopes.clone().unwrap_or_else(|| vec!["*".to_owned()]);
            (key.user.as_str(), Some(scopes))
        }
        Credential::Token(t) => {
            let token = state.tokens.iter().find(|x| x.token == *t)?;
            (token.user.as_str(), None)
        }
        Credential::Unsupported | Credential::None => return None,
    };
    let u = state.user(user).filter(|u| u.status == Status::Active)?;
    Some(Caller {
        user: u.id.clone(),
        kind: u.kind,
        scopes,
    })
}

/// What a route needs from an API key's scopes (`Auth/AuthorizationExtension.cs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `GET …/group`, `GET …/people`: `accounts:read` or `accounts:write`.
    AccountsRead,
    /// POST, PUT and DELETE on `…/group`: `accounts:write`.
    AccountsWrite,
    /// `GET people/@self`: also `accounts.self:read` or `accounts.self:write`.
    SelfRead,
}

/// Do these scopes cover `need`? `None` (a token) covers everything, as does `*`.
pub fn allows(scopes: Option<&[String]>, need: Need) -> bool {
    let Some(scopes) = scopes else { return true };
    scopes.iter().any(|s| {
        let s = s.as_str();
        s == "*"
            || match need {
                Need::AccountsRead => matches!(s, "accounts:read" | "accounts:write"),
                Need::AccountsWrite => s == "accounts:write",
                Need::SelfRead => matches!(
                    s,
                    "accounts:read"
                        | "accounts:write"
                        | "accounts.self:read"
                        | "accounts.self:write"
                ),
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn cred<'a>(auth: Option<&'a str>, cookie: Option<&'a str>) -> Credential<'a> {
        let cookies: Vec<&[u8]> = cookie.iter().map(|c| c.as_bytes()).collect();
        credential(auth.map(str::as_bytes), &cookies)
    }

    #[test]
    fn scheme_selection() {
        let bearer = format!("Bearer {KEY}");
        assert_eq!(cred(Some(&bearer), None), Credential::ApiKey(KEY));
        // A raw key, a lower-case scheme or a doubled space fall to the cookie scheme.
        assert_eq!(cred(Some(KEY), None), Credential::Token(KEY));
        let lower = format!("bearer {KEY}");
        assert_eq!(cred(Some(&lower), None), Credential::Token(&lower));
        let spaced = format!("Bearer  {KEY}");
        assert_eq!(cred(Some(&spaced), None), Credential::Token(&spaced[7..]));
        assert_eq!(cred(Some("tok1"), None), Credential::Token("tok1"));
        assert_eq!(cred(Some("Bearer tok1"), None), Credential::Token("tok1"));
        assert_eq!(cred(Some("Basic YTpi"), None), Credential::Unsupported);
        assert_eq!(cred(Some("Bearer eyJa.b.c"), None), Credential::Unsupported);
        assert_eq!(cred(None, None), Credential::None);
        assert_eq!(cred(Some(""), None), Credential::None);
        // The cookie wins over a raw header, not over an API key.
        let c = "x=1; asc_auth_key=tok2";
        assert_eq!(cred(None, Some(c)), Credential::Token("tok2"));
        assert_eq!(cred(Some("tok1"), Some(c)), Credential::Token("tok2"));
        assert_eq!(cred(Some(&bearer), Some(c)), Credential::ApiKey(KEY));
        assert_eq!(cred(None, Some("asc_auth_key=")), Credential::None);
        assert_eq!(
            credential(Some(&[0xff, 0xfe]), &[]),
            Credential::Unsupported
        );
    }

    #[test]
    fn scopes() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(allows(None, Need::AccountsWrite));
        assert!(allows(Some(&s(&["*"])), Need::AccountsWrite));
        assert!(allows(Some(&s(&["accounts:write"])), Need::AccountsRead));
        assert!(allows(Some(&s(&["accounts:read"])), Need::AccountsRead));
        assert!(!allows(Some(&s(&["accounts:read"])), Need::AccountsWrite));
        assert!(!allows(Some(&s(&["rooms:read"])), Need::AccountsRead));
        assert!(allows(Some(&s(&["accounts.self:read"])), Need::SelfRead));
        assert!(!allows(
            Some(&s(&["accounts.self:read"])),
            Need::AccountsRead
        ));
        assert!(!allows(Some(&[]), Need::SelfRead));
    }
}
