//! A key's value, per Redis type, and the field specs that take a column's text out of a key
//! and its value:
//!
//! - `{part}` — a named part of the key (`tenant:{subdomain}`);
//! - `key` — the whole key;
//! - `$` — the whole value (a string as it is; a hash as a JSON object, a list or set as a
//!   JSON array, a sorted set as an object of member → score);
//! - `$.a.b`, `$.items[0]`, `$["odd key"]` — a JSON path into a string holding JSON (or into a
//!   hash, whose fields holding JSON are entered too);
//! - `field:name` — a field of a hash;
//! - a bare `name` — short for `$.name` (a JSON string's key, or a hash's field).
//!
//! Reading is pipelined: one round trip asks every key's TYPE, a second reads each with the
//! command of its type (GET, HGETALL, LRANGE, SMEMBERS, ZRANGE WITHSCORES).

use serde_json::{Map, Value};

use super::error::Result;

/// A key's value as read.
#[derive(Clone, Debug, PartialEq)]
pub enum KvValue {
    String(Vec<u8>),
    Hash(Vec<(String, String)>),
    List(Vec<String>),
    Set(Vec<String>),
    ZSet(Vec<(String, f64)>),
    /// Gone between SCAN and the read.
    Missing,
    /// A type this version does not read (stream, module types): its name.
    Other(String),
}

impl KvValue {
    /// The Redis type name.
    pub fn type_name(&self) -> &str {
        match self {
            KvValue::String(_) => "string",
            KvValue::Hash(_) => "hash",
            KvValue::List(_) => "list",
            KvValue::Set(_) => "set",
            KvValue::ZSet(_) => "zset",
            KvValue::Missing => "none",
            KvValue::Other(t) => t,
        }
    }

    /// Bytes of the value (members and fields summed).
    pub fn size(&self) -> usize {
        match self {
            KvValue::String(b) => b.len(),
            KvValue::Hash(h) => h.iter().map(|(k, v)| k.len() + v.len()).sum(),
            KvValue::List(l) | KvValue::Set(l) => l.iter().map(String::len).sum(),
            KvValue::ZSet(z) => z.iter().map(|(m, _)| m.len() + 8).sum(),
            KvValue::Missing | KvValue::Other(_) => 0,
        }
    }

    /// The value as JSON: a string parsed when it is JSON (`Err`: its text, not JSON), the
    /// other types as objects and arrays.
    pub fn json(&self) -> std::result::Result<Value, String> {
        match self {
            KvValue::String(b) => {
                let text = String::from_utf8_lossy(b);
                serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())
            }
            KvValue::Hash(h) => Ok(Value::Object(
                h.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            )),
            KvValue::List(l) | KvValue::Set(l) => Ok(Value::Array(
                l.iter().map(|v| Value::String(v.clone())).collect(),
            )),
            KvValue::ZSet(z) => Ok(Value::Object(
                z.iter()
                    .map(|(m, s)| (m.clone(), serde_json::json!(s)))
                    .collect(),
            )),
            KvValue::Missing => Ok(Value::Null),
            KvValue::Other(t) => Err(format!("a {t} is not read")),
        }
    }

    /// The value for `job_errors` and backups: JSON as it parses, else its text.
    pub fn raw(&self) -> Value {
        match self {
            KvValue::String(b) => {
                let text = String::from_utf8_lossy(b).into_owned();
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))
            }
            other => other.json().unwrap_or(Value::Null),
        }
    }
}

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Where a column's text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Part(String),
    Key,
    Path(Vec<Step>),
    HashField(String),
}

