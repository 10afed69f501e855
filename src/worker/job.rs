//! A job worker: runs one job's remaining steps with a commit after each, as the role that
//! submitted it, until the job ends, is paused or cancelled, or the server shuts down.

use std::panic::AssertUnwindSafe;

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;

use super::Signals;
use crate::gucs;
use crate::jobs::{self, executor::Steps, StepOutcome};
use crate::sys::{as_role, try_subtransaction};

enum Flow {
    Continue,
    Stop,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn tenant_ops_job_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let job_id = unsafe { i64::from_polymorphic_datum(arg, false, pg_sys::INT8OID) }.unwrap_or(0);
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);

    // One worker per job, also against a concurrent CALL run_job: a session-level lock.
    let submitter = BackgroundWorker::transaction(|| {
        let locked = Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('tenant_ops:job', $1))",
            &[job_id.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false);
        if !locked {
            return None;
        }
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
        let role = Spi::get_one_with_args::<pg_sys::Oid>(
            "UPDATE tenant_ops.jobs SET worker_pid = pg_catalog.pg_backend_pid()
              WHERE id = $1
             RETURNING (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = submitted_by)",
            &[job_id.into()],
        )
        .ok()
        .flatten();
        if role.is_some() {
            jobs::mark_running(job_id, "background");
        }
        role
    });
    let Some(submitter) = submitter else { return };

    let mut steps: Option<Box<dyn Steps>> = None;
    loop {
        if Signals::terminating() {
            // The job stays 'running'; after the restart the scheduler puts it back in the
            // queue and the next worker resumes from the last checkpoint.
            break;
        }
        let flow = BackgroundWorker::transaction(AssertUnwindSafe(|| {
            run_one_step(job_id, submitter, &mut steps)
        }));
        if let Flow::Stop = flow {
            break;
        }
    }
    // A slot is free now: let the scheduler start the next job without waiting for its poll.
    let scheduler = BackgroundWorker::transaction(|| {
        Spi::get_one::<i32>("SELECT (SELECT pid FROM tenant_ops.scheduler_state WHERE id = 1)")
            .ok()
            .flatten()
    });
    if let Some(pid) = scheduler {
        super::set_latch_of(pid);
    }
}

fn run_one_step(job_id: i64, submitter: pg_sys::Oid, steps: &mut Option<Box<dyn Steps>>) -> Flow {
    let Ok(job) = jobs::load(job_id) else {
        return Flow::Stop;
    };
    if job.status != "running" {
        // Paused or cancelled by someone else: stop here, the checkpoint is committed.
        jobs::release_worker(job_id);
        return Flow::Stop;
    }
    if jobs::cancel_requested(job_id) {
        let outcome = as_role(submitter, || {
            try_subtransaction(|| crate::kinds::revert(&job, "cancelled"))
        });
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                jobs::finish(job_id, "failed", Some(&format!("cancel failed: {e}")), None)
            }
            Err(e) => jobs::finish(
                job_id,
                "failed",
                Some(&format!("cancel failed: {}", e.message)),
                None,
            ),
        }
        return Flow::Stop;
    }
    if steps.is_none() {
        match as_role(submitter, || crate::kinds::steps_for(&job)) {
            Ok(s) => *steps = Some(s),
            Err(e) => {
                jobs::finish(job_id, "failed", Some(&e.to_string()), None);
                return Flow::Stop;
            }
        }
    }
    let driver = steps.as_mut().expect("just set");
    let outcome = as_role(submitter, || try_subtransaction(|| driver.step(&job)));
    match outcome {
        Ok(Ok(StepOutcome::Continue)) => Flow::Continue,
        Ok(Ok(StepOutcome::Done(result))) => {
            jobs::finish(job_id, "succeeded", None, Some(&result));
            Flow::Stop
        }
        Ok(Err(e)) => {
            failed(job_id, &e.to_string(), transient(e.sqlstate()));
            Flow::Stop
        }
        Err(caught) => {
            failed(job_id, &caught.message, transient(caught.sqlstate));
            Flow::Stop
        }
    }
}

/// Errors worth trying again: conflicts and resource shortages that pass.
fn transient(code: PgSqlErrorCode) -> bool {
    let state = crate::sys::sqlstate_text(code);
    ["40", "53", "55", "57", "58", "08"]
        .iter()
        .any(|class| state.starts_with(class))
}

/// A step failed (its own work rolled back with its subtransaction): retry after an
/// exponential back-off when the error may pass and attempts remain, else fail the job.
fn failed(job_id: i64, message: &str, transient: bool) {
    let attempts = jobs::attempts(job_id);
    if transient && attempts < gucs::max_attempts() {
        let delay = gucs::retry_delay_seconds() as f64 * 2f64.powi(attempts.max(1) - 1);
        jobs::requeue(job_id, message, delay);
    } else {
        jobs::finish(job_id, "failed", Some(message), None);
    }
}
