//! The incoming-webhook address `https://HOST/rest/USER_ID/CODE/` and the secret it carries.
//! The code is a credential: it lives in a `Secret`, which never prints, and the only string that
//! contains it is the request URL handed to the HTTP client.
//!
//! Also the pieces every way of authenticating shares: `Secret` (re-exported from
//! `provider::secret`, where every provider finds it), the check that credentials go
//! only over https (or to loopback), and masking a secret out of text from the network.

use std::fmt;

pub use crate::provider::secret::Secret;

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

/// Why `http://` is refused for anything but loopback.
pub(crate) const CLEAR_TEXT: &str = "http:// would send the credentials in clear text; use https:// (http is allowed only for loopback, e.g. the sandbox)";

/// The shortest webhook code accepted (see `Webhook::parse`).
pub const MIN_CODE_LEN: usize = 8;

impl Webhook {
    /// Parse `https://HOST/…/rest/USER_ID/CODE/`. `http://` is accepted only for loopback
    /// hosts (127.0.0.0/8, `localhost`, `[::1]`: the sandbox), since it would carry the code in
    /// clear text. Nothing is connected to.
    pub fn parse(url: &str) -> Result<Webhook, WebhookError> {
        let fail = |why| WebhookError {
            shown: redact(url),
            why,
        };
        let (parsed, authority) = secure_url(url).map_err(fail)?;
        let segments: Vec<&str> = parsed
            .path_segments()
            .ok_or_else(|| fail("no path"))?
            .collect();
        let segments = match segments.split_last() {
            Some((&"", init)) => init,
            _ => &segments[..],
        };
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
        if code.is_empty() || !code.bytes().all(is_code_byte) {
            return Err(fail("CODE must be letters and digits"));
        }
        // Answers are scrubbed of the code before roster reads them, so a code that could be
        // ordinary answer text (a role `K`, a key `ROLE`) would corrupt the data. Bitrix24's
        // codes are 16 characters.
        if code.len() < MIN_CODE_LEN {
            return Err(fail(
                "CODE must be at least 8 characters (Bitrix24's are 16)",
            ));
        }
        let prefix = format!(
            "{}://{authority}/{}/",
            parsed.scheme(),
            segments[..n - 1].join("/")
        );
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

    /// `text` with the code masked as `***` wherever it appears: in any letter case (a page may
    /// upper-case the path it quotes), percent-encoded (`%73%33…`, also twice: `%2573…`) or
    /// JSON-escaped (`\u0073…`), character by character or mixed; then every other webhook path
    /// masked too (`scrub_webhook_urls`).
    pub fn scrub(&self, text: &str) -> String {
        scrub_webhook_urls(&scrub_secret(text, &self.code))
    }

    /// The address with the code masked, safe for messages and logs. Anything that looks like
    /// another webhook path in front of it is masked as well.
    pub fn display(&self) -> String {
        scrub_webhook_urls(&format!("{}***/", self.prefix))
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Webhook({})", self.display())
    }
}

/// Check an address that credentials will be sent to: `https://`, or `http://` for a loopback
/// host only; a host; no `user:password@`. Returns the parsed URL (as the HTTP client reads it:
/// a backslash is a slash) and its `host[:port]`. The reason is safe to show; the URL is not.
pub(crate) fn secure_url(url: &str) -> Result<(reqwest::Url, String), &'static str> {
    let (scheme, _) = url.split_once("://").ok_or("no scheme")?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return Err("the scheme must be https (or http for a local sandbox)");
    }
    // The HTTP client must accept it too, and read it the same way (a backslash is a
    // slash to it): take host and path from a real URL parser.
    let parsed = reqwest::Url::parse(url).map_err(|_| "not a valid URL")?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("user:password@ does not belong in a Bitrix24 URL");
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("no host")?;
    if parsed.scheme() == "http" && !is_loopback(host) {
        return Err(CLEAR_TEXT);
    }
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    Ok((parsed, authority))
}

/// `text` with `secret` masked as `***` wherever it appears: in any letter case (a page may
/// upper-case what it quotes), percent-encoded (`%73%33…`, also twice: `%2573…`) or
/// JSON-escaped (`\u0073…`), character by character or mixed. An empty secret masks nothing.
pub(crate) fn scrub_secret(text: &str, secret: &Secret) -> String {
    let code = secret.expose().as_bytes();
    if code.is_empty() {
        return text.to_owned();
    }
    mask(text, |t, i| {
        let mut j = i;
        for &c in code {
            j += spelled(t, j, |b| b.eq_ignore_ascii_case(&c))?;
        }
        Some((i, j))
    })
}

