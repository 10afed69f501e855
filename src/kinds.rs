//! Job kinds: which module drives the steps of each kind, and undoes it on cancel. The
//! executors (inline, `run_job`, background workers) are the same for every kind.

use serde_json::Value;

use crate::error::{OpsError, OpsResult};
use crate::jobs::executor::Steps;
use crate::jobs::Job;

/// The step driver of a job, by its kind.
pub fn steps_for(job: &Job) -> OpsResult<Box<dyn Steps>> {
    match job.kind.as_str() {
        "migrate" => crate::migrate::steps_for(job),
        "validate" => crate::integrity::steps_for(job),
        other => Err(unsupported(job.id, other)),
    }
}

/// Undoes what a job wrote so far and gives it `final_status` (cancel, rollback).
pub fn revert(job: &Job, final_status: &str) -> OpsResult<Value> {
    match job.kind.as_str() {
        "migrate" => crate::migrate::revert(job.id, final_status),
        "validate" => crate::integrity::revert(job.id, final_status),
        other => Err(unsupported(job.id, other)),
    }
}

fn unsupported(id: i64, kind: &str) -> OpsError {
    OpsError::WrongJob {
        message: format!("job {id} is a {kind} job, which this version cannot run"),
        hint: None,
    }
}
