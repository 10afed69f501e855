//! The options of `export_tenant` and `import_tenant`, parsed strictly (see
//! `crate::options`): unknown keys and values of the wrong shape are errors that name them.

use serde::Deserialize;
use serde_json::{json, Value};

use super::error::Result;
use crate::error::Common;
use crate::options::{self, present};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportDocument {
    #[serde(default, deserialize_with = "options::json")]
    tables: Value,
    #[serde(default, deserialize_with = "present")]
    file: Option<String>,
    #[serde(default, deserialize_with = "present")]
    gzip: Option<bool>,
    #[serde(default, deserialize_with = "options::json")]
    pii: Value,
}

/// One table asked for: its name as given, and the columns (`None`: every stored column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableChoice {
    pub name: String,
    pub columns: Option<Vec<String>>,
}

/// The options of one export, checked.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExportOptions {
    /// `None`: the root and every owned table, every stored column.
    pub tables: Option<Vec<TableChoice>>,
    /// The archive's name inside the export directory (`None`: one made of the scope, the
    /// tenant and the job id).
    pub file: Option<String>,
    /// gzip-compressed (`.tar.gz`, the default) or a plain `.tar`.
    pub gzip: bool,
    /// The columns masked (see `pii::mask`).
    pub pii: Option<crate::pii::mask::PiiOption>,
}

fn bad(message: String, hint: &str) -> super::error::Error {
    Common::InvalidOption(message, Some(hint.to_string())).into()
}

const TABLES_HINT: &str = "\"tables\" is an array of table names, or an object of table name to {\"columns\": [column names]}.";

impl ExportOptions {
    pub fn parse(v: &Value) -> Result<ExportOptions> {
        let d: ExportDocument = options::parse(v, &options::FunctionWording("export_tenant"))?;
        let tables = match &d.tables {
            Value::Null => None,
            Value::Array(items) => Some(
                items
                    .iter()
                    .map(|t| match t.as_str() {
                        Some(name) if !name.trim().is_empty() => Ok(TableChoice {
                            name: name.to_string(),
                            columns: None,
                        }),
                        _ => Err(bad(
                            format!(
                                "option \"tables\" must list table names, not {}",
                                options::got(t)
                            ),
                            TABLES_HINT,
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Value::Object(m) => Some(
                m.iter()
                    .map(|(name, spec)| {
                        let columns = match spec {
                            Value::Null => None,
                            Value::Object(o) => {
                                if let Some(k) = o.keys().find(|k| *k != "columns") {
                                    return Err(bad(
                                        format!("unknown key \"{k}\" in option \"tables\" \"{name}\""),
                                        "A table's keys are: columns.",
                                    ));
                                }
                                match o.get("columns") {
                                    None | Some(Value::Null) => None,
                                    Some(Value::Array(cols)) if !cols.is_empty() => Some(
                                        cols.iter()
                                            .map(|c| {
                                                c.as_str().map(str::to_string).ok_or_else(|| {
                                                    bad(
                                                        format!("option \"tables\" \"{name}\" \"columns\" must list column names, not {}", options::got(c)),
                                                        TABLES_HINT,
                                                    )
                                                })
                                            })
                                            .collect::<Result<Vec<_>>>()?,
                                    ),
                                    Some(other) => {
                                        return Err(bad(
                                            format!("option \"tables\" \"{name}\" \"columns\" must be a non-empty array of column names, not {}", options::got(other)),
                                            TABLES_HINT,
                                        ))
                                    }
                                }
                            }
                            other => {
                                return Err(bad(
                                    format!(
                                        "option \"tables\" \"{name}\" must be an object, not {}",
                                        options::got(other)
                                    ),
                                    TABLES_HINT,
                                ))
                            }
                        };
                        Ok(TableChoice {
                            name: name.clone(),
                            columns,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            other => {
                return Err(bad(
                    format!(
                        "option \"tables\" must be an array or an object, not {}",
                        options::got(other)
                    ),
                    TABLES_HINT,
                ))
            }
        };
        if tables.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad(
                "option \"tables\" must name at least one table".into(),
                TABLES_HINT,
            ));
        }
        Ok(ExportOptions {
            tables,
            file: d.file,
            gzip: d.gzip.unwrap_or(true),
            pii: crate::pii::mask::PiiOption::parse(&d.pii)?,
        })
    }
}

/// `import_tenant`'s options become a restore's (`restore_backup`'s, checked by it): the
/// default mode is `merge` (nothing of the tenant is deleted; rows it holds already are
/// conflicts), and an `id_strategy` other than `keep`, or a `new_tenant`, asks for the
/// re-keying `clone`.
pub fn restore_options(raw: &Value) -> Result<Value> {
    let Value::Object(m) = raw else {
        return Err(Common::InvalidOption(
            format!("options must be a JSON object, not {}", options::got(raw)),
            None,
        )
        .into());
    };
    let mut m = m.clone();
    let keep = m.get("id_strategy").and_then(Value::as_str) == Some("keep");
    if keep {
        m.remove("id_strategy");
    }
    if !m.contains_key("mode") {
        let rekey = m.contains_key("new_tenant") || m.contains_key("id_strategy");
        m.insert(
            "mode".into(),
            json!(if rekey && !keep { "clone" } else { "merge" }),
        );
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_as_list_or_object() {
        let o = ExportOptions::parse(&json!({"tables": ["a", "s.b"]})).unwrap();
        assert_eq!(o.tables.unwrap().len(), 2);
        assert!(o.gzip);
        let o = ExportOptions::parse(
            &json!({"tables": {"a": {"columns": ["x", "y"]}, "b": {}}, "gzip": false}),
        )
        .unwrap();
        let t = o.tables.unwrap();
        assert_eq!(
            t[0].columns.as_deref(),
            Some(&["x".to_string(), "y".to_string()][..])
        );
        assert_eq!(t[1].columns, None);
        assert!(!o.gzip);
        assert!(ExportOptions::parse(&json!({"tables": []})).is_err());
        assert!(ExportOptions::parse(&json!({"tables": [1]})).is_err());
        assert!(ExportOptions::parse(&json!({"tables": {"a": {"cols": []}}})).is_err());
    }

    #[test]
    fn import_options_choose_the_mode() {
        assert_eq!(
            restore_options(&json!({})).unwrap(),
            json!({"mode": "merge"})
        );
        assert_eq!(
            restore_options(&json!({"id_strategy": "keep"})).unwrap(),
            json!({"mode": "merge"})
        );
        assert_eq!(
            restore_options(&json!({"new_tenant": "9"})).unwrap(),
            json!({"mode": "clone", "new_tenant": "9"})
        );
        assert_eq!(
            restore_options(&json!({"mode": "replace"})).unwrap(),
            json!({"mode": "replace"})
        );
    }
}
