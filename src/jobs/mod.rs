//! Jobs: every operation is a resumable state machine recorded in `tenant_ops.jobs`.
//!
//! A job advances in *steps*. A step does one bounded batch of set-based SQL and records its
//! checkpoint (`jobs.stage`, `job_tables`) in the same transaction as the rows it wrote, so a
//! crash between steps loses nothing and redoes nothing. Whoever drives the steps is an
//! executor: [`run_inline`] (the caller's transaction) or [`run_committing`] (a commit after
//! each step, for `CALL tenant_ops.run_job`); the background workers drive the same steps.
//!
//! Job metadata is written as the extension owner (see [`crate::sys::owner`]); the
//! steps themselves run with the caller's privileges.

pub mod error;
pub mod executor;
pub mod kind;
pub mod live;
pub mod lock;
pub mod purge;
pub mod state;

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::error::OrRaise;
use crate::sys::owner;
pub use error::Error;
pub use state::{Executor, Status};

/// A job as stored.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub scope: Option<String>,
    pub tenant: Option<String>,
    pub options: Value,
    pub status: Status,
    pub stage: String,
    pub submitted_by: String,
    /// Who drives the steps.
    pub executor: Executor,
}

/// What one step achieved.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// More steps follow.
    Continue,
    /// The job reached its end; the value is its result.
    Done(Value),
}

/// One per-table checkpoint row.
#[derive(Clone, Debug)]
pub struct JobTable {
    pub step: i32,
    pub source: u32,
    pub target: Option<String>,
    pub role: String,
    pub stage: String,
    pub rows_total: Option<i64>,
    pub rows_done: i64,
    pub last_key: Option<Vec<Option<String>>>,
    pub details: Value,
}

fn owner_run(sql: &'static str, args: &[pgrx::datum::DatumWithOid]) {
    owner::execute(sql, args).or_raise();
}

/// Creates a job row and returns its id.
pub fn create(kind: &str, scope: &str, tenant: &str, options: &Value, executor: Executor) -> i64 {
    create_for(kind, Some(scope), Some(tenant), options, executor)
}

/// Creates a job of no scope or tenant (the purges) and returns its id.
pub fn create_unscoped(kind: &str, options: &Value, executor: Executor) -> i64 {
    create_for(kind, None, None, options, executor)
}

fn create_for(
    kind: &str,
    scope: Option<&str>,
    tenant: Option<&str>,
    options: &Value,
    executor: Executor,
) -> i64 {
    // The submitter is who calls, read before switching to the owner: background workers run
    // the job as this role, so it must never be the owner's name.
    let submitter = current_user();
    let id = owner::get_one::<i64>(
        "INSERT INTO tenant_ops.jobs (kind, scope, tenant, options, executor, submitted_by)
             VALUES ($1, $2, $3, $4, $5, $6::name) RETURNING id",
        &[
            kind.into(),
            scope.into(),
            tenant.into(),
            JsonB(options.clone()).into(),
            executor.as_str().into(),
            submitter.into(),
        ],
    )
    .or_raise()
    .expect("INSERT ... RETURNING gives a row");
    notify(id, "job.queued", None);
    id
}

/// Sends `NOTIFY tenant_ops_events` with a JSON payload describing the job (delivered when the
/// transaction commits, like every NOTIFY).
pub fn notify(id: i64, event: &str, extra: Option<Value>) {
    Spi::run_with_args(
        "SELECT pg_catalog.pg_notify('tenant_ops_events',
                (pg_catalog.jsonb_build_object('event', $2, 'job_id', id, 'kind', kind, 'scope', scope,
                                               'tenant', tenant, 'status', status, 'stage', stage) || coalesce($3, '{}'))::text)
           FROM tenant_ops.jobs WHERE id = $1",
        &[id.into(), event.into(), extra.map(JsonB).into()],
    )
    .or_raise();
}

/// `job.progress`, at most once a second per process (listeners want a pulse, not a flood).
pub fn notify_progress(id: i64, figures: Value) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if now.saturating_sub(LAST_MS.load(Ordering::Relaxed)) >= 1000 {
        LAST_MS.store(now, Ordering::Relaxed);
        notify(id, "job.progress", Some(figures));
    }
}

/// Whether someone asked to cancel the job while it ran.
pub fn cancel_requested(id: i64) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT (SELECT cancel_requested FROM tenant_ops.jobs WHERE id = $1)",
        &[id.into()],
    )
    .or_raise()
    .unwrap_or(false)
}

