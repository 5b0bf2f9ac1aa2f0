//! Request parameters as PHP sees them: a [`Value`] tree of scalars and ordered arrays, PHP's
//! `parse_str` for query strings and form bodies, JSON-to-PHP conversion, and the PHP casts
//! (`intval`, `(bool)`, string conversion) the handlers rely on.
//!
//! Owns only parsing and conversion. It must not know any Bitrix24 method or envelope, and does
//! no I/O.
//!
//! Order and cost: a PHP array keeps its keys in insertion order, and so does every parser here:
//! a JSON body is decoded straight into [`Value`] (its own `Deserialize`, not through
//! `serde_json::Map`, which sorts keys), so `cmd` keys run in wire order as `json_decode` keeps
//! them. Parsing is linear in the input: keys are indexed in a hash map while an array is built
//! ([`ArrBuilder`]), never looked up by scanning. Like PHP, `parse_str` and form bodies stop
//! after [`MAX_INPUT_VARS`] variables.

use std::collections::HashMap;

use serde_json::Value as Json;

/// A PHP value as produced by `parse_str` or `json_decode($body, true)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A PHP array: ordered keys. Integer keys are stored in their canonical decimal form.
    Arr(Vec<(String, Value)>),
}

/// Top-level parameters of one call: a PHP array.
pub type Params = Vec<(String, Value)>;

impl Value {
    pub fn as_arr(&self) -> Option<&Vec<(String, Value)>> {
        match self {
            Value::Arr(a) => Some(a),
            _ => None,
        }
    }

    /// PHP `intval()`.
    pub fn intval(&self) -> i64 {
        match self {
            Value::Null => 0,
            Value::Bool(b) => i64::from(*b),
            Value::Int(i) => *i,
            Value::Float(f) => {
                if f.is_finite() {
                    *f as i64
                } else {
                    0
                }
            }
            Value::Str(s) => intval_str(s),
            Value::Arr(a) => i64::from(!a.is_empty()),
        }
    }

    /// PHP `(bool)` cast: `""`, `"0"`, `0`, `0.0`, `null` and `[]` are false, all else true
    /// (so the string `"false"` is true).
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !(s.is_empty() || s == "0"),
            Value::Arr(a) => !a.is_empty(),
        }
    }

    /// PHP string conversion (`(string)`); arrays become `"Array"` as in PHP.
    pub fn to_php_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(true) => "1".to_owned(),
            Value::Bool(false) => String::new(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => php_float(*f),
            Value::Str(s) => s.clone(),
            Value::Arr(_) => "Array".to_owned(),
        }
    }

    /// Is this value "empty" in PHP's `empty()` sense?
    pub fn is_empty_php(&self) -> bool {
        !self.truthy()
    }

    /// The value as JSON, as PHP's `json_encode` would write it (arrays with keys 0..n-1 in
    /// order become JSON arrays, others objects; an empty array is `[]`).
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::Str(s) => Json::String(s.clone()),
            Value::Arr(a) => php_array_json(a.iter().map(|(k, v)| (k.clone(), v.to_json()))),
        }
    }

    /// Convert a decoded JSON value into the PHP value `json_decode(.., true)` would give.
    pub fn from_json(j: &Json) -> Value {
        match j {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            Json::String(s) => Value::Str(s.clone()),
            Json::Array(a) => Value::Arr(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| (i.to_string(), Value::from_json(v)))
                    .collect(),
            ),
            Json::Object(o) => {
                let mut arr = ArrBuilder::default();
                for (k, v) in o {
                    arr.set(k.clone(), Value::from_json(v));
                }
                Value::Arr(arr.finish())
            }
        }
    }
}

/// Serialized like PHP `json_encode`: keys keep their order, and an array whose keys are
/// 0..n-1 in order (including the empty array) is a JSON list.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => ser.serialize_unit(),
            Value::Bool(b) => ser.serialize_bool(*b),
            Value::Int(i) => ser.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => ser.serialize_f64(*f),
            Value::Float(_) => ser.serialize_unit(),
            Value::Str(s) => ser.serialize_str(s),
            Value::Arr(a) if is_list(a) => {
                let mut seq = ser.serialize_seq(Some(a.len()))?;
                for (_, v) in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Arr(a) => {
                let mut map = ser.serialize_map(Some(a.len()))?;
                for (k, v) in a {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Decoded like PHP `json_decode($text, true)`: objects become arrays **in wire order** (a later
/// duplicate key overwrites the earlier one in place), numbers that fit `i64` are ints and the
/// rest floats.
impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Value, D::Error> {
        de.deserialize_any(PhpVisitor)
    }
}

struct PhpVisitor;

impl<'de> serde::de::Visitor<'de> for PhpVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push((items.len().to_string(), v));
        }
        Ok(Value::Arr(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut b = ArrBuilder::default();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            b.set(k, v);
        }
        Ok(Value::Arr(b.finish()))
    }
}

/// A JSON request body as PHP params: `None` unless it decodes to an array (an object or a list);
/// the server treats anything else, including invalid JSON, as an empty body.
pub fn parse_json_body(body: &[u8]) -> Option<Params> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Arr(a)) => Some(a),
        _ => None,
    }
}

