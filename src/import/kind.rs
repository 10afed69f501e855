//! `import` as a job kind (see `crate::jobs::kind`).

use serde_json::Value;

use crate::error::Report;
use crate::jobs::kind::{nothing_to_undo, JobKind, Steps};
use crate::jobs::{Job, Status};

pub struct ImportKind;

impl JobKind for ImportKind {
    fn name(&self) -> &'static str {
        "import"
    }
    fn max_concurrent(&self) -> i32 {
        crate::gucs::max_concurrent_imports()
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_operator"
    }
    fn steps(&self, job: &Job) -> Result<Box<dyn Steps>, Report> {
        Ok(Box::new(super::load::Import::from_job(job)?))
    }
    /// Inline, an import is one transaction: cancelled, nothing stays. A committing run keeps
    /// the batches its committed steps wrote (its checkpoint says how far it got).
    fn revert(&self, job: &Job, final_status: Status) -> Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}