pub fn attempts(id: i64) -> i32 {
    Spi::get_one_with_args::<i32>(
        "SELECT (SELECT attempts FROM tenant_ops.jobs WHERE id = $1)",
        &[id.into()],
    )
    .or_raise()
    .unwrap_or(0)
}

/// Puts a failed background job back in the queue, to start again after `delay_s` seconds.
pub fn requeue(id: i64, error: &str, delay_s: f64) {
    owner_run(
        "UPDATE tenant_ops.jobs SET status = 'queued', worker_pid = NULL, error = $2,
                next_run_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $3),
                updated_at = pg_catalog.clock_timestamp()
          WHERE id = $1",
        &[id.into(), error.into(), delay_s.into()],
    );
    log(
        id,
        "job.retry",
        None,
        None,
        None,
        Some(error),
        Some(serde_json::json!({"delay_seconds": delay_s})),
    );
    notify(
        id,
        "job.retry",
        Some(serde_json::json!({"delay_seconds": delay_s, "error": error})),
    );
}

/// Records the SQLSTATE of the error just stored in `jobs.error` (what a schedule's history
/// shows of a failed run).
pub fn record_sqlstate(id: i64, sqlstate: &str) {
    owner_run(
        "UPDATE tenant_ops.jobs SET error_sqlstate = $2 WHERE id = $1",
        &[id.into(), sqlstate.into()],
    );
}

/// Whether the job is a run of a schedule (whose failures are retried whatever the error).
pub fn scheduled(id: i64) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM tenant_ops.schedule_runs WHERE job_id = $1)",
        &[id.into()],
    )
    .or_raise()
    .unwrap_or(false)
}

/// The worker leaves a job it no longer runs (paused or cancelled by someone else).
pub fn release_worker(id: i64) {
    owner_run(
        "UPDATE tenant_ops.jobs SET worker_pid = NULL WHERE id = $1",
        &[id.into()],
    );
}

/// A change of queue state asked for by a user (see [`set_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Stop after the current step.
    Pause,
    /// Back into the background queue (a pause is not a failed attempt: the start that
    /// follows does not count).
    Resume,
    /// Back into the background queue with attempts and error reset.
    Retry,
    /// Ask the running worker to stop and undo.
    RequestCancel,
}

impl Transition {
    fn sql(self) -> &'static str {
        match self {
            Transition::Pause => {
                "UPDATE tenant_ops.jobs SET status = 'paused', updated_at = pg_catalog.clock_timestamp()
                  WHERE id = $1 AND status = ANY ($2)"
            }
            Transition::Resume => {
                "UPDATE tenant_ops.jobs SET status = 'queued', executor = 'background', next_run_at = NULL,
                        worker_pid = NULL, attempts = greatest(attempts - 1, 0), updated_at = pg_catalog.clock_timestamp()
                  WHERE id = $1 AND status = ANY ($2)"
            }
            Transition::Retry => {
                "UPDATE tenant_ops.jobs SET status = 'queued', executor = 'background', next_run_at = NULL,
                        worker_pid = NULL, attempts = 0, error = NULL, updated_at = pg_catalog.clock_timestamp()
                  WHERE id = $1 AND status = ANY ($2)"
            }
            Transition::RequestCancel => {
                "UPDATE tenant_ops.jobs SET cancel_requested = true, updated_at = pg_catalog.clock_timestamp()
                  WHERE id = $1 AND status = ANY ($2)"
            }
        }
    }
}

/// Moves a job between queue states (pause, resume, retry, cancel request) as asked by a user,
/// only from the statuses given: a worker that finished the job meanwhile wins, and the
/// caller is told. Returns whether the job was in one of them.
pub fn set_state(id: i64, transition: Transition, from: &[Status]) -> bool {
    let from: Vec<String> = from.iter().map(|s| s.as_str().to_string()).collect();
    owner::execute(transition.sql(), &[id.into(), from.into()]).or_raise() == 1
}

/// The role the caller acts as (the job's submitter).
pub fn current_user() -> String {
    Spi::get_one::<String>("SELECT current_user::text")
        .or_raise()
        .unwrap_or_default()
}

