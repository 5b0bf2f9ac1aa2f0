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
    fn get(&self, kind: &str) -> &[(String, Value)] {
        match kind {
            "result" => &self.result,
            "error" => &self.error,
            "total" => &self.total,
            "next" => &self.next,
            _ => &self.time,
        }
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
///
/// PHP does this with one `str_replace` over the whole value per reference, which costs
/// (references × length). Here the value is rebuilt in one pass, each reference replaced where
/// it stands: the same result unless a reference's text also occurs inside a longer reference
/// or inside a substituted value (then PHP may also replace those occurrences). Together with
/// [`lookup`] this keeps the work per reference bounded by its own length, so a command with
/// 160k references cannot hold the state lock.
fn substitute(text: &str, sec: &Sections) -> Value {
    let refs = find_refs(text);
    let mut out = String::new();
    let mut last = 0;
    for (range, kind, path) in refs {
        let segs = segments(&path);
        if segs.is_empty() {
            continue;
        }
        let section = sec.get(kind);
        let r = resolve(section, &segs);
        if range.start == 0 && range.end == text.len() {
            return r.map_or_else(|| Value::Arr(section.to_vec()), Value::clone);
        }
        out.push_str(&text[last..range.start]);
        // The whole section, when even the first segment is missing, is an array.
        out.push_str(&r.map_or_else(|| "Array".to_owned(), Value::to_php_string));
        last = range.end;
    }
    if last == 0 {
        return Value::Str(text.to_owned());
    }
    out.push_str(&text[last..]);
    Value::Str(out)
}

/// Follow `segs` from a section; stop at the last level that resolved (`None`: the section).
fn resolve<'a>(section: &'a [(String, Value)], segs: &[String]) -> Option<&'a Value> {
    let mut level = section;
    let mut found: Option<&Value> = None;
    for seg in segs {
        match lookup(level, seg) {
            Some(v) => {
                found = Some(v);
                match v {
                    Value::Arr(a) => level = a,
                    _ => level = &[],
                }
            }
            None => break,
        }
    }
    found
}

/// A key of a PHP array: O(1) for a list's integer keys, which are at their own position.
fn lookup<'a>(arr: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    if let Ok(i) = key.parse::<usize>()
        && let Some((k, v)) = arr.get(i)
        && k == key
    {
        return Some(v);
    }
    params::get(arr, key)
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
