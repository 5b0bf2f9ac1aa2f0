//! The `batch` method (reference §3): reading `cmd`/`halt`, parsing each `method?query` with
//! PHP `parse_str`, substituting `$result[..]`/`$next`/`$total`/`$error`/`$time` references,
//! the 50-command limit, and building the five result sections.
//!
//! It does not execute methods itself: the caller passes an `exec` closure, which owns timing,
//! billing and the state. No HTTP and no I/O here.

use super::methods::{ApiError, Output};
use super::params::{self, Params, Value, obj, s};

/// `CRestUtil::BATCH_MAX_LENGTH`.
pub const MAX_LENGTH: usize = 50;

/// What one sub-command produced: its outcome and, on success, its `time` object.
#[derive(Debug, Clone)]
pub struct CmdResult {
    pub outcome: Result<Output, ApiError>,
    pub time: Option<Value>,
}

/// The five sections, in command order.
#[derive(Debug, Default)]
struct Sections {
    result: Vec<(String, Value)>,
    error: Vec<(String, Value)>,
    total: Vec<(String, Value)>,
    next: Vec<(String, Value)>,
    time: Vec<(String, Value)>,
}

impl Sections {
    fn get(&self, kind: &str) -> Value {
        let sec = match kind {
            "result" => &self.result,
            "error" => &self.error,
            "total" => &self.total,
            "next" => &self.next,
            _ => &self.time,
        };
        Value::Arr(sec.clone())
    }
}

fn error_value(e: &ApiError) -> Value {
    obj([
        ("error", s(e.code.clone())),
        ("error_description", s(e.description.clone())),
    ])
}

/// Run a batch. `p` holds the batch's own parameters with lowercased keys. `exec` runs one
/// sub-command (lowercase method name, parsed params) and is not called for commands the
/// batch itself refuses. Returns the `result` value of the envelope.
pub fn run(p: &Params, exec: &mut dyn FnMut(&str, &Params) -> CmdResult) -> Value {
    let halt = params::get(p, "halt").is_some_and(Value::truthy);
    let cmds: Vec<(String, Value)> = match params::get(p, "cmd") {
        Some(Value::Arr(a)) => a.clone(),
        _ => Vec::new(),
    };
    let mut sec = Sections::default();
    let mut count = 0usize;
    for (name, cmd) in cmds {
        // Non-string entries are skipped silently.
        let Value::Str(cmd) = cmd else { continue };
        count += 1;
        let failed = if count > MAX_LENGTH {
            let e = ApiError::new(
                400,
                "ERROR_BATCH_LENGTH_EXCEEDED",
                "Max batch length exceeded",
            );
            sec.error.push((name, error_value(&e)));
            true
        } else {
            let (path, query) = match cmd.split_once('?') {
                Some((p, q)) => (p, q),
                None => (cmd.as_str(), ""),
            };
            let method = path.trim().to_lowercase();
            let method = method.strip_suffix(".json").unwrap_or(&method).to_owned();
            let parsed = substitute_params(&params::parse_str(query), &sec);
            let r = if method == "batch" {
                CmdResult {
                    outcome: Err(ApiError::new(
                        405,
                        "ERROR_BATCH_METHOD_NOT_ALLOWED",
                        "Method is not allowed for batch usage",
                    )),
                    time: None,
                }
            } else {
                exec(&method, &parsed)
            };
            match r.outcome {
                Ok(out) => {
                    sec.result.push((name.clone(), out.result));
                    if let Some(t) = out.total {
                        sec.total.push((name.clone(), Value::Int(t)));
                    }
                    if let Some(n) = out.next {
                        sec.next.push((name.clone(), Value::Int(n)));
                    }
                    if let Some(t) = r.time {
                        sec.time.push((name, t));
                    }
                    false
                }
                Err(e) => {
                    sec.error.push((name, error_value(&e)));
                    true
                }
            }
        };
        if failed && halt {
            break;
        }
    }
    Value::Arr(vec![
        ("result".to_owned(), Value::Arr(sec.result)),
        ("result_error".to_owned(), Value::Arr(sec.error)),
        ("result_total".to_owned(), Value::Arr(sec.total)),
        ("result_next".to_owned(), Value::Arr(sec.next)),
        ("result_time".to_owned(), Value::Arr(sec.time)),
    ])
}

