//! The `options` jsonb of `create_scope`, parsed strictly: an unknown key or a value of the
//! wrong shape is an error that names it, never silently ignored.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::error::{OpsError, OpsResult};

const KNOWN: &[&str] = &["tables", "exclude", "shared", "owner", "links"];
const LINK_KEYS: &[&str] = &["name", "child", "columns", "parent", "parent_columns"];

/// A relationship the database does not declare with an FK constraint.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkOption {
    pub name: String,
    pub child: String,
    pub columns: Vec<String>,
    pub parent: String,
    /// Defaults to the parent's primary key.
    pub parent_columns: Option<Vec<String>>,
}

/// The scope options, with table names still as the user wrote them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeOptions {
    pub tables: Option<Vec<String>>,
    pub exclude: Vec<String>,
    pub shared: Vec<String>,
    /// Owned table name → constraint, link or parent table name, in the order given.
    pub owner: BTreeMap<String, String>,
    pub links: Vec<LinkOption>,
}

fn bad(msg: String) -> OpsError {
    OpsError::InvalidOption(msg, None)
}

fn string_array(v: &Value, what: &str) -> OpsResult<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(bad(format!(
            "{what} must be an array of names, not {}",
            describe_json(v)
        )));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            other => Err(bad(format!(
                "{what} must hold non-empty names, found {other}"
            ))),
        })
        .collect()
}

/// "a string", "an array", ...: how option errors name the JSON value they got.
pub(crate) fn describe_json(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl ScopeOptions {
    /// The options as JSON, in the shape `parse` reads.
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        if let Some(tables) = &self.tables {
            map.insert("tables".into(), json!(tables));
        }
        if !self.exclude.is_empty() {
            map.insert("exclude".into(), json!(self.exclude));
        }
        if !self.shared.is_empty() {
            map.insert("shared".into(), json!(self.shared));
        }
        if !self.owner.is_empty() {
            map.insert("owner".into(), json!(self.owner));
        }
        if !self.links.is_empty() {
            let links: Vec<Value> = self
                .links
                .iter()
                .map(|l| {
                    let mut o = json!({"name": l.name, "child": l.child, "columns": l.columns, "parent": l.parent});
                    if let Some(pc) = &l.parent_columns {
                        o["parent_columns"] = json!(pc);
                    }
                    o
                })
                .collect();
            map.insert("links".into(), Value::Array(links));
        }
        Value::Object(map)
    }

    pub fn parse(v: &Value) -> OpsResult<Self> {
        let Value::Object(map) = v else {
            return Err(bad(format!(
                "options must be a JSON object, not {}",
                describe_json(v)
            )));
        };
        for key in map.keys() {
            if !KNOWN.contains(&key.as_str()) {
                return Err(OpsError::InvalidOption(
                    format!("unknown option \"{key}\""),
                    Some(format!("Scope options are: {}.", KNOWN.join(", "))),
                ));
            }
        }
        let mut opts = ScopeOptions::default();
        if let Some(v) = map.get("tables") {
            opts.tables = Some(string_array(v, "option \"tables\"")?);
        }
        if let Some(v) = map.get("exclude") {
            opts.exclude = string_array(v, "option \"exclude\"")?;
        }
        if let Some(v) = map.get("shared") {
            opts.shared = string_array(v, "option \"shared\"")?;
        }
        if let Some(v) = map.get("owner") {
            let Value::Object(owner) = v else {
                return Err(OpsError::InvalidOption(
                    format!("option \"owner\" must be an object, not {}", describe_json(v)),
                    Some("Write it as {\"owner\": {\"owned_table\": \"fk_or_link_or_parent_table\"}}.".into()),
                ));
            };
            for (table, path) in owner {
                match path {
                    Value::String(s) if !s.trim().is_empty() => {
                        opts.owner.insert(table.clone(), s.clone());
                    }
                    other => {
                        return Err(bad(format!(
                            "option \"owner\" for table \"{table}\" must be a constraint, link or table name, not {}",
                            describe_json(other)
                        )))
                    }
                }
            }
        }
        if let Some(v) = map.get("links") {
            let Value::Array(items) = v else {
                return Err(bad(format!(
                    "option \"links\" must be an array of objects, not {}",
                    describe_json(v)
                )));
            };
            for (i, item) in items.iter().enumerate() {
                opts.links.push(parse_link(i, item)?);
            }
            let mut names: Vec<&str> = opts.links.iter().map(|l| l.name.as_str()).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(bad(format!(
                    "option \"links\" names link \"{}\" twice",
                    w[0]
                )));
            }
        }
        Ok(opts)
    }
}

