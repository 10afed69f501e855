//! What an import writes where: the target's columns, which field of the file (or which
//! constant) fills each, how its text is converted, the rules it must pass, and the one
//! set-based statement a batch is written with:
//!
//! `INSERT INTO target (c...) SELECT <expr per column> FROM ROWS FROM (unnest($1::text[]), ...) AS s(...)`
//!
//! — one text[] parameter per field read, constants as further parameters, each column's
//! expression its migrate_tenant transform (`migrate::transform`, reused) and a cast to the
//! column's type, then the `on_conflict` clause migrations use (`OnConflict::clause`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::convert::Conversion;
use super::error::{Error, Result};
use super::options::ImportOptions;
use super::rules::Checked;
use crate::error::{Common, OrRaise};
use crate::migrate::options::{ColumnSource, OnConflict};
use crate::migrate::transform::Transform;
use crate::pg::quote_ident;

/// A column an import may fill: the stored (not generated) columns, as backups read them.
#[derive(Clone, Debug)]
pub struct TargetColumn {
    pub name: String,
    pub quoted: String,
    pub type_full: String,
    /// `GENERATED ALWAYS AS IDENTITY`: written with OVERRIDING SYSTEM VALUE.
    pub identity_always: bool,
    pub has_default: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Target {
    pub oid: i64,
    pub sql: String,
    pub display: String,
    pub kind: String,
    #[serde(skip)]
    pub columns: Vec<TargetColumn>,
    pub primary_key: Option<Vec<String>>,
}

const TARGET_TEMPLATE: &str = "SELECT @RELATION@ FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::pg_catalog.oid";

impl Target {
    pub fn load(oid: u32) -> Result<Target> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| crate::pg::relation_query(TARGET_TEMPLATE));
        let mut t: Target =
            crate::pg::query_json(&SQL, &[(oid as i64).into()]).ok_or_else(|| {
                Common::InvalidParameter(format!("relation with OID {oid} does not exist"), None)
            })?;
        t.columns = crate::backup::columns_of(oid)
            .into_iter()
            .map(|c| TargetColumn {
                name: c.name,
                quoted: c.quoted,
                type_full: c.type_full,
                identity_always: c.identity_always,
                has_default: c.has_default,
            })
            .collect();
        if !matches!(t.kind.as_str(), "r" | "p") {
            return Err(Common::InvalidParameter(
                format!("{} is not a table", t.display),
                Some("import_data loads into ordinary and partitioned tables.".into()),
            )
            .into());
        }
        Ok(t)
    }

    /// The columns an import may fill (not generated ones), in order.
    pub fn writable(&self) -> impl Iterator<Item = &TargetColumn> {
        self.columns.iter()
    }

    fn column(&self, name: &str) -> Result<&TargetColumn> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::UnknownColumn {
                column: name.to_string(),
                target: self.display.clone(),
            })
    }
}

/// How one target column is filled.
#[derive(Clone, Debug)]
pub enum Fill {
    /// From field number `field` of [`Plan::fields`], bound as text[] parameter number
    /// `array` (from 0); `convert` applies when there is no transform (a transform's SQL takes
    /// the text as it is).
    Field {
        field: usize,
        array: usize,
        transform: Option<Transform>,
        convert: Conversion,
    },
    /// A constant: parameter number `param` (a `value` of `columns`, the `tenant` stamp).
    Constant { param: usize },
}

#[derive(Clone, Debug)]
pub struct ColumnPlan {
    pub column: TargetColumn,
    pub fill: Fill,
    pub rules: Option<Checked>,
    /// `references`: the SQL that keeps the values (a text[] parameter) not found there.
    pub references: Option<String>,
    /// `unique`, against the rows the target holds already (see [`UniqueInTable`]).
    pub unique_in_table: Option<UniqueInTable>,
}