impl Field {
    /// Parses a `from`.
    pub fn parse(spec: &str) -> std::result::Result<Field, String> {
        if let Some(name) = spec.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if name.is_empty() {
                return Err("\"{}\" names no part".into());
            }
            return Ok(Field::Part(name.to_string()));
        }
        if spec == "key" {
            return Ok(Field::Key);
        }
        if let Some(f) = spec.strip_prefix("field:") {
            if f.is_empty() {
                return Err("\"field:\" names no field".into());
            }
            return Ok(Field::HashField(f.to_string()));
        }
        if let Some(rest) = spec.strip_prefix('$') {
            return parse_path(rest).map(Field::Path);
        }
        if spec.is_empty() {
            return Err("an empty \"from\"".into());
        }
        Ok(Field::Path(vec![Step::Key(spec.to_string())]))
    }

    /// The field's text for `key` (its `parts`) and `value`: `Ok(None)` when it is not there
    /// (a legacy format's missing field: the column's default applies), `Err` why it cannot
    /// be read (a path into a value that is not JSON).
    pub fn extract(
        &self,
        key: &str,
        parts: &[(String, String)],
        value: &KvValue,
        parsed: &mut Option<std::result::Result<Value, String>>,
    ) -> std::result::Result<Option<Value>, String> {
        match self {
            Field::Part(p) => Ok(parts
                .iter()
                .find(|(n, _)| n == p)
                .map(|(_, v)| Value::String(v.clone()))),
            Field::Key => Ok(Some(Value::String(key.to_string()))),
            Field::HashField(f) => match value {
                KvValue::Hash(h) => Ok(h
                    .iter()
                    .find(|(k, _)| k == f)
                    .map(|(_, v)| Value::String(v.clone()))),
                other => Err(format!(
                    "\"field:{f}\" reads a hash, and the value is a {}",
                    other.type_name()
                )),
            },
            Field::Path(steps) if steps.is_empty() => Ok(match value {
                KvValue::String(b) => Some(Value::String(String::from_utf8_lossy(b).into_owned())),
                KvValue::Missing => None,
                other => Some(other.json().map_err(|e| e.to_string())?),
            }),
            Field::Path(steps) => {
                let doc = parsed.get_or_insert_with(|| value.json());
                let doc = match doc {
                    Ok(d) => d,
                    Err(e) => return Err(format!("the value is not JSON ({e})")),
                };
                let mut at: std::borrow::Cow<Value> = std::borrow::Cow::Borrowed(doc);
                for s in steps {
                    // A hash field (or a string inside JSON) holding JSON is entered too.
                    if let Value::String(text) = at.as_ref() {
                        match serde_json::from_str::<Value>(text) {
                            Ok(v @ (Value::Object(_) | Value::Array(_))) => {
                                at = std::borrow::Cow::Owned(v)
                            }
                            _ => return Ok(None),
                        }
                    }
                    let next = match (s, at.as_ref()) {
                        (Step::Key(k), Value::Object(m)) => m.get(k).cloned(),
                        (Step::Index(i), Value::Array(a)) => a.get(*i).cloned(),
                        _ => None,
                    };
                    match next {
                        Some(v) => at = std::borrow::Cow::Owned(v),
                        None => return Ok(None),
                    }
                }
                Ok(match at.into_owned() {
                    Value::Null => None,
                    v => Some(v),
                })
            }
        }
    }
}

fn parse_path(rest: &str) -> std::result::Result<Vec<Step>, String> {
    let mut steps = vec![];
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    j += 1;
                }
                if j == start {
                    return Err(format!("an empty key in path \"${rest}\""));
                }
                steps.push(Step::Key(chars[start..j].iter().collect()));
                i = j;
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|c| *c == ']')
                    .map(|p| p + i)
                    .ok_or_else(|| format!("\"[\" without \"]\" in path \"${rest}\""))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if let Ok(n) = inner.parse::<usize>() {
                    steps.push(Step::Index(n));
                } else if (inner.starts_with('"') && inner.ends_with('"') && inner.len() >= 2)
                    || (inner.starts_with('\'') && inner.ends_with('\'') && inner.len() >= 2)
                {
                    steps.push(Step::Key(inner[1..inner.len() - 1].to_string()));
                } else {
                    return Err(format!(
                        "\"[{inner}]\" is neither an index nor a quoted key in path \"${rest}\""
                    ));
                }
                i = close + 1;
            }
            c => {
                return Err(format!(
                    "path \"${rest}\" goes on with \"{c}\": write $.key, $[0] or $[\"key\"]"
                ))
            }
        }
    }
    Ok(steps)
}

