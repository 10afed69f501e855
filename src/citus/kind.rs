//! `move_tenant` as a job kind (see `crate::jobs::kind`).

use serde_json::Value;

use crate::error::Report;
use crate::jobs::kind::{nothing_to_undo, JobKind, Steps};
use crate::jobs::{Job, Status};

pub struct MoveTenantKind;

impl JobKind for MoveTenantKind {
    fn name(&self) -> &'static str {
        "move_tenant"
    }
    /// One at a time: Citus serialises shard moves itself, and two moves of one colocation
    /// group would only wait on each other's locks.
    fn max_concurrent(&self) -> i32 {
        1
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_admin"
    }
    fn steps(&self, job: &Job) -> Result<Box<dyn Steps>, Report> {
        Ok(Box::new(super::move_tenant::Move::from_job(job)?))
    }
    /// Each step is one Citus operation that commits or not as a whole (an isolation, a
    /// move): a cancel between them leaves the tenant isolated, or moved, and its rows intact.
    fn revert(&self, job: &Job, final_status: Status) -> Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}
