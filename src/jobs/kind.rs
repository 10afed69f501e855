//! What every kind of job (migrate, validate, and the kinds to come) provides to the job
//! machinery. The machinery (executors, background workers, control functions) knows kinds
//! only through this trait; the registry in `crate::kinds` lists them.

use serde_json::Value;

use super::executor::Steps;
use super::{Job, Status};
use crate::error::OpsResult;

/// A kind of job. One implementation per domain module, listed once in `crate::kinds::KINDS`.
pub trait JobKind: Sync {
    /// The name stored in `tenant_ops.jobs.kind`.
    fn name(&self) -> &'static str;

    /// How many jobs of this kind the background workers run at once (a setting).
    fn max_concurrent(&self) -> i32;

    /// The `tenant_ops_*` role whose members may submit, run, resume and retry such a job.
    fn required_role(&self) -> &'static str;

    /// The step driver of a job of this kind.
    fn steps(&self, job: &Job) -> OpsResult<Box<dyn Steps>>;

    /// Undoes what the job wrote so far and gives it `final_status` (a cancel, a rollback).
    fn revert(&self, job: &Job, final_status: Status) -> OpsResult<Value>;
}
