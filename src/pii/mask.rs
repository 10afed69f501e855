//! The `pii` option of `migrate_tenant` and `export_tenant`: which columns are masked, and
//! how. `"pii": "mask"` applies `scan_pii`'s suggestion to every column the scan finds
//! personal data in; `{"mask": {"table": {"column": transform}}}` names them. The scan samples
//! the live rows, so its verdict could change while a job runs: "mask" is resolved once, when
//! the job is submitted, into the explicit form, and the job stores and follows that (a
//! migration resumed after a crash masks exactly what its first step did).
//!
//! A column is masked with a transform of the shared transform machinery
//! (`migrate::transform`), whose text result is cast back to the column's type: for columns
//! that cannot hold a masked text (`inet`, dates of birth) the suggestion is a `redact` with a
//! value of their type. A mask applies after any transform `columns` gives the column, so no
//! transform lets the data through unmasked. Key and foreign key columns are never masked by "mask" (the rows
//! would no longer join); naming one explicitly is an error.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::detect::Kind;
use crate::error::Common;
use crate::migrate::transform::Transform;
use crate::scope::graph::{Catalog, Table, TableId};
use crate::scope::LoadedScope;

/// The rows `scan_pii` reads of each table when resolving `"pii": "mask"`.
const SAMPLE: i32 = 10_000;

const HINT: &str = "Write \"pii\": \"mask\" (every column scan_pii finds personal data in, \
                    masked as it suggests) or {\"mask\": {\"table\": {\"column\": \"mask_email\"}}}.";

/// The option as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PiiOption {
    /// Every column the scan finds, with the scan's transform.
    Scan,
    /// Table (as the scope's tables are named) → column → transform spec.
    Columns(BTreeMap<String, BTreeMap<String, Value>>),
}

impl PiiOption {
    /// Parses the option's value (`None`: no `pii` key, or `"none"`).
    pub fn parse(v: &Value) -> Result<Option<PiiOption>, Common> {
        let bad = |what: String| Common::InvalidOption(what, Some(HINT.into()));
        match v {
            Value::Null => Ok(None),
            Value::String(s) if s == "none" => Ok(None),
            Value::String(s) if s == "mask" => Ok(Some(PiiOption::Scan)),
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| *k != "mask") {
                    return Err(bad(format!("option \"pii\" has an unknown key \"{k}\"")));
                }
                let Some(Value::Object(tables)) = m.get("mask") else {
                    return Err(bad(
                        "option \"pii\" \"mask\" must map tables to {column: transform}".into(),
                    ));
                };
                let mut out = BTreeMap::new();
                for (table, cols) in tables {
                    let Value::Object(cols) = cols else {
                        return Err(bad(format!(
                            "option \"pii\" \"mask\" \"{table}\" must map columns to transforms"
                        )));
                    };
                    let cols: BTreeMap<String, Value> =
                        cols.iter().map(|(c, t)| (c.clone(), t.clone())).collect();
                    out.insert(table.clone(), cols);
                }
                Ok(Some(PiiOption::Columns(out)))
            }
            other => Err(bad(format!(
                "option \"pii\" must be \"mask\", \"none\" or an object, not {}",
                crate::options::got(other)
            ))),
        }
    }
}

/// Where `"mask"` finds personal data: a tenant's live rows, or relations holding rows of the
/// scope's tables (a restore's staging tables: `(table, relation, its columns)`).
pub enum Sampled<'a> {
    Tenant { scope: &'a str, tenant: &'a str },
    Relations(&'a [(TableId, String, Vec<String>)]),
}

/// The masks of one job: table → column → transform, checked against the scope.
#[derive(Clone, Debug, Default)]
pub struct Masks(BTreeMap<TableId, BTreeMap<String, Value>>);

