//! How the Bitrix24 client authenticates: an incoming webhook (the secret is in the URL) or
//! OAuth 2.0 (an access token in each request's body, refreshed when it expires). One closed
//! enum; `Auth::parse` tells them apart by the shape of `--portal`. No I/O here beyond what
//! `OAuth::new` does (reading the token file).

use super::oauth::{OAuth, OAuthConfig, OAuthError, is_endpoint_shaped};
use super::webhook::{Webhook, WebhookError};

/// The credentials a `Client` calls the portal with.
#[derive(Debug)]
pub enum Auth {
    Webhook(Webhook),
    /// Boxed: it carries the refresh state, several times a webhook's size.
    OAuth(Box<OAuth>),
}

impl From<Webhook> for Auth {
    fn from(w: Webhook) -> Auth {
        Auth::Webhook(w)
    }
}

impl From<OAuth> for Auth {
    fn from(o: OAuth) -> Auth {
        Auth::OAuth(Box::new(o))
    }
}

/// Why `--portal` (with the OAuth settings) was refused. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

impl Auth {
    /// `--portal` as given: `https://HOST/rest/` (nothing after `rest`) means OAuth with
    /// `oauth`'s settings, validated by `OAuth::new`; anything else is parsed as a webhook
    /// `https://HOST/rest/USER_ID/CODE/`, and `oauth` is ignored.
    pub fn parse(portal: &str, oauth: &OAuthConfig) -> Result<Auth, AuthError> {
        if is_endpoint_shaped(portal) {
            Ok(OAuth::new(portal, oauth)?.into())
        } else {
            Ok(Auth::Webhook(Webhook::parse(portal)?))
        }
    }

    /// The portal's address with every secret masked, for messages and logs.
    pub fn display(&self) -> String {
        match self {
            Auth::Webhook(w) => w.display(),
            Auth::OAuth(o) => o.display(),
        }
    }

    /// `text` with every secret of these credentials masked (see `Webhook::scrub`,
    /// `OAuth::scrub`); webhook paths are masked either way.
    pub fn scrub(&self, text: &str) -> String {
        match self {
            Auth::Webhook(w) => w.scrub(text),
            Auth::OAuth(o) => o.scrub(text),
        }
    }
}
