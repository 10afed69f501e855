//! `verify_backup` and the restore job.
//!
//! A restore (`mode: replace`) runs in one transaction (one step, whichever executor): the
//! file's checksum, the manifest against the tables as they are now, and every row (decoded
//! into a staging temp table per table, typed as the target's columns) are checked before
//! anything of the tenant's changes; then the tenant's current rows are deleted children
//! first, the backup's inserted parents first, and the restored rows' digest compared with
//! the manifest's, table by table. Everything over user tables runs as the caller.

use pgrx::prelude::*;
use serde_json::{json, Value};

use super::archive::{self, corrupt, Registered};
use super::error::{Error, Result};
use super::format::{self, TableEntry};
use super::options::RestoreOptions;
use super::{export, ColumnSpec, RowsDigest, TableSpec, EXPORT_SETTINGS};
use crate::error::{Common, OrRaise};
use crate::jobs::kind::Steps;
use crate::jobs::{self, Job, StepOutcome};
use crate::pg::{qualified, quote_ident};
use crate::scope::graph::Role;
use crate::scope::{self, LoadedScope};
use crate::sys::{try_subtransaction, with_settings};

/// Rows per statement when loading or decoding a table's lines.
const BATCH: usize = 5_000;

/// Re-reads backup `id`: the file's size and SHA-256, the manifest against the registered
/// one, every table's SHA-256, row count and digest, and that every value decodes as its
/// column's type. Returns a report; a damaged backup is an error naming what is wrong.
pub fn verify(id: i64) -> Result<Value> {
    let b = archive::registered(id)?;
    verify_file(&b)
}

/// The checks of [`verify`] over a backup file, registered or just uploaded.
pub fn verify_file(b: &Registered) -> Result<Value> {
    let id = b.id;
    b.check_file()?;
    let mut batches: Vec<Batch> = b
        .manifest
        .tables
        .iter()
        .map(|t| Ok(Batch::new(catalog_types(b, t)?)))
        .collect::<Result<_>>()?;
    let mut line_no = vec![0i64; b.manifest.tables.len()];
    with_settings(EXPORT_SETTINGS, || {
        b.read(|i, t, line| {
            line_no[i] += 1;
            batches[i].push(b, t, line, line_no[i])?;
            if batches[i].len() >= BATCH {
                batches[i].decode(b, t)?;
            }
            Ok(())
        })?;
        for (t, batch) in b.manifest.tables.iter().zip(&mut batches) {
            batch.decode(b, t)?;
        }
        Ok::<(), Error>(())
    })?;
    Ok(json!({
        "backup_id": id, "verified": true, "sha256": b.sha256, "size_bytes": b.size,
        "encrypted": b.encrypted,
        "tables": b.manifest.tables.iter().map(|t| json!({
            "table": qualified(&t.schema, &t.table), "rows": t.rows, "sha256": t.sha256
        })).collect::<Vec<_>>(),
    }))
}

/// The manifest's column types of `t`, each resolved by the catalog (`to_regtype`, a bound
/// parameter) and written back by `format_type`: a file's text never reaches SQL. The
/// modifiers are dropped (`format_type(oid, -1)`: `bpchar`, not `character`, which would be
/// char(1)), so values are checked by their base type; a type that does not exist now
/// is named.
fn catalog_types(b: &Registered, t: &TableEntry) -> Result<Vec<String>> {
    t.columns
        .iter()
        .map(|c| {
            let resolved = try_subtransaction(|| {
                Spi::get_one_with_args::<String>(
                    "SELECT pg_catalog.format_type(pg_catalog.to_regtype($1), -1)",
                    &[c.type_.clone().into()],
                )
            })
            .ok()
            .and_then(|r| r.ok().flatten());
            resolved.ok_or_else(|| {
                corrupt(
                    b.id,
                    format!(
                        "column {}.{} has type \"{}\", which does not exist",
                        qualified(&t.schema, &t.table),
                        crate::pg::quote_ident(&c.name),
                        c.type_
                    ),
                    None,
                )
            })
        })
        .collect()
}

