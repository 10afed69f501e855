//! The `options` jsonb of `migrate_tenant`, parsed strictly: unknown keys and values of the
//! wrong shape are errors that name them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{OpsError, OpsResult};

const KNOWN: &[&str] = &[
    "tables",
    "strip_prefix",
    "id_strategy",
    "uuid_namespace",
    "columns",
    "new_tenant",
    "on_conflict",
    "mode",
    "dry_run",
    "batch_size",
    "max_rows_per_second",
    "verify",
    "shared",
    "cross_tenant",
    "continue_on_error",
    "create_target",
    "defer",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdStrategy {
    Keep,
    Uuid,
    Uuid5,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConflict {
    Error,
    Skip,
    Overwrite,
    Merge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Copy,
    Move,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedMode {
    Expect,
    Copy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossTenant {
    Error,
    Copy,
    Null,
}

/// How one target column is filled (the `columns` option).
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnSource {
    /// A source column (mapped like any key or FK column), optionally transformed.
    From {
        column: String,
        transform: Option<Value>,
    },
    /// A constant (cast to the column's type by PostgreSQL).
    Value(Value),
    /// A raw SQL expression over the source row `s` (tenant_ops_admin only).
    Expr(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct MigrateOptions {
    /// Source table name (as written) → target table name (within the target schema).
    pub tables: BTreeMap<String, String>,
    pub strip_prefix: Option<String>,
    pub id_strategy: IdStrategy,
    /// The `uuid5` namespace; `None`: the scope's own (see [`super::uuid5::migration_namespace`]).
    pub uuid_namespace: Option<uuid::Uuid>,
    /// Target table → target column → how to fill it.
    pub columns: BTreeMap<String, BTreeMap<String, ColumnSource>>,
    pub new_tenant: Option<String>,
    pub on_conflict: OnConflict,
    pub mode: Mode,
    pub dry_run: bool,
    pub batch_size: Option<i64>,
    pub max_rows_per_second: Option<f64>,
    pub verify: bool,
    pub shared: SharedMode,
    pub cross_tenant: CrossTenant,
    pub continue_on_error: bool,
    pub create_target: bool,
    pub defer: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            tables: BTreeMap::new(),
            strip_prefix: None,
            id_strategy: IdStrategy::Keep,
            uuid_namespace: None,
            columns: BTreeMap::new(),
            new_tenant: None,
            on_conflict: OnConflict::Error,
            mode: Mode::Copy,
            dry_run: false,
            batch_size: None,
            max_rows_per_second: None,
            verify: true,
            shared: SharedMode::Expect,
            cross_tenant: CrossTenant::Error,
            continue_on_error: false,
            create_target: false,
            defer: false,
        }
    }
}

fn bad(msg: String) -> OpsError {
    OpsError::InvalidOption(msg, None)
}

fn choice<T: Copy>(
    map: &serde_json::Map<String, Value>,
    key: &str,
    choices: &[(&str, T)],
    default: T,
) -> OpsResult<T> {
    match map.get(key) {
        None => Ok(default),
        Some(Value::String(s)) => choices
            .iter()
            .find(|(n, _)| n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                OpsError::InvalidOption(
                    format!("option \"{key}\" cannot be \"{s}\""),
                    Some(format!(
                        "\"{key}\" is one of: {}.",
                        choices
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                )
            }),
        Some(other) => Err(bad(format!(
            "option \"{key}\" must be a string, not {other}"
        ))),
    }
}

fn boolean(map: &serde_json::Map<String, Value>, key: &str, default: bool) -> OpsResult<bool> {
    match map.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(format!(
            "option \"{key}\" must be true or false, not {other}"
        ))),
    }
}

fn text(map: &serde_json::Map<String, Value>, key: &str) -> OpsResult<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(other) => Err(bad(format!(
            "option \"{key}\" must be a non-empty string, not {other}"
        ))),
    }
}

impl MigrateOptions {
    pub fn parse(v: &Value) -> OpsResult<Self> {
        let Value::Object(map) = v else {
            return Err(bad(format!("options must be a JSON object, not {v}")));
        };
        for key in map.keys() {
            if !KNOWN.contains(&key.as_str()) {
                return Err(OpsError::InvalidOption(
                    format!("unknown option \"{key}\""),
                    Some(format!("migrate_tenant options are: {}.", KNOWN.join(", "))),
                ));
            }
        }
        let mut o = MigrateOptions::default();
        if let Some(v) = map.get("tables") {
            let Value::Object(t) = v else {
                return Err(bad(
                    "option \"tables\" must map source table names to target table names".into(),
                ));
            };
            for (src, dst) in t {
                match dst {
                    Value::String(d) if !d.is_empty() => {
                        o.tables.insert(src.clone(), d.clone());
                    }
                    other => {
                        return Err(bad(format!(
                        "option \"tables\": target for \"{src}\" must be a table name, not {other}"
                    )))
                    }
                }
            }
        }
        o.strip_prefix = text(map, "strip_prefix")?;
        o.id_strategy = choice(
            map,
            "id_strategy",
            &[
                ("keep", IdStrategy::Keep),
                ("uuid", IdStrategy::Uuid),
                ("uuid5", IdStrategy::Uuid5),
            ],
            IdStrategy::Keep,
        )?;
        if let Some(ns) = text(map, "uuid_namespace")? {
            if o.id_strategy != IdStrategy::Uuid5 {
                return Err(bad(
                    "option \"uuid_namespace\" only applies to id_strategy \"uuid5\"".into(),
                ));
            }
            // Refused rather than replaced: a typo here would silently give other keys.
            o.uuid_namespace = Some(super::uuid5::parse_uuid(&ns).ok_or_else(|| {
                OpsError::InvalidOption(
                    format!("option \"uuid_namespace\" must be a UUID, not {}", Value::String(ns)),
                    Some("Write it as \"6ba7b810-9dad-11d1-80b4-00c04fd430c8\" (32 hex digits, hyphens optional).".into()),
                )
            })?);
        }
        if let Some(v) = map.get("columns") {
            o.columns = parse_columns(v)?;
        }
        o.new_tenant = text(map, "new_tenant")?;
        o.on_conflict = choice(
            map,
            "on_conflict",
            &[
                ("error", OnConflict::Error),
                ("skip", OnConflict::Skip),
                ("overwrite", OnConflict::Overwrite),
                ("merge", OnConflict::Merge),
            ],
            OnConflict::Error,
        )?;
        o.mode = choice(
            map,
            "mode",
            &[("copy", Mode::Copy), ("move", Mode::Move)],
            Mode::Copy,
        )?;
        o.dry_run = boolean(map, "dry_run", false)?;
        o.batch_size = match map.get("batch_size") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some_and(|b| (1..=10_000_000).contains(&b)) => {
                n.as_i64()
            }
            Some(other) => {
                return Err(bad(format!(
                    "option \"batch_size\" must be a whole number from 1 to 10000000, not {other}"
                )))
            }
        };
        o.max_rows_per_second = match map.get("max_rows_per_second") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_f64().is_some_and(|r| r > 0.0) => n.as_f64(),
            Some(other) => {
                return Err(bad(format!(
                    "option \"max_rows_per_second\" must be a positive number, not {other}"
                )))
            }
        };
        o.verify = boolean(map, "verify", true)?;
        o.shared = choice(
            map,
            "shared",
            &[("expect", SharedMode::Expect), ("copy", SharedMode::Copy)],
            SharedMode::Expect,
        )?;
        o.cross_tenant = choice(
            map,
            "cross_tenant",
            &[
                ("error", CrossTenant::Error),
                ("copy", CrossTenant::Copy),
                ("null", CrossTenant::Null),
            ],
            CrossTenant::Error,
        )?;
        o.continue_on_error = boolean(map, "continue_on_error", false)?;
        o.create_target = boolean(map, "create_target", false)?;
        o.defer = boolean(map, "defer", false)?;
        if o.mode == Mode::Move && !o.verify {
            return Err(OpsError::InvalidOption(
                "option \"verify\" cannot be false with mode \"move\"".into(),
                Some("A move deletes the source rows only after the copy is verified.".into()),
            ));
        }
        if o.mode == Mode::Move && o.cross_tenant == CrossTenant::Copy {
            return Err(OpsError::InvalidOption(
                "option \"cross_tenant\": \"copy\" cannot be combined with mode \"move\"".into(),
                Some("A move deletes what it copies, and the rows brought along belong to other tenants.".into()),
            ));
        }
        if o.mode == Mode::Move && o.new_tenant.is_some() {
            return Err(bad(
                "option \"new_tenant\" (a clone) cannot be combined with mode \"move\"".into(),
            ));
        }
        Ok(o)
    }
}

