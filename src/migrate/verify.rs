//! The `verify` stage and `verify_migration`: per table, the tenant's source rows as the
//! target should hold them (through the key mapping) against the target rows their keys name,
//! in one pass: counts, the sum of a 64-bit hash per row, and the keys missing or different.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::archive::source_rows;
use super::checksums;
use super::error::{Error, Result};
use super::options::OnConflict;
use super::plan::TablePlan;
use super::row_hash::verify_hashes;
use super::sql::numbered;
use super::Migration;
use crate::error::OrRaise;
use crate::jobs::{self, JobTable};
use crate::pg::require_table_privileges;
use crate::scope::graph::Role;
use crate::sys::with_job_window;

impl Migration {
    pub(super) fn verify_step(&mut self, jt: &JobTable) -> Result<()> {
        let p = self.plan_for(jt.step)?;
        // The checksums the copy took in its own pass (see `checksums.rs`): when they agree
        // the table is verified without reading it again; else it is read again below, to
        // name what differs (or because its copy could not take them: the reason is kept).
        let re_read = match checksums::of_table(jt) {
            Ok(s) if s.source_rows == s.target_rows && s.source_sum == s.target_sum => {
                jobs::set_table_details(
                    self.job_id,
                    jt.step,
                    &json!({"source_rows": s.source_rows, "target_rows": s.target_rows,
                            "source_checksum": s.source_sum.to_string(),
                            "target_checksum": s.target_sum.to_string(),
                            "verified": true, "verified_by": s.verified_by()}),
                );
                return self.verified(&p, jt, s.target_rows);
            }
            Ok(_) => "the copy's checksums differ".to_string(),
            Err(reason) => reason,
        };
        let source_where = verified_source(&p, self.job_id, &p.filter);
        let args = self.params.args();
        let (sc, ss, tc, ts) = match &p.target_key {
            Some(_) => {
                let c = compare(&p, &p.source_sql, &source_where, &args);
                (
                    Some(c.source_rows),
                    Some(c.source_sum),
                    Some(c.target_rows),
                    Some(c.target_sum),
                )
            }
            // Without a target key, the target rows are those equal to a source row.
            None => {
                let (src_hash, tgt_hash) = verify_hashes(&p);
                let (sc, ss) = Spi::get_two_with_args::<i64, String>(
                    &format!(
                        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum({}), 0)::text FROM {} s{} WHERE {source_where}",
                        src_hash,
                        p.source_sql,
                        p.joins
                    ),
                    &args,
                )
                .or_raise();
                let (tc, ts) = Spi::get_two_with_args::<i64, String>(
                    &format!(
                        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum({}), 0)::text FROM {} t WHERE {}",
                        tgt_hash,
                        p.target.sql,
                        p.target_rows(&p.source_sql, &source_where)
                    ),
                    &args,
                )
                .or_raise();
                (sc, ss, tc, ts)
            }
        };
        let (sc, ss, tc, ts) = (
            sc.unwrap_or(0),
            ss.unwrap_or_default(),
            tc.unwrap_or(0),
            ts.unwrap_or_default(),
        );
        // skip and merge leave target values that legitimately differ from the source: there
        // every source row must be present, and only overwrite and error compare whole rows.
        let compare_rows = matches!(
            self.options.on_conflict,
            OnConflict::Error | OnConflict::Overwrite
        );
        let ok = sc == tc && (!compare_rows || ss == ts);
        jobs::set_table_details(
            self.job_id,
            jt.step,
            &json!({"source_rows": sc, "target_rows": tc, "source_checksum": ss, "target_checksum": ts, "verified": ok,
                    "verified_by": format!("reading both sides again: {re_read}")}),
        );
        if !ok {
            // A source that changed since the copy began is the likelier cause.
            if let Some(changed) = self.changed_after("verify")? {
                return Err(changed);
            }
            return Err(Error::Unverified {
                source: p.source_display.clone(),
                target: p.target.display.clone(),
                source_rows: sc,
                source_checksum: ss,
                target_rows: tc,
                target_checksum: ts,
            });
        }
        self.verified(&p, jt, tc)
    }

    /// Checkpoints a table verified, with `rows` target rows.
    fn verified(&self, p: &TablePlan, jt: &JobTable, rows: i64) -> Result<()> {
        jobs::checkpoint(self.job_id, jt.step, "verified", 0, None);
        jobs::log(
            self.job_id,
            "table.verified",
            Some("verify"),
            Some(p.source),
            Some(rows),
            None,
            None,
        );
        Ok(())
    }
}

