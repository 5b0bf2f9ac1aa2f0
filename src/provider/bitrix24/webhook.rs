//! The incoming-webhook address `https://HOST/rest/USER_ID/CODE/` and the secret it carries.
//! The code is a credential: it lives in a `Secret`, which never prints, and the only string that
//! contains it is the request URL handed to the HTTP client.

use std::fmt;

/// A credential. `Debug` and `Display` print `***`; the value is reachable only through
/// `expose`, used where the request URL is built.
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

/// A parsed webhook address.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `scheme://host[:port]/…/rest/USER_ID/`, without the code.
    prefix: String,
    pub user_id: u64,
    code: Secret,
}

/// Why a portal address was refused. Never contains the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Bitrix24 webhook URL {shown}: {why} (expected https://HOST/rest/USER_ID/CODE/)")]
pub struct WebhookError {
    shown: String,
    why: &'static str,
}

impl Webhook {
    pub fn parse(url: &str) -> Result<Webhook, WebhookError> {
        let fail = |why| WebhookError {
            shown: redact(url),
            why,
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| fail("no scheme"))?;
        if scheme != "https" && scheme != "http" {
            return Err(fail(
                "the scheme must be https (or http for a local sandbox)",
            ));
        }
        // The HTTP client must accept it too: a real URL parser catches bad hosts and ports.
        let parsed = reqwest::Url::parse(url).map_err(|_| fail("not a valid URL"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(fail("user:password@ does not belong in a webhook URL"));
        }
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (host, path) = rest.split_once('/').ok_or_else(|| fail("no path"))?;
        if host.is_empty() {
            return Err(fail("no host"));
        }
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let n = segments.len();
        if n < 3 || segments[n - 3] != "rest" {
            return Err(fail("the path must end in /rest/USER_ID/CODE/"));
        }
        let user_id: u64 = segments[n - 2]
            .parse()
            .ok()
            .filter(|u| *u > 0)
            .ok_or_else(|| fail("USER_ID must be a positive number"))?;
        let code = segments[n - 1];
        if code.is_empty()
            || !code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(fail("CODE must be letters and digits"));
        }
        let prefix = format!("{scheme}://{host}/{}/", segments[..n - 1].join("/"));
        Ok(Webhook {
            prefix,
            user_id,
            code: Secret::new(code),
        })
    }

    /// The URL of a method call. Contains the secret: hand it to the HTTP client only.
    pub(crate) fn method_url(&self, method: &str) -> String {
        format!("{}{}/{method}.json", self.prefix, self.code.expose())
    }

    /// `text` with every occurrence of the code replaced by `***`, in any letter case (a page
    /// may upper-case the path it quotes).
    pub fn scrub(&self, text: &str) -> String {
        let needle = self.code.expose().to_ascii_lowercase();
        let haystack = text.to_ascii_lowercase();
        // ASCII lower-casing keeps byte offsets, so matches in `haystack` index `text`.
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (i, _) in haystack.match_indices(&needle) {
            out.push_str(&text[last..i]);
            out.push_str("***");
            last = i + needle.len();
        }
        out.push_str(&text[last..]);
        out
    }

    /// The address with the code masked, safe for messages and logs.
    pub fn display(&self) -> String {
        format!("{}***/", self.prefix)
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Webhook({})", self.display())
    }
}

/// What of a rejected address is safe to show: its scheme and host. The code may sit anywhere
/// in a malformed URL, so nothing of the path is shown.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            // Drop any user:password@ part.
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}/…")
        }
        None => "(not a URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_never_shows_the_code() {
        let w = Webhook::parse("https://acme.bitrix24.com/rest/1/s3cr3tc0de/").unwrap();
        assert_eq!(w.user_id, 1);
        assert_eq!(
            w.method_url("batch"),
            "https://acme.bitrix24.com/rest/1/s3cr3tc0de/batch.json"
        );
        assert_eq!(w.display(), "https://acme.bitrix24.com/rest/1/***/");
        assert!(!format!("{w:?}").contains("s3cr3t"));
        let no_slash = Webhook::parse("http://127.0.0.1:8080/rest/7/abc").unwrap();
        assert_eq!(
            no_slash.method_url("user.current"),
            "http://127.0.0.1:8080/rest/7/abc/user.current.json"
        );
    }

    #[test]
    fn rejects_bad_urls_without_echoing_the_code() {
        for bad in [
            "acme.bitrix24.com/rest/1/s3cr3t",
            "s3cr3t",
            "ftp://acme/rest/1/s3cr3t/",
            "https://acme/rest/x/s3cr3t/",
            "https://acme/api/1/s3cr3t/",
            "https://acme/rest/1/s3cr3t!/",
            "https://acme/rest/s3cr3t",
            "https://acme/rest/s3cr3t/",
            "https://acme/s3cr3t/rest/1",
            "https://u:s3cr3t@acme/rest/1/",
            "https://u:s3cr3t@acme/rest/1/code/",
            "https://exa mple.com/rest/1/s3cr3t/",
            "https://acme:99999/rest/1/s3cr3t/",
            "https://[::1/rest/1/s3cr3t/",
        ] {
            let err = Webhook::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn scrubs_the_code_from_network_text() {
        let w = Webhook::parse("https://acme/rest/1/s3cr3tc0de/").unwrap();
        assert_eq!(
            w.scrub("The requested URL /rest/1/s3cr3tc0de/batch.json was not found"),
            "The requested URL /rest/1/***/batch.json was not found"
        );
        assert_eq!(
            w.scrub("/REST/1/S3CR3TC0DE/ and é s3cr3tC0de"),
            "/REST/1/***/ and é ***"
        );
    }
}