/// Loads a job, or says it does not exist.
pub fn load(id: i64) -> Result<Job, Error> {
    let row = Spi::connect(|c| {
        let mut t = c.select(
            "SELECT kind, scope, tenant, options, status, stage, submitted_by::text, executor
               FROM tenant_ops.jobs WHERE id = $1",
            Some(1),
            &[id.into()],
        )?;
        if t.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let r = t.next().expect("one row");
        Ok(Some(Job {
            id,
            kind: r.get::<String>(1)?.unwrap_or_default(),
            scope: r.get::<String>(2)?,
            tenant: r.get::<String>(3)?,
            options: r.get::<JsonB>(4)?.map(|j| j.0).unwrap_or(Value::Null),
            status: r
                .get::<String>(5)?
                .and_then(|s| Status::parse(&s))
                .unwrap_or(Status::Failed),
            stage: r.get::<String>(6)?.unwrap_or_default(),
            submitted_by: r.get::<String>(7)?.unwrap_or_default(),
            executor: r
                .get::<String>(8)?
                .and_then(|s| Executor::parse(&s))
                .unwrap_or(Executor::Inline),
        }))
    })
    .or_raise();
    row.ok_or(Error::UnknownJob(id))
}

/// Loads a job that must be of kind `kind` (see [`Error::OtherKind`] for `noun` and `hint`).
pub fn load_of_kind(
    id: i64,
    kind: &str,
    noun: &'static str,
    hint: &'static str,
) -> Result<Job, Error> {
    let job = load(id)?;
    if job.kind != kind {
        return Err(Error::OtherKind {
            job: id,
            kind: job.kind,
            noun,
            hint,
        });
    }
    Ok(job)
}

/// Marks a job running (first start or resumption) and counts the attempt.
pub fn mark_running(id: i64, executor: Executor) {
    owner_run(
        "UPDATE tenant_ops.jobs
            SET status = 'running', executor = $2, attempts = attempts + 1,
                started_at = coalesce(started_at, pg_catalog.clock_timestamp()),
                updated_at = pg_catalog.clock_timestamp(), error = NULL
          WHERE id = $1",
        &[id.into(), executor.as_str().into()],
    );
    log(
        id,
        "job.started",
        None,
        None,
        None,
        Some(&format!("executor {executor}")),
        None,
    );
    notify(id, "job.started", None);
}

/// Moves a job to a final (or paused) status.
pub fn finish(id: i64, status: Status, error: Option<&str>, result: Option<&Value>) {
    owner_run(
        "UPDATE tenant_ops.jobs
            SET status = $2, error = $3, result = coalesce($4, result), worker_pid = NULL, cancel_requested = false,
                finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'cancelled', 'rolled_back')
                                   THEN pg_catalog.clock_timestamp() END,
                updated_at = pg_catalog.clock_timestamp()
          WHERE id = $1",
        &[
            id.into(),
            status.as_str().into(),
            error.into(),
            result.map(|r| JsonB(r.clone())).into(),
        ],
    );
    log(id, &format!("job.{status}"), None, None, None, error, None);
    notify(
        id,
        &format!("job.{status}"),
        error.map(|e| serde_json::json!({"error": e})),
    );
}

/// Records the error a job failed with, when something else (an undo) already ended it.
pub fn set_error(id: i64, error: &str) {
    owner_run(
        "UPDATE tenant_ops.jobs SET error = $2, updated_at = pg_catalog.clock_timestamp() WHERE id = $1",
        &[id.into(), error.into()],
    );
}

/// Puts an undone job back at its first stage, its checkpoints gone, so that a retry starts
/// afresh rather than resuming a copy that was undone.
pub fn restart_from_scratch(id: i64, first_stage: &str) {
    owner_run(
        "DELETE FROM tenant_ops.job_tables WHERE job_id = $1",
        &[id.into()],
    );
    set_stage(id, first_stage);
}

pub fn set_stage(id: i64, stage: &str) {
    owner_run(
        "UPDATE tenant_ops.jobs SET stage = $2, updated_at = pg_catalog.clock_timestamp() WHERE id = $1",
        &[id.into(), stage.into()],
    );
}

/// Appends to `tenant_ops.job_log`.
pub fn log(
    id: i64,
    event: &str,
    stage: Option<&str>,
    table: Option<u32>,
    rows: Option<i64>,
    message: Option<&str>,
    details: Option<Value>,
) {
    owner_run(
        "INSERT INTO tenant_ops.job_log (job_id, event, stage, table_name, rows, message, details)
         VALUES ($1, $2, $3, $4::pg_catalog.oid::pg_catalog.regclass, $5, $6, $7)",
        &[
            id.into(),
            event.into(),
            stage.into(),
            table.map(|t| t as i64).into(),
            rows.into(),
            message.into(),
            details.map(JsonB).into(),
        ],
    );
}

