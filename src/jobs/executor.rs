//! Executors drive a job's steps. They differ only in who commits and as which role:
//!
//! - [`run_inline`]: every step in the caller's transaction (atomic: an error undoes all);
//! - [`run_committing`]: a commit after each step, so progress is visible to other sessions
//!   and a crash resumes from the last checkpoint (`CALL tenant_ops.run_job`);
//! - the background workers (`crate::worker::job`): a transaction per step, as the submitter.
//!
//! The last two share one step loop, [`round`]: look at the job (paused or cancelled
//! meanwhile, a cancel asked for), run one step in a subtransaction, record what came of it.

use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;
use serde_json::Value;

use super::kind::{JobKind, Steps};
use super::{Error, Executor, Status, StepOutcome};
use crate::error::Report;
use crate::sys::{sqlstate_text, try_subtransaction, try_subtransaction_keeping};

/// Runs every remaining step in the caller's transaction. An error is raised to the caller and
/// undoes everything the job did, its own rows included.
pub fn run_inline(job_id: i64, kind: &dyn JobKind) -> Result<Value, Report> {
    super::mark_running(job_id, Executor::Inline);
    let job = super::load(job_id)?;
    let mut steps = kind.steps(&job)?;
    loop {
        let job = super::load(job_id)?;
        match steps.step(&job)? {
            StepOutcome::Continue => continue,
            StepOutcome::Done(result) => {
                super::finish(job_id, Status::Succeeded, None, Some(&result));
                return Ok(result);
            }
        }
    }
}

/// What a failed step leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The job fails (`run_job`: the caller sees the error and may retry).
    Fail,
    /// Errors that may pass (conflicts, shortages) put the job back in the queue with an
    /// exponential back-off while attempts remain (background workers).
    RetryTransient,
}

/// What one [`round`] came to.
#[derive(Debug)]
pub enum Round {
    /// A step was done; more follow (after the caller's commit).
    Continue,
    /// The job stopped being ours to drive: it ended (its result, or the error it failed or
    /// its cancel failed with), was paused or cancelled by someone else, or was put back in
    /// the queue to retry.
    Stopped(Result<Value, Report>),
}

/// One round of the step loop of the committing executors. `steps` is built on the first
/// round and kept for the next. The caller commits after each round, whatever it came to.
/// Once the job stops being this session's to drive, its steps let go of what they keep in
/// the session ([`Steps::stopped`]).
pub fn round(
    job_id: i64,
    kind: &dyn JobKind,
    steps: &mut Option<Box<dyn Steps>>,
    on_failure: OnFailure,
) -> Round {
    let r = one_round(job_id, kind, steps, on_failure);
    if let (Round::Stopped(_), Some(s)) = (&r, steps.as_mut()) {
        // What it fails with is nothing the job's outcome depends on.
        let _ = try_subtransaction(|| s.stopped());
    }
    r
}

fn one_round(
    job_id: i64,
    kind: &dyn JobKind,
    steps: &mut Option<Box<dyn Steps>>,
    on_failure: OnFailure,
) -> Round {
    let job = match super::load(job_id) {
        Ok(j) => j,
        Err(e) => return Round::Stopped(Err(e.into())),
    };
    if job.status != Status::Running {
        // Paused or cancelled by someone else: stop here, the checkpoint is committed.
        super::release_worker(job_id);
        return Round::Stopped(Ok(Value::Null));
    }
    if super::cancel_requested(job_id) {
        // In a subtransaction: an undo that fails is recorded, and the session goes on.
        let undone = match try_subtransaction(|| kind.revert(&job, Status::Cancelled)) {
            Ok(r) => r,
            Err(caught) => Err(step_failed(job_id, caught)),
        };
        if let Err(e) = &undone {
            super::finish(
                job_id,
                Status::Failed,
                Some(&format!("cancel failed: {e}")),
                None,
            );
        }
        return Round::Stopped(undone);
    }
    if steps.is_none() {
        match kind.steps(&job) {
            Ok(s) => *steps = Some(s),
            Err(e) => {
                super::finish(job_id, Status::Failed, Some(&e.to_string()), None);
                super::record_sqlstate(job_id, &sqlstate_text(e.sqlstate));
                return Round::Stopped(Err(e));
            }
        }
    }
    let driver = steps.as_mut().expect("just built");
    // A step that fails by an ERROR leaves nothing of its own behind; one that returns its
    // error keeps what it wrote (the refused rows it recorded, say) only when the job fails
    // for good: an attempt that will be retried starts from the last step that succeeded.
    let outcome = match try_subtransaction_keeping(
        || {
            let _posting = super::live::posting(job_id);
            driver.step(&job)
        },
        |r| match r {
            Ok(_) => true,
            Err(e) => !will_retry(job_id, e, on_failure),
        },
    ) {
        Ok(r) => r,
        Err(caught) => Err(step_failed(job_id, caught)),
    };
    match outcome {
        Ok(StepOutcome::Continue) => Round::Continue,
        Ok(StepOutcome::Done(result)) => {
            super::finish(job_id, Status::Succeeded, None, Some(&result));
            Round::Stopped(Ok(result))
        }
        Err(e) => {
            failed(&job, kind, &e, on_failure);
            Round::Stopped(Err(e))
        }
    }
}

