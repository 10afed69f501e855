//! `validate` as a job kind (see `crate::jobs::kind`).

use serde_json::Value;

use crate::error::Report;
use crate::jobs::kind::{JobKind, Steps};
use crate::jobs::{Job, Status};

pub struct Validate;

impl JobKind for Validate {
    fn name(&self) -> &'static str {
        "validate"
    }

    fn max_concurrent(&self) -> i32 {
        crate::gucs::max_concurrent_validations()
    }

    fn required_role(&self) -> &'static str {
        "tenant_ops_operator"
    }

    fn steps(&self, job: &Job) -> Result<Box<dyn Steps>, Report> {
        Ok(Box::new(super::Validation::from_job(job)?))
    }

    fn revert(&self, job: &Job, final_status: Status) -> Result<Value, Report> {
        Ok(super::revert(job.id, final_status)?)
    }
}
