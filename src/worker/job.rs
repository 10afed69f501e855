//! A job worker: runs one job's remaining steps with a commit after each, as the role that
//! submitted it, until the job ends, is paused or cancelled, or the server shuts down.

use std::panic::AssertUnwindSafe;

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;

use super::Signals;
use crate::jobs::executor::{self, OnFailure, Round};
use crate::jobs::{self, lock::JobLock};
use crate::sys::as_role;

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn tenant_ops_job_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let job_id = unsafe { i64::from_polymorphic_datum(arg, false, pg_sys::INT8OID) }.unwrap_or(0);
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);

    // One worker per job, also against a concurrent CALL run_job: a session-level lock,
    // held until the worker exits.
    let claimed = BackgroundWorker::transaction(|| {
        let lock = JobLock::try_acquire(job_id)?;
        // The scheduler marks the job running in the transaction that started us; lock the
        // row first, so that we wait for that commit and then read the row as it is (a plain
        // UPDATE ... WHERE status = 'running' would see the old 'queued' row and skip it).
        let status = Spi::get_one_with_args::<String>(
            "SELECT (SELECT status FROM tenant_ops.jobs WHERE id = $1 FOR UPDATE)",
            &[job_id.into()],
        )
        .ok()
        .flatten();
        if status.as_deref() != Some("running") {
            return None;
        }
        let row = Spi::get_two_with_args::<pg_sys::Oid, String>(
            "UPDATE tenant_ops.jobs SET worker_pid = pg_catalog.pg_backend_pid()
              WHERE id = $1
             RETURNING (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = submitted_by), kind",
            &[job_id.into()],
        )
        .ok()?;
        let (Some(role), Some(kind)) = row else {
            return None;
        };
        let kind = crate::kinds::lookup(&kind).ok()?;
        jobs::mark_running(job_id, jobs::Executor::Background);
        Some((lock, role, kind))
    });
    let Some((lock, submitter, kind)) = claimed else {
        return;
    };

    // The shared step loop (jobs::executor::round), one transaction per round, everything
    // as the submitter: the job's own statements and its undo run with their rights only.
    let mut steps = None;
    loop {
        if Signals::terminating() {
            // The job stays 'running'; after the restart the scheduler puts it back in the
            // queue and the next worker resumes from the last checkpoint.
            break;
        }
        let round = BackgroundWorker::transaction(AssertUnwindSafe(|| {
            as_role(submitter, || {
                executor::round(job_id, kind, &mut steps, OnFailure::RetryTransient)
            })
        }));
        if let Round::Stopped(_) = round {
            break;
        }
    }
    // A slot is free now: let the scheduler start the next job without waiting for its poll.
    let scheduler = BackgroundWorker::transaction(move || {
        // Released inside a transaction, like every other use of the lock manager here.
        drop(lock);
        Spi::get_one::<i32>("SELECT (SELECT pid FROM tenant_ops.scheduler_state WHERE id = 1)")
            .ok()
            .flatten()
    });
    if let Some(pid) = scheduler {
        super::set_latch_of(pid);
    }
}