/// Source rows (from `source_from s`, with `source_where`) against the target rows their
/// mapped keys name, in one pass: counts, checksums, and the keys missing or different.
pub struct Comparison {
    pub source_rows: i64,
    pub source_sum: String,
    pub target_rows: i64,
    pub target_sum: String,
    pub missing: i64,
    pub different: i64,
    pub sample: Value,
}

pub(super) fn compare(
    p: &TablePlan,
    source_from: &str,
    source_where: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> Comparison {
    let key = p.target_key.as_ref().expect("compare needs a target key");
    let (src_hash, tgt_hash) = verify_hashes(p);
    let keys = numbered(key, |i, (_, e)| format!("{e} AS __tenant_ops_k{i}"));
    let on = numbered(key, |i, (c, _)| format!("t.{c} = x.__tenant_ops_k{i}"));
    // The source key, raw: it is formatted as text only for the sample of bad rows.
    let source_key: Vec<(String, String)> = match &p.key {
        Some(k) => k
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    format!("s.{} AS __tenant_ops_s{i}", c.quoted),
                    format!("(y.__tenant_ops_s{i})::text"),
                )
            })
            .collect(),
        None => vec![],
    };
    let (source_key_cols, sample_key): (Vec<String>, Vec<String>) = source_key.into_iter().unzip();
    let carried: String = (0..source_key_cols.len())
        .map(|i| format!(", x.__tenant_ops_s{i}"))
        .collect();
    let source_key_cols: String = source_key_cols.iter().map(|c| format!(", {c}")).collect();
    let sample_key = format!("ARRAY[{}]::text[]", sample_key.join(", "));
    // Each row's two hashes are computed once, below the aggregate (OFFSET 0 keeps the
    // planner from copying the expressions into every aggregate that reads them); the target
    // side is hashed only where a source row found it. The source side is a derived table so
    // the tenant filter's unqualified columns can only mean the source's.
    let bad = "y.__tenant_ops_th IS NULL OR y.__tenant_ops_sh <> y.__tenant_ops_th";
    let sql = format!(
        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum(y.__tenant_ops_sh), 0)::text,
                pg_catalog.count(y.__tenant_ops_th), coalesce(pg_catalog.sum(y.__tenant_ops_th), 0)::text,
                pg_catalog.count(*) FILTER (WHERE y.__tenant_ops_th IS NULL),
                pg_catalog.count(*) FILTER (WHERE y.__tenant_ops_sh <> y.__tenant_ops_th),
                pg_catalog.to_jsonb((pg_catalog.array_agg({sample_key}::text) FILTER (WHERE {bad}))[1:10])
           FROM (SELECT x.__tenant_ops_sh, CASE WHEN t.{first} IS NOT NULL THEN {tgt_hash} END AS __tenant_ops_th{carried}
                   FROM (SELECT {src_hash} AS __tenant_ops_sh, {keys}{source_key_cols}
                           FROM {source_from} s{joins} WHERE {source_where}) x
                   LEFT JOIN {tgt} t ON {on}
                 OFFSET 0) y",
        first = key[0].0,
        keys = keys.join(", "),
        joins = p.joins,
        tgt = p.target.sql,
        on = on.join(" AND ")
    );
    Spi::connect(|c| {
        // No row limit: a limited SPI statement never runs in parallel, and verify_migration
        // runs this read-only one outside a job step's settings, where it may.
        let r = c.select(&sql, None, args)?.first();
        Ok::<_, pgrx::spi::Error>(Comparison {
            source_rows: r.get::<i64>(1)?.unwrap_or(0),
            source_sum: r.get::<String>(2)?.unwrap_or_default(),
            target_rows: r.get::<i64>(3)?.unwrap_or(0),
            target_sum: r.get::<String>(4)?.unwrap_or_default(),
            missing: r.get::<i64>(5)?.unwrap_or(0),
            different: r.get::<i64>(6)?.unwrap_or(0),
            sample: r.get::<JsonB>(7)?.map(|j| j.0).unwrap_or(Value::Null),
        })
    })
    .or_raise()
}

