//! Where a backup's rows go: each manifest table matched with the table of that name now — the
//! scope's own, or its namesake in `target_schema` (a staging copy) — and checked: it exists,
//! has every column backed up with the same type, and any column added since is nullable or
//! has a default. The tenant filters are rebuilt over the tables matched, so everything after
//! works on them alike.
//!
//! A `target_schema` restore creates no tables: the staging copy is the caller's to make (with
//! `CREATE TABLE ... (LIKE ... INCLUDING ALL)`, say), so that its indexes, constraints and
//! privileges are what the caller chose; a table missing there is refused, named.

use pgrx::prelude::*;

use crate::backup::archive::Registered;
use crate::backup::error::{Error, Result};
use crate::backup::format::TableEntry;
use crate::backup::{columns_of, ColumnSpec, TableSpec};
use crate::error::{Common, OrRaise};
use crate::pg::{qualified, quote_ident};
use crate::scope::graph::{Catalog, Filters, TableId};
use crate::scope::LoadedScope;

/// A manifest table matched with the table its rows go to.
pub(super) struct Matched {
    pub entry: TableEntry,
    /// The scope's table: what the scope graph knows it as.
    pub source: TableId,
    /// The table the rows go to (the source itself, or its namesake in `target_schema`).
    pub oid: u32,
    /// The table the rows go to, with the tenant filter over it and the backed-up columns as
    /// they are declared there now.
    pub spec: TableSpec,
    /// Columns of the table now that the backup does not have (filled with their defaults).
    pub added: Vec<String>,
    /// Columns set after every table is loaded (an insertion cycle is broken there).
    pub deferred: Vec<String>,
    /// The primary key of the table the rows go to.
    pub primary_key: Option<Vec<String>>,
    /// The temporary table the backup's rows are staged in.
    pub stage: String,
}

impl Matched {
    /// The table as messages name it.
    pub fn name(&self) -> String {
        qualified(&self.spec.schema, &self.spec.table)
    }