/// `processBatchStructure`: substitute references in keys and values, recursively.
fn substitute_params(p: &Params, sec: &Sections) -> Params {
    let mut out = params::ArrBuilder::default();
    for (k, v) in p {
        let key = substitute(k, sec).to_php_string();
        let val = match v {
            Value::Arr(a) => Value::Arr(substitute_params(a, sec)),
            Value::Str(x) => substitute(x, sec),
            other => other.clone(),
        };
        out.set(key, val);
    }
    out.finish()
}

/// The reference kinds of `\$(result|next|total|time|error)([^\s]*)` (case-insensitive).
const KINDS: &[&str] = &["result", "next", "total", "time", "error"];

/// Find the references in `text`: (byte range of the whole match, kind, path text).
fn find_refs(text: &str) -> Vec<(std::ops::Range<usize>, &'static str, String)> {
    let mut out = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut i = 0;
    while let Some(off) = text[i..].find('$') {
        let at = i + off;
        let after = &lower[at + 1..];
        match KINDS.iter().find(|k| after.starts_with(**k)) {
            Some(kind) => {
                let path_start = at + 1 + kind.len();
                let path_end = text[path_start..]
                    .find(char::is_whitespace)
                    .map_or(text.len(), |e| path_start + e);
                out.push((at..path_end, *kind, text[path_start..path_end].to_owned()));
                i = path_end.max(at + 1);
            }
            None => i = at + 1,
        }
        if i >= text.len() {
            break;
        }
    }
    out
}

/// The `[segment]` parts of a reference path (`\[([^\]]+)\]`, all occurrences).
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(0) => rest = &after[1..],
            Some(close) => {
                out.push(after[..close].to_owned());
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    out
}

/// `processBatchElement`: a value that is exactly one reference becomes the referenced raw
/// value (possibly an array); references inside a longer string are replaced by their PHP
/// string form. A missing path segment stops resolution at the last level that resolved.
fn substitute(text: &str, sec: &Sections) -> Value {
    let refs = find_refs(text);
    let mut current = Value::Str(text.to_owned());
    for (range, kind, path) in refs {
        let segs = segments(&path);
        if segs.is_empty() {
            continue;
        }
        let mut r = sec.get(kind);
        for seg in segs {
            let next = match &r {
                Value::Arr(a) => params::get(a, &seg).cloned(),
                _ => None,
            };
            match next {
                Some(n) => r = n,
                None => break,
            }
        }
        let whole = &text[range];
        match &current {
            Value::Str(cur) if cur == whole => current = r,
            Value::Str(cur) => current = Value::Str(cur.replace(whole, &r.to_php_string())),
            _ => {}
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sections() -> Sections {
        let mut sec = Sections::default();
        let users = params::list([obj([("ID", s("7")), ("EMAIL", s("a@b"))])]);
        sec.result.push(("u".to_owned(), users));
        sec.next.push(("u".to_owned(), Value::Int(50)));
        sec
    }

    #[test]
    fn whole_reference_is_raw_value() {
        let sec = sections();
        assert_eq!(substitute("$result[u][0][ID]", &sec), s("7"));
        assert_eq!(substitute("$next[u]", &sec), Value::Int(50));
        assert_eq!(
            substitute("$result[u][0]", &sec).to_json(),
            json!({"ID":"7","EMAIL":"a@b"})
        );
    }

    #[test]
    fn embedded_reference_is_string_replaced() {
        let sec = sections();
        assert_eq!(substitute("id $result[u][0][ID] x", &sec), s("id 7 x"));
        assert_eq!(substitute("$RESULT[u][0][ID]", &sec), s("7"));
        // A missing segment stops at the last level that resolved (an array → "Array").
        assert_eq!(substitute("x $result[u][9][ID]", &sec), s("x Array"));
        // No segments: left alone.
        assert_eq!(substitute("$result", &sec), s("$result"));
        assert_eq!(substitute("$5 and $other", &sec), s("$5 and $other"));
    }

    #[test]
    fn references_in_keys_and_nested_values() {
        let sec = sections();
        let mut p = params::parse_str("filter[>ID]=$result[u][0][ID]");
        // parse_str splits bracketed names, so a key reference only survives when built
        // directly (as a JSON body's cmd would not be, but the server code allows it).
        p.push(("k$next[u]".to_owned(), s("1")));
        let got = Value::Arr(substitute_params(&p, &sec)).to_json();
        assert_eq!(got, json!({"filter":{">ID":"7"},"k50":"1"}));
    }
}