/// Reads `keys` from a Redis connection, two pipelined round trips.
pub fn read_redis(
    source: &str,
    conn: &mut redis::Connection,
    keys: &[Vec<u8>],
) -> Result<Vec<KvValue>> {
    if keys.is_empty() {
        return Ok(vec![]);
    }
    let e = |err: redis::RedisError| super::source::redis_error(source, &err);
    let mut types = redis::pipe();
    for k in keys {
        types.cmd("TYPE").arg(k.as_slice());
    }
    let types: Vec<String> = types.query(conn).map_err(e)?;
    let mut reads = redis::pipe();
    for (k, t) in keys.iter().zip(&types) {
        let k = k.as_slice();
        match t.as_str() {
            "string" => reads.cmd("GET").arg(k),
            "hash" => reads.cmd("HGETALL").arg(k),
            "list" => reads.cmd("LRANGE").arg(k).arg(0).arg(-1),
            "set" => reads.cmd("SMEMBERS").arg(k),
            "zset" => reads.cmd("ZRANGE").arg(k).arg(0).arg(-1).arg("WITHSCORES"),
            // Nothing to read: a placeholder answer keeps the positions aligned.
            _ => reads.cmd("ECHO").arg(""),
        };
    }
    let values: Vec<redis::Value> = reads.query(conn).map_err(e)?;
    Ok(types
        .iter()
        .zip(values)
        .map(|(t, v)| decode(t, v))
        .collect())
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        redis::Value::Double(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn items(v: redis::Value) -> Vec<redis::Value> {
    match v {
        redis::Value::Array(a) | redis::Value::Set(a) => a,
        redis::Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        redis::Value::Nil => vec![],
        other => vec![other],
    }
}

fn decode(t: &str, v: redis::Value) -> KvValue {
    match t {
        "string" => match v {
            redis::Value::BulkString(b) => KvValue::String(b),
            redis::Value::Nil => KvValue::Missing,
            other => KvValue::String(text(&other).into_bytes()),
        },
        "hash" => {
            let flat = items(v);
            let mut h: Vec<(String, String)> = flat
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (text(&c[0]), text(&c[1])))
                .collect();
            h.sort();
            if h.is_empty() {
                KvValue::Missing
            } else {
                KvValue::Hash(h)
            }
        }
        "list" => KvValue::List(items(v).iter().map(text).collect()),
        "set" => {
            let mut s: Vec<String> = items(v).iter().map(text).collect();
            s.sort();
            KvValue::Set(s)
        }
        "zset" => KvValue::ZSet(
            items(v)
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (text(&c[0]), text(&c[1]).parse::<f64>().unwrap_or(0.0)))
                .collect(),
        ),
        "none" => KvValue::Missing,
        other => KvValue::Other(other.to_string()),
    }
}

/// The top-level keys of a JSON object value, sorted: its *shape* (legacy and newer formats
/// tell apart by it).
pub fn shape(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Object(m) => {
            let mut k: Vec<String> = m.keys().cloned().collect();
            k.sort();
            Some(k)
        }
        _ => None,
    }
}

/// An object's values by key, for suggestions: the first value seen per key.
pub fn merge_example(into: &mut Map<String, Value>, v: &Value) {
    if let Value::Object(m) = v {
        for (k, x) in m {
            into.entry(k.clone()).or_insert_with(|| x.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(spec: &str, key: &str, parts: &[(String, String)], v: &KvValue) -> Option<Value> {
        Field::parse(spec)
            .unwrap()
            .extract(key, parts, v, &mut None)
            .unwrap()
    }

    #[test]
    fn fields_come_from_parts_paths_and_hash_fields() {
        let v = KvValue::String(br#"{"emoji":"x","meta":{"tags":["a","b"]},"n":null}"#.to_vec());
        let parts = vec![("subdomain".to_string(), "acme".to_string())];
        assert_eq!(
            get("{subdomain}", "tenant:acme", &parts, &v),
            Some(json!("acme"))
        );
        assert_eq!(get("$.emoji", "k", &[], &v), Some(json!("x")));
        assert_eq!(get("emoji", "k", &[], &v), Some(json!("x")));
        assert_eq!(get("$.meta.tags[1]", "k", &[], &v), Some(json!("b")));
        assert_eq!(get("$[\"meta\"].tags[0]", "k", &[], &v), Some(json!("a")));
        assert_eq!(get("$.missing", "k", &[], &v), None);
        assert_eq!(get("$.n", "k", &[], &v), None);
        let h = KvValue::Hash(vec![
            ("name".into(), "Acme".into()),
            ("cfg".into(), r#"{"a":1}"#.into()),
        ]);
        assert_eq!(get("field:name", "k", &[], &h), Some(json!("Acme")));
        assert_eq!(get("$.cfg.a", "k", &[], &h), Some(json!(1)));
        let bad = KvValue::String(b"{not json".to_vec());
        assert!(Field::parse("$.x")
            .unwrap()
            .extract("k", &[], &bad, &mut None)
            .is_err());
        assert_eq!(get("$", "k", &[], &bad), Some(json!("{not json")));
        assert!(Field::parse("$x").is_err());
        assert!(Field::parse("$[x]").is_err());
    }
}
