//! Undoing a migration: [`rollback`] (admin, a finished job) and [`revert`] (also a cancel)
//! delete what the job wrote, put back the target rows it overwrote, and for a move restore
//! the source rows from the archive.

use std::collections::BTreeSet;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::archive::source_rows;
use super::error::Result;
use super::options::Mode;
use super::plan::TablePlan;
use super::sharing;
use super::sql::rows_written;
use super::Migration;
use crate::error::OrRaise;
use crate::jobs;
use crate::pg::require_table_privileges;
use crate::scope::graph::Role;
use crate::sys::{owner, with_job_window};

/// Undoes a finished or failed migration: deletes what it wrote (children first), puts back
/// target rows it overwrote, and for a move restores the source rows from the archive.
pub fn rollback(job_id: i64) -> Result<Value> {
    let job = jobs::load_of_kind(
        job_id,
        "migrate",
        "a migration",
        "rollback_migration undoes migrate_tenant jobs.",
    )?;
    let online_catching_up = (job.stage == super::Stage::CatchUp.as_str()
        || job.stage == super::Stage::Reverse.as_str())
        && matches!(job.status, jobs::Status::Running | jobs::Status::Paused);
    if !online_catching_up
        && !matches!(
            job.status,
            jobs::Status::Succeeded | jobs::Status::Failed | jobs::Status::Cancelled
        )
    {
        return Err(jobs::Error::State {
            job: job_id,
            status: job.status.to_string(),
            action: "be rolled back",
            hint: Some("Only a finished, failed or cancelled migration, or an online one catching up, can be rolled back.".into()),
        }
        .into());
    }
    revert(job_id, jobs::Status::RolledBack)
}

/// Undoes whatever a migration job wrote so far and gives it `final_status` (`rolled_back`
/// for a rollback, `cancelled` for a cancel, `failed` for a failure that asks for an undo):
/// the target is left as it was before the job.
pub fn revert(job_id: i64, final_status: jobs::Status) -> Result<Value> {
    let job = jobs::load(job_id)?;
    let mut m = Migration::from_job(&job)?;
    if m.options.mode == Mode::Online {
        // Online: the capture's triggers (or the fence after a cutover) go first; the changes
        // recorded until then are applied, so that the undo below, which finds the job's
        // target rows from the tenant's source rows, finds them all; then the capture stops.
        // After a cutover with reverse sync: what the target recorded goes back to the source
        // first (its triggers removed: writers of the target wait from here), so the old
        // tables hold every write when they take over again.
        if let Some(r) = crate::capture::reverse_for_job(job_id) {
            crate::capture::lock_apply(r.id);
            if r.status == "capturing" {
                crate::capture::remove_triggers(r.id);
                m.apply_reverse(&r)?;
            }
        }
        if let Some(c) = crate::capture::for_job(job_id) {
            crate::capture::lock_apply(c.id);
            if c.status == "capturing" {
                crate::capture::remove_triggers(c.id);
                if job.stage == super::Stage::CatchUp.as_str() {
                    m.apply_changes(&c)?;
                }
            }
        }
        crate::capture::stop_for_job(job_id);
    }
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
        require_table_privileges(
            &p.target.sql,
            &p.target.display,
            "SELECT, INSERT, UPDATE, DELETE",
            "rollback_migration",
        )?;
        if moved && p.role != Role::Shared {
            require_table_privileges(
                &p.source_sql,
                &p.source_display,
                "SELECT, INSERT, UPDATE",
                "rollback_migration",
            )?;
        }
    }
    let report = with_job_window(job_id, || undo(&mut m, &plans, moved, job_id))?;
    // Mappings are shared by every migration of the same rows (a second migration of a
    // tenant reuses them): keep those another live migration of the table relies on. Those
    // of jobs undone earlier, kept then for this one, go now when nobody else needs them.
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
        "DELETE FROM tenant_ops.id_map m USING tenant_ops.jobs u
          WHERE u.id = m.job_id AND u.kind = 'migrate' AND u.status IN ('rolled_back', 'cancelled')
            AND m.source IN (SELECT t.source FROM tenant_ops.job_tables t WHERE t.job_id = $1)
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
    if final_status == jobs::Status::Failed {
        // Undone because it failed (see `crate::error::Report::undo`): a retry starts from
        // `prepare` again, as a new job would, with the rows of other tenants it brought
        // along looked for again.
        owner::execute(
            "DELETE FROM tenant_ops.job_extra WHERE job_id = $1",
            &[job_id.into()],
        )
        .or_raise();
        jobs::restart_from_scratch(job_id, super::Stage::Prepare.as_str());
    }
    jobs::finish(job_id, final_status, None, Some(&result));
    Ok(result)
}