/// One table's lines, column by column, waiting to be sent as text arrays.
struct Batch {
    columns: Vec<Vec<Option<String>>>,
    /// Each column's type as SQL, made by the catalog.
    types: Vec<String>,
    /// Where each statement's arguments and plan live, reset after it.
    scratch: super::Scratch,
}

impl Batch {
    fn new(types: Vec<String>) -> Batch {
        Batch {
            columns: vec![vec![]; types.len()],
            types,
            scratch: super::Scratch::new("pg_tenant_ops restore batch"),
        }
    }

    fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    fn push(&mut self, b: &Registered, t: &TableEntry, line: &[u8], n: i64) -> Result<()> {
        let fields = format::parse_line(line, t.columns.len()).map_err(|e| {
            corrupt(
                b.id,
                format!(
                    "row {n} of {} does not read: {e}",
                    qualified(&t.schema, &t.table)
                ),
                None,
            )
        })?;
        for (c, f) in self.columns.iter_mut().zip(fields) {
            c.push(f);
        }
        Ok(())
    }

    /// Runs `f` with the batch as one text array per column (the batch is emptied), in the
    /// batch's scratch memory.
    fn with_args<R>(&mut self, f: impl FnOnce(&[pgrx::datum::DatumWithOid]) -> R) -> R {
        let mut columns = std::mem::take(&mut self.columns);
        self.columns = vec![vec![]; columns.len()];
        self.scratch.run(|| {
            let args: Vec<pgrx::datum::DatumWithOid> = columns
                .iter_mut()
                .map(|c| std::mem::take(c).into())
                .collect();
            f(&args)
        })
    }

    /// `SELECT u.c0::type0, ... FROM ROWS FROM (unnest($1::text[]), ...) u(c0, ...)`: the batch
    /// as rows of its types (catalog-made type names, never a file's text).
    fn typed_select(&self) -> String {
        let casts: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("u.c{i}::{ty}"))
            .collect();
        let arrays: Vec<String> = (1..=self.types.len())
            .map(|i| format!("pg_catalog.unnest(${i}::pg_catalog.text[])"))
            .collect();
        let names: Vec<String> = (0..self.types.len()).map(|i| format!("c{i}")).collect();
        format!(
            "SELECT {} FROM ROWS FROM ({}) u({})",
            casts.join(", "),
            arrays.join(", "),
            names.join(", ")
        )
    }

    /// Checks that every value of the batch decodes as its column's type.
    fn decode(&mut self, b: &Registered, t: &TableEntry) -> Result<()> {
        if self.len() == 0 {
            return Ok(());
        }
        let sql = format!(
            "SELECT pg_catalog.count(ROW(x.*)) FROM ({}) x",
            self.typed_select()
        );
        self.with_args(|args| try_subtransaction(|| Spi::get_one_with_args::<i64>(&sql, args)))
            .map_err(|e| {
                corrupt(
                    b.id,
                    format!(
                        "a row of {} does not decode: {}",
                        qualified(&t.schema, &t.table),
                        e.message
                    ),
                    None,
                )
            })?
            .or_raise();
        Ok(())
    }

    /// Inserts the batch into `stage` as rows of the manifest's types.
    fn load(&mut self, stage: &str) -> Result<()> {
        if self.len() == 0 {
            return Ok(());
        }
        let sql = format!("INSERT INTO {stage} {}", self.typed_select());
        self.with_args(|args| Spi::run_with_args(&sql, args))
            .or_raise();
        Ok(())
    }
}

/// Creates a restore job of backup `id` after checking the arguments.
pub fn submit(id: i64, raw: &Value, background: bool) -> Result<i64> {
    RestoreOptions::parse(raw)?;
    let b = archive::registered(id)?;
    let mut stored = raw.clone();
    if let Value::Object(m) = &mut stored {
        m.insert("backup_id".into(), json!(id));
    }
    Ok(jobs::create(
        "restore",
        &b.scope,
        &b.tenant,
        &stored,
        if background {
            jobs::Executor::Background
        } else {
            jobs::Executor::Inline
        },
    ))
}

