//! Undoing a migration: [`rollback`] (admin, a finished job) and [`revert`] (also a cancel)
//! delete what the job wrote, put back the target rows it overwrote, and for a move restore
//! the source rows from the archive.

use std::collections::BTreeSet;

use pgrx::prelude::*;
use serde_json::{json, Value};

use super::archive::source_rows;
use super::options::Mode;
use super::plan::TablePlan;
use super::sql::rows_written;
use super::Migration;
use crate::error::{OpsError, OpsResult, OrRaise};
use crate::jobs;
use crate::pg::require_privileges;
use crate::scope::graph::Role;
use crate::sys::{owner, with_job_window};

/// Undoes a finished or failed migration: deletes what it wrote (children first), puts back
/// target rows it overwrote, and for a move restores the source rows from the archive.
pub fn rollback(job_id: i64) -> OpsResult<Value> {
    let job = jobs::load(job_id)?;
    if job.kind != "migrate" {
        return Err(OpsError::WrongJob {
            message: format!("job {job_id} is a {} job, not a migration", job.kind),
            hint: Some("rollback_migration undoes migrate_tenant jobs.".into()),
        });
    }
    if !matches!(
        job.status,
        jobs::Status::Succeeded | jobs::Status::Failed | jobs::Status::Cancelled
    ) {
        return Err(OpsError::JobState {
            job: job_id,
            status: job.status.to_string(),
            action: "be rolled back",
            hint: Some("Only a finished, failed or cancelled migration can be rolled back.".into()),
        });
    }
    revert(job_id, jobs::Status::RolledBack)
}

/// Undoes whatever a migration job wrote so far and gives it `final_status` (`rolled_back`
/// for a rollback, `cancelled` for a cancel): the target is left as it was before the job.
pub fn revert(job_id: i64, final_status: jobs::Status) -> OpsResult<Value> {
    let job = jobs::load(job_id)?;
    let mut m = Migration::from_job(&job)?;
    let tables = jobs::tables(job_id);
    // A cancelled job was undone when it was cancelled (its created targets dropped too).
    if tables.is_empty() || job.status == jobs::Status::Cancelled {
        jobs::finish(job_id, final_status, None, None);
        return Ok(json!({"tables": []}));
    }
    let moved = m.options.mode == Mode::Move && tables.iter().any(|t| t.stage == "deleted");
    let plans = m.plans()?.clone();
    // The undo runs as the caller (every trigger on the tables fires with the caller's rights),
    // reading the job's archive through its window; its rights on every table it touches are
    // checked first, so that a missing one is named before anything changes.
    for p in &plans {
        require_privileges(
            &p.target.sql,
            &p.target.display,
            "SELECT, INSERT, UPDATE, DELETE",
            "rollback_migration",
        )?;
        if moved && p.role != Role::Shared {
            require_privileges(
                &p.source_sql,
                &p.source_display,
                "SELECT, INSERT, UPDATE",
                "rollback_migration",
            )?;
        }
    }
    let report = with_job_window(job_id, || undo(&mut m, &plans, moved, job_id))?;
    // Mappings are shared by every migration of the same rows (a second migration of a
    // tenant reuses them): keep those another live migration of the table relies on.
    // job_extra stays with the job (deleted with it): it says which rows of other tenants
    // and which shared rows the job covered, as verify_migration still reports them.
    owner::execute(
        "DELETE FROM tenant_ops.id_map m WHERE m.job_id = $1
           AND NOT EXISTS (SELECT FROM tenant_ops.jobs j JOIN tenant_ops.job_tables t ON t.job_id = j.id
                            WHERE j.id <> $1 AND j.kind = 'migrate' AND j.status NOT IN ('rolled_back', 'cancelled')
                              AND t.source = m.source)",
        &[job_id.into()],
    )
    .or_raise();
    owner::execute(
        "DELETE FROM tenant_ops.job_archive WHERE job_id = $1",
        &[job_id.into()],
    )
    .or_raise();
    // Then the tables the job created, now empty of its rows (see target.rs).
    let dropped = m.drop_created_targets();
    let result =
        json!({"rolled_back": report, "source_restored": moved, "created_targets": dropped});
    jobs::finish(job_id, final_status, None, Some(&result));
    Ok(result)
}