/// A `unique` column checked against the target's rows, per batch: [`holds`](Self::holds)
/// keeps the values of `$1` (text[]) that a row of the target holds already. Under an
/// `on_conflict` that writes over a row with the same key (skip, overwrite, merge), the row
/// with the incoming row's own key does not count: `key_array` is the batch array of the
/// one-column primary key, bound as `$2`. (A key of several columns, or one not read from the
/// file, leaves such imports to the file-wide check alone: nothing tells which existing row
/// an incoming one is.) None too where a unique index on the column alone enforces it as the
/// rows are written.
///
/// Where an index leads with the column, each value is looked up in it. Where none does, a
/// lookup would read the whole target for every batch; the values are then copied once into
/// a temporary table of the session, indexed, with each row's ctid (`copied`, see
/// `lookups.rs`), and a value found there counts only if the row at that ctid still holds it
/// (one TID fetch): a row the import overwrote, or someone deleted or updated meanwhile, no
/// longer counts. Rows others insert during the import are not seen (without a unique index
/// nothing makes such a rule hold against concurrent writers anyway).
#[derive(Clone, Debug)]
pub struct UniqueInTable {
    target: String,
    column: String,
    type_full: String,
    /// The one-column primary key (quoted, type) whose incoming value is `$2`.
    key: Option<(String, String)>,
    pub key_array: Option<usize>,
    /// Whether the values are looked up in the session's copy (no index leads with the column).
    pub copied: bool,
}

impl UniqueInTable {
    /// The statement keeping the values of `$1` a row holds already, looking them up in the
    /// copy `held` where there is one (see [`Self::copy`]), else in the target.
    pub fn holds(&self, held: Option<&str>) -> String {
        let (unnest_key, k) = match self.key {
            Some(_) => (", pg_catalog.unnest($2::pg_catalog.text[])", ", k"),
            None => ("", ""),
        };
        let other_row = match &self.key {
            Some((key, ty)) => format!(" AND t.{key} IS DISTINCT FROM u.k::{ty}"),
            None => String::new(),
        };
        let (col, ty, target) = (&self.column, &self.type_full, &self.target);
        let found = match held {
            Some(h) => format!(
                "SELECT 1 FROM {h} h JOIN {target} t ON t.ctid = h.r
                  WHERE h.v = u.v::{ty} AND t.{col} = h.v{other_row}"
            ),
            None => format!("SELECT 1 FROM {target} t WHERE t.{col} = u.v::{ty}{other_row}"),
        };
        format!(
            "SELECT pg_catalog.array_agg(DISTINCT u.v)
               FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]){unnest_key}) AS u(v{k})
              WHERE u.v IS NOT NULL AND EXISTS ({found})"
        )
    }

    /// The statements making `held`, the copy of the column's values with each row's ctid.
    pub fn copy(&self, held: &str) -> [String; 3] {
        [
            format!(
                "CREATE TEMPORARY TABLE {held} AS SELECT t.{col} AS v, t.ctid AS r FROM {target} t WHERE t.{col} IS NOT NULL",
                col = self.column,
                target = self.target,
            ),
            format!("CREATE INDEX ON {held} (v)"),
            format!("ANALYZE {held}"),
        ]
    }
}

/// The plan of one import.
#[derive(Clone, Debug)]
pub struct Plan {
    pub target: Target,
    /// The fields read from each record.
    pub fields: Vec<String>,
    /// How many text[] parameters a batch binds (one per column filled from a field).
    pub arrays: usize,
    pub columns: Vec<ColumnPlan>,
    /// Constant parameters, after the field arrays.
    pub constants: Vec<Option<String>>,
    pub insert: String,
}

