//! `cleanup_kv`: what no longer belongs to a tenant, on both sides.
//!
//! - orphaned keys: keys of a mapping whose tenant part names no tenant — no row in the
//!   tenants table (option `tenants`: `"table(column)"`; default the first mapping's table
//!   and the column its tenant part fills);
//! - orphaned rows: rows of a mapping's table that no key of the store gives any more.
//!
//! A dry run by default (`"dry_run": false` to act). What it deletes is saved first, in the
//! same transaction: rows as jsonb in `tenant_ops.quarantine` (restorable with
//! `restore_quarantined`), keys with their type and value in `tenant_ops.quarantine` too
//! (reason `kv key ...`, the key's name and value in `row_data`), then deleted from Redis as
//! the transaction commits (a failure there aborts it: nothing is lost either way).
//! The job kind is `kv_cleanup`; its result lists counts and samples.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde::Deserialize;
use serde_json::{json, Value};

use super::compare::{fill_expected, key_columns, key_join, tenant_column, EXPECTED};
use super::error::{Error, Result};
use super::mapping::{self, KvOptions};
use super::source;
use crate::error::{Common, OrRaise, Report};
use crate::jobs::kind::{nothing_to_undo, JobKind, Steps};
use crate::jobs::{self, Executor, Job, Status, StepOutcome};
use crate::options::{self, present};
use crate::pg::quote_ident;
use crate::sys::{owner, with_job_window};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupDoc {
    #[serde(default, deserialize_with = "present")]
    dry_run: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    tenants: Option<String>,
    #[serde(default, deserialize_with = "present")]
    batch_size: Option<Value>,
}

/// `"schema.table(column)"` → the table's SQL and the column.
fn tenants_table(spec: &str) -> Result<(String, String, String)> {
    let bad = |why: String| -> Error {
        Common::InvalidOption(
            format!("option \"tenants\": {why}"),
            Some("Write \"schema.table(column)\": the table with one row per tenant and its tenant column.".into()),
        )
        .into()
    };
    let (table, col) = spec
        .trim()
        .strip_suffix(')')
        .and_then(|r| r.rsplit_once('('))
        .ok_or_else(|| bad(format!("\"{spec}\" is not a table and column")))?;
    let oid = Spi::get_one_with_args::<i64>(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.int8",
        &[table.trim().into()],
    )
    .or_raise()
    .ok_or_else(|| bad(format!("table \"{}\" does not exist", table.trim())))?;
    let t = crate::import::plan::Target::load(oid as u32)?;
    let col = col.trim().to_string();
    if !t.columns.iter().any(|c| c.name == col) {
        return Err(bad(format!("table {} has no column \"{col}\"", t.display)));
    }
    Ok((t.sql, t.display, col))
}

pub struct Cleanup {
    job_id: i64,
    meta: super::compare::Meta,
    raw: Value,
}