fn step_failed(job_id: i64, caught: crate::sys::CaughtPgError) -> Report {
    Error::StepFailed {
        job: job_id,
        sqlstate: caught.sqlstate,
        message: caught.message,
    }
    .into()
}

/// Errors worth trying again: conflicts and resource shortages that pass.
fn transient(code: PgSqlErrorCode) -> bool {
    let state = sqlstate_text(code);
    ["40", "53", "55", "57", "58", "08"]
        .iter()
        .any(|class| state.starts_with(class))
}

/// Whether a job whose step failed with `e` is tried again: the policy allows it, the error
/// may pass (or the job is a schedule's run, retried whatever it failed with), attempts
/// remain, and it does not ask for an undo.
fn will_retry(job_id: i64, e: &Report, on_failure: OnFailure) -> bool {
    !e.undo
        && on_failure == OnFailure::RetryTransient
        && super::attempts(job_id) < crate::gucs::max_attempts()
        && (transient(e.sqlstate) || super::scheduled(job_id))
}

/// A step failed (its own work rolled back with its subtransaction, unless it returned an
/// error that fails the job for good: what it recorded, refused rows say, stays). A failure that asks for
/// an undo ([`Report::undo`]: what the job wrote so far is worthless) reverts the job first
/// (its kind's `revert`, in a subtransaction) and fails it, never retried as it stands;
/// otherwise the job is retried after an exponential back-off when the policy allows, the
/// error may pass (or the job is a schedule's run, which is retried whatever it failed with)
/// and attempts remain, or else failed. The error's SQLSTATE is kept with it either way.
fn failed(job: &super::Job, kind: &dyn JobKind, e: &Report, on_failure: OnFailure) {
    let job_id = job.id;
    if e.undo {
        let undone = match try_subtransaction(|| kind.revert(job, Status::Failed)) {
            Ok(r) => r,
            Err(caught) => Err(step_failed(job_id, caught)),
        };
        match undone {
            // The revert marked the job failed; the error it failed with is recorded now.
            Ok(_) => super::set_error(job_id, &e.to_string()),
            Err(u) => super::finish(
                job_id,
                Status::Failed,
                Some(&format!("{e} (undoing what it wrote failed: {u})")),
                None,
            ),
        }
        super::record_sqlstate(job_id, &sqlstate_text(e.sqlstate));
        return;
    }
    if will_retry(job_id, e, on_failure) {
        let attempts = super::attempts(job_id);
        let delay = crate::gucs::retry_delay_seconds() as f64 * 2f64.powi(attempts.max(1) - 1);
        super::requeue(job_id, &e.to_string(), delay);
    } else {
        super::finish(job_id, Status::Failed, Some(&e.to_string()), None);
    }
    super::record_sqlstate(job_id, &sqlstate_text(e.sqlstate));
}

/// Runs the remaining steps, committing after each. A failing step is rolled back (its
/// checkpoint with it), the failure is recorded on the job and committed, then raised.
///
/// Must be called from a procedure invoked by a top-level `CALL` (non-atomic context), with
/// the job's [`super::lock::JobLock`] held.
pub fn run_committing(job_id: i64, kind: &dyn JobKind) -> Result<Value, Report> {
    let job = super::load(job_id)?;
    match job.status {
        Status::Succeeded | Status::Cancelled | Status::RolledBack => {
            return Err(Error::State {
                job: job_id,
                status: job.status.to_string(),
                action: "run",
                hint: None,
            }
            .into())
        }
        _ => {}
    }
    super::mark_running(job_id, Executor::Procedure);
    commit();
    let mut steps = None;
    loop {
        let r = round(job_id, kind, &mut steps, OnFailure::Fail);
        commit();
        if let Round::Stopped(outcome) = r {
            return outcome;
        }
    }
}

/// Commits the current transaction and starts a new one (procedure context only).
fn commit() {
    unsafe {
        pg_sys::SPI_commit();
    }
}

/// Whether the current call may commit (a procedure called by a top-level CALL).
///
/// # Safety
/// `fcinfo` must be the call info PostgreSQL passed to the running function.
pub unsafe fn nonatomic(fcinfo: pg_sys::FunctionCallInfo) -> bool {
    unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_CallContext {
            return false;
        }
        !(*(context as *mut pg_sys::CallContext)).atomic
    }
}

/// `CALL tenant_ops.run_job(job_id)`: the job's remaining steps with a commit after each,
/// driven by this session alone (its [`super::lock::JobLock`], released on every path), in a
/// non-atomic SPI connection so that the steps may commit.
///
/// # Safety
/// Must be called from a procedure invoked by a top-level `CALL` (check with [`nonatomic`]).
pub unsafe fn run_as_procedure(job_id: i64, kind: &dyn JobKind) -> Result<Value, Report> {
    crate::pg::require_role(kind.required_role(), "run this job")?;
    let Some(_lock) = super::lock::JobLock::try_acquire(job_id) else {
        return Err(Error::State {
            job: job_id,
            status: "being run by another session".into(),
            action: "run here",
            hint: None,
        }
        .into());
    };
    unsafe { pg_sys::SPI_connect_ext(pg_sys::SPI_OPT_NONATOMIC as i32) };
    let result = run_committing(job_id, kind);
    unsafe { pg_sys::SPI_finish() };
    result
}