/// Records a rejected row in `tenant_ops.job_errors`.
pub fn record_row_error(
    id: i64,
    table: u32,
    source_key: &str,
    row: Value,
    reason: &str,
    sqlstate: &str,
) {
    owner_run(
        "INSERT INTO tenant_ops.job_errors (job_id, table_name, source_key, row_data, reason, sqlstate)
         VALUES ($1, $2::pg_catalog.oid::pg_catalog.regclass, $3, $4, $5, $6)",
        &[
            id.into(),
            (table as i64).into(),
            source_key.into(),
            JsonB(row).into(),
            reason.into(),
            sqlstate.into(),
        ],
    );
}

/// Registers the tables a job will work through, in order.
pub fn add_table(
    id: i64,
    step: i32,
    source: u32,
    target: Option<&str>,
    role: &str,
    rows_total: Option<i64>,
    details: Value,
) {
    owner_run(
        "INSERT INTO tenant_ops.job_tables (job_id, step, source, target, role, rows_total, details)
         VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4, $5, $6, $7)",
        &[
            id.into(),
            step.into(),
            (source as i64).into(),
            target.into(),
            role.into(),
            rows_total.into(),
            JsonB(details).into(),
        ],
    );
}

/// The job's per-table checkpoints, in step order.
pub fn tables(id: i64) -> Vec<JobTable> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT step, source::pg_catalog.oid::pg_catalog.int8, target, role, stage, rows_total, rows_done,
                    last_key, details
               FROM tenant_ops.job_tables WHERE job_id = $1 ORDER BY step",
            None,
            &[id.into()],
        )?;
        let mut out = vec![];
        for r in rows {
            out.push(JobTable {
                step: r.get::<i32>(1)?.unwrap_or_default(),
                source: r.get::<i64>(2)?.unwrap_or_default() as u32,
                target: r.get::<String>(3)?,
                role: r.get::<String>(4)?.unwrap_or_default(),
                stage: r.get::<String>(5)?.unwrap_or_default(),
                rows_total: r.get::<i64>(6)?,
                rows_done: r.get::<i64>(7)?.unwrap_or_default(),
                last_key: r.get::<Vec<Option<String>>>(8)?,
                details: r.get::<JsonB>(9)?.map(|j| j.0).unwrap_or(Value::Null),
            });
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .or_raise()
}

/// Advances one table's checkpoint: rows added, the keyset position, and its stage.
pub fn checkpoint(
    id: i64,
    step: i32,
    stage: &str,
    rows_added: i64,
    last_key: Option<&[Option<String>]>,
) {
    owner_run(
        "UPDATE tenant_ops.job_tables
            SET stage = $3, rows_done = rows_done + $4, last_key = coalesce($5, last_key),
                started_at = coalesce(started_at, pg_catalog.clock_timestamp()),
                updated_at = pg_catalog.clock_timestamp()
          WHERE job_id = $1 AND step = $2",
        &[
            id.into(),
            step.into(),
            stage.into(),
            rows_added.into(),
            last_key.map(|k| k.to_vec()).into(),
        ],
    );
}

/// Records a table's row total once it is known (when it was not counted up front).
pub fn set_rows_total(id: i64, step: i32, rows_total: i64) {
    owner_run(
        "UPDATE tenant_ops.job_tables SET rows_total = $3 WHERE job_id = $1 AND step = $2",
        &[id.into(), step.into(), rows_total.into()],
    );
}

/// Resets one table's keyset position for a new pass (e.g. verification after copying).
pub fn restart_table(id: i64, step: i32, stage: &str) {
    owner_run(
        "UPDATE tenant_ops.job_tables SET stage = $3, last_key = NULL, rows_done = 0,
                started_at = NULL, updated_at = NULL
          WHERE job_id = $1 AND step = $2",
        &[id.into(), step.into(), stage.into()],
    );
}

pub fn set_table_details(id: i64, step: i32, details: &Value) {
    owner_run(
        "UPDATE tenant_ops.job_tables SET details = details || $3 WHERE job_id = $1 AND step = $2",
        &[id.into(), step.into(), JsonB(details.clone()).into()],
    );
}

/// Raises a NOTICE, used by the inline executor to report progress.
pub fn notice(message: &str) {
    pgrx::notice!("{message}");
}
