//! The `options` jsonb of `migrate_tenant`, parsed strictly: unknown keys and values of the
//! wrong shape are errors that name them (serde derive with `deny_unknown_fields`, worded by
//! [`crate::options`]), then the combinations that make no sense are refused.

use std::collections::BTreeMap;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::Error;
use crate::error::Common;
use crate::options::{self, invalid, present, Problem, Seg, Wording};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// How keys are re-keyed (`id_strategy`).
pub enum IdStrategy {
    Keep,
    /// Version-4 UUIDs from a keyed pseudo-random function of the legacy key (see
    /// `keyed_uuid.rs`): unpredictable without the database's secret, computed rather than
    /// recorded.
    Uuid,
    /// Name-based (version 5) UUIDs: the same legacy key always gives the same UUID.
    Uuid5,
    /// Time-ordered (version 7) UUIDs, recorded in `tenant_ops.id_map`: new keys land at the
    /// right edge of the target's indexes instead of all over them.
    Uuid7,
}

impl IdStrategy {
    /// Whether new keys are generated and recorded in `tenant_ops.id_map` (rather than kept
    /// or computed from the legacy key): only time-ordered ones, which carry the time they
    /// were made.
    pub fn uses_id_map(self) -> bool {
        matches!(self, IdStrategy::Uuid7)
    }