/// Conditions on target rows `t` of one table for an undo (see `sharing.rs`), over the
/// job's parameters and `$4`, the keys other live migrations into the table recorded.
struct Sharing {
    /// Rows the job wrote: its own rows and those it added.
    owned: String,
    /// Rows the job needed and found there (an earlier migration's): left alone.
    reused: String,
    /// Rows another live migration uses: kept (and handed over when the job added them).
    theirs: String,
    /// Every row the job needed.
    needed: String,
    /// Rows other target rows reference (shared tables): kept.
    referenced: Option<String>,
}

impl Sharing {
    /// None where the table shares nothing: no target key, or a table of the tenant's own
    /// rows where neither this job nor any other recorded a row (the plain delete then, whose
    /// `IN` the planner hashes; a per-row check would not scale to millions of rows).
    fn new(p: &TablePlan, job_id: i64, moved: bool, others: &Value) -> Option<Sharing> {
        p.target_key.as_ref()?;
        let has_added = sharing::recorded(job_id, p.step, "shared_added");
        let has_used = sharing::recorded(job_id, p.step, "shared_used");
        let shared_by_others = others.as_array().is_some_and(|k| !k.is_empty());
        if p.role != Role::Shared
            && p.borrowed.is_none()
            && !has_added
            && !has_used
            && !shared_by_others
        {
            return None;
        }
        let key = p.target_key_json("t");
        // Uncorrelated: the planner hashes the job's records once per statement.
        let mine = |kind: &str| {
            format!(
                "{key} IN (SELECT a.row_data FROM tenant_ops.job_archive a
                            WHERE a.job_id = {job_id} AND a.step = {} AND a.kind = '{kind}')",
                p.step
            )
        };
        let flag = |on: bool, kind: &str| if on { mine(kind) } else { "false".into() };
        let added = flag(has_added, "shared_added");
        let used = flag(has_used, "shared_used");
        let owned = if p.role == Role::Shared {
            added.clone()
        } else {
            let (from, filter) = source_rows(p, job_id, moved);
            let own = p.target_rows(&from, &filter);
            if has_added {
                format!("({own} OR {added})")
            } else {
                own
            }
        };
        Some(Sharing {
            needed: format!("({owned} OR {used})"),
            owned,
            reused: format!("({used} AND NOT {added})"),
            theirs: if shared_by_others {
                format!("{key} IN (SELECT pg_catalog.jsonb_array_elements($4::jsonb))")
            } else {
                "false".into()
            },
            // Shared rows others reference without a record of it stay too.
            referenced: match p.role {
                Role::Shared => sharing::referenced_in_target(p.target.oid),
                _ => None,
            },
        })
    }

    /// The rows the undo deletes.
    fn deletable(&self) -> String {
        let referenced = match &self.referenced {
            Some(r) => format!(" AND NOT {r}"),
            None => String::new(),
        };
        format!(
            "{} AND NOT {} AND NOT {}{referenced}",
            self.owned, self.reused, self.theirs
        )
    }
}

