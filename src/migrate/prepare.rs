//! The `prepare` stage: every check the real run would meet, before anything is written
//! (target tables and columns, types, privileges, orphans, cross-tenant references, inbound
//! references of a move, shared rows, conflicts), then the per-table checkpoints.

use std::collections::BTreeSet;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::constraints::deferred_details;
use super::error::{CrossTenant, Error, Result};
use super::options::{self, Mode, OnConflict, SharedMode};
use super::plan::{Planner, TablePlan};
use super::sharing;
use super::sql::{qualified_cols, quoted_cols, rows_written};
use super::{target, target_table};
use super::{Migration, WHOLE_TABLE};
use crate::distinct_values;
use crate::error::OrRaise;
use crate::jobs;
use crate::scope::graph::{EdgeKind, Role, TableId};
use crate::scope::LoadedScope;
use crate::sys::{try_subtransaction, with_job_window};

impl Migration {
    /// The stage, in a subtransaction kept only when it succeeds: a `prepare` that fails
    /// leaves nothing behind, neither the target tables it created nor anything else (a
    /// committing executor would otherwise commit them with the failure).
    ///
    /// A target table another job created and is still building (see `constraints.rs`) is
    /// not usable yet: while that job runs, the stage waits for it, trying again every 0.2 s
    /// with nothing held (the schema lock goes with the failed attempt's subtransaction, so
    /// that job's own undo is never blocked); otherwise it fails (55006, transient: a
    /// background job is retried later).
    pub(super) fn prepare(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        let mut told = false;
        loop {
            match crate::sys::subtransaction_kept_if_ok(|| self.prepare_checked()) {
                Err(Error::TargetBeingBuilt {
                    target,
                    job,
                    driven: true,
                    ..
                }) if may_wait(started) => {
                    if !told {
                        jobs::log(
                            self.job_id,
                            "target.wait",
                            Some("prepare"),
                            None,
                            None,
                            Some(&format!("waiting for job {job} to build {target}")),
                            None,
                        );
                        told = true;
                    }
                    Spi::run("SELECT pg_catalog.pg_sleep(0.2)").or_raise();
                }
                other => return other,
            }
        }
    }