    /// The name the option gives it.
    pub fn name(self) -> &'static str {
        match self {
            IdStrategy::Keep => "keep",
            IdStrategy::Uuid => "uuid",
            IdStrategy::Uuid5 => "uuid5",
            IdStrategy::Uuid7 => "uuid7",
        }
    }

    /// The SQL expression of a fresh key where one is drawn: `uuid7`, and a clone from a
    /// backup (which keeps its mapping for itself; `uuid`: `tenant_ops.uuid4()`, see
    /// `uuid4.rs`).
    pub fn new_id_sql(self) -> &'static str {
        match self {
            IdStrategy::Uuid7 => "tenant_ops.uuid7()",
            _ => "tenant_ops.uuid4()",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
/// What happens to a row whose key the target already holds (`on_conflict`).
pub enum OnConflict {
    Error,
    Skip,
    Overwrite,
    Merge,
}

impl OnConflict {
    /// The `ON CONFLICT` clause of an insert into `target` under this policy; `key`: the
    /// target's key columns (quoted, comma-separated), when it has a key; `updatable`: the
    /// (quoted) columns written that are not part of it. `error` adds none (conflicts are
    /// looked for before anything is written); `skip` leaves the row there as it is;
    /// `overwrite` takes the new values, `merge` too except where they are NULL. Without a
    /// key, or with nothing to update, a conflicting row is left as it is.
    pub fn clause(self, target: &str, key: Option<&str>, updatable: &[&str]) -> String {
        let set = |value: &dyn Fn(&str) -> String| {
            updatable
                .iter()
                .map(|c| format!("{c} = {}", value(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (self, key) {
            (OnConflict::Error, _) => String::new(),
            (OnConflict::Skip, _) => "ON CONFLICT DO NOTHING".into(),
            (OnConflict::Overwrite, Some(k)) if !updatable.is_empty() => format!(
                "ON CONFLICT ({k}) DO UPDATE SET {}",
                set(&|c| format!("EXCLUDED.{c}"))
            ),
            (OnConflict::Merge, Some(k)) if !updatable.is_empty() => format!(
                "ON CONFLICT ({k}) DO UPDATE SET {}",
                set(&|c| format!("COALESCE(EXCLUDED.{c}, {target}.{c})"))
            ),
            _ => "ON CONFLICT DO NOTHING".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// Copy, move (archive and delete the source rows once verified), or online (copy while the
/// tenant's changes are captured, then follow them until `cutover_migration`).
pub enum Mode {
    Copy,
    Move,
    Online,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Copy => "copy",
            Mode::Move => "move",
            Mode::Online => "online",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// Shared rows: expected in the target, or copied there (`shared`).
pub enum SharedMode {
    Expect,
    Copy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
/// Rows referencing another tenant's rows (`cross_tenant`).
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

/// The options of one migration, checked.
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
    /// With `create_target`, on Citus: the tables created are distributed by the tenant
    /// column and colocated with the root's, shared ones made reference tables.
    pub distribute: bool,
    pub defer: bool,
    /// The `pii` option: the columns masked (see `pii::mask`).
    pub pii: Option<crate::pii::mask::PiiOption>,
    /// Online: a `migration.lagging` event when more changes than this wait to be applied.
    pub lag_alert_changes: i64,
    /// Online: ... or when the oldest waiting change is older than this, in seconds.
    pub lag_alert_seconds: f64,
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
            distribute: false,
            defer: false,
            pii: None,
            lag_alert_changes: 10_000,
            lag_alert_seconds: 60.0,
        }
    }
}

/// The document as written, one field per option in the order the HINT lists them; `parse`
/// checks the combinations and builds [`MigrateOptions`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default, deserialize_with = "table_map")]
    tables: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "some_text")]
    strip_prefix: Option<String>,
    #[serde(default, deserialize_with = "present")]
    id_strategy: Option<IdStrategy>,
    #[serde(default, deserialize_with = "some_text")]
    uuid_namespace: Option<String>,
    #[serde(default)]
    columns: BTreeMap<String, BTreeMap<String, ColumnSource>>,
    #[serde(default, deserialize_with = "some_text")]
    new_tenant: Option<String>,
    #[serde(default, deserialize_with = "present")]
    on_conflict: Option<OnConflict>,
    #[serde(default, deserialize_with = "present")]
    mode: Option<Mode>,
    #[serde(default, deserialize_with = "present")]
    dry_run: Option<bool>,
    #[serde(default, deserialize_with = "batch_size")]
    batch_size: Option<i64>,
    #[serde(default, deserialize_with = "rate")]
    max_rows_per_second: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    verify: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    shared: Option<SharedMode>,
    #[serde(default, deserialize_with = "present")]
    cross_tenant: Option<CrossTenant>,
    #[serde(default, deserialize_with = "present")]
    continue_on_error: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    create_target: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    distribute: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    defer: Option<bool>,
    #[serde(default)]
    pii: Value,
    #[serde(default, deserialize_with = "batch_size")]
    lag_alert_changes: Option<i64>,
    #[serde(default, deserialize_with = "rate")]
    lag_alert_seconds: Option<f64>,
}

/// A non-empty string; `null` is no value.
fn some_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match options::json(d)? {
        Value::Null => Ok(None),
        Value::String(s) if !s.is_empty() => Ok(Some(s)),
        other => Err(invalid(format!("must be a non-empty string, not {other}"))),
    }
}

/// Source table → target table name, both non-empty.
fn table_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    struct Target(#[serde(deserialize_with = "target")] String);
    fn target<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        match options::json(d)? {
            Value::String(s) if !s.is_empty() => Ok(s),
            other => Err(invalid(format!("must be a table name, not {other}"))),
        }
    }
    let map = BTreeMap::<String, Target>::deserialize(d)?;
    Ok(map.into_iter().map(|(s, t)| (s, t.0)).collect())
}

fn batch_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match options::json(d)? {
        Value::Null => Ok(None),
        Value::Number(n) if n.as_i64().is_some_and(|b| (1..=10_000_000).contains(&b)) => {
            Ok(n.as_i64())
        }
        other => Err(invalid(format!(
            "must be a whole number from 1 to 10000000, not {other}"
        ))),
    }
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match options::json(d)? {
        Value::Null => Ok(None),
        Value::Number(n) if n.as_f64().is_some_and(|r| r > 0.0) => Ok(n.as_f64()),
        other => Err(invalid(format!("must be a positive number, not {other}"))),
    }
}

/// A column's source as written: `"source_col"` or an object with one of `from`, `value`,
/// `expr` (a `null` value is a value: the constant NULL).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnObject {
    #[serde(default, deserialize_with = "present")]
    from: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    transform: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    expr: Option<Value>,
}