    /// `s."k1", s."k2"`: the primary key over alias `alias` (unqualified when empty).
    pub fn key_list(&self, alias: &str) -> Option<String> {
        let dot = if alias.is_empty() { "" } else { "." };
        self.primary_key.as_ref().map(|pk| {
            pk.iter()
                .map(|k| format!("{alias}{dot}{}", quote_ident(k)))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// `(x."k1", x."k2") = (s."k1", s."k2")`.
    pub fn key_equal(&self, left: &str, right: &str) -> Option<String> {
        Some(format!(
            "({}) = ({})",
            self.key_list(left)?,
            self.key_list(right)?
        ))
    }
}

/// The backup's tables matched, in manifest order (parents first).
pub(super) struct Place {
    pub matched: Vec<Matched>,
}

/// A manifest table found, before the filters are built.
struct Found {
    /// The backed-up table, as messages name it.
    name: String,
    source: TableId,
    oid: u32,
    schema: String,
    columns: Vec<ColumnSpec>,
    added: Vec<String>,
}

/// The table `schema.name` (ordinary or partitioned, not a partition), if it exists.
fn table_oid(schema: &str, name: &str) -> Option<u32> {
    Spi::get_one_with_args::<i64>(
        "SELECT (SELECT c.oid::pg_catalog.int8 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND NOT c.relispartition)",
        &[schema.into(), name.into()],
    )
    .or_raise()
    .map(|oid| oid as u32)
}

/// Matches every manifest table (see the module documentation); `job_id` names the staging
/// tables.
pub(super) fn match_tables(
    b: &Registered,
    l: &LoadedScope,
    target_schema: Option<&str>,
    job_id: i64,
) -> Result<Place> {
    // The scope's catalog with each matched table's SQL name replaced by its target's: the
    // filters built from it select the tenant's rows of the targets through the same
    // ownership paths (the columns they name are the backed-up ones, checked below).
    let mut view: Catalog = l.catalog.clone();
    let mut found: Vec<Found> = vec![];
    for e in &b.manifest.tables {
        let name = qualified(&e.schema, &e.table);
        let Some(source) = table_oid(&e.schema, &e.table) else {
            return Err(Error::MissingTable {
                table: name,
                backup: b.id,
            });
        };
        if l.resolved.get(source).is_none() {
            return Err(Common::InvalidDefinition {
                message: format!(
                    "table {name} of backup {} is no longer part of scope \"{}\"",
                    b.id, b.manifest.scope.name
                ),
                hint: Some(
                    "Restore into a scope that still covers every table of the backup.".into(),
                ),
            }
            .into());
        }
        let (oid, schema) = match target_schema {
            None => (source, e.schema.clone()),
            Some(ts) => match table_oid(ts, &e.table) {
                Some(oid) => (oid, ts.to_string()),
                None => {
                    return Err(Error::MissingTarget {
                        target: qualified(ts, &e.table),
                        table: name,
                        backup: b.id,
                    })
                }
            },
        };
        if let Some(other) = found.iter().find(|f| f.oid == oid) {
            return Err(Common::InvalidParameter(
                format!(
                    "tables {} and {name} of backup {} would both be restored into {}",
                    other.name,
                    b.id,
                    qualified(&schema, &e.table)
                ),
                Some(
                    "Restore into the scope's own tables, or into a schema where they keep apart."
                        .into(),
                ),
            )
            .into());
        }
        let target = qualified(&schema, &e.table);
        let (columns, added) = check_columns(b, e, oid, &target)?;
        if let Some(t) = view.tables.get_mut(&source) {
            t.sql = target.clone();
        }
        found.push(Found {
            name,
            source,
            oid,
            schema,
            columns,
            added,
        });
    }
    let filters = Filters::new(&view, &l.resolved);
    let mut matched = vec![];
    for (i, (e, f)) in b.manifest.tables.iter().zip(found).enumerate() {
        let source = f.source;
        let st = l.resolved.get(source).expect("checked above");
        let deferred = l
            .resolved
            .deferred_edges
            .iter()
            .map(|&k| &l.catalog.edges[k])
            .filter(|edge| edge.child == source && !edge.is_self_reference())
            .flat_map(|edge| edge.child_cols.clone())
            .collect();
        matched.push(Matched {
            entry: e.clone(),
            source,
            oid: f.oid,
            spec: TableSpec {
                sql: qualified(&f.schema, &e.table),
                schema: f.schema,
                table: e.table.clone(),
                role: st.role,
                filter: filters.filter(source).to_string(),
                columns: f.columns,
            },
            added: f.added,
            deferred,
            primary_key: primary_key(f.oid),
            stage: format!(
                "pg_temp.{}",
                quote_ident(&format!("tenant_ops_restore_{job_id}_{i}"))
            ),
        });
    }
    Ok(Place { matched })
}

/// The backed-up columns of `e` as table `oid` declares them now, and the columns added since;
/// a column missing, of another type, or added NOT NULL without a default is refused.
fn check_columns(
    b: &Registered,
    e: &TableEntry,
    oid: u32,
    name: &str,
) -> Result<(Vec<ColumnSpec>, Vec<String>)> {
    let now = columns_of(oid);
    let mut columns: Vec<ColumnSpec> = vec![];
    for c in &e.columns {
        let Some(cur) = now.iter().find(|x| x.name == c.name) else {
            return Err(crate::scope::Error::UnknownColumn {
                table: name.to_string(),
                column: c.name.clone(),
                context: format!("backup {}", b.id),
            }
            .into());
        };
        if cur.type_full != c.type_ {
            return Err(Common::DatatypeMismatch {
                message: format!(
                    "column {}.{} is {} now, but {} in backup {}",
                    name, cur.quoted, cur.type_full, c.type_, b.id
                ),
                hint: Some("Restore needs every backed-up column with its type of then.".into()),
            }
            .into());
        }
        columns.push(cur.clone());
    }
    let mut added = vec![];
    for c in now
        .iter()
        .filter(|c| !e.columns.iter().any(|x| x.name == c.name))
    {
        if c.not_null && !c.has_default {
            return Err(Common::NotNullViolation {
                message: format!(
                    "column {name}.{} was added since backup {} was taken and is NOT NULL without a default",
                    c.quoted, b.id
                ),
                hint: Some("Give the column a default (or let it be NULL), then restore.".into()),
            }
            .into());
        }
        added.push(c.name.clone());
    }
    Ok((columns, added))
}

/// The primary key columns of table `oid`, in key order.
fn primary_key(oid: u32) -> Option<Vec<String>> {
    Spi::get_one_with_args::<Vec<String>>(
        "SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY k.ord)
           FROM pg_catalog.pg_constraint pk
                CROSS JOIN LATERAL pg_catalog.unnest(pk.conkey) WITH ORDINALITY AS k(attnum, ord)
                JOIN pg_catalog.pg_attribute a ON a.attrelid = pk.conrelid AND a.attnum = k.attnum
          WHERE pk.conrelid = $1::pg_catalog.int8::pg_catalog.oid AND pk.contype = 'p'",
        &[(oid as i64).into()],
    )
    .or_raise()
}