pub struct Restore {
    job_id: i64,
    backup_id: i64,
    options: RestoreOptions,
}

/// A manifest table matched with the table as it is now.
struct Matched {
    entry: TableEntry,
    spec: TableSpec,
    /// Columns of the table now that the backup does not have (filled with their defaults).
    added: Vec<String>,
    /// Columns set after every table is loaded (an insertion cycle is broken there).
    deferred: Vec<String>,
    primary_key: Option<Vec<String>>,
    stage: String,
}

impl Restore {
    pub fn from_job(job: &Job) -> Result<Restore> {
        let mut raw = job.options.clone();
        let backup_id = raw
            .as_object_mut()
            .and_then(|m| m.remove("backup_id"))
            .and_then(|v| v.as_i64())
            .unwrap_or_default();
        Ok(Restore {
            job_id: job.id,
            backup_id,
            options: RestoreOptions::parse(&raw)?,
        })
    }

    fn run(&self) -> Result<Value> {
        let b = archive::registered(self.backup_id)?;
        b.check_file()?;
        let loaded = scope::LoadedScope::load(&b.scope)?;
        let root = loaded.catalog.table(loaded.resolved.root);
        let m = &b.manifest;
        if (
            root.schema.as_str(),
            root.name.as_str(),
            loaded.resolved.tenant_key.as_str(),
        ) != (
            m.scope.root_schema.as_str(),
            m.scope.root_table.as_str(),
            m.scope.tenant_key.as_str(),
        ) {
            return Err(Common::InvalidDefinition {
                message: format!(
                    "backup {} is of scope \"{}\" over {}.{}, but that scope is now over {}.{}",
                    b.id,
                    m.scope.name,
                    quote_ident(&m.scope.root_schema),
                    quote_ident(&m.scope.root_table),
                    root.display,
                    quote_ident(&loaded.resolved.tenant_key)
                ),
                hint: Some(
                    "Restore it into a scope with the root table and tenant key it was taken with."
                        .into(),
                ),
            }
            .into());
        }
        let matched = self.match_tables(&b, &loaded)?;
        for t in &matched {
            crate::pg::require_table_privileges(
                &t.spec.sql,
                &qualified(&t.spec.schema, &t.spec.table),
                "SELECT, INSERT, UPDATE, DELETE",
                "restore_backup",
            )?;
        }
        // Every row decoded into its staging table before anything of the tenant changes.
        let mut batches: Vec<Batch> = matched
            .iter()
            .map(|t| Batch::new(t.spec.columns.iter().map(|c| c.type_full.clone()).collect()))
            .collect();
        let mut n = vec![0i64; matched.len()];
        with_settings(EXPORT_SETTINGS, || {
            for t in &matched {
                let cols: Vec<String> = t
                    .entry
                    .columns
                    .iter()
                    .map(|c| quote_ident(&c.name))
                    .collect();
                Spi::run(&format!(
                    "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA",
                    t.stage,
                    cols.join(", "),
                    t.spec.sql
                ))
                .or_raise();
            }
            b.read(|i, e, line| {
                n[i] += 1;
                batches[i].push(&b, e, line, n[i])?;
                if batches[i].len() >= BATCH {
                    batches[i].load(&matched[i].stage)?;
                }
                Ok(())
            })?;
            for (t, batch) in matched.iter().zip(&mut batches) {
                batch.load(&t.stage)?;
            }
            Ok::<(), Error>(())
        })?;
        let current: Vec<i64> = matched.iter().map(|t| self.count(t, &b.tenant)).collect();
        let report: Vec<Value> = matched
            .iter()
            .zip(&current)
            .map(|(t, now)| {
                json!({
                    "table": qualified(&t.spec.schema, &t.spec.table), "role": t.entry.role,
                    "rows_now": now, "rows_in_backup": t.entry.rows,
                    "added_columns": t.added,
                })
            })
            .collect();
        with_settings(EXPORT_SETTINGS, || self.apply(&b, &matched, report))
    }

