//! `export` as a job kind (see `crate::jobs::kind`).

use serde_json::Value;

use crate::error::Report;
use crate::jobs::kind::{nothing_to_undo, JobKind, Steps};
use crate::jobs::{Job, Status};

pub struct ExportKind;

impl JobKind for ExportKind {
    fn name(&self) -> &'static str {
        "export"
    }
    fn max_concurrent(&self) -> i32 {
        crate::gucs::max_concurrent_exports()
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_operator"
    }
    fn steps(&self, job: &Job) -> Result<Box<dyn Steps>, Report> {
        Ok(Box::new(super::job::Export::from_job(job)?))
    }
    /// An export writes its archive in its one step's transaction (removed should it abort).
    fn revert(&self, job: &Job, final_status: Status) -> Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}
