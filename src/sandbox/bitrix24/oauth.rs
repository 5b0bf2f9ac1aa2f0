//! OAuth 2.0 (rules §5, reference §6): the refresh grant of the token endpoint
//! (`/oauth/token/`) and the access-token check of REST calls, against the `oauth:` section of
//! the state.
//!
//! Pure: no HTTP, no clock, no randomness, no I/O. The server passes the time and a token
//! generator, and persists the state. No error built here quotes a token or a secret.

use super::params::{self, Params, Value};
use super::state::{AccessToken, OAuthRotation, RefreshToken, State};

/// The `scope` a grant of every scope reports (a token without `scopes:` in the state).
pub const TOKEN_SCOPE: &str = "sonet_group,socialnetwork,user";

/// `member_id` of the emulated portal (a fixed 32-hex-digit id).
pub const MEMBER_ID: &str = "5a4d0b1e5a4d0b1e5a4d0b1e5a4d0b1e";

/// An error of the token endpoint: HTTP 400 `{"error":…,"error_description":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub code: &'static str,
    pub description: String,
}

impl TokenError {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        TokenError {
            code,
            description: description.into(),
        }
    }
}

/// A successful refresh: the fields of the token endpoint's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub access_token: String,
    pub refresh_token: String,
    pub expires: i64,
    pub expires_in: u64,
    pub user_id: i64,
    /// The grant's scopes (`None`: every scope), those of the refresh token used.
    pub scopes: Option<Vec<String>>,
}

impl Grant {
    /// The JSON answer, in the order of the docs' example (`auto-renewal.md`). `addr` is the
    /// sandbox's `host:port`: it is the portal (`client_endpoint`) and the OAuth server
    /// (`server_endpoint`, `domain`) at once.
    pub fn to_json(&self, addr: &str) -> serde_json::Value {
        let rest = format!("http://{addr}/rest/");
        let scope = self
            .scopes
            .as_ref()
            .map_or_else(|| TOKEN_SCOPE.to_owned(), |s| s.join(","));
        serde_json::json!({
            "access_token": self.access_token,
            "expires": self.expires,
            "expires_in": self.expires_in,
            "scope": scope,
            "domain": addr,
            "server_endpoint": rest,
            "status": "L",
            "client_endpoint": rest,
            "member_id": MEMBER_ID,
            "user_id": self.user_id,
            "refresh_token": self.refresh_token,
        })
    }
}

/// A non-empty string parameter.
fn param(p: &Params, key: &str) -> Option<String> {
    params::get(p, key)
        .filter(|v| !matches!(v, Value::Arr(_)))
        .map(Value::to_php_string)
        .filter(|v| !v.is_empty())
}

/// `grant_type=refresh_token&client_id&client_secret&refresh_token`: check the request, then
/// issue a new access token (valid `access_ttl_s` from `now`) and a new refresh token, both
/// made by `new_token`, appended to the state; both carry the scopes of the refresh token
/// used (its grant's). With `oauth_rotation: invalidate` the refresh token used is revoked.
///
/// Checks in order: `grant_type` present (`invalid_request`) and `refresh_token`
/// (`unsupported_grant_type`); `client_id`, `client_secret` and `refresh_token` present
/// (`invalid_request`, `No "X" parameter found`); the client and its secret
/// (`invalid_client`); the refresh token known to that client, not revoked, its user still
/// there and active (`invalid_grant`).
pub fn refresh(
    state: &mut State,
    p: &Params,
    now: i64,
    new_token: &mut dyn FnMut() -> String,
) -> Result<Grant, TokenError> {
    let missing =
        |key: &str| TokenError::new("invalid_request", format!("No \"{key}\" parameter found"));
    let grant_type = param(p, "grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant_type != "refresh_token" {
        return Err(TokenError::new(
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        ));
    }
    let client_id = param(p, "client_id").ok_or_else(|| missing("client_id"))?;
    let secret = param(p, "client_secret").ok_or_else(|| missing("client_secret"))?;
    let token = param(p, "refresh_token").ok_or_else(|| missing("refresh_token"))?;
    let rotation = state.portal.oauth_rotation;
    let users_ok = |state: &State, user: i64| state.user(user).is_some_and(|u| u.active);
    let Some(oauth) = state.oauth.as_ref() else {
        return Err(invalid_client());
    };
    if !oauth
        .clients
        .iter()
        .any(|c| c.client_id == client_id && c.client_secret == secret)
    {
        return Err(invalid_client());
    }
    let Some(i) = oauth
        .refresh_tokens
        .iter()
        .position(|r| r.refresh_token == token && r.client_id == client_id && !r.revoked)
    else {
        return Err(invalid_grant());
    };
    let user = oauth.refresh_tokens[i].user;
    let scopes = oauth.refresh_tokens[i].scopes.clone();
    if !users_ok(state, user) {
        return Err(invalid_grant());
    }
    let ttl = oauth.access_ttl_s;
    let access_token = new_token();
    let refresh_token = new_token();
    let expires = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    let Some(oauth) = state.oauth.as_mut() else {
        return Err(invalid_client());
    };
    if rotation == OAuthRotation::Invalidate {
        oauth.refresh_tokens[i].revoked = true;
    }
    oauth.tokens.push(AccessToken {
        access_token: access_token.clone(),
        user,
        expires_at: expires,
        scopes: scopes.clone(),
    });
    oauth.refresh_tokens.push(RefreshToken {
        refresh_token: refresh_token.clone(),
        client_id,
        user,
        revoked: false,
        scopes: scopes.clone(),
    });
    Ok(Grant {
        access_token,
        refresh_token,
        expires,
        expires_in: ttl,
        user_id: user,
        scopes,
    })
}

fn invalid_client() -> TokenError {
    TokenError::new("invalid_client", "Invalid client credentials")
}

fn invalid_grant() -> TokenError {
    TokenError::new("invalid_grant", "Invalid or expired refresh token")
}

/// Why an access token was refused: the REST error (HTTP 401) to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// `invalid_token` "Unable to get application by token" (text UNCONFIRMED; PYSDK).
    Unknown,
    /// `expired_token` "The access token provided has expired." (`expires_at <= now`).
    Expired,
    /// `authorization_error` "Unable to authorize user": the user is gone or inactive.
    User,
}

impl TokenRefusal {
    pub fn code_and_text(self) -> (&'static str, &'static str) {
        match self {
            TokenRefusal::Unknown => ("invalid_token", "Unable to get application by token"),
            TokenRefusal::Expired => ("expired_token", "The access token provided has expired."),
            TokenRefusal::User => ("authorization_error", "Unable to authorize user"),
        }
    }
}

/// An accepted access token: its user and its scopes (`None`: every scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user: i64,
    pub scopes: Option<Vec<String>>,
}

/// The user an access token belongs to and its scopes, if it is known, not expired at `now`
/// and its user is active. Scopes are checked by the server, per method.
pub fn check(state: &State, token: &str, now: f64) -> Result<TokenOwner, TokenRefusal> {
    let t = state
        .oauth
        .as_ref()
        .and_then(|o| o.tokens.iter().find(|t| t.access_token == token))
        .ok_or(TokenRefusal::Unknown)?;
    if (t.expires_at as f64) <= now {
        return Err(TokenRefusal::Expired);
    }
    match state.user(t.user) {
        Some(u) if u.active => Ok(TokenOwner {
            user: t.user,
            scopes: t.scopes.clone(),
        }),
        _ => Err(TokenRefusal::User),
    }
}
