//! The `copy` stage: one batch of one table per step, set-based, with its checkpoint.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use super::checksums::{self, Sums};
use super::error::Error;
use super::keys::{analyze_id_map, record_new_ids};
use super::options::{self, Mode, OnConflict};
use super::plan::TablePlan;
use super::sql::rows_written;
use super::{sharing, Migration, WHOLE_TABLE};
use crate::error::OrRaise;
use crate::jobs::{self, JobTable};
use crate::scope::graph::Role;
use crate::sys::{try_subtransaction, with_job_window};

/// How the rows of one copy step are chosen.
enum Rows {
    /// Every row of the tenant, in one statement: a table without a key to page by, or an
    /// inline run (see `from_job`), which takes each table in one step: no keyset order, no
    /// batch bound and no checkpoint key to compute, just the INSERT ... SELECT that
    /// hand-written SQL would run.
    Whole,
    /// The common case, in one statement: the keyset batch is taken once (materialized) and
    /// inserted from there, so the tenant filter is evaluated once per batch.
    Fused,
    /// A keyset batch whose keys are taken first (recording their new ids in the same pass
    /// where the strategy says so), then copied by range: `(key) > $4 AND (key) <= $5`.
    Keyset,
}

/// The pieces in which the copy steps of different tables differ.
struct Strategy {
    rows: Rows,
    /// The single-column key whose new ids this step records in id_map (`id_strategy: uuid`).
    record_ids: Option<String>,
    /// Target rows about to be overwritten or merged into are archived first (for a rollback).
    archive_before: bool,
    /// The insert runs in a subtransaction; should it fail, the batch is copied row by row
    /// to find the rows at fault (transforms that may raise, `continue_on_error`).
    isolate: bool,
    /// Some of the tenant's own rows are in the target already, copied by an earlier
    /// migration as rows it shared (recorded `shared_used` by `prepare`): they are skipped.
    reuses: bool,
    /// The copy takes the verification checksums in its own pass (see `checksums.rs`), or
    /// why it cannot.
    checked: Result<(), &'static str>,
}

impl Strategy {
    fn new(m: &Migration, p: &TablePlan, jt: &JobTable) -> Strategy {
        let reuses = p.role != Role::Shared
            && p.target_key.is_some()
            && sharing::recorded(m.job_id, p.step, "shared_used");
        // Online, a row may meet a parent written after its table was copied: it is left out
        // (its change is captured and applied by the catch-up), the rest of the batch goes in.
        let isolate = p.can_fail || m.options.continue_on_error || m.options.mode == Mode::Online;
        // A table the job created holds nothing it could overwrite.
        let archive_before = matches!(
            m.options.on_conflict,
            OnConflict::Overwrite | OnConflict::Merge
        ) && p.role != Role::Shared
            && !p.target.bare;
        let whole = p.key.is_none() || (m.batch_size >= WHOLE_TABLE && jt.last_key.is_none());
        let fused = !p.uses_id_map
            && !isolate
            && !archive_before
            && p.role != Role::Shared
            && p.borrowed.is_none()
            && !reuses;
        let rows = match (whole, fused) {
            (true, _) => Rows::Whole,
            (false, true) => Rows::Fused,
            (false, false) => Rows::Keyset,
        };
        let record_ids = match (p.uses_id_map, &p.key) {
            (true, Some(_)) => p.single_key.clone(),
            _ => None,
        };
        let checked = if !m.options.verify {
            Err("verify is off")
        } else {
            match checksums::unchecked_because(
                p,
                m.options.on_conflict == OnConflict::Error,
                isolate,
                reuses,
            ) {
                Some(reason) => Err(reason),
                None => Ok(()),
            }
        };
        Strategy {
            rows,
            record_ids,
            archive_before,
            isolate,
            reuses,
            checked,
        }
    }
}

/// What choosing a step's rows came to.
enum Taken {
    /// Nothing is left of the table.
    Nothing,
    /// Chosen and already written, in one statement ([`Rows::Fused`]).
    Written {
        inserted: i64,
        upper: Option<Vec<Option<String>>>,
        done: bool,
        sums: Option<Sums>,
    },
    /// Chosen: the rows to copy.
    Chosen(Batch),
}

