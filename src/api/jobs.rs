//! `run_job` and `job_report`: driving and reading jobs.

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::{Common, OrRaise, UserError};
use crate::jobs::{self, executor, Status as S};

/// The outcome of a job, per table: rows planned and done, verification, rejected rows.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.job_report(job_id bigint)
RETURNS TABLE(step int, table_name regclass, target text, role text, stage text, rows_total bigint,
              rows_done bigint, source_rows bigint, target_rows bigint, verified boolean, rejected bigint)
STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.job_report(bigint) IS 'Outcome of a job, per table.';
"#)]
#[allow(clippy::type_complexity)]
fn job_report(
    job_id: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(table_name, pg_sys::Oid),
        name!(target, Option<String>),
        name!(role, String),
        name!(stage, String),
        name!(rows_total, Option<i64>),
        name!(rows_done, i64),
        name!(source_rows, Option<i64>),
        name!(target_rows, Option<i64>),
        name!(verified, Option<bool>),
        name!(rejected, i64),
    ),
> {
    let job_id = required(job_id, "job_id");
    jobs::load(job_id).or_raise();
    let rows: Vec<_> = jobs::tables(job_id)
        .into_iter()
        .map(|t| {
            let rejected = Spi::get_one_with_args::<i64>(
                "SELECT pg_catalog.count(*) FROM tenant_ops.job_errors WHERE job_id = $1 AND table_name = $2::pg_catalog.oid::pg_catalog.regclass",
                &[job_id.into(), (t.source as i64).into()],
            )
            .or_raise()
            .unwrap_or(0);
            (
                t.step,
                pg_sys::Oid::from(t.source),
                t.target,
                t.role,
                t.stage,
                t.rows_total,
                t.rows_done,
                t.details.get("source_rows").and_then(|v| v.as_i64()),
                t.details.get("target_rows").and_then(|v| v.as_i64()),
                t.details.get("verified").and_then(|v| v.as_bool()),
                rejected,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// `CALL tenant_ops.run_job(job_id)`: runs a job's remaining steps, committing after each, so
/// progress is visible to other sessions and an interruption resumes from the last checkpoint.
/// A raw V1 function: committing needs the call context, which `#[pg_extern]` does not expose.
#[unsafe(no_mangle)]
#[pg_guard]
pub unsafe extern "C-unwind" fn tenant_ops_run_job(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let job_id = unsafe { pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 0) };
    let job_id = required(job_id, "job_id");
    if !unsafe { executor::nonatomic(fcinfo) } {
        Common::FeatureNotSupported(
            "tenant_ops.run_job must be called with CALL outside an explicit transaction block".into(),
            Some("It commits after every step; run it as a top-level CALL (psql autocommit), not inside BEGIN ... COMMIT.".into()),
        )
        .raise();
    }
    let job = jobs::load(job_id).or_raise();
    let kind = crate::kinds::lookup(&job.kind).or_raise();
    audit::record(
        "run_job",
        &format!("job {job_id}"),
        json!({"job_id": job_id}),
        "started",
    );
    let result = unsafe { executor::run_as_procedure(job_id, kind) };
    result.or_raise();
    pg_sys::Datum::from(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_tenant_ops_run_job() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

extension_sql!(
    r#"
CREATE PROCEDURE tenant_ops.run_job(job_id bigint)
LANGUAGE c AS 'MODULE_PATHNAME', 'tenant_ops_run_job';
COMMENT ON PROCEDURE tenant_ops.run_job(bigint) IS
'Runs a job''s remaining steps with a commit after each (resumable; call it again after an interruption).';
"#,
    name = "run_job_procedure",
    requires = ["bootstrap"]
);

/// The job, checked to be in one of `allowed` statuses for `action`.
fn job_in(job_id: i64, allowed: &[S], action: &'static str, hint: &str) -> jobs::Job {
    let job = jobs::load(job_id).or_raise();
    if !allowed.contains(&job.status) {
        jobs::Error::State {
            job: job_id,
            status: job.status.to_string(),
            action,
            hint: Some(hint.into()),
        }
        .raise();
    }
    job
}

/// The job changed status between our check and our update (its worker finished it).
fn state_changed(job_id: i64, action: &'static str) -> ! {
    let status = jobs::load(job_id)
        .map(|j| j.status.to_string())
        .unwrap_or_default();
    jobs::Error::State {
        job: job_id,
        status,
        action,
        hint: Some("Its status changed meanwhile.".into()),
    }
    .raise()
}

/// Puts a job (back) in the background queue, to resume from its checkpoint, and wakes the
/// scheduler when this transaction commits.
fn queue_in_background(
    job_id: i64,
    from: &[S],
    transition: jobs::Transition,
    event: &str,
    action: &str,
) {
    crate::worker::require_workers().or_raise();
    if !jobs::set_state(job_id, transition, from) {
        state_changed(job_id, "be queued");
    }
    jobs::log(job_id, event, None, None, None, None, None);
    jobs::notify(job_id, event, None);
    crate::worker::wake_scheduler_after_commit();
    audit::record(
        action,
        &format!("job {job_id}"),
        json!({"job_id": job_id}),
        "queued",
    );
}

/// Pauses a queued or running job after its current step; `resume_job` continues it.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.pause_job(job_id bigint) RETURNS text
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.pause_job(bigint) IS 'Pauses a queued or running job after its current step.';
"#)]
fn pause_job(job_id: Option<i64>) -> String {
    let job_id = required(job_id, "job_id");
    job_in(
        job_id,
        &[S::Queued, S::Running],
        "be paused",
        "Only a queued or running job can be paused.",
    );
    if !jobs::set_state(job_id, jobs::Transition::Pause, &[S::Queued, S::Running]) {
        state_changed(job_id, "be paused");
    }
    jobs::log(job_id, "job.paused", None, None, None, None, None);
    jobs::notify(job_id, "job.paused", None);
    audit::record(
        "pause_job",
        &format!("job {job_id}"),
        json!({"job_id": job_id}),
        "paused",
    );
    "paused".into()
}

/// Puts a paused job back in the background queue; it resumes from its checkpoint.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.resume_job(job_id bigint) RETURNS text
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.resume_job(bigint) IS 'Resumes a paused job (in the background) from its checkpoint.';
"#)]
fn resume_job(job_id: Option<i64>) -> String {
    let job_id = required(job_id, "job_id");
    job_in(
        job_id,
        &[S::Paused],
        "be resumed",
        "Only a paused job can be resumed.",
    );
    queue_in_background(
        job_id,
        &[S::Paused],
        jobs::Transition::Resume,
        "job.resumed",
        "resume_job",
    );
    "queued".into()
}

/// Cancels a job. A queued or paused job is undone at once; a running one is stopped and
/// undone by its worker after the current step. Either way the target ends as it was before.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.cancel_job(job_id bigint) RETURNS text
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.cancel_job(bigint) IS 'Cancels a job; what it wrote is undone.';
"#)]
fn cancel_job(job_id: Option<i64>) -> String {
    let job_id = required(job_id, "job_id");
    let job = job_in(
        job_id,
        &[S::Queued, S::Running, S::Paused, S::Failed],
        "be cancelled",
        "The job has already ended.",
    );
    let outcome = if job.status == S::Running {
        if !jobs::set_state(job_id, jobs::Transition::RequestCancel, &[S::Running]) {
            state_changed(job_id, "be cancelled");
        }
        jobs::log(job_id, "job.cancel_requested", None, None, None, None, None);
        "cancelling"
    } else {
        let kind = crate::kinds::lookup(&job.kind).or_raise();
        kind.revert(&job, S::Cancelled).or_raise();
        "cancelled"
    };
    audit::record(
        "cancel_job",
        &format!("job {job_id}"),
        json!({"job_id": job_id}),
        outcome,
    );
    outcome.into()
}

/// Queues a failed or cancelled job again (in the background), with its attempts reset.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.retry_job(job_id bigint) RETURNS text
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.retry_job(bigint) IS 'Queues a failed job again; it resumes from its checkpoint.';
"#)]
fn retry_job(job_id: Option<i64>) -> String {
    let job_id = required(job_id, "job_id");
    job_in(
        job_id,
        &[S::Failed],
        "be retried",
        "Only a failed job can be retried.",
    );
    queue_in_background(
        job_id,
        &[S::Failed],
        jobs::Transition::Retry,
        "job.queued",
        "retry_job",
    );
    "queued".into()
}

/// Blocks until the job ends (succeeded, failed, cancelled, rolled back) or `timeout` passes,
/// and returns its status. A job queued by this very transaction is an error: no worker can
/// see it before it commits.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.wait_for_job(job_id bigint, timeout interval DEFAULT NULL) RETURNS text
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.wait_for_job(bigint, interval) IS 'Waits for a job to end and returns its status.';
"#)]
fn wait_for_job(
    job_id: Option<i64>,
    timeout: default!(Option<pgrx::datum::Interval>, "NULL"),
) -> String {
    let job_id = required(job_id, "job_id");
    jobs::load(job_id).or_raise();
    let mine = Spi::get_one_with_args::<bool>(
        "SELECT (SELECT xmin::text::bigint FROM tenant_ops.jobs WHERE id = $1)
                = pg_catalog.txid_current_if_assigned() % 4294967296",
        &[job_id.into()],
    )
    .or_raise()
    .unwrap_or(false);
    if mine {
        jobs::Error::State {
            job: job_id,
            status: "not committed yet".into(),
            action: "be waited for in the transaction that created it",
            hint: Some("COMMIT first: no worker can see the job before that.".into()),
        }
        .raise();
    }
    let limit = timeout.map(|t| {
        let micros = t.as_micros();
        std::time::Duration::from_micros(micros.max(0) as u64)
    });
    let started = std::time::Instant::now();
    loop {
        let status = Spi::get_one_with_args::<String>(
            "SELECT (SELECT status FROM tenant_ops.jobs WHERE id = $1)",
            &[job_id.into()],
        )
        .or_raise()
        .unwrap_or_default();
        if S::parse(&status).is_some_and(S::is_final) {
            return status;
        }
        if limit.is_some_and(|l| started.elapsed() >= l) {
            return status;
        }
        Spi::run("SELECT pg_catalog.pg_sleep(0.05)").or_raise();
    }
}

/// Deletes finished jobs (with their logs, errors, checkpoints and archives), audit entries
/// and schedule runs older than `tenant_ops.history_retention`. Returns how many jobs went.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.purge_history() RETURNS bigint
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.purge_history() IS 'Deletes finished jobs, audit entries and schedule runs older than tenant_ops.history_retention.';
"#)]
fn purge_history() -> i64 {
    let report = jobs::purge::purge();
    let n = report["jobs"].as_i64().unwrap_or(0);
    audit::record("purge_history", "jobs", report, &format!("{n} jobs"));
    n
}

/// What the running steps of committing executors have posted in shared memory since their
/// last commit (see `jobs::live`); the `tenant_ops.progress` view shows it.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.live_progress()
RETURNS TABLE(job_id bigint, pid int, table_name regclass, rows_done bigint, bytes_done bigint,
              started_at timestamptz, updated_at timestamptz)
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.live_progress() IS 'Progress posted by running steps since their last commit, per backend.';
"#)]
#[allow(clippy::type_complexity)]
fn live_progress() -> TableIterator<
    'static,
    (
        name!(job_id, i64),
        name!(pid, i32),
        name!(table_name, pg_sys::Oid),
        name!(rows_done, i64),
        name!(bytes_done, i64),
        name!(started_at, pgrx::datum::TimestampWithTimeZone),
        name!(updated_at, pgrx::datum::TimestampWithTimeZone),
    ),
> {
    let at = |t: i64| {
        // SAFETY: a TimestampTz (microseconds), as GetCurrentTimestamp gave it.
        unsafe {
            pgrx::datum::TimestampWithTimeZone::from_datum(pg_sys::Datum::from(t), false)
                .expect("a timestamp")
        }
    };
    TableIterator::new(jobs::live::posted().into_iter().map(move |p| {
        (
            p.job_id,
            p.pid,
            pg_sys::Oid::from(p.table),
            p.rows,
            p.bytes,
            at(p.started),
            at(p.updated),
        )
    }))
}
