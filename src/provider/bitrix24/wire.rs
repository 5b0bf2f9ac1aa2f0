//! Bitrix24's wire format, client side: building `batch` command strings (PHP
//! `http_build_query` style) and reading the JSON envelopes by hand, tolerant of the shapes the
//! reference documents (IDs as strings or numbers, empty sections as `[]`, error codes that are
//! empty or numeric). Nothing here is shared with the sandbox.

use serde_json::Value;

/// One REST call to put in a batch: method and already-flat parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub method: &'static str,
    pub params: Vec<(String, String)>,
}

impl Command {
    pub fn new(method: &'static str) -> Self {
        Command {
            method,
            params: Vec::new(),
        }
    }
    pub fn param(mut self, key: &str, value: impl ToString) -> Self {
        self.params.push((key.to_owned(), value.to_string()));
        self
    }
    /// `KEY[0]=a&KEY[1]=b`, PHP's list syntax.
    pub fn list<T: ToString>(mut self, key: &str, values: impl IntoIterator<Item = T>) -> Self {
        for (i, v) in values.into_iter().enumerate() {
            self.params.push((format!("{key}[{i}]"), v.to_string()));
        }
        self
    }
    /// The batch `cmd` string: `method?query`.
    pub fn to_cmd(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.params {
            q.append_pair(k, v);
        }
        format!("{}?{}", self.method, q.finish())
    }
}

/// An error answer: `{"error": code, "error_description": text}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub description: String,
}

/// Read an error object, accepting a string, number or missing `error`.
pub fn error_body(v: &Value) -> Option<ErrorBody> {
    let obj = v.as_object()?;
    let code = obj.get("error")?;
    let code = match code {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let description = obj
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some(ErrorBody { code, description })
}

/// A batch section (`result`, `result_error`, …) entry by command name. Sections are objects
/// for named commands, but `[]` when empty and arrays when names are sequential indexes.
pub fn section<'v>(batch_result: &'v Value, section: &str, name: &str) -> Option<&'v Value> {
    match batch_result.get(section)? {
        Value::Object(map) => map.get(name),
        Value::Array(items) => name.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
    .filter(|v| !v.is_null())
}

/// An ID that may arrive as `"77"` or `77`.
pub fn id(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A batch section's number by command name (`result_next`, `result_total`), as a string or
/// a number.
pub fn section_number(batch_result: &Value, section_name: &str, name: &str) -> Option<u64> {
    section(batch_result, section_name, name).and_then(id)
}

/// IDs wherever a list of users or departments may arrive: an array or an object (PHP arrays
/// with odd keys) of IDs as strings or numbers, or of objects carrying `id`/`ID`/`USER_ID`.
/// Missing, `null`, `false` or anything else: none. Order kept, duplicates dropped.
pub fn ids(v: Option<&Value>) -> Vec<u64> {
    let items: Vec<&Value> = match v {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(Value::Object(map)) => map.values().collect(),
        _ => return Vec::new(),
    };
    let mut out: Vec<u64> = Vec::new();
    for item in items {
        let found = match item {
            Value::Object(o) => ["id", "ID", "USER_ID", "userId"]
                .iter()
                .find_map(|k| o.get(*k).and_then(id)),
            other => id(other),
        };
        if let Some(n) = found.filter(|n| *n > 0)
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// A flag that may arrive as a JSON bool, `"Y"`/`"N"`, `"true"`/`"false"` or `1`/`0`.
pub fn flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "y" | "true" | "1" => Some(true),
            "n" | "false" | "0" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A non-empty string field, trimmed.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// A list of IDs as returned by add/update/delete/invite (strings or numbers). Anything else
/// (`true`, an object) yields `None`.
pub fn id_list(v: &Value) -> Option<Vec<u64>> {
    match v {
        Value::Array(items) => Some(items.iter().filter_map(id).collect()),
        Value::Object(map) => Some(map.values().filter_map(id).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_and_string_lists() {
        let c = Command::new("user.get").list("FILTER[@EMAIL]", ["a_b@x.io", "c%d@x.io"]);
        assert_eq!(
            c.to_cmd(),
            "user.get?FILTER%5B%40EMAIL%5D%5B0%5D=a_b%40x.io&FILTER%5B%40EMAIL%5D%5B1%5D=c%25d%40x.io"
        );
    }

    #[test]
    fn cmd_strings_use_php_list_syntax() {
        let c = Command::new("sonet_group.user.add")
            .param("GROUP_ID", 15)
            .list("USER_ID", [21, 22]);
        assert_eq!(
            c.to_cmd(),
            "sonet_group.user.add?GROUP_ID=15&USER_ID%5B0%5D=21&USER_ID%5B1%5D=22"
        );
    }

    #[test]
    fn tolerant_readers() {
        assert_eq!(id(&json!("77")), Some(77));
        assert_eq!(id(&json!(77)), Some(77));
        assert_eq!(id_list(&json!(["1", 2])), Some(vec![1, 2]));
        assert_eq!(id_list(&json!([])), Some(vec![]));
        assert_eq!(id_list(&json!(true)), None);
        let e =
            error_body(&json!({"error": "", "error_description": "Socialnetwork group not found"}))
                .unwrap();
        assert_eq!(e.code, "");
        assert_eq!(
            error_body(&json!({"error": 0, "error_description": "x"}))
                .unwrap()
                .code,
            "0"
        );
        let batch =
            json!({"result": [], "result_error": {"c1": {"error": "", "error_description": "d"}}});
        assert!(section(&batch, "result", "c0").is_none());
        assert!(section(&batch, "result_error", "c1").is_some());
        let listed = json!({"result": [["a"], ["b"]]});
        assert_eq!(section(&listed, "result", "1"), Some(&json!(["b"])));
        let nexts = json!({"result_next": {"c03": 50, "c04": "100"}});
        assert_eq!(section_number(&nexts, "result_next", "c03"), Some(50));
        assert_eq!(section_number(&nexts, "result_next", "c04"), Some(100));
        assert_eq!(section_number(&nexts, "result_next", "c05"), None);
    }

    #[test]
    fn id_lists_in_every_shape() {
        assert_eq!(ids(Some(&json!([1, "2", 2, "x", 0]))), [1, 2]);
        assert_eq!(ids(Some(&json!({"0": 5, "1": "6"}))), [5, 6]);
        assert_eq!(
            ids(Some(&json!([{"id": 7, "name": "A"}, {"ID": "8"}]))),
            [7, 8]
        );
        assert!(ids(Some(&json!(null))).is_empty());
        assert!(ids(Some(&json!(false))).is_empty());
        assert!(ids(None).is_empty());
    }

    #[test]
    fn flags_and_text() {
        for (v, want) in [
            (json!(true), Some(true)),
            (json!("Y"), Some(true)),
            (json!("N"), Some(false)),
            (json!(0), Some(false)),
            (json!("false"), Some(false)),
            (json!(null), None),
        ] {
            assert_eq!(flag(&v), want, "{v}");
        }
        assert_eq!(text(Some(&json!(" Anna "))), Some("Anna".into()));
        assert_eq!(text(Some(&json!(""))), None);
        assert_eq!(text(Some(&json!(5))), None);
    }
}
