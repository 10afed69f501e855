//! The session lock that lets only one process drive a job at a time (`CALL run_job` in a
//! session, or a background worker), held by a guard that releases it on every path: a
//! session-level advisory lock survives the commits between steps, and also an ERROR, so
//! without the guard a failure would leave it held for the rest of the session.

use pgrx::datum::IntoDatum;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::OrRaise;

/// Holds job `job_id`'s advisory lock; released when dropped (also while unwinding).
pub struct JobLock {
    key: i64,
}

impl JobLock {
    /// The lock, or `None` when another session holds it.
    pub fn try_acquire(job_id: i64) -> Option<JobLock> {
        let (key, locked) = Spi::get_two_with_args::<i64, bool>(
            "SELECT k, pg_catalog.pg_try_advisory_lock(k)
               FROM (SELECT pg_catalog.hashtextextended('tenant_ops:job', $1) AS k) x",
            &[job_id.into()],
        )
        .or_raise();
        let (key, locked) = (key.unwrap_or_default(), locked.unwrap_or(false));
        locked.then_some(JobLock { key })
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Straight to the lock manager, no SPI: this also runs while an ERROR unwinds, when
        // no query may be run.
        unsafe {
            pgrx::direct_function_call::<bool>(
                pg_sys::pg_advisory_unlock_int8,
                &[self.key.into_datum()],
            );
        }
    }
}
