//! `migrate_tenant`: copy (or move) every owned row of one tenant into a target schema,
//! table by table in dependency order, with set-based `INSERT ... SELECT` batches.
//!
//! The job advances through stages, one bounded step at a time (see `crate::jobs`). This file
//! is the stage machine: [`Migration`] (the job's parameters and plans), its [`Steps`] impl
//! and `run_stage`, which picks the next step; each stage is an `impl Migration` block in a
//! file of its own:
//!
//! 1. `prepare` (`prepare.rs`) — plan every table, check everything the real run would meet
//!    (target tables and columns, types, privileges, orphans, shared rows, cross-tenant
//!    references, conflicts), create missing targets when asked (`target.rs`), stage the rows
//!    beyond the tenant's own (`extra.rs`), and register the per-table checkpoints;
//! 2. `copy` (`copy.rs`) — one keyset batch of one table per step:
//!    `(key) > last AND (key) <= upper`;
//! 3. `fixup` (`fixup.rs`) — set the columns deferred to break self-references and cycles;
//! 4. `constraints` (`constraints.rs`) — the keys, indexes and foreign keys of the tables
//!    `create_target` made, one per step, built from the loaded rows;
//! 5. `verify` (`verify.rs`) — per table, counts and a checksum computed through the key
//!    mapping: taken by the copy in its own pass where it can (`checksums.rs`), else by
//!    reading both sides again (`verify_migration` always does);
//! 6. `archive`, `delete` (`archive.rs`) — for `mode: move`, keep the source rows in
//!    `tenant_ops.job_archive` then delete them, children first, only after verification;
//! 7. `finish` (here) — the job's report.
//!
//! Online (`mode: online`, `online.rs`), a change capture is installed when the job is
//! submitted (`crate::capture`), and the stages after `fixup` differ: `drain` applies every
//! change captured during the copy (so that `constraints` builds on a target equal to one
//! moment of the source), `constraints`, then `catchup` applies the changes as they come until
//! `cutover_migration` locks the tenant's tables, drains the rest, verifies and moves the job
//! to `finish` (or, with `reverse_sync`, to `reverse_sync`, which writes the target's changes
//! back to the old tables until it is ended).
//!
//! Around the stages:
//!
//! - `submit.rs` — creating the job (one migration of a tenant's rows at a time), and reading
//!   its options back ([`Migration::from_job`]); the options themselves: `options.rs`;
//! - `changes.rs` — a tenant that changes during the copy: one snapshot inline in REPEATABLE
//!   READ, otherwise detected against the snapshot recorded at `prepare` (40001, undone);
//! - `checksums.rs` — the verification checksums a copy statement takes in its own pass;
//!   how each row is hashed, on both sides: `row_hash.rs`;
//! - `checks.rs` — what is checked before anything is written, at submission and again in
//!   `prepare`: every privilege the job needs, one target table per source table;
//! - `target_table.rs` — what a target table is, and which one a source table goes to;
//! - `tables.rs` — which tables are copied, and the plans every stage works from; how a plan
//!   computes each target row: `plan.rs` (keys and FKs) and `transform.rs` (column transforms);
//! - `keys.rs` — the key mapping: keys computed from the legacy key (`uuid`: keyed v4,
//!   `keyed_uuid.rs`; `uuid5`: name-based, `uuid5.rs`) or recorded in `tenant_ops.id_map`
//!   (`uuid7`), `map_id`; `stage.rs`: an inline run's recorded ids generated in the copy's
//!   own pass and staged in a temporary table of the transaction for the later tables' lookups;
//! - `sharing.rs` — rows several migrations into one target share (shared tables, managers,
//!   other tenants' rows): reused when there, recorded, removed by an undo only when unused;
//! - `undo.rs` — `rollback_migration` and the revert of a cancelled job;
//! - `online.rs` — `mode: online`: applying captured changes, the catch-up, `cutover_migration`;
//!   `reverse.rs` — its reverse sync after the cutover;
//! - `sql.rs` — the small SQL builders and catalog lookups the stages share;
//! - `kind.rs` — `migrate` as a job kind (see `crate::jobs::kind`).

mod archive;
mod changes;
mod checks;
mod checksums;
mod constraints;
mod copy;
pub mod error;
mod extra;
mod fixup;
pub mod keyed_uuid;
mod keys;
pub mod kind;
mod online;
pub mod options;
pub mod plan;
mod prepare;
mod reverse;
pub(crate) mod row_hash;
mod sharing;
mod sql;
mod stage;
mod submit;
mod tables;
pub mod target;
pub mod target_table;
pub mod transform;
mod undo;
pub mod uuid4;
pub mod uuid5;
mod verify;