fn is_list(a: &[(String, Value)]) -> bool {
    a.iter().enumerate().all(|(i, (k, _))| *k == i.to_string())
}

/// Shorthand for building result objects: `obj([("ID", s("1"))])`.
pub fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Arr(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// A PHP list of values.
pub fn list(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Arr(
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
    )
}

/// A PHP string value.
pub fn s(v: impl Into<String>) -> Value {
    Value::Str(v.into())
}

/// Build a JSON value from ordered PHP-array entries with `json_encode` list detection.
pub fn php_array_json(entries: impl IntoIterator<Item = (String, Json)>) -> Json {
    let entries: Vec<(String, Json)> = entries.into_iter().collect();
    let is_list = entries
        .iter()
        .enumerate()
        .all(|(i, (k, _))| *k == i.to_string());
    if is_list {
        Json::Array(entries.into_iter().map(|(_, v)| v).collect())
    } else {
        Json::Object(entries.into_iter().collect())
    }
}

fn php_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// PHP `intval()` of a string: optional leading whitespace, sign, then digits.
pub fn intval_str(s: &str) -> i64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut n: i64 = 0;
    for b in rest.bytes() {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg { -n } else { n }
}

/// PHP array keys: canonical decimal integer strings are integer keys (we store them in that
/// same decimal form); anything else is a string key.
fn is_int_key(k: &str) -> Option<i64> {
    if k == "0" {
        return Some(0);
    }
    let digits = k.strip_prefix('-').unwrap_or(k);
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    k.parse().ok()
}

/// PHP's `max_input_vars`: `parse_str`, query strings and form bodies stop after this many
/// variables (`php_default_treat_data`, `add_post_vars` and rfc1867 all count pairs against it
/// and drop the rest with a warning). PHP's default is 1000; Bitrix's server requirements
/// (the site checker and BitrixVM's `bitrixenv.ini`) ask for 10000, the value we take for a
/// portal. [inferred; the cloud's exact value is UNCONFIRMED] JSON bodies are not subject to it.
pub const MAX_INPUT_VARS: usize = 10_000;

/// A PHP array under construction: the entries in insertion order plus an index of their keys,
/// so that building an array of n keys costs O(n) (a PHP array is a hash table), never O(n²).
#[derive(Debug)]
pub struct ArrBuilder<T = Value> {
    items: Vec<(String, T)>,
    index: HashMap<String, usize>,
    /// PHP's `nNextFreeElement`: one past the largest integer key seen (0 if none, or only
    /// negative ones): the key `$a[] = …` uses.
    next_free: i64,
}

impl<T> Default for ArrBuilder<T> {
    fn default() -> Self {
        ArrBuilder {
            items: Vec::new(),
            index: HashMap::new(),
            next_free: 0,
        }
    }
}

impl<T> ArrBuilder<T> {
    /// Start from existing entries (a later duplicate key overwrites an earlier one).
    pub fn from_vec(items: Vec<(String, T)>) -> Self {
        let mut b = ArrBuilder::default();
        for (k, v) in items {
            b.set(k, v);
        }
        b
    }

    /// Insert or overwrite `key`, keeping the position of an existing key (PHP semantics).
    pub fn set(&mut self, key: String, v: T) {
        match self.index.get(&key) {
            Some(&i) => self.items[i].1 = v,
            None => self.push_new(key, v),
        }
    }

    /// The entry for `key`, appended as `make()` if missing.
    fn entry(&mut self, key: String, make: impl FnOnce() -> T) -> &mut T {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.push_new(key, make());
                self.items.len() - 1
            }
        };
        &mut self.items[i].1
    }

    fn push_new(&mut self, key: String, v: T) {
        if let Some(n) = is_int_key(&key)
            && n >= self.next_free
        {
            self.next_free = n.saturating_add(1);
        }
        self.index.insert(key.clone(), self.items.len());
        self.items.push((key, v));
    }

    /// The key `$a[] = …` would use.
    fn next_key(&self) -> String {
        self.next_free.to_string()
    }

    pub fn finish(self) -> Vec<(String, T)> {
        self.items
    }
}