    fn prepare_checked(&mut self) -> Result<()> {
        let loaded = self.load_scope()?;
        crate::pg::require_schema(&self.target_schema)?;
        // Until the end of the transaction: exclusive to create tables there, shared to read
        // which exist (see `target::lock_schema`), taken before anything reads them.
        target::lock_schema(&self.target_schema, self.options.create_target);
        self.check_not_being_built(&loaded)?;
        let dry = self.options.dry_run;
        // Before anything reads a user table or creates one: the privileges of the whole job
        // (also checked when the job was queued; they may have changed since), and one target
        // per source table.
        let mut problems = self.privilege_problems(&loaded);
        if !problems.is_empty() {
            return Err(if dry {
                Error::Many(problems)
            } else {
                problems.remove(0)
            });
        }
        self.check_target_names(&loaded)?;
        loaded.check_tenant(&self.tenant)?;
        let created = if self.options.create_target {
            self.create_targets(&loaded)?
        } else {
            vec![]
        };
        // Keys, indexes and foreign keys after the load, unless rows a constraint refuses are
        // to be set aside one by one as they are copied (see `constraints.rs`).
        let defer = !self.options.continue_on_error;
        if !defer {
            self.build_now(&created)?;
        }
        self.bare = Some(if defer {
            created.iter().map(|c| c.oid).collect()
        } else {
            Default::default()
        });
        let mut plans = self.build_plans(&loaded, false)?;
        // Every check runs; a real run stops at the first problem, a dry run reports them all.
        let mut note = |r: Result<()>| -> Result<()> {
            match r {
                Err(e) if dry => {
                    problems.push(e);
                    Ok(())
                }
                other => other,
            }
        };
        if self.options.cross_tenant == options::CrossTenant::Copy {
            let extra = self.collect_extra(&loaded)?;
            jobs::log(
                self.job_id,
                "cross_tenant.copy",
                Some("prepare"),
                None,
                Some(extra),
                Some("rows of other tenants brought along"),
                None,
            );
        }
        for p in &plans {
            note(self.check_types(p))?;
            if !p.deferred.is_empty() && p.target_key.is_none() {
                note(Err(Error::DeferredWithoutKey {
                    target: p.target.display.clone(),
                }))?;
            }
            if matches!(
                self.options.on_conflict,
                OnConflict::Overwrite | OnConflict::Merge
            ) && p.target_key.is_none()
            {
                note(Err(Error::ConflictWithoutKey {
                    on_conflict: on_conflict_name(self.options.on_conflict),
                    target: p.target.display.clone(),
                }))?;
            }
        }
        let staged = self.stage_shared_keys(&loaded, &mut plans);
        note(self.check_cross_tenant(&loaded, &plans))?;
        note(self.check_orphans(&loaded, &plans))?;
        if self.options.mode == Mode::Move {
            note(self.check_inbound(&loaded, &plans))?;
        }
        note(self.check_shared(&loaded))?;
        if matches!(
            self.options.on_conflict,
            OnConflict::Error | OnConflict::Skip
        ) {
            // A table this job has just created is empty: nothing there to conflict with.
            for p in &plans {
                if p.role != Role::Shared && !p.target.bare {
                    note(self.check_conflicts(p))?;
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Many(problems));
        }
        // The snapshot the copy starts from, and in it the row counts a committing run shows
        // progress by (see `changes.rs`).
        let counted: Vec<&TablePlan> = plans
            .iter()
            .filter(|p| !staged.contains_key(&p.step) && !self.copy_counts_rows())
            .collect();
        let start = self.start(&counted, &plans);
        for p in &plans {
            let total = staged.get(&p.step).copied().or(start.rows(p.step));
            let made = created.iter().find(|c| c.source == p.source);
            let mut details = json!({
                "deferred_columns": p.deferred.len(), "id_map": p.uses_id_map,
                // Which table the rows go to, and whether this job created it (a cancel or
                // rollback drops it again, see `target::drop_created`).
                "target_oid": p.target.oid, "created_target": made.is_some(),
            });
            if let (Some(c), true, Some(d)) = (made, defer, details.as_object_mut()) {
                if let Value::Object(extra) = deferred_details(&c.deferred) {
                    d.extend(extra);
                }
            }
            if let (Some(d), Value::Object(s)) = (details.as_object_mut(), start.details(p.step)) {
                d.extend(s);
            }
            jobs::add_table(
                self.job_id,
                p.step,
                p.source,
                Some(&p.target.display),
                p.role.as_str(),
                total,
                details,
            );
        }
        self.plans = Some(plans);
        Ok(())
    }

    /// Whether each table's row count is known from its copy alone, so `prepare` need not
    /// count it first: a real inline run copies each table in one statement, and with
    /// `on_conflict: error` (and no rejected rows) that statement writes every row or fails.
    /// Only committing runs need the totals up front, for progress and ETA.
    fn copy_counts_rows(&self) -> bool {
        self.batch_size >= WHOLE_TABLE
            && !self.options.dry_run
            && self.options.on_conflict == OnConflict::Error
            && !self.options.continue_on_error
    }

    fn count(&self, sql: &str) -> Result<i64> {
        Ok(Spi::get_one_with_args::<i64>(sql, &self.params.args())
            .or_raise()
            .unwrap_or(0))
    }

    /// Prepares the copy statement, so a type the target cannot take is reported before
    /// anything is written, with the tables named.
    fn check_types(&self, p: &TablePlan) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM {} s{} WHERE false",
            p.target.sql,
            p.target_columns(),
            p.select_list(),
            p.source_sql,
            p.joins
        );
        let prepared = try_subtransaction(|| {
            Spi::connect(|c| {
                c.prepare(
                    &sql,
                    &[
                        pgrx::PgOid::from(pgrx::pg_sys::TEXTOID),
                        pgrx::PgOid::from(pgrx::pg_sys::TEXTOID),
                        pgrx::PgOid::from(pgrx::pg_sys::TEXTOID),
                    ],
                )
                .map(|_| ())
            })
        });
        let reason = match prepared {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(caught) => caught.message,
        };
        Err(Error::TypeMismatch {
            source: p.source_display.clone(),
            target: p.target.display.clone(),
            reason,
        })
    }

    fn check_cross_tenant(&self, loaded: &LoadedScope, plans: &[TablePlan]) -> Result<()> {
        if self.options.cross_tenant != options::CrossTenant::Error {
            return Ok(());
        }
        let copied: BTreeSet<TableId> = plans.iter().map(|p| p.source).collect();
        let c = &loaded.catalog;
        let filters = loaded.filters();
        for i in &loaded.resolved.cross_references {
            let e = &c.edges[*i];
            if !copied.contains(&e.child) {
                continue;
            }
            let (child, parent) = (c.table(e.child), c.table(e.parent));
            let lhs = qualified_cols(child, &e.child_cols, "s");
            let rhs = quoted_cols(parent, &e.parent_cols);
            let not_null: Vec<String> = lhs.iter().map(|x| format!("{x} IS NOT NULL")).collect();
            let n = self.count(&format!(
                "SELECT pg_catalog.count(*) FROM {} s WHERE ({}) AND {} AND ({}) NOT IN (SELECT {} FROM {} WHERE {})",
                child.sql,
                filters.filter(e.child),
                not_null.join(" AND "),
                lhs.join(", "),
                rhs.join(", "),
                parent.sql,
                filters.filter(e.parent)
            ))?;
            if n > 0 {
                return Err(Error::CrossTenant(Box::new(CrossTenant {
                    rows: n,
                    child: child.display.clone(),
                    parent: parent.display.clone(),
                    through: e.name.clone(),
                    tenant: self.tenant.clone(),
                    scope: self.scope.clone(),
                })));
            }
        }
        Ok(())
    }

    /// Rows that reference nothing (orphans, possible under a `NOT VALID` FK or a link) would
    /// become dangling keys in the target: refused up front, unless `continue_on_error` sends
    /// them to job_errors as they fail. A validated FK rules them out, so only `NOT VALID`
    /// FKs and links are checked.
    fn check_orphans(&self, loaded: &LoadedScope, plans: &[TablePlan]) -> Result<()> {
        if self.options.continue_on_error {
            return Ok(());
        }
        let c = &loaded.catalog;
        let may_have_orphans = |e: &crate::scope::graph::Edge| {
            !matches!(
                e.kind,
                EdgeKind::ForeignKey {
                    not_valid: false,
                    ..
                }
            )
        };
        for p in plans {
            for e in c.edges.iter().filter(|e| {
                e.child == p.source
                    && loaded.resolved.get(e.parent).is_some()
                    && may_have_orphans(e)
            }) {
                let (child, parent) = (c.table(e.child), c.table(e.parent));
                let lhs = qualified_cols(child, &e.child_cols, "s");
                let rhs = qualified_cols(parent, &e.parent_cols, "p");
                let not_null: Vec<String> =
                    lhs.iter().map(|x| format!("{x} IS NOT NULL")).collect();
                // Where the values without a parent can be read from an index, only the
                // rows holding them are looked at, and none at all when there are none.
                let only_missing = match distinct_values::missing_values(
                    child,
                    &e.child_cols,
                    parent,
                    &e.parent_cols,
                ) {
                    Some(missing) => {
                        if !distinct_values::any(&missing) {
                            continue;
                        }
                        format!(" AND {} IN ({missing})", lhs[0])
                    }
                    None => String::new(),
                };
                let (n, sample) = Spi::get_two_with_args::<i64, Vec<String>>(
                    &format!(
                        "SELECT pg_catalog.count(*), (pg_catalog.array_agg(ROW({lhs})::text))[1:5] FROM {src} s
                          WHERE ({filter}) AND {nn} AND NOT EXISTS (SELECT FROM {par} p WHERE ({rhs}) = ({lhs})){only_missing}",
                        lhs = lhs.join(", "),
                        src = child.sql,
                        filter = p.filter,
                        nn = not_null.join(" AND "),
                        par = parent.sql,
                        rhs = rhs.join(", ")
                    ),
                    &self.params.args(),
                )
                .or_raise();
                let n = n.unwrap_or(0);
                if n > 0 {
                    return Err(Error::Orphans {
                        rows: n,
                        child: child.display.clone(),
                        parent: parent.display.clone(),
                        through: e.name.clone(),
                        sample: sample.unwrap_or_default(),
                    });
                }
            }
        }
        Ok(())
    }

    /// A move deletes the tenant's rows: rows outside the tenant that still reference them
    /// would block the delete, so they are named before anything runs.
    fn check_inbound(&self, loaded: &LoadedScope, plans: &[TablePlan]) -> Result<()> {
        let c = &loaded.catalog;
        let filters = loaded.filters();
        for p in plans.iter().filter(|p| p.role != Role::Shared) {
            for e in c.edges.iter().filter(|e| e.parent == p.source) {
                let (child, parent) = (c.table(e.child), c.table(e.parent));
                let lhs = qualified_cols(child, &e.child_cols, "x");
                let rhs = qualified_cols(parent, &e.parent_cols, "p");
                // The child's own filter is written for unqualified columns: evaluate it in a
                // subquery over the child table itself.
                let outside = match loaded.resolved.get(e.child) {
                    Some(t) if t.role != Role::Shared => format!(
                        "AND (x.tableoid, x.ctid) NOT IN (SELECT tableoid, ctid FROM {} WHERE {})",
                        child.sql,
                        filters.filter(e.child)
                    ),
                    _ => String::new(),
                };
                let n = self.count(&format!(
                    "SELECT pg_catalog.count(*) FROM {csql} x
                      WHERE ({lhs}) IN (SELECT {rhs} FROM {psql} p WHERE {pf}) {outside}",
                    csql = child.sql,
                    lhs = lhs.join(", "),
                    rhs = rhs.join(", "),
                    psql = parent.sql,
                    pf = p.filter,
                ))?;
                if n > 0 {
                    return Err(Error::ReferencedFromOutside {
                        tenant: self.tenant.clone(),
                        rows: n,
                        child: child.display.clone(),
                        parent: parent.display.clone(),
                        through: e.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// With `shared: expect`, every shared row the tenant references must already be in the
    /// target (under its mapped key).
    fn check_shared(&self, loaded: &LoadedScope) -> Result<()> {
        if self.options.shared != SharedMode::Expect {
            return Ok(());
        }
        let shared: Vec<(TableId, Role)> = loaded
            .resolved
            .tables
            .iter()
            .filter(|t| t.role == Role::Shared)
            .map(|t| (t.oid, t.role))
            .collect();
        if shared.is_empty() {
            return Ok(());
        }
        let mut targets = vec![];
        for (source, _) in &shared {
            let name = self.target_name(loaded, *source);
            let Some(t) = target_table::read(&self.target_schema, &name) else {
                return Err(Error::MissingTarget {
                    target: target_table::qualified(&self.target_schema, &name),
                    from: loaded.catalog.table(*source).display.clone(),
                    shared: true,
                });
            };
            targets.push(t);
        }
        let planner = Planner {
            loaded,
            options: &self.options,
            rekeyed: self.rekeyed_tables(loaded),
            is_admin: true,
            lookups: Default::default(),
            masks: self.masks(loaded)?,
        };
        let filters = self.filters(loaded);
        for ((source, role), target) in shared.iter().zip(targets) {
            let p = planner.plan_table(
                0,
                *source,
                *role,
                filters.filter(*source).to_string(),
                target,
            )?;
            let Some(key) = &p.target_key else { continue };
            let cond: Vec<String> = key.iter().map(|(c, e)| format!("t.{c} = {e}")).collect();
            let missing = Spi::get_two_with_args::<i64, Vec<String>>(
                &format!(
                    "SELECT pg_catalog.count(*), (pg_catalog.array_agg({}::text))[1:5] FROM {} s{}
                      WHERE ({}) AND NOT EXISTS (SELECT FROM {} t WHERE {})",
                    p.key_text("s"),
                    p.source_sql,
                    p.joins,
                    p.filter,
                    p.target.sql,
                    cond.join(" AND ")
                ),
                &self.params.args(),
            )
            .or_raise();
            if let (Some(n), sample) = missing {
                if n > 0 {
                    return Err(Error::SharedRowsMissing {
                        rows: n,
                        shared: p.source_display.clone(),
                        tenant: self.tenant.clone(),
                        target: p.target.display.clone(),
                        sample: sample.unwrap_or_default(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The tenant's own rows already in the target. Those an earlier migration into the
    /// target copied as rows it shared (a manager, another tenant's row it brought along) are
    /// reused: recorded `shared_used`, and skipped by the copy. Any other is a conflict under
    /// `on_conflict: error`. Borrowed rows are never conflicts (the copy skips them when there).
    fn check_conflicts(&self, p: &TablePlan) -> Result<()> {
        let Some(key) = &p.target_key else {
            return Ok(());
        };
        let own = match &p.borrowed {
            Some(b) => format!("({}) AND NOT ({b})", p.filter),
            None => format!("({})", p.filter),
        };
        let shared = sharing::used_by_others(self.job_id, &p.target.display);
        let mut args = self.params.args();
        let reusable = shared.as_array().is_some_and(|k| !k.is_empty());
        if reusable {
            let sql = format!(
                "INSERT INTO tenant_ops.job_archive (job_id, step, kind, row_data)
                 SELECT DISTINCT {job}, {step}, 'shared_used', x.k
                   FROM (SELECT {sk} AS k FROM {src} s{joins} WHERE {own}) x
                  WHERE x.k IN (SELECT pg_catalog.jsonb_array_elements($4::jsonb))
                    AND x.k IN (SELECT {tk} FROM {tgt} t
                                 WHERE {tk} IN (SELECT pg_catalog.jsonb_array_elements($4::jsonb)))",
                job = self.job_id,
                step = p.step,
                sk = p.source_key_json(),
                src = p.source_sql,
                joins = p.joins,
                tk = p.target_key_json("t"),
                tgt = p.target.sql,
            );
            args.push(JsonB(shared).into());
            with_job_window(self.job_id, || rows_written(&sql, &args));
        }
        if self.options.on_conflict != OnConflict::Error {
            return Ok(());
        }
        let not_reused = if reusable {
            format!(
                " AND {} NOT IN (SELECT pg_catalog.jsonb_array_elements($4::jsonb))",
                p.source_key_json()
            )
        } else {
            String::new()
        };
        let cols: Vec<String> = key.iter().map(|(c, _)| format!("t.{c}")).collect();
        let exprs: Vec<String> = key.iter().map(|(_, e)| e.clone()).collect();
        // The target is searched for the tenant's keys only (the innermost subquery), never
        // read whole: on a distributed target (Citus) only the matching keys leave the nodes.
        let sample = Spi::get_one_with_args::<Vec<String>>(
            &format!(
                "SELECT (pg_catalog.array_agg(k))[1:3] FROM (
                   SELECT ROW({exprs})::text AS k FROM {src} s{joins}
                    WHERE {own}{not_reused} AND ({exprs}) IN (
                      SELECT {cols} FROM {tgt} t WHERE ({cols}) IN (
                        SELECT {exprs} FROM {src} s{joins} WHERE {own}{not_reused}))) x",
                exprs = exprs.join(", "),
                src = p.source_sql,
                joins = p.joins,
                cols = cols.join(", "),
                tgt = p.target.sql
            ),
            &args,
        )
        .or_raise();
        match sample {
            Some(keys) if !keys.is_empty() => Err(Error::Conflict {
                source: p.source_display.clone(),
                target: p.target.display.clone(),
                keys,
            }),
            _ => Ok(()),
        }
    }
}

/// Whether `prepare` may wait once more for a target being built: not under a transaction
/// snapshot (REPEATABLE READ or SERIALIZABLE would never see that job finish), not beyond
/// `lock_timeout` (the wait is a lock wait in all but name), not while a background worker is
/// asked to stop.
fn may_wait(started: std::time::Instant) -> bool {
    let snapshot_fixed =
        unsafe { pgrx::pg_sys::XactIsoLevel } >= pgrx::pg_sys::XACT_REPEATABLE_READ as i32;
    let timeout_ms = unsafe { pgrx::pg_sys::LockTimeout };
    let timed_out = timeout_ms > 0 && started.elapsed().as_millis() >= timeout_ms as u128;
    // (Signals reads a background worker's flags: only there.)
    let stopping =
        unsafe { pgrx::pg_sys::IsBackgroundWorker } && crate::worker::Signals::terminating();
    !snapshot_fixed && !timed_out && !stopping
}

fn on_conflict_name(o: OnConflict) -> &'static str {
    match o {
        OnConflict::Error => "error",
        OnConflict::Skip => "skip",
        OnConflict::Overwrite => "overwrite",
        OnConflict::Merge => "merge",
    }
}
