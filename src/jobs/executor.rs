//! Executors drive a job's steps. They differ only in transaction handling:
//!
//! - [`run_inline`]: every step in the caller's transaction (atomic: an error undoes all);
//! - [`run_committing`]: a commit after each step, so progress is visible to other sessions
//!   and a crash resumes from the last checkpoint. Used by `CALL tenant_ops.run_job`, and by
//!   the background workers.

use pgrx::pg_sys;
use serde_json::Value;

use super::{Job, StepOutcome};
use crate::error::{OpsError, OpsResult};
use crate::sys::try_subtransaction;

/// Something that can advance a job by one step. Implemented per job kind.
pub trait Steps {
    fn step(&mut self, job: &Job) -> OpsResult<StepOutcome>;
}

/// Builds the step driver for a job of the given kind.
pub type StepsFactory = fn(&Job) -> OpsResult<Box<dyn Steps>>;

/// Runs every remaining step in the caller's transaction. An error is raised to the caller and
/// undoes everything the job did, its own rows included.
pub fn run_inline(job_id: i64, factory: StepsFactory) -> OpsResult<Value> {
    super::mark_running(job_id, "inline");
    let job = super::load(job_id)?;
    let mut steps = factory(&job)?;
    loop {
        let job = super::load(job_id)?;
        match steps.step(&job)? {
            StepOutcome::Continue => continue,
            StepOutcome::Done(result) => {
                super::finish(job_id, "succeeded", None, Some(&result));
                return Ok(result);
            }
        }
    }
}

/// Runs the remaining steps, committing after each. A failing step is rolled back (its
/// checkpoint with it), the failure is recorded on the job and committed, then raised.
///
/// Must be called from a procedure invoked by a top-level `CALL` (non-atomic context).
pub fn run_committing(job_id: i64, factory: StepsFactory) -> OpsResult<Value> {
    let job = super::load(job_id)?;
    match job.status.as_str() {
        "succeeded" | "cancelled" | "rolled_back" => {
            return Err(OpsError::JobState {
                job: job_id,
                status: job.status,
                action: "run",
                hint: None,
            })
        }
        _ => {}
    }
    super::mark_running(job_id, "procedure");
    commit();
    let mut steps = match factory(&job) {
        Ok(s) => s,
        Err(e) => {
            super::finish(job_id, "failed", Some(&e.to_string()), None);
            commit();
            return Err(e);
        }
    };
    loop {
        let job = super::load(job_id)?;
        if job.status == "paused" || job.status == "cancelled" {
            return Ok(Value::Null);
        }
        if super::cancel_requested(job_id) {
            let undone = crate::kinds::revert(&job, "cancelled");
            commit();
            return undone;
        }
        let outcome = try_subtransaction(|| steps.step(&job));
        match outcome {
            Ok(Ok(StepOutcome::Continue)) => commit(),
            Ok(Ok(StepOutcome::Done(result))) => {
                super::finish(job_id, "succeeded", None, Some(&result));
                commit();
                return Ok(result);
            }
            Ok(Err(e)) => {
                super::finish(job_id, "failed", Some(&e.to_string()), None);
                commit();
                return Err(e);
            }
            Err(caught) => {
                let msg = caught.message.clone();
                super::finish(job_id, "failed", Some(&msg), None);
                commit();
                return Err(OpsError::StepFailed {
                    job: job_id,
                    sqlstate: caught.sqlstate,
                    message: msg,
                });
            }
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