/// Insert or overwrite `key` in a finished array, keeping the position of an existing key.
/// Linear in the array: for the few keys set after parsing; build with [`ArrBuilder`].
pub fn set_key(arr: &mut Vec<(String, Value)>, key: String, v: Value) {
    if let Some(slot) = arr.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = v;
    } else {
        arr.push((key, v));
    }
}

/// Look a key up exactly.
pub fn get<'a>(arr: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    arr.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// `$base` with every key of `over` set on it (the request body over the query string).
pub fn merge(base: Params, over: Params) -> Params {
    if base.is_empty() {
        return over;
    }
    let mut b = ArrBuilder::from_vec(base);
    for (k, v) in over {
        b.set(k, v);
    }
    b.finish()
}

/// PHP `array_change_key_case`: later keys that collide overwrite earlier ones.
pub fn change_key_case(arr: &[(String, Value)], upper: bool) -> Params {
    let mut out = ArrBuilder::default();
    for (k, v) in arr {
        let k = if upper {
            k.to_uppercase()
        } else {
            k.to_lowercase()
        };
        out.set(k, v.clone());
    }
    out.finish()
}

/// PHP `urldecode`: `+` is a space, `%XX` is a byte; invalid escapes stay as they are.
pub fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// PHP's input nesting limit (`max_input_nesting_level`).
const MAX_NESTING: usize = 64;

/// A registered variable while `parse_str` builds its arrays.
#[derive(Debug)]
enum Node {
    Leaf(Value),
    Arr(ArrBuilder<Node>),
}

impl Node {
    fn into_value(self) -> Value {
        match self {
            Node::Leaf(v) => v,
            Node::Arr(b) => Value::Arr(finish_nodes(b)),
        }
    }
}

fn finish_nodes(b: ArrBuilder<Node>) -> Params {
    b.finish()
        .into_iter()
        .map(|(k, n)| (k, n.into_value()))
        .collect()
}

/// PHP `parse_str`: `a=1&b[]=2&b[x][y]=3`. Names and values are URL-decoded first, then the
/// brackets of the name are parsed; `.` and space in the top-level name become `_`. Stops after
/// [`MAX_INPUT_VARS`] pairs, as PHP does.
pub fn parse_str(query: &str) -> Params {
    let mut out = ArrBuilder::default();
    for pair in query
        .split('&')
        .filter(|p| !p.is_empty())
        .take(MAX_INPUT_VARS)
    {
        let (k, v) = match pair.split_once('=') {
            Some((k, v)) => (k, v),
            None => (pair, ""),
        };
        register(&mut out, &urldecode(k), Value::Str(urldecode(v)));
    }
    finish_nodes(out)
}