use serde_json::{json, Value};

use crate::error::Report;
use crate::jobs::kind::Steps;
use crate::jobs::{self, Job, JobTable, StepOutcome};
use crate::scope::graph::TableId;
use crate::scope::LoadedScope;
use crate::sys::with_settings;
use options::{MigrateOptions, Mode};
use plan::TablePlan;
use verify::rejected_rows;

use crate::pg::relation_name;
pub use error::{Error, Result};
pub use keys::map_id;
pub use online::cutover;
pub use submit::submit;
pub use undo::{revert, rollback};
pub use verify::{verify_report, Comparison, VerifyRow};

/// The parameters every generated statement takes: `$1` tenant, `$2` mapping namespace,
/// `$3` new tenant (or NULL); keyset bounds follow as `$4` and `$5`.
struct Params {
    tenant: String,
    namespace: String,
    new_tenant: Option<String>,
}

impl Params {
    fn args(&self) -> Vec<pgrx::datum::DatumWithOid<'static>> {
        vec![
            self.tenant.clone().into(),
            self.namespace.clone().into(),
            self.new_tenant.clone().into(),
        ]
    }

    /// The common arguments followed by keyset bounds (`$4`, `$5`, and `$6` for one row).
    fn with_keys(
        &self,
        keys: &[Option<&Vec<Option<String>>>],
    ) -> Vec<pgrx::datum::DatumWithOid<'static>> {
        let mut a = self.args();
        for k in keys {
            a.push(k.cloned().unwrap_or_default().into());
        }
        a
    }
}

/// A migration job's step driver.
pub struct Migration {
    job_id: i64,
    scope: String,
    tenant: String,
    target_schema: String,
    options: MigrateOptions,
    params: Params,
    batch_size: i64,
    /// Every statement of this run reads one snapshot (see `changes.rs`): nothing to detect.
    one_snapshot: bool,
    /// Plans, once the targets exist (rebuilt on the first step of each executor run).
    plans: Option<Vec<TablePlan>>,
    /// The oids of the target tables this job created and has yet to build the keys, indexes
    /// and foreign keys of (`constraints.rs`); None: read from the checkpoints when needed.
    bare: Option<std::collections::BTreeSet<u32>>,
    /// Online: the statement applying captured changes (see `online.rs`), built once per
    /// executor run, and whether any target was still bare when it was.
    apply_sql: Option<(bool, String)>,
    /// Read committed: the parents whose staged keys selected a child table's rows, looked at
    /// for late rows once the copy is done (`copy.rs`, `owner_join`; `changes.rs`).
    joined_parents: std::collections::BTreeSet<TableId>,
}

/// Settings for the statements of every step. Each hash, sort or materialized batch of a
/// statement takes at most `work_mem` (hash_mem_multiplier 1: hashes get no more) and spills
/// beyond it, so a step's memory is bounded by a few times 16 MB whatever the tenant's size,
/// while the mappings of a few hundred thousand keys still hash in memory. No parallel plans:
/// statements run from inside a function get no workers launched, and a parallel hash would
/// still build its table in a dynamic shared memory segment of its own.
const STEP_SETTINGS: &[(&str, &str)] = &[
    ("work_mem", "16MB"),
    ("hash_mem_multiplier", "1"),
    ("max_parallel_workers_per_gather", "0"),
];

/// A batch size larger than any table: one step per table.
const WHOLE_TABLE: i64 = i64::MAX / 2;

impl Migration {
    fn load_scope(&self) -> Result<LoadedScope> {
        Ok(LoadedScope::load(&self.scope)?)
    }

    fn plans(&mut self) -> Result<&Vec<TablePlan>> {
        if self.plans.is_none() {
            let loaded = self.load_scope()?;
            self.plans = Some(self.build_plans(&loaded, true)?);
        }
        Ok(self.plans.as_ref().expect("just built"))
    }

    /// The plan of the job table at `step`.
    fn plan_for(&mut self, step: i32) -> Result<TablePlan> {
        Ok(self
            .plans()?
            .iter()
            .find(|p| p.step == step)
            .cloned()
            .expect("a plan per job table"))
    }