/// The rows of one step, chosen.
struct Batch {
    /// A condition on the source rows `s`: the filter, and the keyset range if any.
    where_: String,
    args: Vec<pgrx::datum::DatumWithOid<'static>>,
    /// The batch's last key: the next checkpoint.
    upper: Option<Vec<Option<String>>>,
    /// Whether the table is copied once this batch is.
    done: bool,
}

impl Migration {
    /// One batch of one table: its rows are chosen, the target rows they replace archived
    /// when asked, and the rows inserted (isolated when they may fail), then checkpointed.
    pub(super) fn copy_step(&mut self, jt: &JobTable) -> Result<(), Error> {
        let p = self.plan_for(jt.step)?;
        let started = std::time::Instant::now();
        let how = Strategy::new(self, &p, jt);
        let conflict = self.conflict_clause(&p);
        // In a subtransaction: a statement that fails on a constraint may have met rows
        // written since the migration began, which `changes.rs` then names instead.
        let written = try_subtransaction(|| -> Result<_, Error> {
            let w = match self.take_rows(jt, &p, &how, &conflict) {
                Taken::Nothing => (0, None, true, None),
                Taken::Written {
                    inserted,
                    upper,
                    done,
                    sums,
                } => (inserted, upper, done, sums),
                Taken::Chosen(batch) => {
                    if how.archive_before {
                        self.archive_target_before(&p, &batch);
                    }
                    let (inserted, sums) = self.insert_batch(jt, &p, &batch, &conflict, &how)?;
                    (inserted, batch.upper, batch.done, sums)
                }
            };
            if w.3.is_some_and(|s| s.new_rows > 0) {
                // Rows written since the migration began: `changes.rs` names them below.
                return Err(Error::TenantChanged {
                    scope: self.scope.clone(),
                    tenant: self.tenant.clone(),
                    tables: vec![],
                });
            }
            Ok(w)
        });
        let (inserted, upper, done, sums) = match written {
            Ok(Ok(w)) => w,
            Ok(Err(e @ Error::TenantChanged { .. })) => {
                return Err(self.tenant_changed()?.unwrap_or(e));
            }
            Ok(Err(e)) => {
                let sqlstate =
                    crate::sys::sqlstate_text(crate::error::UserError::report(&e).sqlstate);
                return Err(self.changed_after(&sqlstate)?.unwrap_or(e));
            }
            Err(caught) => return Err(self.copy_failed(caught)?),
        };
        checksums::record(self.job_id, jt, how.checked.map(|()| sums));
        self.finish_batch(jt, &p, inserted, upper.as_deref(), done, started);
        Ok(())
    }

    /// Chooses the step's rows (see [`Rows`]); a fused batch is written in the same statement.
    fn take_rows(&self, jt: &JobTable, p: &TablePlan, how: &Strategy, conflict: &str) -> Taken {
        match how.rows {
            Rows::Whole => {
                if let Some(key) = &how.record_ids {
                    self.record_table_ids(p, key);
                }
                Taken::Chosen(Batch {
                    where_: format!("({})", p.filter),
                    args: self.params.args(),
                    upper: None,
                    done: true,
                })
            }
            Rows::Fused => self.copy_fused(jt, p, conflict, how.checked.is_ok()),
            Rows::Keyset => self.take_keyset(jt, p, how.record_ids.as_deref()),
        }
    }

    /// The whole table's new ids at once (as the caller, in the job's window: id_map is the
    /// extension's).
    fn record_table_ids(&self, p: &TablePlan, key: &str) {
        // Rows mapped before (by an earlier migration in this namespace) keep their ids. When
        // there are none and nobody else can map these rows (owned rows of this tenant only,
        // whose migrations exclude each other), plain inserts do: a third cheaper than ON
        // CONFLICT's speculative ones, and a surprise would still fail on the primary key
        // rather than pass unnoticed.
        let exclusive = p.role == Role::Owned
            && self.options.cross_tenant != options::CrossTenant::Copy
            && !self.mapped_before(p.source);
        let sql = record_new_ids(
            p,
            key,
            self.options.id_strategy.new_id_sql(),
            self.job_id,
            &format!("{} s WHERE ({})", p.source_sql, p.filter),
            "s",
            !exclusive,
        );
        with_job_window(self.job_id, || {
            Spi::run_with_args(&sql, &self.params.args())
        })
        .or_raise();
        // Fresh statistics for the join back (see `take_keyset`).
        analyze_id_map();
    }