impl Cleanup {
    fn run(&mut self) -> Result<Value> {
        let doc: CleanupDoc = options::parse(&self.raw, &options::FunctionWording("cleanup_kv"))?;
        let dry_run = doc.dry_run.unwrap_or(true);
        let kv = KvOptions {
            batch_size: doc.batch_size.clone(),
            ..Default::default()
        };
        let src = source::load(&self.meta.source)?;
        let mappings = mapping::parse(&self.meta.mapping, &kv)?;
        let (tsql, tdisplay, tcol) = match &doc.tenants {
            Some(s) => tenants_table(s)?,
            None => {
                let first = &mappings[0];
                let c = tenant_column(first).ok_or_else(|| Error::BadMapping {
                    message: format!(
                        "cleanup_kv needs to know the tenants, and mapping \"{}\" fills no column from a part naming the tenant",
                        first.pattern.text
                    ),
                    hint: Some("Give the option \"tenants\": \"schema.table(column)\".".into()),
                })?;
                (
                    first.plan.target.sql.clone(),
                    first.plan.target.display.clone(),
                    c,
                )
            }
        };
        let mut store = src.open()?;
        let repair_id = owner::get_one::<i64>(
            "SELECT pg_catalog.nextval('tenant_ops.quarantine_repair_seq'::pg_catalog.regclass)",
            &[],
        )
        .or_raise()
        .unwrap_or(0);
        let mut per = vec![];
        let (mut keys_total, mut rows_total) = (0i64, 0i64);
        for m in &mappings {
            let keys = key_columns(m, "cleanup_kv")?;
            let privileges = if dry_run { "SELECT" } else { "SELECT, DELETE" };
            crate::pg::require_table_privileges(
                &m.plan.target.sql,
                &m.plan.target.display,
                privileges,
                "cleanup_kv",
            )?;
            // Orphaned keys: their tenant part names no tenant.
            let mut orphan_keys: Vec<(String, Value)> = vec![];
            if let Some(part) = &m.tenant_part {
                let mut cursor = 0;
                loop {
                    let (next, batch, _) = super::import::scan_batch(
                        &mut store,
                        src.options.scan_count,
                        m,
                        None,
                        cursor,
                    )?;
                    let tenants: Vec<Option<String>> = batch
                        .iter()
                        .map(|(_, parts, _)| {
                            parts
                                .iter()
                                .find(|(n, _)| n == part)
                                .map(|(_, v)| v.clone())
                        })
                        .collect();
                    let missing: Vec<String> = Spi::get_one_with_args::<Vec<String>>(
                        &format!(
                            "SELECT coalesce(pg_catalog.array_agg(DISTINCT v), '{{}}') FROM pg_catalog.unnest($1::pg_catalog.text[]) AS u(v)
                              WHERE NOT EXISTS (SELECT FROM {tsql} r WHERE r.{}::pg_catalog.text = u.v)",
                            quote_ident(&tcol)
                        ),
                        &[tenants.clone().into()],
                    )
                    .or_raise()
                    .unwrap_or_default();
                    for ((k, _, v), t) in batch.into_iter().zip(tenants) {
                        if t.is_some_and(|t| missing.contains(&t)) {
                            orphan_keys.push((
                                k,
                                json!({"key": null, "type": v.type_name(), "value": v.raw()}),
                            ));
                        }
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
            // Orphaned rows: no key gives them.
            fill_expected(&mut store, src.options.scan_count, m, None)?;
            let t = &m.plan.target.sql;
            let on = key_join(&keys);
            let where_orphan = format!("NOT EXISTS (SELECT FROM {EXPECTED} e WHERE {on})");
            let (n_rows, sample) = Spi::connect(|c| {
                let r = c.select(
                    &format!(
                        "SELECT count(*), pg_catalog.to_jsonb((pg_catalog.array_agg(pg_catalog.to_jsonb(t)))[1:10]) FROM {t} t WHERE {where_orphan}"
                    ),
                    Some(1),
                    &[],
                )?;
                let row = r.first();
                Ok::<_, pgrx::spi::Error>((row.get::<i64>(1)?.unwrap_or(0), row.get::<JsonB>(2)?.map(|j| j.0).unwrap_or(json!([]))))
            })
            .or_raise();
            let mut rows_deleted = 0;
            let mut keys_deleted = 0;
            if !dry_run {
                let table_oid = m.plan.target.oid;
                let reason = format!(
                    "cleanup_kv: no key of \"{}\" gives this row",
                    m.pattern.text
                );
                with_job_window(self.job_id, || {
                    Spi::run_with_args(
                        &format!(
                            "INSERT INTO tenant_ops.quarantine (repair_id, validation_job, table_name, reason, row_data)
                             SELECT $1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4, pg_catalog.to_jsonb(t) FROM {t} t WHERE {where_orphan}"
                        ),
                        &[repair_id.into(), self.job_id.into(), table_oid.into(), reason.clone().into()],
                    )
                })
                .or_raise();
                rows_deleted = Spi::connect_mut(|c| {
                    let r = c.update(
                        &format!("WITH d AS (DELETE FROM {t} t WHERE {where_orphan} RETURNING 1) SELECT count(*) FROM d"),
                        Some(1),
                        &[],
                    )?;
                    r.first().get::<i64>(1)
                })
                .or_raise()
                .unwrap_or(0);
                // A dump is read-only: its orphaned keys are reported (and saved), not deleted.
                if store.is_redis() {
                    let key_reason = format!(
                        "cleanup_kv: kv key of \"{}\" whose tenant does not exist",
                        m.pattern.text
                    );
                    for (k, data) in &orphan_keys {
                        let mut d = data.clone();
                        d["key"] = json!(k);
                        with_job_window(self.job_id, || {
                            Spi::run_with_args(
                                "INSERT INTO tenant_ops.quarantine (repair_id, validation_job, table_name, reason, row_data)
                                 VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4, $5)",
                                &[repair_id.into(), self.job_id.into(), table_oid.into(), key_reason.clone().into(), JsonB(d).into()],
                            )
                        })
                        .or_raise();
                    }
                    // Deleted from Redis just before the transaction commits (a failure there
                    // aborts it, saved copies and row deletions with it): never before their
                    // copies are safe, never when the caller rolls back.
                    let names: Vec<String> = orphan_keys.iter().map(|(k, _)| k.clone()).collect();
                    keys_deleted = names.len() as i64;
                    let src_at_commit = src.clone();
                    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::PreCommit, move || {
                        use crate::error::UserError;
                        if let Err(e) = src_at_commit.open().and_then(|mut s| s.delete(&names)) {
                            e.raise();
                        }
                    });
                }
            }
            Spi::run(&format!("DROP TABLE IF EXISTS {EXPECTED}")).or_raise();
            keys_total += orphan_keys.len() as i64;
            rows_total += n_rows;
            per.push(json!({
                "pattern": m.pattern.text, "table": m.plan.target.display,
                "orphaned_keys": orphan_keys.len(),
                "orphaned_key_names": orphan_keys.iter().map(|(k, _)| k.clone()).take(10).collect::<Vec<_>>(),
                "orphaned_rows": n_rows, "orphaned_row_sample": sample,
                "keys_deleted": keys_deleted, "rows_deleted": rows_deleted,
            }));
        }
        Ok(json!({
            "source": self.meta.source, "tenants": format!("{tdisplay}({tcol})"), "dry_run": dry_run,
            "keys_read_only": !store.is_redis(),
            "orphaned_keys": keys_total, "orphaned_rows": rows_total,
            "quarantine_repair_id": (!dry_run).then_some(repair_id), "mappings": per,
        }))
    }
}

impl Steps for Cleanup {
    fn step(&mut self, _job: &Job) -> std::result::Result<StepOutcome, Report> {
        Ok(StepOutcome::Done(self.run()?))
    }
}

/// `kv_cleanup`, the job kind of `cleanup_kv`.
pub struct KvCleanupKind;

impl JobKind for KvCleanupKind {
    fn name(&self) -> &'static str {
        "kv_cleanup"
    }
    fn max_concurrent(&self) -> i32 {
        crate::gucs::max_concurrent_validations()
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_admin"
    }
    fn steps(&self, job: &Job) -> std::result::Result<Box<dyn Steps>, Report> {
        let mut raw = job.options.clone();
        let meta: super::compare::Meta = raw
            .as_object_mut()
            .and_then(|m| m.remove(super::import::META_KEY))
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| {
                Error::NotOurJob(format!(
                    "job {} is not a kv_cleanup job of this version",
                    job.id
                ))
            })?;
        Ok(Box::new(Cleanup {
            job_id: job.id,
            meta,
            raw,
        }))
    }
    fn revert(&self, job: &Job, final_status: Status) -> std::result::Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}

/// Checks the call and creates a `kv_cleanup` job; the caller runs it.
pub fn submit(source: &str, mapping: &Value, raw: &Value) -> Result<i64> {
    let _: CleanupDoc = options::parse(raw, &options::FunctionWording("cleanup_kv"))?;
    let src = source::load(source)?;
    let mappings = mapping::parse(mapping, &KvOptions::default())?;
    for m in &mappings {
        key_columns(m, "cleanup_kv")?;
    }
    let mut stored = if raw.is_object() {
        raw.clone()
    } else {
        json!({})
    };
    stored[super::import::META_KEY] = serde_json::to_value(super::compare::Meta {
        source: src.name.clone(),
        mapping: mapping.clone(),
    })
    .expect("plain data");
    Ok(jobs::create(
        "kv_cleanup",
        &src.name,
        "*",
        &stored,
        Executor::Inline,
    ))
}