/// The source rows a verification compares: those of `filter`, less the rows the job rejected
/// into job_errors (with continue_on_error), which are not in the target by design.
fn verified_source(p: &TablePlan, job_id: i64, filter: &str) -> String {
    if p.role == Role::Shared || rejected_rows(job_id, p.source) == 0 {
        return filter.to_string();
    }
    format!(
        "({filter}) AND {}::text NOT IN (SELECT source_key FROM tenant_ops.job_errors
                                         WHERE job_id = {job_id} AND table_name = {}::pg_catalog.regclass)",
        p.key_text("s"),
        p.source
    )
}

/// One table of [`verify_report`].
pub struct VerifyRow {
    pub source: u32,
    pub target: String,
    pub comparison: Comparison,
}

/// Completeness of a finished migration, per table, through the key mapping: the tenant's
/// source rows (from the archive after a move) against the target rows their keys name.
/// After a rollback it reports the target empty of the tenant.
pub fn verify_report(job_id: i64) -> Result<Vec<VerifyRow>> {
    let job = jobs::load_of_kind(
        job_id,
        "migrate",
        "a migration",
        "verify_migration checks migrate_tenant jobs.",
    )?;
    if !job.status.is_final() {
        return Err(jobs::Error::State {
            job: job_id,
            status: job.status.to_string(),
            action: "be verified",
            hint: Some("Verify a migration once it has ended.".into()),
        }
        .into());
    }
    let mut m = Migration::from_job(&job)?;
    let tables = jobs::tables(job_id);
    // Undone, with the target tables it created dropped (see `target::drop_created_targets`):
    // there is no target left to compare with.
    if tables
        .iter()
        .any(|t| t.details.get("target_dropped") == Some(&serde_json::Value::Bool(true)))
    {
        return Err(jobs::Error::State {
            job: job_id,
            status: format!(
                "{}, and the target tables it created are dropped",
                job.status
            ),
            action: "be verified",
            hint: Some(
                "Its rows left the target with the tables create_target made for it.".into(),
            ),
        }
        .into());
    }
    let plans = m.plans()?.clone();
    let args = m.params.args();
    let mut out = vec![];
    for p in &plans {
        require_table_privileges(
            &p.source_sql,
            &p.source_display,
            "SELECT",
            "verify_migration",
        )?;
        require_table_privileges(
            &p.target.sql,
            &p.target.display,
            "SELECT",
            "verify_migration",
        )?;
    }
    for p in plans.iter().filter(|p| p.target_key.is_some()) {
        let moved = job.status != jobs::Status::RolledBack
            && tables
                .iter()
                .any(|t| t.step == p.step && (t.stage == "deleted" || t.stage == "archived"));
        let (from, filter) = source_rows(p, job_id, moved && p.role != Role::Shared);
        let source_where = verified_source(p, job_id, &filter);
        // As the caller (hashing runs the types' own functions), in the job's window for
        // the archive of a move.
        let comparison = with_job_window(job_id, || compare(p, &from, &source_where, &args));
        out.push(VerifyRow {
            source: p.source,
            target: p.target.display.clone(),
            comparison,
        });
    }
    Ok(out)
}

pub(super) fn rejected_rows(job: i64, table: u32) -> i64 {
    Spi::get_one_with_args::<i64>(
        "SELECT pg_catalog.count(*) FROM tenant_ops.job_errors WHERE job_id = $1 AND table_name = $2::pg_catalog.oid::pg_catalog.regclass",
        &[job.into(), (table as i64).into()],
    )
    .or_raise()
    .unwrap_or(0)
}