fn constant_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Plan {
    /// Plans the import of records whose fields are `known` (a CSV header or the first JSON
    /// record's keys; `exact`: a record has no other fields, so `columns` may name no other).
    pub fn new(target: Target, o: &ImportOptions, known: &[String], exact: bool) -> Result<Plan> {
        let mut fields: Vec<String> = vec![];
        let mut field_index = |name: &str| -> usize {
            match fields.iter().position(|f| f == name) {
                Some(i) => i,
                None => {
                    fields.push(name.to_string());
                    fields.len() - 1
                }
            }
        };
        let mut constants = vec![];
        let mut planned: BTreeMap<String, Fill> = BTreeMap::new();
        for (column, source) in &o.columns {
            let tc = target.column(column)?;
            let fill = match source {
                ColumnSource::From {
                    column: field,
                    transform,
                } => {
                    if exact && !known.iter().any(|k| k == field) {
                        return Err(Error::UnknownField {
                            field: field.clone(),
                            known: known.to_vec(),
                        });
                    }
                    let transform = match transform {
                        None => None,
                        Some(spec) => Some(Transform::parse(
                            spec,
                            &format!("column \"{column}\" of table {}", target.display),
                        )?),
                    };
                    Fill::Field {
                        field: field_index(field),
                        array: 0,
                        convert: Conversion::for_type(&tc.type_full),
                        transform,
                    }
                }
                ColumnSource::Value(v) => {
                    constants.push(constant_text(v));
                    Fill::Constant {
                        param: constants.len() - 1,
                    }
                }
                ColumnSource::Expr(_) => {
                    return Err(Common::FeatureNotSupported(
                        format!("option \"columns\" \"{column}\": import_data takes no \"expr\""),
                        Some("Use \"from\" with a \"transform\", or \"value\".".into()),
                    )
                    .into())
                }
            };
            planned.insert(column.clone(), fill);
        }
        if let Some(t) = &o.tenant {
            let tc = target.column(&t.column)?;
            constants.push(constant_text(&t.value));
            planned.insert(
                tc.name.clone(),
                Fill::Constant {
                    param: constants.len() - 1,
                },
            );
        }
        // Every other column named like a field is filled from it.
        for tc in target.writable() {
            if !planned.contains_key(&tc.name) && known.iter().any(|k| k == &tc.name) {
                planned.insert(
                    tc.name.clone(),
                    Fill::Field {
                        field: field_index(&tc.name),
                        array: 0,
                        transform: None,
                        convert: Conversion::for_type(&tc.type_full),
                    },
                );
            }
        }
        for column in o.rules.keys() {
            target.column(column)?;
        }
        if fields.is_empty() {
            return Err(Error::NothingToLoad {
                target: target.display.clone(),
                fields: known.to_vec(),
            });
        }
        if matches!(o.on_conflict, OnConflict::Overwrite | OnConflict::Merge)
            && target.primary_key.is_none()
        {
            return Err(Error::ConflictWithoutKey {
                target: target.display.clone(),
            });
        }
        let mut columns = vec![];
        let mut arrays = 0;
        for tc in target.columns.iter() {
            if let Some(mut fill) = planned.remove(&tc.name) {
                if let Fill::Field { array, .. } = &mut fill {
                    *array = arrays;
                    arrays += 1;
                }
                let rules = o.rules.get(&tc.name).cloned();
                let references = match rules.as_ref().and_then(|r| r.references.as_deref()) {
                    Some(r) => Some(references_sql(r, &tc.name)?),
                    None => None,
                };
                columns.push(ColumnPlan {
                    column: tc.clone(),
                    fill,
                    rules,
                    references,
                    unique_in_table: None,
                });
            }
        }
        let checks: Vec<(usize, UniqueInTable)> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.rules.as_ref().is_some_and(|r| r.unique))
            .filter_map(|(i, c)| {
                unique_in_table(&target, &columns, &c.column, o.on_conflict)
                    .transpose()
                    .map(|u| u.map(|u| (i, u)))
            })
            .collect::<Result<_>>()?;
        for (i, u) in checks {
            columns[i].unique_in_table = Some(u);
        }
        let insert = insert_sql(&target, arrays, &columns, o.on_conflict);
        Ok(Plan {
            target,
            fields,
            arrays,
            columns,
            constants,
            insert,
        })
    }
}

impl Plan {
    /// One record's values for the batch arrays (one per column filled from a field),
    /// converted to their columns' types and checked against the rules; `value(field,
    /// reasons)` gives field number `field`'s text (and may add why it is unusable). The
    /// reasons a row is refused are appended to `reasons` (empty: the row passes). Shared by
    /// every reader of records (files, key-value stores).
    pub fn prepare_row(
        &self,
        mut value: impl FnMut(usize, &mut Vec<super::error::Reason>) -> Option<String>,
        seen: &mut super::rules::Seen,
        date_format: Option<&str>,
        reasons: &mut Vec<super::error::Reason>,
    ) -> Vec<Option<String>> {
        let mut out = Vec::with_capacity(self.arrays);
        self.prepare_row_into(
            |field, reasons| value(field, reasons).map(Cow::Owned),
            seen,
            date_format,
            reasons,
            |v| out.push(v.map(Cow::into_owned)),
        );
        out
    }

