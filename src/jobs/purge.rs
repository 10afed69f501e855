//! `purge_history`: what `tenant_ops.history_retention` keeps. Finished jobs (with their
//! logs, errors, checkpoints and archives), audit entries and schedule runs older than it go;
//! as a function and as a job kind (what a schedule runs).

use serde_json::{json, Value};

use super::kind::{nothing_to_undo, JobKind, Steps};
use super::{Job, Status, StepOutcome};
use crate::error::{OrRaise, Report};
use crate::sys::owner;

/// Deletes what is older than the retention; returns how many jobs, audit entries and
/// schedule runs went.
pub fn purge() -> Value {
    let minutes = crate::gucs::history_retention_minutes();
    let jobs = owner::execute(
        "DELETE FROM tenant_ops.jobs j
          WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'rolled_back')
            AND j.finished_at < pg_catalog.now() - pg_catalog.make_interval(mins => $1)
            AND NOT EXISTS (SELECT FROM tenant_ops.schedule s WHERE s.last_job = j.id)",
        &[minutes.into()],
    )
    .or_raise();
    let audit = owner::execute(
        "DELETE FROM tenant_ops.audit_log WHERE at < pg_catalog.now() - pg_catalog.make_interval(mins => $1)",
        &[minutes.into()],
    )
    .or_raise();
    let runs = owner::execute(
        "DELETE FROM tenant_ops.schedule_runs
          WHERE started_at < pg_catalog.now() - pg_catalog.make_interval(mins => $1)
            AND outcome NOT IN ('waiting', 'queued', 'running', 'paused')",
        &[minutes.into()],
    )
    .or_raise();
    json!({"retention_minutes": minutes, "jobs": jobs, "audit_entries": audit, "schedule_runs": runs})
}

pub struct PurgeHistoryKind;

struct PurgeHistory;

impl Steps for PurgeHistory {
    fn step(&mut self, _job: &Job) -> Result<StepOutcome, Report> {
        Ok(StepOutcome::Done(purge()))
    }
}

impl JobKind for PurgeHistoryKind {
    fn name(&self) -> &'static str {
        "purge_history"
    }
    fn max_concurrent(&self) -> i32 {
        1
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_admin"
    }
    fn steps(&self, _job: &Job) -> Result<Box<dyn Steps>, Report> {
        Ok(Box::new(PurgeHistory))
    }
    /// Everything goes in the one step's transaction.
    fn revert(&self, job: &Job, final_status: Status) -> Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}
