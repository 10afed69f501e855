//! `detect_kv`: what a store holds. Keys are found with SCAN MATCH (never KEYS: a KEYS over a
//! production Redis blocks it), read in pipelined batches, and grouped into patterns: keys of
//! as many `:`-separated segments are compared position by position, the position with the
//! most distinct values (and any with more than [`MANY`]) is a part (`*`), the others stay
//! literal — `tenant:acme`, `tenant:globex` → `tenant:*`; `tenant:acme:settings` →
//! `tenant:*:settings`. Per pattern: counts, sizes, Redis types, JSON shapes (the sets of
//! top-level keys, legacy and newer formats side by side), hash fields, and a suggested
//! mapping. At most `limit` keys are read (the report says whether it saw them all).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::error::Result;
use super::source::Source;
use super::value::{shape, KvValue};

/// A position with more distinct values than this is a part whatever else varies.
const MANY: usize = 20;
/// Distinct shapes reported per pattern.
const MAX_SHAPES: usize = 10;

#[derive(Default)]
struct Stats {
    keys: i64,
    bytes: i64,
    max_bytes: i64,
    types: BTreeMap<String, i64>,
    json_objects: i64,
    not_json: i64,
    plain_json: i64,
    shapes: BTreeMap<Vec<String>, i64>,
    hash_fields: BTreeMap<String, i64>,
    example: Map<String, Value>,
    sample_keys: Vec<String>,
}