    /// As [`Plan::prepare_row`], each value (borrowed where the record lends it and the
    /// conversion leaves it as it is) given to `emit` in the order of the batch arrays
    /// rather than collected: nothing is copied that need not be.
    pub fn prepare_row_into<'v>(
        &self,
        mut value: impl FnMut(usize, &mut Vec<super::error::Reason>) -> Option<Cow<'v, str>>,
        seen: &mut super::rules::Seen,
        date_format: Option<&str>,
        reasons: &mut Vec<super::error::Reason>,
        mut emit: impl FnMut(Option<Cow<'_, str>>),
    ) {
        for c in &self.columns {
            let Fill::Field {
                field,
                transform,
                convert,
                ..
            } = &c.fill
            else {
                continue;
            };
            let v = value(*field, reasons);
            if let Some(rules) = &c.rules {
                let seen = if rules.unique {
                    // Not `entry`, which would copy the name for every row.
                    if !seen.contains_key(&c.column.name) {
                        seen.insert(c.column.name.clone(), Default::default());
                    }
                    seen.get_mut(&c.column.name)
                } else {
                    None
                };
                rules.check(&c.column.name, v.as_deref(), seen, reasons);
            }
            match (v, transform) {
                (Some(v), None) => match convert.apply(&c.column.name, &v, date_format) {
                    // Unchanged (`v` itself, not a slice of it nor a constant such as a
                    // boolean's "t"): the value as it came, owned or borrowed.
                    Ok(Cow::Borrowed(b))
                        if std::ptr::eq(b.as_ptr(), v.as_ptr()) && b.len() == v.len() =>
                    {
                        emit(Some(v))
                    }
                    Ok(c) => emit(Some(c)),
                    Err(r) => {
                        reasons.push(r);
                        emit(None)
                    }
                },
                (v, _) => emit(v),
            }
        }
    }

    /// The rows a batch would write, as `SELECT <column expressions> FROM <the arrays>`
    /// with each column named as in the target: what the INSERT inserts (compare reads it).
    pub fn select_sql(&self) -> String {
        let (select, _) = select_parts(self.arrays, &self.columns);
        select
    }

    /// As [`Plan::select_sql`], each row led by its element of the text[] parameter number
    /// `labels` (1-based, after the arrays and constants) as `_label`: which record each row
    /// came from (a key-value store's key).
    pub fn select_labelled_sql(&self, labels: usize) -> String {
        let (select, from) = select_parts(self.arrays, &self.columns);
        let ordinal = from.replacen(") AS s(", ") WITH ORDINALITY AS s(", 1);
        let ordinal = format!("{}, _ord)", ordinal.trim_end_matches(')'));
        let exprs = select
            .strip_prefix("SELECT ")
            .and_then(|s| s.strip_suffix(&format!(" FROM {from}")))
            .unwrap_or_default();
        format!("SELECT (${labels}::pg_catalog.text[])[s._ord] AS _label, {exprs} FROM {ordinal}")
    }
}

/// The SELECT of a batch's rows (column expressions aliased by the target's quoted names) and
/// the FROM clause.
fn select_parts(n: usize, columns: &[ColumnPlan]) -> (String, String) {
    let exprs: Vec<String> = columns
        .iter()
        .map(|c| {
            let value = match &c.fill {
                Fill::Field {
                    array, transform, ..
                } => {
                    let input = format!("s.f{array}");
                    match transform {
                        None => input,
                        Some(t) => format!("({})", t.to_sql(&input)),
                    }
                }
                Fill::Constant { param } => format!("${}::pg_catalog.text", n + param + 1),
            };
            format!("{value}::{} AS {}", c.column.type_full, c.column.quoted)
        })
        .collect();
    let arrays: Vec<String> = (1..=n)
        .map(|i| format!("pg_catalog.unnest(${i}::pg_catalog.text[])"))
        .collect();
    let aliases: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    let from = format!(
        "ROWS FROM ({}) AS s({})",
        arrays.join(", "),
        aliases.join(", ")
    );
    (format!("SELECT {} FROM {from}", exprs.join(", ")), from)
}