impl<'de> Deserialize<'de> for ColumnSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Spec;
        impl<'de> Visitor<'de> for Spec {
            type Value = ColumnSource;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a column name or an object")
            }
            // Shorthand: "target": "source_column"
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ColumnSource, E> {
                Ok(ColumnSource::From {
                    column: s.to_string(),
                    transform: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ColumnSource, A::Error> {
                let o = ColumnObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                column_source(o).map_err(invalid)
            }
        }
        d.deserialize_any(Spec)
    }
}

/// The one source a column object names, or what is wrong with it (following its place).
fn column_source(o: ColumnObject) -> Result<ColumnSource, String> {
    let given = [&o.from, &o.value, &o.expr]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        return Err("needs exactly one of \"from\", \"value\" or \"expr\"".into());
    }
    if let Some(v) = o.value {
        if o.transform.is_some() {
            return Err(": a \"value\" takes no \"transform\"".into());
        }
        return Ok(ColumnSource::Value(v));
    }
    if let Some(e) = o.expr {
        return match e {
            Value::String(s) if !s.trim().is_empty() => Ok(ColumnSource::Expr(s)),
            other => Err(format!(": \"expr\" must be SQL text, not {other}")),
        };
    }
    match o.from {
        Some(Value::String(s)) if !s.is_empty() => Ok(ColumnSource::From {
            column: s,
            transform: o.transform,
        }),
        other => Err(format!(
            ": \"from\" must be a column name, not {}",
            other.unwrap_or(Value::Null)
        )),
    }
}

/// Where a migrate option sits, as messages name it.
struct MigrateWording;

impl Wording for MigrateWording {
    fn place(&self, path: &[Seg], _input: &Value) -> String {
        match path {
            [Seg::Key(t), Seg::Key(src)] if t == "tables" => {
                format!("option \"tables\": target for \"{src}\"")
            }
            [Seg::Key(c), Seg::Key(table)] if c == "columns" => {
                format!("option \"columns\": \"{table}\"")
            }
            [Seg::Key(c), Seg::Key(table), Seg::Key(col), ..] if c == "columns" => {
                format!("option \"columns\" for {table}.{col}")
            }
            [Seg::Key(key), ..] => format!("option \"{key}\""),
            _ => "options".into(),
        }
    }

    fn message(&self, path: &[Seg], place: &str, problem: &Problem) -> String {
        match problem {
            // A column object's own checks read "…for t.c: \"expr\" must be…".
            Problem::Invalid(text) if text.starts_with(':') => format!("{place}{text}"),
            Problem::WrongValue { .. } if matches!(path, [Seg::Key(t)] if t == "tables") => {
                format!("{place} must map source table names to target table names")
            }
            Problem::WrongValue { .. } if matches!(path, [Seg::Key(c), Seg::Key(_)] if c == "columns") =>
            {
                format!("{place} must map target columns to their source")
            }
            _ => options::default_message(path, place, problem),
        }
    }

    fn hint(&self, path: &[Seg], problem: &Problem) -> Option<String> {
        match (path, problem) {
            ([], Problem::UnknownField { known, .. }) => {
                Some(format!("migrate_tenant options are: {}.", known.join(", ")))
            }
            ([Seg::Key(c), ..], Problem::UnknownField { .. }) if c == "columns" => Some(
                "A column is filled by \"from\" (with an optional \"transform\"), \"value\" or \
                 \"expr\"."
                    .into(),
            ),
            ([Seg::Key(c)], Problem::WrongValue { .. }) if c == "columns" => Some(
                "Write it as {\"columns\": {\"target_table\": {\"target_column\": {\"from\": \
                 \"source_column\", \"transform\": \"trim\"}}}}."
                    .into(),
            ),
            _ => options::default_hint(path, problem),
        }
    }
}