    fn report(&self) -> Value {
        let tables: Vec<Value> = jobs::tables(self.job_id)
            .iter()
            .map(|t| {
                json!({
                    "step": t.step, "source": relation_name(t.source), "target": t.target, "role": t.role,
                    "stage": t.stage, "rows_total": t.rows_total, "rows_done": t.rows_done,
                    "verified": t.details.get("verified"), "rejected": rejected_rows(self.job_id, t.source),
                })
            })
            .collect();
        let rows: i64 = jobs::tables(self.job_id).iter().map(|t| t.rows_done).sum();
        let mut report = json!({
            "scope": self.scope, "tenant": self.tenant, "target_schema": self.target_schema,
            "mode": self.options.mode.name(),
            "id_strategy": self.options.id_strategy.name(),
            "new_tenant": self.options.new_tenant, "rows": rows, "tables": tables, "dry_run": self.options.dry_run,
        });
        if self.options.mode == Mode::Online {
            report["cutover"] = online::cutover_report(self.job_id).unwrap_or(Value::Null);
        }
        report
    }
}

impl Steps for Migration {
    fn step(&mut self, job: &Job) -> std::result::Result<StepOutcome, Report> {
        // An inline dry run is already wrapped whole in a rolled-back subtransaction by its
        // caller; a committing or background one is done here, in its first step, the same way,
        // so that no executor ever commits a dry run's rows.
        if self.options.dry_run && job.executor != jobs::Executor::Inline {
            return Ok(self.dry_run_whole(job.id)?);
        }
        crate::citus::sequential_modifications();
        Ok(with_settings(STEP_SETTINGS, || self.run_stage(job))?)
    }
}

impl Migration {
    /// Every stage of a dry run in one rolled-back subtransaction: the job keeps only the
    /// outcome (the plan and counts, or the error the real run would meet).
    fn dry_run_whole(&mut self, job_id: i64) -> Result<StepOutcome> {
        let outcome = crate::sys::rolled_back_subtransaction(|| -> Result<Value> {
            loop {
                let job = jobs::load(job_id)?;
                match with_settings(STEP_SETTINGS, || self.run_stage(&job))? {
                    StepOutcome::Continue => continue,
                    StepOutcome::Done(result) => return Ok(result),
                }
            }
        });
        self.plans = None;
        match outcome {
            Ok(Ok(mut result)) => {
                result["dry_run"] = json!(true);
                Ok(StepOutcome::Done(result))
            }
            Ok(Err(e)) => Err(e),
            Err(caught) => Err(jobs::Error::StepFailed {
                job: job_id,
                sqlstate: caught.sqlstate,
                message: caught.message,
            }
            .into()),
        }
    }
}

/// The stages of a migration job, in order (the module documentation says what each does),
/// as stored in `tenant_ops.jobs.stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Prepare,
    Copy,
    Fixup,
    Constraints,
    Verify,
    Archive,
    Delete,
    /// Online: the changes captured during the copy, applied before `constraints`.
    Drain,
    /// Online: the changes applied as they come, until the cutover.
    CatchUp,
    /// Online, after a cutover with `reverse_sync`: the target's changes written back.
    Reverse,
    Finish,
    Done,
}

