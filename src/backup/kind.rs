//! `backup` and `restore` as job kinds (see `crate::jobs::kind`).

use serde_json::Value;

use crate::error::Report;
use crate::jobs::kind::{nothing_to_undo, JobKind, Steps};
use crate::jobs::{Job, Status, StepOutcome};

pub struct BackupKind;

impl JobKind for BackupKind {
    fn name(&self) -> &'static str {
        "backup"
    }
    fn max_concurrent(&self) -> i32 {
        crate::gucs::max_concurrent_backups()
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_operator"
    }
    fn steps(&self, job: &Job) -> Result<Box<dyn Steps>, Report> {
        Ok(Box::new(super::create::Backup::from_job(job)?))
    }
    /// A backup writes its file and row in its one step's transaction.
    fn revert(&self, job: &Job, final_status: Status) -> Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}

pub struct RestoreKind;

impl JobKind for RestoreKind {
    fn name(&self) -> &'static str {
        "restore"
    }
    fn max_concurrent(&self) -> i32 {
        crate::gucs::max_concurrent_backups()
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_admin"
    }
    fn steps(&self, job: &Job) -> Result<Box<dyn Steps>, Report> {
        Ok(Box::new(super::restore::Restore::from_job(job)?))
    }
    /// A restore changes the tenant in its one step's transaction: cancelled before it
    /// commits, the tenant is as it was.
    fn revert(&self, job: &Job, final_status: Status) -> Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}

/// `purge_backups` as a job (what a schedule runs): drops the expired backups and removes
/// leftover files, as `tenant_ops.purge_backups()` does.
pub struct PurgeBackupsKind;

struct PurgeBackups;

impl Steps for PurgeBackups {
    fn step(&mut self, _job: &Job) -> Result<StepOutcome, Report> {
        Ok(StepOutcome::Done(super::purge()?))
    }
}

impl JobKind for PurgeBackupsKind {
    fn name(&self) -> &'static str {
        "purge_backups"
    }
    fn max_concurrent(&self) -> i32 {
        1
    }
    fn required_role(&self) -> &'static str {
        "tenant_ops_admin"
    }
    fn steps(&self, _job: &Job) -> Result<Box<dyn Steps>, Report> {
        Ok(Box::new(PurgeBackups))
    }
    /// Rows and files go in the one step's transaction (files when it commits).
    fn revert(&self, job: &Job, final_status: Status) -> Result<Value, Report> {
        nothing_to_undo(job, final_status)
    }
}
