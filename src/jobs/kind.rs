//! What every kind of job (migrate, validate, and the kinds to come) provides to the job
//! machinery. The machinery (executors, background workers, control functions) knows kinds
//! only through this trait; the registry in `crate::kinds` lists them.

use serde_json::Value;

use super::{Job, Status, StepOutcome};
use crate::error::Report;

/// Something that can advance a job by one step: what [`JobKind::steps`] builds. A step's
/// error is a [`Report`] (any domain's error converts into one with `?`); its SQLSTATE decides
/// whether a background job is retried (see `crate::jobs::executor`).
pub trait Steps {
    fn step(&mut self, job: &Job) -> Result<StepOutcome, Report>;

    /// The job stopped being this session's to drive (it ended, failed, was paused, cancelled
    /// or put back in the queue): what the steps keep in the session (temporary tables) can
    /// go. Not called for an inline run, whose end is its transaction's.
    fn stopped(&mut self) {}
}

/// A kind of job. One implementation per domain module, listed once in `crate::kinds::KINDS`.
pub trait JobKind: Sync {
    /// The name stored in `tenant_ops.jobs.kind`.
    fn name(&self) -> &'static str;

    /// How many jobs of this kind the background workers run at once (a setting).
    fn max_concurrent(&self) -> i32;

    /// The `tenant_ops_*` role whose members may submit, run, resume and retry such a job.
    fn required_role(&self) -> &'static str;

    /// The step driver of a job of this kind.
    fn steps(&self, job: &Job) -> Result<Box<dyn Steps>, Report>;

    /// Undoes what the job wrote so far and gives it `final_status` (a cancel, a rollback).
    fn revert(&self, job: &Job, final_status: Status) -> Result<Value, Report>;
}

/// The revert of a kind whose one step writes everything in that step's transaction: a cancel
/// before it commits leaves nothing to undo, so the job only takes `final_status`.
pub fn nothing_to_undo(job: &Job, final_status: Status) -> Result<Value, Report> {
    super::finish(job.id, final_status, None, None);
    Ok(serde_json::json!({}))
}