fn insert_sql(
    target: &Target,
    n: usize,
    columns: &[ColumnPlan],
    on_conflict: OnConflict,
) -> String {
    // ROWS FROM (unnest($1), unnest($2), ...): the arrays side by side, one row per record.
    let (select, _) = select_parts(n, columns);
    let names: Vec<&str> = columns.iter().map(|c| c.column.quoted.as_str()).collect();
    let key = target.primary_key.as_ref().map(|k| {
        k.iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let updatable: Vec<&str> = columns
        .iter()
        .filter(|c| {
            !target
                .primary_key
                .as_ref()
                .is_some_and(|k| k.contains(&c.column.name))
        })
        .map(|c| c.column.quoted.as_str())
        .collect();
    let overriding = if columns.iter().any(|c| c.column.identity_always) {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    format!(
        "INSERT INTO {} AS t ({}){overriding} {select} {}",
        target.sql,
        names.join(", "),
        on_conflict.clause("t", key.as_deref(), &updatable)
    )
}

/// The check of a `unique` column against the target's rows (see [`UniqueInTable`]); None
/// where nothing tells an incoming row's existing one from another row.
fn unique_in_table(
    target: &Target,
    columns: &[ColumnPlan],
    column: &TargetColumn,
    on_conflict: OnConflict,
) -> Result<Option<UniqueInTable>> {
    // The indexes led by the column (plain ones: valid, not partial). A unique one on the
    // column alone enforces the rule as the rows are written (a repeat is refused with 23505
    // by the row-by-row pass, or is the same row under on_conflict): nothing to look up then.
    // Any other is what the lookups use; without one, the values are copied once (see
    // [`UniqueInTable`]) from a table whose rows have a ctid.
    let (enforced, indexed) = pgrx::Spi::get_two_with_args::<bool, bool>(
        "SELECT coalesce(pg_catalog.bool_or(i.indisunique AND i.indnkeyatts = 1 AND i.indexprs IS NULL), false),
                count(*) > 0
           FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
          WHERE i.indrelid = $1::pg_catalog.oid AND i.indisvalid AND i.indpred IS NULL AND a.attname = $2",
        &[target.oid.into(), column.name.as_str().into()],
    )
    .or_raise();
    if enforced == Some(true) {
        return Ok(None);
    }
    // The lookup reads the target: the caller needs SELECT on it (as for `references`).
    let readable = || {
        crate::pg::require_table_privileges(
            &target.sql,
            &target.display,
            "SELECT",
            "the \"unique\" rule",
        )
    };
    let mut check = UniqueInTable {
        target: target.sql.clone(),
        column: column.quoted.clone(),
        type_full: column.type_full.clone(),
        key: None,
        key_array: None,
        copied: indexed != Some(true) && matches!(target.kind.as_str(), "r" | "p"),
    };
    if on_conflict == OnConflict::Error {
        // Every row whose key is there already is refused anyway; any holder is another row.
        readable()?;
        return Ok(Some(check));
    }
    let Some([key]) = target.primary_key.as_deref() else {
        return Ok(None);
    };
    let Some(key_plan) = columns.iter().find(|c| &c.column.name == key) else {
        return Ok(None);
    };
    let Fill::Field { array, .. } = key_plan.fill else {
        return Ok(None);
    };
    readable()?;
    check.key = Some((
        key_plan.column.quoted.clone(),
        key_plan.column.type_full.clone(),
    ));
    check.key_array = Some(array);
    Ok(Some(check))
}

/// The statement keeping the values of `$1` (text[]) that `reference` (`table(column)`, or
/// `table` for its one-column primary key) does not hold.
fn references_sql(reference: &str, column: &str) -> Result<String> {
    let bad = |why: String| -> Error {
        Common::InvalidOption(
            format!("option \"rules\" \"{column}\" \"references\": {why}"),
            Some("Write \"schema.table(column)\", or \"schema.table\" for its primary key.".into()),
        )
        .into()
    };
    let (table, col) = match reference.trim().strip_suffix(')') {
        Some(r) => match r.rsplit_once('(') {
            Some((t, c)) => (t.trim().to_string(), Some(c.trim().to_string())),
            None => return Err(bad(format!("\"{reference}\" is not a table and column"))),
        },
        None => (reference.trim().to_string(), None),
    };
    let oid = pgrx::Spi::get_one_with_args::<i64>(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.int8",
        &[table.clone().into()],
    )
    .or_raise()
    .ok_or_else(|| bad(format!("table \"{table}\" does not exist")))?;
    let t = Target::load(oid as u32)?;
    let col = match col {
        Some(c) => c,
        None => match t.primary_key.as_deref() {
            Some([one]) => one.clone(),
            _ => {
                return Err(bad(format!(
                    "table {} has no one-column primary key",
                    t.display
                )))
            }
        },
    };
    let rc = t
        .columns
        .iter()
        .find(|c| c.name == col)
        .ok_or_else(|| bad(format!("table {} has no column \"{col}\"", t.display)))?;
    crate::pg::require_table_privileges(&t.sql, &t.display, "SELECT", "the \"references\" rule")?;
    Ok(format!(
        "SELECT pg_catalog.array_agg(v) FROM (SELECT DISTINCT v FROM pg_catalog.unnest($1::pg_catalog.text[]) AS u(v)
          WHERE v IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {} r WHERE r.{} = u.v::{})) AS missing",
        t.sql, rc.quoted, rc.type_full
    ))
}