    /// After every check: the dry run's report, or the replace and its verification.
    fn apply(&self, b: &Registered, matched: &[Matched], report: Vec<Value>) -> Result<Value> {
        if self.options.dry_run {
            for t in matched {
                Spi::run(&format!("DROP TABLE {}", t.stage)).or_raise();
            }
            return Ok(
                json!({"backup_id": b.id, "dry_run": true, "mode": "replace", "tables": report}),
            );
        }
        self.replace(b, matched)?;
        // The restored rows, read back as the backup wrote them, against the manifest.
        let specs: Vec<TableSpec> = matched.iter().map(|t| t.spec.clone()).collect();
        let mut digests = vec![RowsDigest::default(); specs.len()];
        export(&specs, &b.tenant, |i, line| {
            digests[i].add(line);
            Ok(())
        })?;
        for (t, d) in matched.iter().zip(&digests) {
            if t.spec.role != Role::Shared
                && (d.rows != t.entry.rows || d.hex() != t.entry.rows_digest)
            {
                return Err(Error::RestoreUnverified {
                    table: qualified(&t.spec.schema, &t.spec.table),
                    detail: format!(
                        "The backup holds {} rows (digest {}); the table now holds {} of the tenant's (digest {}).",
                        t.entry.rows, t.entry.rows_digest, d.rows, d.hex()
                    ),
                });
            }
        }
        Ok(json!({
            "backup_id": b.id, "mode": "replace", "verified": true,
            "rows": matched.iter().filter(|t| t.spec.role != Role::Shared).map(|t| t.entry.rows).sum::<i64>(),
            "tables": report,
        }))
    }

    /// Each manifest table against the table of that name now: it exists, has every column
    /// backed up with the same type, and any column added since is nullable or has a default.
    fn match_tables(&self, b: &Registered, l: &LoadedScope) -> Result<Vec<Matched>> {
        let filters = l.filters();
        let mut out = vec![];
        for (i, e) in b.manifest.tables.iter().enumerate() {
            let name = qualified(&e.schema, &e.table);
            let Some(oid) = Spi::get_one_with_args::<i64>(
                "SELECT (SELECT c.oid::pg_catalog.int8 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))",
                &[e.schema.clone().into(), e.table.clone().into()],
            )
            .or_raise() else {
                return Err(Error::MissingTable {
                    table: name.clone(),
                    backup: b.id,
                });
            };
            let oid = oid as u32;
            let Some(st) = l.resolved.get(oid) else {
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
            };
            let now = super::columns_of(oid);
            let mut columns: Vec<ColumnSpec> = vec![];
            for c in &e.columns {
                let Some(cur) = now.iter().find(|x| x.name == c.name) else {
                    return Err(crate::scope::Error::UnknownColumn {
                        table: name.clone(),
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
                        hint: Some(
                            "Restore needs every backed-up column with its type of then.".into(),
                        ),
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
                    }.into());
                }
                added.push(c.name.clone());
            }
            let deferred = l
                .resolved
                .deferred_edges
                .iter()
                .map(|&k| &l.catalog.edges[k])
                .filter(|edge| edge.child == oid && !edge.is_self_reference())
                .flat_map(|edge| edge.child_cols.clone())
                .collect();
            let table = l.catalog.table(oid);
            out.push(Matched {
                entry: e.clone(),
                spec: TableSpec {
                    schema: e.schema.clone(),
                    table: e.table.clone(),
                    sql: table.sql.clone(),
                    role: st.role,
                    filter: filters.filter(oid).to_string(),
                    columns,
                },
                added,
                deferred,
                primary_key: table.primary_key.clone(),
                stage: format!(
                    "pg_temp.{}",
                    quote_ident(&format!("tenant_ops_restore_{}_{i}", self.job_id))
                ),
            });
        }
        Ok(out)
    }

    fn count(&self, t: &Matched, tenant: &str) -> i64 {
        Spi::get_one_with_args::<i64>(
            &format!(
                "SELECT pg_catalog.count(*) FROM {} WHERE {}",
                t.spec.sql, t.spec.filter
            ),
            &[tenant.into()],
        )
        .or_raise()
        .unwrap_or(0)
    }