/// The undo of [`rollback`]: what the job wrote goes, what it overwrote or deleted comes back.
/// Rows other migrations into the target use stay (handed over to them when this job added
/// them); the report says how many per table, and for which jobs.
fn undo(m: &mut Migration, plans: &[TablePlan], moved: bool, job_id: i64) -> Result<Vec<Value>> {
    let mut report = vec![];
    // Per table: the keys other live migrations into it recorded (`$4` of its statements).
    let others: Vec<Value> = plans
        .iter()
        .map(|p| match p.target_key {
            Some(_) => sharing::used_by_others(job_id, &p.target.display),
            None => json!([]),
        })
        .collect();
    let sharing: Vec<Option<Sharing>> = plans
        .iter()
        .zip(&others)
        .map(|(p, o)| Sharing::new(p, job_id, moved, o))
        .collect();
    let args_of = |i: usize| {
        let mut args = m.params.args();
        if sharing[i].is_some() {
            args.push(JsonB(others[i].clone()).into());
        }
        args
    };
    // 1. Remove what the job wrote, children first. Deferred references are cleared first so
    //    cycles between tables do not block the deletes.
    for (i, (p, sh)) in plans.iter().zip(&sharing).enumerate().rev() {
        if !p.deferred.is_empty() {
            let rows = match sh {
                Some(sh) => sh.deletable(),
                None => {
                    let (from, filter) = source_rows(p, job_id, moved);
                    p.target_rows(&from, &filter)
                }
            };
            let sets: Vec<String> = p
                .deferred
                .iter()
                .map(|(c, _)| format!("{c} = NULL"))
                .collect();
            Spi::run_with_args(
                &format!(
                    "UPDATE {} t SET {} WHERE {rows}",
                    p.target.sql,
                    sets.join(", "),
                ),
                &args_of(i),
            )
            .or_raise();
        }
    }
    for (i, (p, sh)) in plans.iter().zip(&sharing).enumerate().rev() {
        let args = args_of(i);
        let Some(sh) = sh else {
            if p.role == Role::Shared {
                continue;
            }
            let (from, filter) = source_rows(p, job_id, moved);
            let deleted = rows_written(
                &format!(
                    "DELETE FROM {} t WHERE {}",
                    p.target.sql,
                    p.target_rows(&from, &filter)
                ),
                &args,
            );
            report.push(json!({"table": p.target.display, "deleted": deleted, "kept": 0}));
            continue;
        };
        let keys_where = |cond: &str| -> Value {
            Spi::get_one_with_args::<JsonB>(
                &format!(
                    "SELECT coalesce(pg_catalog.jsonb_agg({}), '[]'::jsonb) FROM {} t WHERE {cond}",
                    p.target_key_json("t"),
                    p.target.sql
                ),
                &args,
            )
            .or_raise()
            .map(|j| j.0)
            .unwrap_or_else(|| json!([]))
        };
        // The rows this job wrote that another job recorded using go over to that job.
        let handed = keys_where(&format!(
            "{} AND NOT {} AND {}",
            sh.owned, sh.reused, sh.theirs
        ));
        sharing::hand_over(job_id, &p.target.display, handed);
        // Rows of a shared table that reference each other go a level per statement, until
        // what is left is referenced from outside.
        let delete = format!("DELETE FROM {} t WHERE {}", p.target.sql, sh.deletable());
        let mut deleted = 0;
        loop {
            let n = rows_written(&delete, &args);
            deleted += n;
            if n == 0 || sh.referenced.is_none() {
                break;
            }
        }
        // Kept: every row the job needed that stays (another job's, used by another job, or
        // referenced by other rows of the target).
        let kept = keys_where(&sh.needed);
        let kept_for = sharing::users_of(job_id, &p.target.display, &kept);
        let kept_n = kept.as_array().map_or(0, |k| k.len());
        report.push(json!({"table": p.target.display, "deleted": deleted, "kept": kept_n, "kept_for": kept_for}));
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
              WHERE a.job_id = {job_id} AND a.step = {step} AND a.kind = 'target_before'
             ON CONFLICT DO NOTHING",
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