    /// [`Rows::Fused`]: the batch taken and inserted in one statement; `checked`: with the
    /// verification checksums taken in the same pass (see `checksums.rs`).
    fn copy_fused(&self, jt: &JobTable, p: &TablePlan, conflict: &str, checked: bool) -> Taken {
        let key = p.key.as_ref().expect("keyed");
        let order = p.key_list("s").expect("keyed");
        let desc: Vec<String> = key.iter().map(|k| format!("s.{} DESC", k.quoted)).collect();
        if checked {
            return self.copy_fused_checked(jt, p, &order, &desc);
        }
        let sql = format!(
            "WITH b AS MATERIALIZED (SELECT s.* FROM {src} s WHERE ({filter}){after} ORDER BY {order} LIMIT {batch}),
                  ins AS (INSERT INTO {tgt} ({cols}) SELECT {sel} FROM b s{joins} {conflict} RETURNING 1)
             SELECT (SELECT pg_catalog.count(*) FROM b), (SELECT {kt} FROM b s ORDER BY {desc} LIMIT 1),
                    (SELECT pg_catalog.count(*) FROM ins)",
            src = p.source_sql,
            filter = p.filter,
            after = key_after(jt, p),
            batch = self.batch_size,
            tgt = p.target.sql,
            cols = p.target_columns(),
            sel = p.select_list(),
            joins = p.joins,
            kt = p.key_text("s"),
            desc = desc.join(", ")
        );
        let args = self.params.with_keys(&[jt.last_key.as_ref()]);
        let (taken, upper, inserted) = Spi::connect_mut(|c| {
            let row = c.update(&sql, Some(1), &args)?.first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<i64>(1)?.unwrap_or(0),
                row.get::<Vec<Option<String>>>(2)?,
                row.get::<i64>(3)?.unwrap_or(0),
            ))
        })
        .or_raise();
        Taken::Written {
            inserted,
            upper,
            done: taken < self.batch_size,
            sums: None,
        }
    }

    /// [`Self::copy_fused`] with the checksums: the batch (with each row's `xmin`, to tell
    /// rows written since the migration began) taken once, then hashed, inserted and the
    /// stored rows hashed (see `checksums.rs`).
    fn copy_fused_checked(
        &self,
        jt: &JobTable,
        p: &TablePlan,
        order: &str,
        desc: &[String],
    ) -> Taken {
        let from = format!("b s{}", p.joins);
        let sql = format!(
            "WITH b AS MATERIALIZED (SELECT s.*, s.xmin AS __tenant_ops_xmin FROM {src} s WHERE ({filter}){after}
                                      ORDER BY {order} LIMIT {batch}),
                  {ctes}
             SELECT (SELECT {kt} FROM b s ORDER BY {desc} LIMIT 1), {output}",
            src = p.source_sql,
            filter = p.filter,
            after = key_after(jt, p),
            batch = self.batch_size,
            ctes = checksums::ctes(
                p,
                &from,
                &self.new_row_in_copy(jt, "s.__tenant_ops_xmin")
            ),
            kt = p.key_text("s"),
            desc = desc.join(", "),
            output = checksums::OUTPUT,
        );
        let args = self.params.with_keys(&[jt.last_key.as_ref()]);
        let (upper, sums) = Spi::connect_mut(|c| {
            let row = c.update(&sql, Some(1), &args)?.first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<Vec<Option<String>>>(1)?,
                checksums::read(&row, 2)?,
            ))
        })
        .or_raise();
        Taken::Written {
            inserted: sums.target_rows,
            upper,
            done: sums.source_rows < self.batch_size,
            sums: Some(sums),
        }
    }

    /// [`Rows::Keyset`]: the batch's keys, taken once; a uuid migration records their new ids
    /// in the same pass (in the job's window: id_map is the extension's).
    fn take_keyset(&self, jt: &JobTable, p: &TablePlan, record_ids: Option<&str>) -> Taken {
        let order = p.key_list("s").expect("keyed");
        let key = p.key.as_ref().expect("keyed");
        let desc: Vec<String> = key.iter().map(|k| format!("b.{} DESC", k.quoted)).collect();
        let keycols: Vec<String> = key.iter().map(|k| format!("s.{}", k.quoted)).collect();
        let record = match record_ids {
            Some(key) => format!(
                ", m AS ({})",
                record_new_ids(
                    p,
                    key,
                    self.options.id_strategy.new_id_sql(),
                    self.job_id,
                    "b",
                    "b",
                    true
                )
            ),
            None => String::new(),
        };
        let sql = format!(
            "WITH b AS MATERIALIZED (SELECT {kt} AS __tenant_ops_k, {keycols} FROM {src} s
                                      WHERE ({filter}){after} ORDER BY {order} LIMIT {batch}){record}
             SELECT (SELECT pg_catalog.count(*) FROM b), (SELECT __tenant_ops_k FROM b ORDER BY {desc} LIMIT 1)",
            kt = p.key_text("s"),
            keycols = keycols.join(", "),
            src = p.source_sql,
            filter = p.filter,
            after = key_after(jt, p),
            batch = self.batch_size,
            desc = desc.join(", ")
        );
        let args = self.params.with_keys(&[jt.last_key.as_ref()]);
        let run = || Spi::get_two_with_args::<i64, Vec<Option<String>>>(&sql, &args);
        let (taken, upper) = if p.uses_id_map {
            with_job_window(self.job_id, run)
        } else {
            run()
        }
        .or_raise();
        let taken = taken.unwrap_or(0);
        if taken == 0 {
            return Taken::Nothing;
        }
        if p.uses_id_map && jt.last_key.is_none() {
            // Fresh statistics once a table starts mapping: without them the planner takes a
            // table's mappings for one row and sizes its hashes wrongly.
            analyze_id_map();
        }
        let mut range = p.key_upto(5).expect("keyed").to_string();
        if jt.last_key.is_some() {
            range = format!("{} AND {range}", p.key_after(4).expect("keyed"));
        }
        Taken::Chosen(Batch {
            where_: format!("({}) AND {range}", p.filter),
            args: self
                .params
                .with_keys(&[jt.last_key.as_ref(), upper.as_ref()]),
            upper,
            done: taken < self.batch_size,
        })
    }

    /// Keeps the target rows the batch is about to overwrite or merge into, for a rollback
    /// (as the caller, in the job's window: job_archive is the extension's).
    fn archive_target_before(&self, p: &TablePlan, batch: &Batch) {
        // Borrowed rows are never overwritten (see `insert_batch`).
        let rows = match &p.borrowed {
            Some(b) => format!("{} AND NOT ({b})", batch.where_),
            None => batch.where_.clone(),
        };
        let sql = format!(
            "INSERT INTO tenant_ops.job_archive (job_id, step, kind, row_data)
             SELECT {job_id}, {step}, 'target_before', pg_catalog.to_jsonb(t) FROM {tgt} t WHERE {rows}",
            job_id = self.job_id,
            step = p.step,
            tgt = p.target.sql,
            rows = p.target_rows(&p.source_sql, &rows)
        );
        with_job_window(self.job_id, || Spi::run_with_args(&sql, &batch.args)).or_raise();
    }

    /// Inserts the batch; returns the rows written. Rows others may share (a shared table's,
    /// borrowed ones) go in a statement of their own that skips and records them (see
    /// `sharing.rs`); the tenant's own rows follow the `on_conflict` option. Isolated, a
    /// failing statement is run again row by row.
    fn insert_batch(
        &self,
        jt: &JobTable,
        p: &TablePlan,
        batch: &Batch,
        conflict: &str,
        how: &Strategy,
    ) -> Result<(i64, Option<Sums>), Error> {
        if how.checked.is_ok() && !p.shares_rows() {
            // The whole batch in one checked statement (see `checksums.rs`): the strategy
            // rules out isolation, reused rows and any ON CONFLICT clause.
            let from = format!("{} s{} WHERE {}", p.source_sql, p.joins, batch.where_);
            let sql = checksums::statement(p, &from, &self.new_row_in_copy(jt, "s.xmin"));
            let sums = checksums::run(&sql, &batch.args);
            return Ok((sums.target_rows, Some(sums)));
        }
        let mut parts: Vec<(String, String, bool)> = vec![];
        if !p.shares_rows() {
            parts.push((batch.where_.clone(), conflict.to_string(), false));
        } else {
            if let (Some(b), true) = (&p.borrowed, p.role != Role::Shared) {
                parts.push((
                    format!("{} AND NOT ({b})", batch.where_),
                    conflict.to_string(),
                    false,
                ));
            }
            let shared_where = match (&p.borrowed, p.role) {
                (Some(b), r) if r != Role::Shared => format!("{} AND ({b})", batch.where_),
                _ => batch.where_.clone(),
            };
            parts.push((shared_where, self.shared_conflict(p), true));
        }
        let mut written = 0;
        for (where_, conflict, recorded) in &parts {
            // Own rows an earlier migration copied as shared are skipped (`prepare` found no
            // other conflict).
            let conflict =
                if !recorded && how.reuses && self.options.on_conflict == OnConflict::Error {
                    self.shared_conflict(p)
                } else {
                    conflict.clone()
                };
            let insert = self.insert_sql(p, where_, &conflict, *recorded);
            written += if !how.isolate {
                self.run_insert(&insert, &batch.args, *recorded)
            } else {
                match try_subtransaction(|| self.run_insert(&insert, &batch.args, *recorded)) {
                    Ok(n) => n,
                    Err(_) => {
                        let bounds = [jt.last_key.as_ref(), batch.upper.as_ref()];
                        self.copy_row_by_row(p, where_, &bounds, &conflict, *recorded)?
                    }
                }
            };
        }
        Ok((written, None))
    }

    /// The copy statement of the rows `where_` selects; `recorded`: rows others may share,
    /// skipped when there and recorded (see `sharing::recorded_insert`).
    fn insert_sql(&self, p: &TablePlan, where_: &str, conflict: &str, recorded: bool) -> String {
        if recorded {
            return sharing::recorded_insert(p, self.job_id, where_);
        }
        format!(
            "INSERT INTO {tgt} ({cols}) SELECT {sel} FROM {src} s{joins} WHERE {where_} {conflict}",
            joins = p.joins,
            tgt = p.target.sql,
            cols = p.target_columns(),
            sel = p.select_list(),
            src = p.source_sql,
        )
    }

    /// Records a batch: the checkpoint (in the batch's transaction), a log line, and the
    /// pause that `max_rows_per_second` asks for.
    fn finish_batch(
        &self,
        jt: &JobTable,
        p: &TablePlan,
        inserted: i64,
        upper: Option<&[Option<String>]>,
        done: bool,
        started: std::time::Instant,
    ) {
        jobs::checkpoint(
            self.job_id,
            jt.step,
            if done { "copied" } else { "copying" },
            inserted,
            upper,
        );
        if done && jt.rows_total.is_none() {
            // Not counted up front (see `copy_counts_rows`): the copy wrote every row.
            jobs::set_rows_total(self.job_id, jt.step, jt.rows_done + inserted);
        }
        jobs::log(
            self.job_id,
            "step",
            Some("copy"),
            Some(p.source),
            Some(inserted),
            None,
            None,
        );
        if let Some(rate) = self.options.max_rows_per_second {
            let wanted = inserted as f64 / rate;
            let spent = started.elapsed().as_secs_f64();
            if wanted > spent {
                Spi::run_with_args("SELECT pg_catalog.pg_sleep($1)", &[(wanted - spent).into()])
                    .or_raise();
            }
        }
    }

    /// Runs a copy statement; returns the rows written. A recorded one (see
    /// [`Self::insert_sql`]) writes its records in the job's window and counts its own rows.
    fn run_insert(&self, sql: &str, args: &[pgrx::datum::DatumWithOid], recorded: bool) -> i64 {
        if recorded {
            with_job_window(self.job_id, || Spi::get_one_with_args::<i64>(sql, args))
                .or_raise()
                .unwrap_or(0)
        } else {
            rows_written(sql, args)
        }
    }

    /// A batch failed: copy it row by row, each in its own subtransaction, to find the rows at
    /// fault. With continue_on_error they go to job_errors; otherwise the first one fails the
    /// job with the row named.
    fn copy_row_by_row(
        &self,
        p: &TablePlan,
        where_: &str,
        bounds: &[Option<&Vec<Option<String>>>; 2],
        conflict: &str,
        recorded: bool,
    ) -> Result<i64, Error> {
        let args = self.params.with_keys(bounds);
        if p.key.is_none() {
            // No key to single rows out: run the whole table once more to report the error.
            let insert = self.insert_sql(p, where_, conflict, recorded);
            return match try_subtransaction(|| self.run_insert(&insert, &args, recorded)) {
                Ok(n) => Ok(n),
                Err(e) => Err(Error::TableFailed {
                    sqlstate: e.sqlstate,
                    source: p.source_display.clone(),
                    target: p.target.display.clone(),
                    reason: e.message,
                }),
            };
        }
        let keys: Vec<Vec<Option<String>>> = Spi::connect(|c| {
            c.select(
                &format!(
                    "SELECT {} FROM {} s WHERE {where_} ORDER BY {}",
                    p.key_text("s"),
                    p.source_sql,
                    p.key_list("s").expect("keyed")
                ),
                None,
                &args,
            )?
            .map(|r| {
                r.get::<Vec<Option<String>>>(1)
                    .map(|k| k.unwrap_or_default())
            })
            .collect::<Result<Vec<_>, _>>()
        })
        .or_raise();
        let mut written = 0;
        let single = format!("{where_} AND {} = ($6::text[])", p.key_text("s"));
        let insert = self.insert_sql(p, &single, conflict, recorded);
        for key in keys {
            let a = self.params.with_keys(&[bounds[0], bounds[1], Some(&key)]);
            match try_subtransaction(|| self.run_insert(&insert, &a, recorded)) {
                Ok(n) => written += n,
                Err(e) if self.options.mode == Mode::Online => {
                    // Changed since the copy began (see `Strategy::new`): the catch-up applies
                    // it; should it be something else, the cutover's verification names it.
                    jobs::log(
                        self.job_id,
                        "row.deferred",
                        Some("copy"),
                        Some(p.source),
                        None,
                        Some(&e.message),
                        Some(serde_json::json!({"key": key})),
                    );
                }
                Err(e) => {
                    let key_text = format!(
                        "{{{}}}",
                        key.iter()
                            .map(|k| k.clone().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    if !self.options.continue_on_error {
                        return Err(Error::RowFailed {
                            sqlstate: e.sqlstate,
                            key: key_text,
                            source: p.source_display.clone(),
                            target: p.target.display.clone(),
                            tenant: self.tenant.clone(),
                            reason: e.message,
                        });
                    }
                    let row = Spi::get_one_with_args::<JsonB>(
                        &format!(
                            "SELECT pg_catalog.to_jsonb(s) FROM {} s WHERE {single}",
                            p.source_sql
                        ),
                        &a,
                    )
                    .or_raise()
                    .map(|j| j.0)
                    .unwrap_or(Value::Null);
                    jobs::record_row_error(
                        self.job_id,
                        p.source,
                        &key_text,
                        row,
                        &e.message,
                        &e.sqlstate_text(),
                    );
                }
            }
        }
        Ok(written)
    }

    /// Rows others may share are skipped when already there. No clause into a table the job
    /// created and has not built yet: it has no key to decide a conflict on, and only this
    /// job's rows, each written once (see `constraints.rs`).
    fn shared_conflict(&self, p: &TablePlan) -> String {
        if p.target.bare {
            return String::new();
        }
        match &p.target_key {
            Some(k) => format!(
                "ON CONFLICT ({}) DO NOTHING",
                k.iter()
                    .map(|(c, _)| c.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "ON CONFLICT DO NOTHING".into(),
        }
    }

    fn conflict_clause(&self, p: &TablePlan) -> String {
        if p.role == Role::Shared || p.target.bare {
            return self.shared_conflict(p);
        }
        let key = p.target_key.as_ref().map(|k| {
            k.iter()
                .map(|(c, _)| c.clone())
                .collect::<Vec<_>>()
                .join(", ")
        });
        let updatable: Vec<&str> = p
            .columns
            .iter()
            .map(|(c, _)| c.as_str())
            .filter(|c| {
                !p.target_key
                    .as_ref()
                    .is_some_and(|k| k.iter().any(|(kc, _)| kc == c))
            })
            .collect();
        self.options
            .on_conflict
            .clause(&p.target.sql, key.as_deref(), &updatable)
    }
}

/// ` AND (key) > $4` after a checkpoint; nothing for a table's first batch.
fn key_after(jt: &JobTable, p: &TablePlan) -> String {
    if jt.last_key.is_some() {
        format!(" AND {}", p.key_after(4).unwrap_or_default())
    } else {
        String::new()
    }
}