    /// Deletes the tenant's current rows (children first; shared rows stay) and inserts the
    /// backup's (parents first; shared rows only where missing), then sets deferred columns.
    fn replace(&self, b: &Registered, matched: &[Matched]) -> Result<()> {
        let tenant = b.tenant.clone();
        for t in matched.iter().filter(|t| !t.deferred.is_empty()) {
            let sets: Vec<String> = t
                .deferred
                .iter()
                .map(|c| format!("{} = NULL", quote_ident(c)))
                .collect();
            Spi::run_with_args(
                &format!(
                    "UPDATE {} SET {} WHERE {}",
                    t.spec.sql,
                    sets.join(", "),
                    t.spec.filter
                ),
                &[tenant.clone().into()],
            )
            .or_raise();
        }
        for t in matched.iter().rev().filter(|t| t.spec.role != Role::Shared) {
            let sql = format!("DELETE FROM {} WHERE {}", t.spec.sql, t.spec.filter);
            try_subtransaction(|| Spi::run_with_args(&sql, &[tenant.clone().into()]))
                .map_err(|e| Error::Referenced {
                    backup: b.id,
                    table: qualified(&t.spec.schema, &t.spec.table),
                    detail: e.message.clone(),
                })?
                .or_raise();
        }
        for t in matched {
            let cols: Vec<String> = t.spec.columns.iter().map(|c| c.quoted.clone()).collect();
            let select: Vec<String> = t
                .spec
                .columns
                .iter()
                .map(|c| {
                    if t.deferred.contains(&c.name) {
                        "NULL".to_string()
                    } else {
                        format!("s.{}", c.quoted)
                    }
                })
                .collect();
            let overriding = if t.spec.columns.iter().any(|c| c.identity_always) {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            };
            let only_missing = match (&t.spec.role, &t.primary_key) {
                (Role::Shared, Some(pk)) => {
                    let on: Vec<String> = pk
                        .iter()
                        .map(|k| format!("x.{0} = s.{0}", quote_ident(k)))
                        .collect();
                    format!(
                        " WHERE NOT EXISTS (SELECT FROM {} x WHERE {})",
                        t.spec.sql,
                        on.join(" AND ")
                    )
                }
                (Role::Shared, None) => continue,
                _ => String::new(),
            };
            Spi::run(&format!(
                "INSERT INTO {} ({}){overriding} SELECT {} FROM {} s{only_missing}",
                t.spec.sql,
                cols.join(", "),
                select.join(", "),
                t.stage
            ))
            .or_raise();
        }
        for t in matched.iter().filter(|t| !t.deferred.is_empty()) {
            let Some(pk) = &t.primary_key else {
                return Err(Common::FeatureNotSupported(
                    format!(
                        "{} breaks an insertion cycle but has no primary key to set it by",
                        qualified(&t.spec.schema, &t.spec.table)
                    ),
                    None,
                )
                .into());
            };
            let sets: Vec<String> = t
                .deferred
                .iter()
                .map(|c| format!("{0} = s.{0}", quote_ident(c)))
                .collect();
            let on: Vec<String> = pk
                .iter()
                .map(|k| format!("x.{0} = s.{0}", quote_ident(k)))
                .collect();
            Spi::run(&format!(
                "UPDATE {} x SET {} FROM {} s WHERE {}",
                t.spec.sql,
                sets.join(", "),
                t.stage,
                on.join(" AND ")
            ))
            .or_raise();
        }
        for t in matched {
            Spi::run(&format!("DROP TABLE {}", t.stage)).or_raise();
        }
        Ok(())
    }
}

impl Steps for Restore {
    fn step(&mut self, _job: &Job) -> std::result::Result<StepOutcome, crate::error::Report> {
        let result = self.run()?;
        jobs::log(
            self.job_id,
            "restored",
            Some("restore"),
            None,
            result["rows"].as_i64(),
            None,
            Some(result.clone()),
        );
        Ok(StepOutcome::Done(result))
    }
}