fn parse_columns(v: &Value) -> OpsResult<BTreeMap<String, BTreeMap<String, ColumnSource>>> {
    let Value::Object(tables) = v else {
        return Err(OpsError::InvalidOption(
            "option \"columns\" must be an object".into(),
            Some("Write it as {\"columns\": {\"target_table\": {\"target_column\": {\"from\": \"source_column\", \"transform\": \"trim\"}}}}.".into()),
        ));
    };
    let mut out = BTreeMap::new();
    for (table, cols) in tables {
        let Value::Object(cols) = cols else {
            return Err(bad(format!(
                "option \"columns\": \"{table}\" must map target columns to their source"
            )));
        };
        let mut m = BTreeMap::new();
        for (col, spec) in cols {
            let at = format!("option \"columns\" for {table}.{col}");
            let source = match spec {
                // Shorthand: "target": "source_column"
                Value::String(s) => ColumnSource::From {
                    column: s.clone(),
                    transform: None,
                },
                Value::Object(o) => {
                    for k in o.keys() {
                        if !["from", "value", "transform", "expr"].contains(&k.as_str()) {
                            return Err(OpsError::InvalidOption(
                                format!("unknown key \"{k}\" in {at}"),
                                Some("A column is filled by \"from\" (with an optional \"transform\"), \"value\" or \"expr\".".into()),
                            ));
                        }
                    }
                    let given = ["from", "value", "expr"]
                        .iter()
                        .filter(|k| o.contains_key(**k))
                        .count();
                    if given != 1 {
                        return Err(bad(format!(
                            "{at} needs exactly one of \"from\", \"value\" or \"expr\""
                        )));
                    }
                    if let Some(v) = o.get("value") {
                        if o.contains_key("transform") {
                            return Err(bad(format!("{at}: a \"value\" takes no \"transform\"")));
                        }
                        ColumnSource::Value(v.clone())
                    } else if let Some(e) = o.get("expr") {
                        match e {
                            Value::String(s) if !s.trim().is_empty() => {
                                ColumnSource::Expr(s.clone())
                            }
                            other => {
                                return Err(bad(format!(
                                    "{at}: \"expr\" must be SQL text, not {other}"
                                )))
                            }
                        }
                    } else {
                        let column = match o.get("from") {
                            Some(Value::String(s)) if !s.is_empty() => s.clone(),
                            other => {
                                return Err(bad(format!(
                                    "{at}: \"from\" must be a column name, not {}",
                                    other.cloned().unwrap_or(Value::Null)
                                )))
                            }
                        };
                        ColumnSource::From {
                            column,
                            transform: o.get("transform").cloned(),
                        }
                    }
                }
                other => {
                    return Err(bad(format!(
                        "{at} must be a column name or an object, not {other}"
                    )))
                }
            };
            m.insert(col.clone(), source);
        }
        out.insert(table.clone(), m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_every_option() {
        assert_eq!(
            MigrateOptions::parse(&json!({})).unwrap(),
            MigrateOptions::default()
        );
        let o = MigrateOptions::parse(&json!({
            "tables": {"dispatch_doctors": "doctors"}, "strip_prefix": "dispatch_",
            "id_strategy": "uuid5", "uuid_namespace": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "columns": {"doctors": {"name": {"from": "full_name", "transform": "trim"}, "src": {"value": "legacy"}, "x": "y"}},
            "new_tenant": "77", "on_conflict": "merge", "mode": "copy", "dry_run": true, "batch_size": 500,
            "max_rows_per_second": 1000, "verify": false, "shared": "copy", "cross_tenant": "null",
            "continue_on_error": true, "create_target": true, "defer": true
        }))
        .unwrap();
        assert_eq!(o.id_strategy, IdStrategy::Uuid5);
        assert_eq!(o.uuid_namespace, Some(uuid::Uuid::NAMESPACE_DNS));
        assert_eq!(o.batch_size, Some(500));
        assert_eq!(
            o.columns["doctors"]["name"],
            ColumnSource::From {
                column: "full_name".into(),
                transform: Some(json!("trim"))
            }
        );
        assert_eq!(
            o.columns["doctors"]["x"],
            ColumnSource::From {
                column: "y".into(),
                transform: None
            }
        );
        assert_eq!(
            o.columns["doctors"]["src"],
            ColumnSource::Value(json!("legacy"))
        );
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for (v, msg) in [
            (json!({"modes": "copy"}), "unknown option \"modes\""),
            (
                json!({"mode": "teleport"}),
                "option \"mode\" cannot be \"teleport\"",
            ),
            (
                json!({"batch_size": 0}),
                "option \"batch_size\" must be a whole number from 1 to 10000000, not 0",
            ),
            (
                json!({"verify": "yes"}),
                "option \"verify\" must be true or false, not \"yes\"",
            ),
            (
                json!({"mode": "move", "verify": false}),
                "option \"verify\" cannot be false with mode \"move\"",
            ),
            (
                json!({"uuid_namespace": "x"}),
                "option \"uuid_namespace\" only applies to id_strategy \"uuid5\"",
            ),
            (
                json!({"id_strategy": "uuid5", "uuid_namespace": "6ba7b810-9dad-11d1-80b4"}),
                "option \"uuid_namespace\" must be a UUID, not \"6ba7b810-9dad-11d1-80b4\"",
            ),
            (
                json!({"id_strategy": "uuid5", "uuid_namespace": "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8"}),
                "option \"uuid_namespace\" must be a UUID, not \"urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8\"",
            ),
            (
                json!({"columns": {"t": {"c": {"from": "a", "value": 1}}}}),
                "option \"columns\" for t.c needs exactly one of \"from\", \"value\" or \"expr\"",
            ),
            (
                json!({"columns": {"t": {"c": {"form": "a"}}}}),
                "unknown key \"form\" in option \"columns\" for t.c",
            ),
        ] {
            let err = MigrateOptions::parse(&v).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid options: {msg}"),
                "for {v}"
            );
        }
    }
}