/// `localhost`, 127.0.0.0/8 or `[::1]`, as the URL parser normalised it (`127.1` reads as
/// `127.0.0.1`, hosts are lower-cased).
fn is_loopback(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|a| a.is_loopback());
    }
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// What of a rejected address is safe to show: its scheme and host. The code may sit anywhere
/// in a malformed URL, so nothing of the path is shown (a backslash ends the host too: HTTP
/// clients read it as a slash).
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
            // Drop any user:password@ part.
            let host = authority.rsplit('@').next().unwrap_or_default();
            scrub_webhook_urls(&format!("{scheme}://{host}/…"))
        }
        None => "(not a URL)".to_owned(),
    }
}

/// `text` with the CODE of everything that looks like a Bitrix24 webhook path —
/// `/rest/USER_ID/CODE`, in any letter case, with its slashes percent-encoded (`%2F`, `%252F`)
/// or JSON-escaped (`\/`, `\u002F`) — replaced by `***`. For any text that may quote a webhook
/// URL: error messages, usage errors, answers from a portal.
pub fn scrub_webhook_urls(text: &str) -> String {
    mask(text, |t, i| {
        let mut j = i + slash(t, i)?;
        let rest = t.get(j..j + 4)?;
        if !rest.eq_ignore_ascii_case(b"rest") {
            return None;
        }
        j += 4;
        j += slash(t, j)?;
        let digits = t[j..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        j += digits;
        j += slash(t, j)?;
        let start = j;
        while let Some(n) = spelled(t, j, |b| is_code_byte(*b)) {
            j += n;
        }
        (j > start).then_some((start, j))
    })
}

/// A byte a webhook code may contain.
fn is_code_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// `text` with every span `matcher` finds replaced by `***`. `matcher(bytes, i)` looks for a
/// match starting at `i` and returns the span to mask; spans are ASCII, so they start and end
/// on character boundaries.
fn mask(text: &str, matcher: impl Fn(&[u8], usize) -> Option<(usize, usize)>) -> String {
    let t = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut last, mut i) = (0, 0);
    while i < t.len() {
        match matcher(t, i) {
            Some((start, end)) if end > start => {
                out.push_str(&text[last..start]);
                out.push_str("***");
                last = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[last..]);
    out
}

/// The length of one character at `t[i..]` for which `want` holds, written literally, as
/// `%XX`, as `%25XX` or as `\u00XX`.
fn spelled(t: &[u8], i: usize, want: impl Fn(&u8) -> bool) -> Option<usize> {
    let hex = |at: usize| -> Option<u8> {
        let h = t.get(at..at + 2)?;
        u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let starts = |p: &[u8]| {
        t.get(i..i + p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    let (byte, len) = if starts(b"%25") {
        (hex(i + 3)?, 5)
    } else if starts(b"%") {
        (hex(i + 1)?, 3)
    } else if starts(b"\\u00") {
        (hex(i + 4)?, 6)
    } else {
        (*t.get(i)?, 1)
    };
    want(&byte).then_some(len)
}

/// The length of a slash at `t[i..]`: `/`, `\/`, or an encoded one.
fn slash(t: &[u8], i: usize) -> Option<usize> {
    if t.get(i..i + 2) == Some(b"\\/") {
        return Some(2);
    }
    spelled(t, i, |b| *b == b'/')
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
        let no_slash = Webhook::parse("http://127.0.0.1:8080/rest/7/abcd1234").unwrap();
        assert_eq!(
            no_slash.method_url("user.current"),
            "http://127.0.0.1:8080/rest/7/abcd1234/user.current.json"
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
    fn http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080/rest/1/code1234/",
            "http://127.3.4.5/rest/1/code1234/",
            "http://localhost:3000/rest/1/code1234/",
            "http://LOCALHOST/rest/1/code1234/",
            "http://[::1]:9/rest/1/code1234/",
            "https://acme.bitrix24.com/rest/1/code1234/",
            "HTTPS://acme.bitrix24.com/rest/1/code1234/",
        ] {
            assert!(Webhook::parse(ok).is_ok(), "{ok}");
        }
        for clear in [
            "http://acme.bitrix24.com/rest/1/s3cr3tcode/",
            "http://10.0.0.1/rest/1/s3cr3tcode/",
            "http://128.0.0.1/rest/1/s3cr3tcode/",
            "http://[::2]/rest/1/s3cr3tcode/",
            "http://localhost.evil.com/rest/1/s3cr3tcode/",
            "http://127.0.0.1.nip.io/rest/1/s3cr3tcode/",
            "http://[::ffff:10.0.0.1]/rest/1/s3cr3tcode/",
        ] {
            let err = Webhook::parse(clear).unwrap_err().to_string();
            assert!(err.contains(CLEAR_TEXT), "{clear}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn odd_urls_show_no_code() {
        let w = Webhook::parse("https://acme/rest/1/f1rstc0de/rest/1/s3cr3tc0de/").unwrap();
        assert_eq!(w.display(), "https://acme/rest/1/***/rest/1/***/");
        // A backslash is a slash to the HTTP client: neither the check nor the message may
        // read it otherwise.
        let w = Webhook::parse("https://acme\\rest\\1\\s3cr3tc0de").unwrap();
        assert_eq!(w.display(), "https://acme/rest/1/***/");
        let err = Webhook::parse("https://acme\\rest\\x\\s3cr3tc0de")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn scrubs_the_code_from_network_text() {
        let w = Webhook::parse("https://acme/rest/1/s3cr3tc0de/").unwrap();
        let check = |text: &str, want: &str| assert_eq!(w.scrub(text), want, "{text}");
        check(
            "The requested URL /rest/1/s3cr3tc0de/batch.json was not found",
            "The requested URL /rest/1/***/batch.json was not found",
        );
        check(
            "/REST/1/S3CR3TC0DE/ and é s3cr3tC0de",
            "/REST/1/***/ and é ***",
        );
        // JSON escapes and percent-encoding, whole or in part, once or twice.
        check(
            r#"{"error_description":"bad \u0073\u0033cr3tc0de"}"#,
            r#"{"error_description":"bad ***"}"#,
        );
        check("q=%73%33%63%72%33%74%63%30%64%65&x", "q=***&x");
        check("q=s3cr%2533tc0de!", "q=***!");
        check(
            "%2Frest%2F1%2Fs3cr3tc0de%2Fbatch",
            "%2Frest%2F1%2F***%2Fbatch",
        );
        // Codes of other webhooks in the same text go too.
        check(
            r#"see \/rest\/9\/0th3rc0de\/ and /rest/1/s3cr3tc0de"#,
            r#"see \/rest\/9\/***\/ and /rest/1/***"#,
        );
    }

    #[test]
    fn scrubs_any_webhook_path_in_text() {
        let check = |text: &str, want: &str| assert_eq!(scrub_webhook_urls(text), want, "{text}");
        check(
            "error: invalid value 'https://acme.bitrix24.com/rest/12/k4n4ry_c0de-x/' for '--portal'",
            "error: invalid value 'https://acme.bitrix24.com/rest/12/***/' for '--portal'",
        );
        check("GET /REST/3/K4N4RY/user.get", "GET /REST/3/***/user.get");
        check(
            "u=https%3A%2F%2Facme%2Frest%2F3%2Fk4n4ry%2F",
            "u=https%3A%2F%2Facme%2Frest%2F3%2F***%2F",
        );
        check(
            "u=https%253A%252F%252Facme%252Frest%252F3%252Fk4n4ry",
            "u=https%253A%252F%252Facme%252Frest%252F3%252F***",
        );
        check(
            r#"{"url":"https:\/\/acme\/rest\/3\/k4n4ry\/"}"#,
            r#"{"url":"https:\/\/acme\/rest\/3\/***\/"}"#,
        );
        check("/rest/3/\\u006b4n4ry", "/rest/3/***");
        check("/rest/3/%6B4n4ry/", "/rest/3/***/");
        // Not webhook paths: left alone; already masked: unchanged.
        for same in [
            "/rest/user.get",
            "/rest/x/k4n4ry",
            "/restore/1/k4n4ry",
            "/rest/3/***/",
            "rest/3/k4n4ry",
            "ünïcode /rest/",
        ] {
            check(same, same);
        }
    }
}
