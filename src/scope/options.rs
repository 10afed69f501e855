//! The `options` jsonb of `create_scope`, parsed strictly: an unknown key or a value of the
//! wrong shape is an error that names it, never silently ignored (serde derive with
//! `deny_unknown_fields`, worded by [`crate::options`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::Error;
use crate::error::Common;
use crate::options::{self, describe_json, invalid, Problem, Seg, Wording};

/// A relationship the database does not declare with an FK constraint.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOption {
    #[serde(deserialize_with = "a_name")]
    pub name: String,
    #[serde(deserialize_with = "a_name")]
    pub child: String,
    #[serde(deserialize_with = "names")]
    pub columns: Vec<String>,
    #[serde(deserialize_with = "a_name")]
    pub parent: String,
    /// Defaults to the parent's primary key.
    #[serde(
        default,
        deserialize_with = "some_names",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent_columns: Option<Vec<String>>,
}

/// The scope options, with table names still as the user wrote them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeOptions {
    #[serde(
        default,
        deserialize_with = "some_names",
        skip_serializing_if = "Option::is_none"
    )]
    pub tables: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "names",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exclude: Vec<String>,
    #[serde(
        default,
        deserialize_with = "names",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub shared: Vec<String>,
    /// Owned table name → constraint, link or parent table name, in the order given.
    #[serde(
        default,
        deserialize_with = "owners",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub owner: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "options::objects",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub links: Vec<LinkOption>,
}

/// An array of non-empty names.
fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match options::json(d)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) if !s.trim().is_empty() => Ok(s),
                other => Err(invalid(format!("must hold non-empty names, found {other}"))),
            })
            .collect(),
        other => Err(invalid(format!(
            "must be an array of names, not {}",
            describe_json(&other)
        ))),
    }
}

/// [`names`] where `null` is refused like any other non-array (it is not "no option").
fn some_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    names(d).map(Some)
}

fn a_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    options::name(d, "a name")
}

/// Owned table → the constraint, link or table that is its ownership path.
fn owners<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    struct OwnerPath(#[serde(deserialize_with = "owner_path")] String);
    fn owner_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        options::name(d, "a constraint, link or table name")
    }
    let map = BTreeMap::<String, OwnerPath>::deserialize(d)?;
    Ok(map.into_iter().map(|(t, p)| (t, p.0)).collect())
}

/// Where a scope option sits, as messages name it.
struct ScopeWording;

impl Wording for ScopeWording {
    fn place(&self, path: &[Seg], input: &Value) -> String {
        match path {
            [Seg::Key(owner), Seg::Key(table)] if owner == "owner" => {
                format!("option \"owner\" for table \"{table}\"")
            }
            [Seg::Key(links), Seg::Index(i)] if links == "links" => {
                format!("option \"links\" item {}", i + 1)
            }
            [Seg::Key(links), Seg::Index(i), Seg::Key(key), ..] if links == "links" => {
                // Column lists are named after their link, once it has a name.
                let name = options::value_at(input, &path[..2])
                    .and_then(|l| l.get("name"))
                    .and_then(Value::as_str)
                    .filter(|n| !n.trim().is_empty());
                match name {
                    Some(name) if key.ends_with("columns") => {
                        format!("\"{key}\" of link \"{name}\"")
                    }
                    _ => format!("\"{key}\" of option \"links\" item {}", i + 1),
                }
            }
            [Seg::Key(key), ..] => format!("option \"{key}\""),
            _ => "options".into(),
        }
    }

    fn hint(&self, path: &[Seg], problem: &Problem) -> Option<String> {
        match (path, problem) {
            ([], Problem::UnknownField { known, .. }) => {
                Some(format!("Scope options are: {}.", known.join(", ")))
            }
            ([_, Seg::Index(_)], Problem::UnknownField { known, .. }) => {
                Some(format!("A link has the keys: {}.", known.join(", ")))
            }
            ([Seg::Key(k)], Problem::WrongValue { .. }) if k == "owner" => Some(
                "Write it as {\"owner\": {\"owned_table\": \"fk_or_link_or_parent_table\"}}."
                    .into(),
            ),
            ([Seg::Key(k)], Problem::WrongValue { .. }) if k == "links" => Some(
                "Write it as {\"links\": [{\"name\": \"...\", \"child\": \"...\", \"columns\": \
                 [\"...\"], \"parent\": \"...\"}]}."
                    .into(),
            ),
            _ => None,
        }
    }
}

fn bad(msg: String) -> Error {
    Common::InvalidOption(msg, None).into()
}

impl ScopeOptions {
    /// The options as JSON, in the shape `parse` reads.
    pub fn to_json(&self) -> Value {
        // Plain strings, vectors and string-keyed maps: serializing them cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Parses `create_scope`'s options: unknown keys, values of the wrong type and links that
    /// do not add up are errors naming the option (22023), with a HINT where one helps.
    pub fn parse(v: &Value) -> Result<Self, Error> {
        let opts: ScopeOptions = options::parse(v, &ScopeWording)?;
        for link in &opts.links {
            let name = &link.name;
            if link.columns.is_empty() {
                return Err(bad(format!("link \"{name}\" has an empty \"columns\"")));
            }
            if let Some(pc) = &link.parent_columns {
                if pc.len() != link.columns.len() {
                    return Err(bad(format!(
                        "link \"{name}\" has {} columns but {} parent_columns",
                        link.columns.len(),
                        pc.len()
                    )));
                }
            }
        }
        let mut names: Vec<&str> = opts.links.iter().map(|l| l.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!(
                "option \"links\" names link \"{}\" twice",
                w[0]
            )));
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UserError;
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
            .report()
            .hint
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
