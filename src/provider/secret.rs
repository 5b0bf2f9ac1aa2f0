//! `Secret`: a credential shared by every provider (a Bitrix24 webhook code or OAuth token, a
//! DocSpace API key or personal access token). It never prints: `Debug` and `Display` show
//! `***`, and only the code that puts it on the wire (a URL, a header) may `expose` it.
//! No I/O here.

use std::fmt;

/// A credential. `Debug` and `Display` print `***`; the value is reachable only through
/// `expose`, used where a request is built.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