fn bad(msg: String) -> Error {
    Common::InvalidOption(msg, None).into()
}

impl MigrateOptions {
    /// Parses `migrate_tenant`'s options: unknown keys, values of the wrong type and
    /// combinations that make no sense are errors naming the option (22023).
    pub fn parse(v: &Value) -> Result<Self, Error> {
        let doc: Document = options::parse(v, &MigrateWording)?;
        let d = MigrateOptions::default();
        let mut o = MigrateOptions {
            tables: doc.tables,
            strip_prefix: doc.strip_prefix,
            id_strategy: doc.id_strategy.unwrap_or(d.id_strategy),
            uuid_namespace: None,
            columns: doc.columns,
            new_tenant: doc.new_tenant,
            on_conflict: doc.on_conflict.unwrap_or(d.on_conflict),
            mode: doc.mode.unwrap_or(d.mode),
            dry_run: doc.dry_run.unwrap_or(d.dry_run),
            batch_size: doc.batch_size,
            max_rows_per_second: doc.max_rows_per_second,
            verify: doc.verify.unwrap_or(d.verify),
            shared: doc.shared.unwrap_or(d.shared),
            cross_tenant: doc.cross_tenant.unwrap_or(d.cross_tenant),
            continue_on_error: doc.continue_on_error.unwrap_or(d.continue_on_error),
            create_target: doc.create_target.unwrap_or(d.create_target),
            distribute: doc.distribute.unwrap_or(d.distribute),
            defer: doc.defer.unwrap_or(d.defer),
            pii: crate::pii::mask::PiiOption::parse(&doc.pii)?,
            lag_alert_changes: doc.lag_alert_changes.unwrap_or(d.lag_alert_changes),
            lag_alert_seconds: doc.lag_alert_seconds.unwrap_or(d.lag_alert_seconds),
        };
        let lag_option = doc
            .lag_alert_changes
            .map(|_| "lag_alert_changes")
            .or(doc.lag_alert_seconds.map(|_| "lag_alert_seconds"));
        if let Some(ns) = doc.uuid_namespace {
            if o.id_strategy != IdStrategy::Uuid5 {
                return Err(bad(
                    "option \"uuid_namespace\" only applies to id_strategy \"uuid5\"".into(),
                ));
            }
            // Refused rather than replaced: a typo here would silently give other keys.
            o.uuid_namespace = Some(super::uuid5::parse_uuid(&ns).ok_or_else(|| {
                Common::InvalidOption(
                    format!("option \"uuid_namespace\" must be a UUID, not {}", Value::String(ns)),
                    Some("Write it as \"6ba7b810-9dad-11d1-80b4-00c04fd430c8\" (32 hex digits, hyphens optional).".into()),
                )
            })?);
        }
        if o.distribute && !o.create_target {
            return Err(Common::InvalidOption(
                "option \"distribute\" needs \"create_target\": true".into(),
                Some("It distributes the target tables the migration creates; distribute existing ones with create_distributed_table.".into()),
            )
            .into());
        }
        if o.mode == Mode::Move && !o.verify {
            return Err(Common::InvalidOption(
                "option \"verify\" cannot be false with mode \"move\"".into(),
                Some("A move deletes the source rows only after the copy is verified.".into()),
            )
            .into());
        }
        if o.mode == Mode::Move && o.cross_tenant == CrossTenant::Copy {
            return Err(Common::InvalidOption(
                "option \"cross_tenant\": \"copy\" cannot be combined with mode \"move\"".into(),
                Some("A move deletes what it copies, and the rows brought along belong to other tenants.".into()),
            ).into());
        }
        if o.mode == Mode::Move && o.new_tenant.is_some() {
            return Err(bad(
                "option \"new_tenant\" (a clone) cannot be combined with mode \"move\"".into(),
            ));
        }
        if o.mode == Mode::Online {
            o.check_online()?;
        } else if let Some(option) = lag_option {
            return Err(bad(format!(
                "option \"{option}\" only applies to mode \"online\""
            )));
        }
        Ok(o)
    }
}