fn parse_link(i: usize, item: &Value) -> OpsResult<LinkOption> {
    let at = format!("option \"links\" item {}", i + 1);
    let Value::Object(map) = item else {
        return Err(bad(format!(
            "{at} must be an object, not {}",
            describe_json(item)
        )));
    };
    for key in map.keys() {
        if !LINK_KEYS.contains(&key.as_str()) {
            return Err(OpsError::InvalidOption(
                format!("unknown key \"{key}\" in {at}"),
                Some(format!("A link has the keys: {}.", LINK_KEYS.join(", "))),
            ));
        }
    }
    let text = |key: &str| -> OpsResult<String> {
        match map.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(other) => Err(bad(format!(
                "\"{key}\" of {at} must be a name, not {}",
                describe_json(other)
            ))),
            None => Err(bad(format!("{at} has no \"{key}\""))),
        }
    };
    let name = text("name")?;
    let child = text("child")?;
    let parent = text("parent")?;
    let columns = match map.get("columns") {
        Some(v) => string_array(v, &format!("\"columns\" of link \"{name}\""))?,
        None => return Err(bad(format!("link \"{name}\" has no \"columns\""))),
    };
    let parent_columns = match map.get("parent_columns") {
        Some(v) => Some(string_array(
            v,
            &format!("\"parent_columns\" of link \"{name}\""),
        )?),
        None => None,
    };
    if columns.is_empty() {
        return Err(bad(format!("link \"{name}\" has an empty \"columns\"")));
    }
    if let Some(pc) = &parent_columns {
        if pc.len() != columns.len() {
            return Err(bad(format!(
                "link \"{name}\" has {} columns but {} parent_columns",
                columns.len(),
                pc.len()
            )));
        }
    }
    Ok(LinkOption {
        name,
        child,
        columns,
        parent,
        parent_columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_option() {
        let o = ScopeOptions::parse(&json!({
            "tables": ["a", "s.b"], "exclude": ["x"], "shared": ["y"],
            "owner": {"rental": "inventory"},
            "links": [{"name": "l", "child": "c", "columns": ["p_id"], "parent": "p"}]
        }))
        .unwrap();
        assert_eq!(o.tables, Some(vec!["a".to_string(), "s.b".to_string()]));
        assert_eq!(o.owner.get("rental").map(String::as_str), Some("inventory"));
        assert_eq!(o.links[0].parent_columns, None);
        assert_eq!(
            ScopeOptions::parse(&o.to_json()).unwrap(),
            o,
            "to_json round-trips"
        );
        assert_eq!(
            ScopeOptions::parse(&json!({})).unwrap(),
            ScopeOptions::default()
        );
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let err = ScopeOptions::parse(&json!({"tabels": []})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid options: unknown option \"tabels\""
        );
        assert!(err
            .hint()
            .unwrap()
            .contains("tables, exclude, shared, owner, links"));
        for (v, msg) in [
            (json!([]), "options must be a JSON object, not an array"),
            (
                json!({"tables": "a"}),
                "option \"tables\" must be an array of names, not a string",
            ),
            (
                json!({"exclude": [1]}),
                "option \"exclude\" must hold non-empty names, found 1",
            ),
            (
                json!({"owner": []}),
                "option \"owner\" must be an object, not an array",
            ),
            (
                json!({"links": [{"name": "l"}]}),
                "option \"links\" item 1 has no \"child\"",
            ),
            (
                json!({"links": [{"name": "l", "child": "c", "columns": ["a"], "parent": "p", "via": 1}]}),
                "unknown key \"via\" in option \"links\" item 1",
            ),
            (
                json!({"links": [{"name": "l", "child": "c", "columns": ["a"], "parent": "p", "parent_columns": ["x", "y"]}]}),
                "link \"l\" has 1 columns but 2 parent_columns",
            ),
        ] {
            let err = ScopeOptions::parse(&v).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid options: {msg}"),
                "for {v}"
            );
        }
    }
}