/// The undo of [`rollback`]: what the job wrote goes, what it overwrote or deleted comes back.
fn undo(m: &mut Migration, plans: &[TablePlan], moved: bool, job_id: i64) -> OpsResult<Vec<Value>> {
    let args = m.params.args();
    let mut report = vec![];
    // 1. Remove what the job wrote, children first. Deferred references are cleared first so
    //    cycles between tables do not block the deletes.
    for p in plans.iter().rev() {
        if !p.deferred.is_empty() {
            let (from, filter) = source_rows(p, job_id, moved);
            let sets: Vec<String> = p
                .deferred
                .iter()
                .map(|(c, _)| format!("{c} = NULL"))
                .collect();
            Spi::run_with_args(
                &format!(
                    "UPDATE {} t SET {} WHERE {}",
                    p.target.sql,
                    sets.join(", "),
                    p.target_rows(&from, &filter)
                ),
                &args,
            )
            .or_raise();
        }
    }
    for p in plans.iter().rev() {
        let deleted = if p.role == Role::Shared {
            let Some(key) = &p.target_key else { continue };
            let cond: Vec<String> = key
                .iter()
                .enumerate()
                .map(|(i, (c, _))| {
                    format!(
                        "t.{c} = ((a.row_data)->>{i})::{}",
                        p.target
                            .columns
                            .iter()
                            .find(|tc| &tc.quoted == c)
                            .map(|tc| tc.type_name.clone())
                            .unwrap_or_else(|| "text".into())
                    )
                })
                .collect();
            rows_written(
                &format!(
                    "DELETE FROM {} t USING tenant_ops.job_archive a
                      WHERE a.job_id = {job_id} AND a.step = {} AND a.kind = 'shared_added' AND {}",
                    p.target.sql,
                    p.step,
                    cond.join(" AND ")
                ),
                &[],
            )
        } else {
            let (from, filter) = source_rows(p, job_id, moved);
            rows_written(
                &format!(
                    "DELETE FROM {} t WHERE {}",
                    p.target.sql,
                    p.target_rows(&from, &filter)
                ),
                &args,
            )
        };
        report.push(json!({"table": p.target.display, "deleted": deleted}));
    }
    // 2. Target rows the job overwrote or merged into come back as they were.
    for p in plans {
        let cols: Vec<String> = p
            .target
            .columns
            .iter()
            .filter(|c| !c.generated)
            .map(|c| c.quoted.clone())
            .collect();
        let r: Vec<String> = cols.iter().map(|c| format!("r.{c}")).collect();
        Spi::run(&format!(
            "INSERT INTO {tgt} ({cols}) OVERRIDING SYSTEM VALUE
             SELECT {r} FROM tenant_ops.job_archive a, pg_catalog.jsonb_populate_record(NULL::{tgt}, a.row_data) r
              WHERE a.job_id = {job_id} AND a.step = {step} AND a.kind = 'target_before'",
            tgt = p.target.sql,
            cols = cols.join(", "),
            r = r.join(", "),
            step = p.step
        ))
        .or_raise();
    }
    // 3. A move: the source rows come back, parents first; cycle references are set last.
    if moved {
        let loaded = m.load_scope()?;
        for p in plans {
            if p.role == Role::Shared {
                continue;
            }
            let src = loaded.catalog.table(p.source);
            let cols: Vec<String> = src.columns.iter().map(|c| c.quoted.clone()).collect();
            let deferred: BTreeSet<String> = loaded
                .resolved
                .deferred_edges
                .iter()
                .map(|i| &loaded.catalog.edges[*i])
                .filter(|e| e.child == p.source)
                .flat_map(|e| e.child_cols.iter().map(|c| src.quoted_col(c).to_string()))
                .collect();
            let sel: Vec<String> = cols
                .iter()
                .map(|c| {
                    if deferred.contains(c) {
                        "NULL".into()
                    } else {
                        format!("r.{c}")
                    }
                })
                .collect();
            Spi::run(&format!(
                "INSERT INTO {src} ({cols}) OVERRIDING SYSTEM VALUE
                 SELECT {sel} FROM tenant_ops.job_archive a, pg_catalog.jsonb_populate_record(NULL::{src}, a.row_data) r
                  WHERE a.job_id = {job_id} AND a.step = {step} AND a.kind = 'source'",
                src = p.source_sql,
                cols = cols.join(", "),
                sel = sel.join(", "),
                step = p.step
            ))
            .or_raise();
        }
        for i in &loaded.resolved.deferred_edges {
            let e = &loaded.catalog.edges[*i];
            let Some(p) = plans.iter().find(|p| p.source == e.child) else {
                continue;
            };
            let src = loaded.catalog.table(e.child);
            let Some(pk) = &src.primary_key else { continue };
            let q = |c: &String| src.quoted_col(c).to_string();
            let sets: Vec<String> = e
                .child_cols
                .iter()
                .map(|c| format!("{} = r.{}", q(c), q(c)))
                .collect();
            let join: Vec<String> = pk
                .iter()
                .map(|c| format!("s.{} = r.{}", q(c), q(c)))
                .collect();
            Spi::run(&format!(
                "UPDATE {src} s SET {sets} FROM tenant_ops.job_archive a, pg_catalog.jsonb_populate_record(NULL::{src}, a.row_data) r
                  WHERE a.job_id = {job_id} AND a.step = {step} AND a.kind = 'source' AND {join}",
                src = src.sql,
                sets = sets.join(", "),
                step = p.step,
                join = join.join(" AND ")
            ))
            .or_raise();
        }
    }
    Ok(report)
}