impl Stage {
    const ALL: [Stage; 12] = [
        Stage::Prepare,
        Stage::Copy,
        Stage::Fixup,
        Stage::Constraints,
        Stage::Verify,
        Stage::Archive,
        Stage::Delete,
        Stage::Drain,
        Stage::CatchUp,
        Stage::Reverse,
        Stage::Finish,
        Stage::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::Copy => "copy",
            Stage::Fixup => "fixup",
            Stage::Constraints => "constraints",
            Stage::Verify => "verify",
            Stage::Archive => "archive",
            Stage::Delete => "delete",
            Stage::Drain => "drain",
            Stage::CatchUp => "catchup",
            Stage::Reverse => "reverse_sync",
            Stage::Finish => "finish",
            Stage::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Moves the job to `stage`.
fn enter(job_id: i64, stage: Stage) {
    jobs::set_stage(job_id, stage.as_str());
}

impl Migration {
    /// One step of the job's current stage (see the module documentation).
    fn run_stage(&mut self, job: &Job) -> Result<StepOutcome> {
        let Some(stage) = Stage::parse(&job.stage) else {
            return Err(jobs::Error::State {
                job: self.job_id,
                status: format!("at stage {}", job.stage),
                action: "continue",
                hint: None,
            }
            .into());
        };
        match stage {
            Stage::Prepare => {
                if self.options.mode == Mode::Online {
                    self.ensure_capture()?;
                }
                self.prepare()?;
                enter(self.job_id, Stage::Copy);
                jobs::log(self.job_id, "stage", Some("copy"), None, None, None, None);
                Ok(StepOutcome::Continue)
            }
            Stage::Copy => {
                let tables = jobs::tables(self.job_id);
                match tables
                    .iter()
                    .find(|t| t.stage == "pending" || t.stage == "copying")
                {
                    Some(jt) => {
                        self.copy_step(jt)?;
                        let after = jobs::tables(self.job_id);
                        let t = after
                            .iter()
                            .find(|t| t.step == jt.step)
                            .expect("same table");
                        if t.rows_done == jt.rows_done {
                            return Ok(StepOutcome::Continue);
                        }
                        jobs::notify_progress(
                            self.job_id,
                            json!({"table": relation_name(t.source), "rows_done": t.rows_done, "rows_total": t.rows_total}),
                        );
                        jobs::notice(&format!(
                            "pg_tenant_ops job {}: {} {}/{} rows",
                            self.job_id,
                            relation_name(t.source),
                            t.rows_done,
                            t.rows_total.unwrap_or(0)
                        ));
                        Ok(StepOutcome::Continue)
                    }
                    None => {
                        if let Some(e) = self.late_parents()? {
                            return Err(e);
                        }
                        enter(self.job_id, Stage::Fixup);
                        Ok(StepOutcome::Continue)
                    }
                }
            }
            Stage::Fixup => {
                let next = if self.options.mode == Mode::Online {
                    Stage::Drain
                } else {
                    Stage::Constraints
                };
                self.next_table("copied", next, |m, jt| m.fixup_step(jt))
            }
            Stage::Drain => {
                self.drain_step()?;
                enter(self.job_id, Stage::Constraints);
                Ok(StepOutcome::Continue)
            }
            Stage::CatchUp => self.catchup_step(),
            Stage::Reverse => self.reverse_step(),
            Stage::Constraints => {
                if !self.constraints_step()? {
                    let next = if self.options.mode == Mode::Online {
                        jobs::log(
                            self.job_id,
                            "stage",
                            Some("catchup"),
                            None,
                            None,
                            None,
                            None,
                        );
                        Stage::CatchUp
                    } else if self.options.verify {
                        Stage::Verify
                    } else {
                        Stage::Finish
                    };
                    enter(self.job_id, next);
                }
                Ok(StepOutcome::Continue)
            }
            Stage::Verify => {
                let next = if self.options.mode == Mode::Move {
                    Stage::Archive
                } else {
                    Stage::Finish
                };
                self.next_table("fixed", next, |m, jt| m.verify_step(jt))
            }
            Stage::Archive => {
                self.next_table("verified", Stage::Delete, |m, jt| m.archive_step(jt))
            }
            Stage::Delete => {
                let tables = jobs::tables(self.job_id);
                let first = !tables.iter().any(|t| t.stage == "deleted");
                match tables.iter().rev().find(|t| t.stage == "archived") {
                    Some(jt) => self.delete_step(jt, first)?,
                    None => enter(self.job_id, Stage::Finish),
                }
                Ok(StepOutcome::Continue)
            }
            Stage::Finish => {
                // setval is not undone with a transaction: a dry run, rolled back whole, must
                // not move anything.
                if !self.options.dry_run {
                    self.advance_sequences()?;
                }
                let report = self.report();
                enter(self.job_id, Stage::Done);
                Ok(StepOutcome::Done(report))
            }
            Stage::Done => Err(jobs::Error::State {
                job: self.job_id,
                status: "at stage done".into(),
                action: "continue",
                hint: None,
            }
            .into()),
        }
    }

    /// One step of a per-table stage: the first table whose checkpoint is at `from` gets
    /// `run`; when none is left the job moves on to `next`.
    fn next_table(
        &mut self,
        from: &str,
        next: Stage,
        run: impl FnOnce(&mut Self, &JobTable) -> Result<()>,
    ) -> Result<StepOutcome> {
        match jobs::tables(self.job_id).iter().find(|t| t.stage == from) {
            Some(jt) => run(self, jt)?,
            None => enter(self.job_id, next),
        }
        Ok(StepOutcome::Continue)
    }
}