impl Masks {
    /// The masks `option` asks for on the tables of `loaded`: the scan's suggestions for the
    /// rows `sampled` names, or the columns named (every table, column and transform checked).
    pub fn resolve(
        option: Option<&PiiOption>,
        loaded: &LoadedScope,
        sampled: Sampled<'_>,
    ) -> Result<Masks, crate::migrate::Error> {
        let scope = loaded.definition.name.as_str();
        let mut out: BTreeMap<TableId, BTreeMap<String, Value>> = BTreeMap::new();
        let catalog = &loaded.catalog;
        match option {
            None => {}
            Some(PiiOption::Scan) => {
                let key_pseudonymizes = crate::gucs::pseudonymize_key().is_some();
                // The scope and tenant were checked by the caller: what fails here is the
                // server's (SPI) and raised as it is.
                let findings = match sampled {
                    Sampled::Tenant { scope, tenant } => {
                        super::scan::scan(scope, Some(tenant), SAMPLE)
                    }
                    Sampled::Relations(r) => super::scan::scan_relations(catalog, r, SAMPLE),
                }
                .unwrap_or_else(|report| report.raise());
                for f in findings {
                    let t = catalog.table(f.table);
                    if is_key_column(catalog, t, &f.column) {
                        continue;
                    }
                    let column = t.columns.iter().find(|c| c.name == f.column);
                    let ty = column.map_or("text", |c| c.type_name.as_str());
                    let declared = column.map_or("text", |c| c.type_full.as_str());
                    let mut spec = suggestion(f.kind, ty, key_pseudonymizes);
                    // A unique column's masked values would collide (every `a***@x.org`):
                    // the keyed pseudonym keeps them apart; without the key nothing does.
                    if is_unique(t.oid, &f.column) && spec != json!("pseudonymize") {
                        if key_pseudonymizes && is_texty(declared) {
                            spec = json!("pseudonymize");
                        } else {
                            return Err(Common::InvalidOption(
                                format!(
                                    "option \"pii\": \"mask\" would mask column \"{}\" of table {}, which a unique index covers: its masked values would collide",
                                    f.column, t.display
                                ),
                                Some(format!(
                                    "Have a superuser set tenant_ops.pseudonymize_key (pseudonymize keeps the values apart), or name the columns: {{\"pii\": {{\"mask\": {{\"{}\": {{\"column\": \"transform\"}}}}}}}}.",
                                    t.name
                                )),
                            )
                            .into());
                        }
                    }
                    out.entry(f.table).or_default().insert(f.column, spec);
                }
            }
            Some(PiiOption::Columns(tables)) => {
                for (name, cols) in tables {
                    let t = find_table(loaded, name).ok_or_else(|| {
                        Common::InvalidOption(
                            format!("option \"pii\" names table \"{name}\", which is not a table of scope \"{scope}\""),
                            Some(format!(
                                "The scope's tables are: {}.",
                                loaded
                                    .resolved
                                    .tables
                                    .iter()
                                    .map(|t| catalog.table(t.oid).display.clone())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        )
                    })?;
                    for (col, spec) in cols {
                        if !t.columns.iter().any(|c| &c.name == col) {
                            return Err(Common::InvalidOption(
                                format!("option \"pii\" names column \"{col}\", which table {} does not have", t.display),
                                None,
                            )
                            .into());
                        }
                        if is_key_column(catalog, t, col) {
                            return Err(Common::InvalidOption(
                                format!("option \"pii\" masks column \"{col}\" of table {}, a key or foreign key column", t.display),
                                Some("Masked keys would no longer join: mask the other columns, or map the key with \"columns\" and a transform.".into()),
                            )
                            .into());
                        }
                        let context = format!("column {}.{col} of option \"pii\"", t.display);
                        Transform::parse(spec, &context)?;
                        out.entry(t.oid)
                            .or_default()
                            .insert(col.clone(), spec.clone());
                    }
                }
            }
        }
        Ok(Masks(out))
    }

    /// The explicit form of these masks, as a job stores its `pii` option (tables by their
    /// schema-qualified, quoted names).
    pub fn to_option(&self, catalog: &Catalog) -> Value {
        let mut tables = Map::new();
        for (oid, cols) in &self.0 {
            let cols: Map<String, Value> =
                cols.iter().map(|(c, t)| (c.clone(), t.clone())).collect();
            tables.insert(catalog.table(*oid).sql.clone(), Value::Object(cols));
        }
        json!({ "mask": tables })
    }

    /// The transform masking `table.column`, if it is masked.
    pub fn get(&self, table: TableId, column: &str) -> Option<&Value> {
        self.0.get(&table).and_then(|m| m.get(column))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many columns are masked.
    pub fn len(&self) -> usize {
        self.0.values().map(|m| m.len()).sum()
    }
}

/// A table of the scope named as `columns` names them: bare, schema-qualified, or as the
/// catalog displays or quotes it.
fn find_table<'a>(loaded: &'a LoadedScope, name: &str) -> Option<&'a Table> {
    let c = &loaded.catalog;
    let in_scope = |t: &&Table| loaded.resolved.get(t.oid).is_some();
    let tables: Vec<&Table> = loaded
        .resolved
        .tables
        .iter()
        .map(|t| c.table(t.oid))
        .collect();
    let by = |f: &dyn Fn(&Table) -> bool| tables.iter().copied().filter(in_scope).find(|t| f(t));
    by(&|t| t.sql == name)
        .or_else(|| by(&|t| t.display == name))
        .or_else(|| by(&|t| format!("{}.{}", t.schema, t.name) == name))
        .or_else(|| {
            // A bare name only when it names one table.
            let bare: Vec<&Table> = tables.iter().copied().filter(|t| t.name == name).collect();
            (bare.len() == 1).then(|| bare[0])
        })
}

/// Whether a unique index of table `oid` covers `column` (alone or with others).
fn is_unique(oid: TableId, column: &str) -> bool {
    pgrx::Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                         WHERE i.indrelid = $1::pg_catalog.int8::pg_catalog.oid AND i.indisunique AND a.attname = $2)",
        &[(oid as i64).into(), column.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Whether a column declared so takes a pseudonym (64 hex digits) as it is (no length limit).
fn is_texty(type_name: &str) -> bool {
    let base = type_name.rsplit('.').next().unwrap_or(type_name);
    matches!(base, "text" | "character varying" | "citext" | "name")
}

/// Whether `column` is part of `table`'s primary key or of a foreign key from or into it.
fn is_key_column(catalog: &Catalog, table: &Table, column: &str) -> bool {
    table
        .primary_key
        .as_ref()
        .is_some_and(|k| k.iter().any(|c| c == column))
        || catalog.edges.iter().any(|e| {
            (e.child == table.oid && e.child_cols.iter().any(|c| c == column))
                || (e.parent == table.oid && e.parent_cols.iter().any(|c| c == column))
        })
}

/// The transform masking a column of `kind` and type `type_name`: the scan's suggestion where
/// its text fits the column, else a `redact` with a value of the column's type; `pseudonymize`
/// only when its key is set (else `redact`, since an unkeyed pseudonym is refused).
pub fn suggestion(kind: Kind, type_name: &str, key_set: bool) -> Value {
    let base = type_name.rsplit('.').next().unwrap_or(type_name);
    match base {
        "inet" | "cidr" => json!({"name": "redact", "with": "0.0.0.0"}),
        "date" | "timestamp without time zone" | "timestamp with time zone" => {
            json!({"name": "redact", "with": "1900-01-01"})
        }
        _ => match kind.transform() {
            Value::String(s) if s == "pseudonymize" && !key_set => json!("redact"),
            t => t,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            PiiOption::parse(&json!("mask")).unwrap(),
            Some(PiiOption::Scan)
        );
        assert_eq!(PiiOption::parse(&json!("none")).unwrap(), None);
        let explicit = PiiOption::parse(&json!({"mask": {"t": {"email": "mask_email"}}}))
            .unwrap()
            .unwrap();
        let PiiOption::Columns(m) = explicit else {
            panic!("explicit")
        };
        assert_eq!(m["t"]["email"], json!("mask_email"));
    }

    #[test]
    fn suggestions_fit_the_column_type() {
        assert_eq!(suggestion(Kind::Email, "text", false), json!("mask_email"));
        assert_eq!(suggestion(Kind::Ip, "text", true), json!("pseudonymize"));
        assert_eq!(suggestion(Kind::Ip, "text", false), json!("redact"));
        assert_eq!(
            suggestion(Kind::Ip, "inet", true),
            json!({"name": "redact", "with": "0.0.0.0"})
        );
        assert_eq!(
            suggestion(Kind::BirthDate, "date", false),
            json!({"name": "redact", "with": "1900-01-01"})
        );
    }
}