impl MigrateOptions {
    /// The options an online migration cannot honour, refused before anything is written: its
    /// changes are applied through key mappings computed in SQL (no `tenant_ops.id_map` rows to
    /// add while it follows them), to the tenant's own rows only.
    fn check_online(&self) -> Result<(), Error> {
        let refuse = |what: String, hint: &str| -> Result<(), Error> {
            Err(Common::InvalidOption(what, Some(hint.into())).into())
        };
        if self.id_strategy.uses_id_map() {
            return refuse(
                format!("id_strategy \"{}\" cannot be combined with mode \"online\"", self.id_strategy.name()),
                "An online migration maps the keys of the rows it follows in SQL: use id_strategy \"keep\", \"uuid\" or \"uuid5\".",
            );
        }
        if self.shared == SharedMode::Copy {
            return refuse(
                "option \"shared\": \"copy\" cannot be combined with mode \"online\"".into(),
                "Shared rows are not captured: load them into the target first (shared \"expect\").",
            );
        }
        if self.cross_tenant == CrossTenant::Copy {
            return refuse(
                "option \"cross_tenant\": \"copy\" cannot be combined with mode \"online\"".into(),
                "Only the tenant's own rows are captured: use cross_tenant \"error\" or \"null\".",
            );
        }
        if self.continue_on_error {
            return refuse(
                "option \"continue_on_error\" cannot be combined with mode \"online\"".into(),
                "A change of a row left out could not be applied: repair the rows first.",
            );
        }
        if self.dry_run || self.defer {
            let which = if self.dry_run { "dry_run" } else { "defer" };
            return refuse(
                format!("option \"{which}\" cannot be combined with mode \"online\""),
                "An online migration runs in the background until it is cut over: call migrate_tenant(..., background => true); for a dry run use mode \"copy\".",
            );
        }
        if self.on_conflict != OnConflict::Error {
            return refuse(
                format!("on_conflict \"{}\" cannot be combined with mode \"online\"", match self.on_conflict {
                    OnConflict::Skip => "skip", OnConflict::Overwrite => "overwrite", OnConflict::Merge => "merge", OnConflict::Error => "error",
                }),
                "An online migration owns the target rows of the tenant: migrate into a target without them.",
            );
        }
        if !self.verify {
            return refuse(
                "option \"verify\" cannot be false with mode \"online\"".into(),
                "The cutover verifies the target against the source while writes are held.",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UserError;
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
    fn null_is_a_value_where_it_always_was() {
        let o = MigrateOptions::parse(&json!({
            "columns": {"t": {"c": {"value": null}}}, "strip_prefix": null, "batch_size": null
        }))
        .unwrap();
        assert_eq!(o.columns["t"]["c"], ColumnSource::Value(Value::Null));
        assert_eq!((o.strip_prefix, o.batch_size), (None, None));
        for (v, msg) in [
            (
                json!({"verify": null}),
                "option \"verify\" must be true or false, not null",
            ),
            (
                json!({"mode": null}),
                "option \"mode\" must be a string, not null",
            ),
            (
                json!({"tables": null}),
                "option \"tables\" must map source table names to target table names, not null",
            ),
        ] {
            assert_eq!(
                MigrateOptions::parse(&v).unwrap_err().to_string(),
                format!("invalid options: {msg}")
            );
        }
    }

    #[test]
    fn errors_name_the_place_and_hint_the_choices() {
        let e = MigrateOptions::parse(&json!({"on_conflict": "replace"})).unwrap_err();
        assert_eq!(
            e.report().hint.as_deref(),
            Some("\"on_conflict\" is one of: error, skip, overwrite, merge.")
        );
        for (v, msg) in [
            (json!([]), "options must be a JSON object, not an array"),
            (
                json!({"tables": {"a": ""}}),
                "option \"tables\": target for \"a\" must be a table name, not \"\"",
            ),
            (
                json!({"columns": {"t": {"c": {"expr": 1}}}}),
                "option \"columns\" for t.c: \"expr\" must be SQL text, not 1",
            ),
            (
                json!({"columns": {"t": {"c": 5}}}),
                "option \"columns\" for t.c must be a column name or an object, not 5",
            ),
            (
                json!({"columns": {"t": []}}),
                "option \"columns\": \"t\" must map target columns to their source, not an array",
            ),
        ] {
            assert_eq!(
                MigrateOptions::parse(&v).unwrap_err().to_string(),
                format!("invalid options: {msg}"),
                "for {v}"
            );
        }
    }

    #[test]
    fn on_conflict_clauses() {
        let t = "\"s\".\"t\"";
        assert_eq!(OnConflict::Error.clause(t, Some("id"), &["a"]), "");
        assert_eq!(
            OnConflict::Skip.clause(t, Some("id"), &["a"]),
            "ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            OnConflict::Overwrite.clause(t, Some("id"), &["a", "b"]),
            "ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a, b = EXCLUDED.b"
        );
        assert_eq!(
            OnConflict::Merge.clause(t, Some("id"), &["a"]),
            "ON CONFLICT (id) DO UPDATE SET a = COALESCE(EXCLUDED.a, \"s\".\"t\".a)"
        );
        // nothing to update, or no key: the row is left as it is
        assert_eq!(
            OnConflict::Overwrite.clause(t, Some("id"), &[]),
            "ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            OnConflict::Merge.clause(t, None, &["a"]),
            "ON CONFLICT DO NOTHING"
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

    #[test]
    fn online_refuses_what_it_cannot_follow() {
        let o = MigrateOptions::parse(
            &json!({"mode": "online", "id_strategy": "uuid5", "lag_alert_changes": 5, "lag_alert_seconds": 1.5}),
        )
        .unwrap();
        assert_eq!(
            (o.mode, o.lag_alert_changes, o.lag_alert_seconds),
            (Mode::Online, 5, 1.5)
        );
        for (v, msg) in [
            (
                json!({"mode": "online", "id_strategy": "uuid7"}),
                "id_strategy \"uuid7\" cannot be combined with mode \"online\"",
            ),
            (
                json!({"mode": "online", "shared": "copy"}),
                "option \"shared\": \"copy\" cannot be combined with mode \"online\"",
            ),
            (
                json!({"mode": "online", "cross_tenant": "copy"}),
                "option \"cross_tenant\": \"copy\" cannot be combined with mode \"online\"",
            ),
            (
                json!({"mode": "online", "continue_on_error": true}),
                "option \"continue_on_error\" cannot be combined with mode \"online\"",
            ),
            (
                json!({"mode": "online", "defer": true}),
                "option \"defer\" cannot be combined with mode \"online\"",
            ),
            (
                json!({"mode": "online", "on_conflict": "skip"}),
                "on_conflict \"skip\" cannot be combined with mode \"online\"",
            ),
            (
                json!({"mode": "online", "verify": false}),
                "option \"verify\" cannot be false with mode \"online\"",
            ),
            (
                json!({"lag_alert_seconds": 3}),
                "option \"lag_alert_seconds\" only applies to mode \"online\"",
            ),
            (
                json!({"mode": "online", "lag_alert_changes": 0}),
                "option \"lag_alert_changes\" must be a whole number from 1 to 10000000, not 0",
            ),
        ] {
            let e = MigrateOptions::parse(&v).unwrap_err();
            assert_eq!(e.to_string(), format!("invalid options: {msg}"), "for {v}");
            assert!(
                matches!(
                    e.report().sqlstate,
                    pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
                ),
                "22023 for {v}"
            );
        }
    }
}