/// `php_register_variable_ex`: store `value` under the bracketed name `var`.
fn register(top: &mut ArrBuilder<Node>, var: &str, value: Value) {
    let var = var.trim_start_matches(' ');
    // The top-level name runs to the first '['; a '[' with no ']' after it is not an index.
    let (base_raw, mut rest) = match var.find('[') {
        Some(p) if var[p..].contains(']') => (&var[..p], &var[p..]),
        _ => (var, ""),
    };
    let base: String = base_raw
        .chars()
        .map(|c| {
            if c == ' ' || c == '.' || c == '[' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if base.is_empty() {
        return;
    }
    let mut indices: Vec<Option<String>> = Vec::new();
    while let Some(r) = rest.strip_prefix('[') {
        let Some(close) = r.find(']') else { break };
        let idx = &r[..close];
        indices.push(if idx.is_empty() {
            None
        } else {
            Some(idx.to_owned())
        });
        rest = &r[close + 1..];
        if indices.len() >= MAX_NESTING {
            return;
        }
    }
    let mut path = vec![Some(base)];
    path.extend(indices);
    insert_path(top, &path, value);
}

fn insert_path(arr: &mut ArrBuilder<Node>, path: &[Option<String>], value: Value) {
    let key = match &path[0] {
        Some(k) => k.clone(),
        None => arr.next_key(),
    };
    if path.len() == 1 {
        arr.set(key, Node::Leaf(value));
        return;
    }
    let slot = arr.entry(key, || Node::Arr(ArrBuilder::default()));
    if !matches!(slot, Node::Arr(_)) {
        *slot = Node::Arr(ArrBuilder::default());
    }
    if let Node::Arr(inner) = slot {
        insert_path(inner, &path[1..], value);
    }
}

/// Parse a `multipart/form-data` body: text fields only (files are ignored, as no method
/// here takes one). Returns `None` when the body is not well-formed.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Option<Params> {
    let text = String::from_utf8_lossy(body);
    let delim = format!("--{boundary}");
    let mut out = ArrBuilder::default();
    let mut vars = 0;
    for part in text.split(delim.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let (head, content) = part.split_once("\r\n\r\n")?;
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        let mut name = None;
        let mut is_file = false;
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').skip(1) {
                    let attr = attr.trim();
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = Some(v.trim_matches('"').to_owned());
                    } else if attr.starts_with("filename=") {
                        is_file = true;
                    }
                }
            }
        }
        if let (Some(n), false) = (name, is_file) {
            vars += 1;
            if vars > MAX_INPUT_VARS {
                break;
            }
            register(&mut out, &n, Value::Str(content.to_owned()));
        }
    }
    Some(finish_nodes(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(query: &str, expected: Json) {
        let got = Value::Arr(parse_str(query)).to_json();
        assert_eq!(got, expected, "parse_str({query:?})");
    }

    #[test]
    fn parse_str_plain_and_decoding() {
        check("a=1&b=x+y&c=%41%2b", json!({"a":"1","b":"x y","c":"A+"}));
        check("a", json!({"a":""}));
        check("a=1&a=2", json!({"a":"2"}));
        check("", json!([]));
        check("&&a=1&", json!({"a":"1"}));
        check("%zz=%4", json!({"%zz":"%4"}));
    }

    #[test]
    fn parse_str_lists() {
        check("USER_ID[]=1&USER_ID[]=2", json!({"USER_ID":["1","2"]}));
        check("USER_ID[0]=1&USER_ID[1]=2", json!({"USER_ID":["1","2"]}));
        check("u[5]=a&u[]=b", json!({"u":{"5":"a","6":"b"}}));
        check("u[1]=a&u[0]=b", json!({"u":{"1":"a","0":"b"}}));
    }

    #[test]
    fn parse_str_nested_and_encoded_keys() {
        check("FILTER[>ID]=5", json!({"FILTER":{">ID":"5"}}));
        check("FILTER%5B%3EID%5D=5", json!({"FILTER":{">ID":"5"}}));
        check("a[b][c]=1&a[b][d]=2", json!({"a":{"b":{"c":"1","d":"2"}}}));
        check("a=1&a[x]=2", json!({"a":{"x":"2"}}));
        check("a[x]=1&a=2", json!({"a":"2"}));
        check("a[x]junk[y]=1", json!({"a":{"x":"1"}}));
    }

    #[test]
    fn parse_str_top_level_name_mangling() {
        check("a.b=1&a b=2", json!({"a_b":"2"}));
        check("a[.b]=1", json!({"a":{".b":"1"}}));
        check("a[b=1", json!({"a_b":"1"}));
        check(" x=1", json!({"x":"1"}));
        // The pair splits at the first `=`, even inside brackets: `FILTER[` then has no `]`.
        check("FILTER[=EMAIL]=x", json!({"FILTER_":"EMAIL]=x"}));
        check("FILTER[%3DEMAIL]=x", json!({"FILTER":{"=EMAIL":"x"}}));
        check("=1&[a]=2", json!([]));
    }

    #[test]
    fn casts() {
        assert_eq!(Value::Str(" 12abc".into()).intval(), 12);
        assert_eq!(Value::Str("-3".into()).intval(), -3);
        assert_eq!(Value::Str("abc".into()).intval(), 0);
        assert!(Value::Str("false".into()).truthy());
        assert!(!Value::Str("0".into()).truthy());
        assert!(!Value::Str(String::new()).truthy());
        assert!(!Value::Int(0).truthy());
        assert!(!Value::Arr(vec![]).truthy());
    }

    #[test]
    fn json_round_trip_keeps_lists() {
        let j = json!({"cmd":["a","b"],"m":{"x":1,"y":[true,null,1.5]}});
        assert_eq!(Value::from_json(&j).to_json(), j);
    }

    #[test]
    fn multipart_text_fields() {
        let body = "--XX\r\nContent-Disposition: form-data; name=\"ID\"\r\n\r\n15\r\n--XX\r\nContent-Disposition: form-data; name=\"U[]\"\r\n\r\n1\r\n--XX--\r\n";
        let p = parse_multipart(body.as_bytes(), "XX").unwrap();
        assert_eq!(Value::Arr(p).to_json(), json!({"ID":"15","U":["1"]}));
    }
}