impl Stats {
    fn add(&mut self, key: &str, v: &KvValue) {
        self.keys += 1;
        let size = v.size() as i64;
        self.bytes += size;
        self.max_bytes = self.max_bytes.max(size);
        *self.types.entry(v.type_name().to_string()).or_default() += 1;
        if self.sample_keys.len() < 3 {
            self.sample_keys.push(key.to_string());
        }
        match v {
            KvValue::String(_) => match v.json() {
                Ok(j @ Value::Object(_)) => {
                    self.json_objects += 1;
                    if let Some(s) = shape(&j) {
                        if self.shapes.len() < MAX_SHAPES || self.shapes.contains_key(&s) {
                            *self.shapes.entry(s).or_default() += 1;
                        }
                    }
                    super::value::merge_example(&mut self.example, &j);
                }
                Ok(_) => self.plain_json += 1,
                Err(_) => self.not_json += 1,
            },
            KvValue::Hash(h) => {
                for (f, _) in h {
                    *self.hash_fields.entry(f.clone()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
}

/// Escapes a literal segment for a mapping pattern.
fn literal(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if matches!(c, '{' | '}' | '*' | '\\') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// A column name from a JSON key: `createdAt` → `created_at`.
fn snake(k: &str) -> String {
    let mut o = String::new();
    for (i, c) in k.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 && !o.ends_with('_') {
                o.push('_');
            }
            o.extend(c.to_lowercase());
        } else if c.is_alphanumeric() {
            o.push(c);
        } else if !o.ends_with('_') {
            o.push('_');
        }
    }
    let o = o.trim_matches('_').to_string();
    if o.is_empty() {
        "value".into()
    } else {
        o
    }
}

/// The pattern of each key: `(glob text, mapping pattern text)` per key, in order.
fn classify(keys: &[String], several_dumps: bool) -> Vec<(String, String)> {
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let segs: Vec<Vec<&str>> = keys.iter().map(|k| k.split(':').collect()).collect();
    for (i, s) in segs.iter().enumerate() {
        by_len.entry(s.len()).or_default().push(i);
    }
    let mut out = vec![(String::new(), String::new()); keys.len()];
    for (n, members) in by_len {
        let distinct: Vec<usize> = (0..n)
            .map(|j| {
                members
                    .iter()
                    .map(|&i| segs[i][j])
                    .collect::<BTreeSet<_>>()
                    .len()
            })
            .collect();
        let mut variable = vec![false; n];
        if several_dumps {
            variable[0] = true;
        }
        // The position with the most distinct values, the first after the prefix on a tie.
        let start = if n > 1 { 1 } else { 0 };
        if let Some(best) = (start..n).max_by(|a, b| distinct[*a].cmp(&distinct[*b]).then(b.cmp(a)))
        {
            if distinct[best] > 1 && !several_dumps {
                variable[best] = true;
            }
        }
        for j in 0..n {
            if distinct[j] > MANY {
                variable[j] = true;
            }
        }
        for &i in &members {
            let mut glob = vec![];
            let mut named = vec![];
            let mut used: BTreeSet<String> = BTreeSet::new();
            for j in 0..n {
                if variable[j] {
                    glob.push("*".to_string());
                    let base = if several_dumps && j == 0 {
                        "dump".to_string()
                    } else if j > 0 && !variable[j - 1] {
                        snake(segs[i][j - 1])
                    } else {
                        format!("part{}", j + 1)
                    };
                    let mut name = base.clone();
                    let mut k = 2;
                    while !used.insert(name.clone()) {
                        name = format!("{base}{k}");
                        k += 1;
                    }
                    named.push(format!("{{{name}}}"));
                } else {
                    glob.push(super::pattern::glob_escape(segs[i][j]));
                    named.push(literal(segs[i][j]));
                }
            }
            out[i] = (glob.join(":"), named.join(":"));
        }
    }
    out
}

/// `detect_kv`'s report.
pub fn detect(source: &Source, glob: &str, limit: i64) -> Result<Value> {
    let mut store = source.open()?;
    let several = matches!(&store, super::source::Store::Dump { dump, .. } if dump.several);
    let mut cursor = 0u64;
    let mut keys: Vec<String> = vec![];
    let mut values: Vec<KvValue> = vec![];
    let mut non_utf8 = 0i64;
    let mut complete = true;
    let mut scans = 0i64;
    loop {
        let (next, batch) = store.scan(cursor, glob, source.options.scan_count)?;
        scans += 1;
        let read = store.read(&batch)?;
        for (k, v) in batch.into_iter().zip(read) {
            if matches!(v, KvValue::Missing) {
                continue;
            }
            match String::from_utf8(k) {
                Ok(k) => {
                    keys.push(k);
                    values.push(v);
                }
                Err(_) => non_utf8 += 1,
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
        if keys.len() as i64 >= limit {
            complete = false;
            break;
        }
    }
    // SCAN may return a key twice (the table rehashed in between).
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
    order.dedup_by(|a, b| keys[*a] == keys[*b]);
    let keys_u: Vec<String> = order.iter().map(|&i| keys[i].clone()).collect();
    let vals_u: Vec<&KvValue> = order.iter().map(|&i| &values[i]).collect();
    let classes = classify(&keys_u, several);
    let mut patterns: BTreeMap<(String, String), Stats> = BTreeMap::new();
    for ((k, v), c) in keys_u.iter().zip(vals_u).zip(classes) {
        patterns.entry(c).or_default().add(k, v);
    }
    let mut list: Vec<(&(String, String), &Stats)> = patterns.iter().collect();
    list.sort_by(|a, b| b.1.keys.cmp(&a.1.keys).then(a.0.cmp(b.0)));
    let mut reported = vec![];
    let mut suggested = vec![];
    for ((glob, named), s) in &list {
        let shapes: Vec<Value> = s
            .shapes
            .iter()
            .map(|(k, n)| json!({"keys": k, "count": n}))
            .collect();
        reported.push(json!({
            "pattern": glob,
            "keys": s.keys,
            "bytes": s.bytes,
            "max_bytes": s.max_bytes,
            "types": s.types,
            "json_objects": s.json_objects,
            "json_other": s.plain_json,
            "not_json": s.not_json,
            "shapes": shapes,
            "hash_fields": s.hash_fields,
            "sample_keys": s.sample_keys,
        }));
        if let Some(m) = suggest(named, s) {
            suggested.push(m);
        }
    }
    Ok(json!({
        "source": source.name,
        "kind": source.kind.as_str(),
        "match": glob,
        "keys": keys_u.len(),
        "complete": complete,
        "scans": scans,
        "keys_not_utf8": non_utf8,
        "patterns": reported,
        "suggested_mapping": suggested,
    }))
}

/// A mapping for a pattern of JSON objects or hashes (none for other values).
fn suggest(named: &str, s: &Stats) -> Option<Value> {
    let p = super::pattern::Pattern::parse(named).ok()?;
    let parts = p.parts();
    if parts.is_empty() || (s.json_objects == 0 && s.hash_fields.is_empty()) {
        return None;
    }
    let mut columns = Map::new();
    for part in &parts {
        columns.insert(snake(part), json!(format!("{{{part}}}")));
    }
    let mut fields: BTreeSet<String> = BTreeSet::new();
    for k in s.shapes.keys() {
        fields.extend(k.iter().cloned());
    }
    for f in &fields {
        let col = snake(f);
        columns.entry(col).or_insert_with(|| {
            if f.chars().all(|c| c.is_alphanumeric() || c == '_') {
                json!(format!("$.{f}"))
            } else {
                json!(format!(
                    "$[{}]",
                    serde_json::to_string(f).unwrap_or_default()
                ))
            }
        });
    }
    for f in s.hash_fields.keys() {
        columns
            .entry(snake(f))
            .or_insert_with(|| json!(format!("field:{f}")));
    }
    let table = named
        .split(':')
        .find(|seg| !seg.starts_with('{'))
        .map(snake)
        .unwrap_or_else(|| "kv_rows".into());
    Some(json!({"pattern": named, "table": table, "columns": columns}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_into_patterns() {
        let keys: Vec<String> = [
            "tenant:acme",
            "tenant:globex",
            "tenant:acme:settings",
            "tenant:globex:settings",
            "config",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = classify(&keys, false);
        assert_eq!(c[0], ("tenant:*".into(), "tenant:{tenant}".into()));
        assert_eq!(
            c[2],
            (
                "tenant:*:settings".into(),
                "tenant:{tenant}:settings".into()
            )
        );
        assert_eq!(c[4], ("config".into(), "config".into()));
        let d: Vec<String> = ["alice:theme", "bob:theme", "alice:user"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = classify(&d, true);
        assert_eq!(c[0], ("*:theme".into(), "{dump}:theme".into()));
        assert_eq!(snake("createdAt"), "created_at");
        assert_eq!(snake("e-mail"), "e_mail");
    }
}
