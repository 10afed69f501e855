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

/// Whether some session (a worker, a `CALL run_job`) holds job `job_id`'s lock now: whether
/// the job is being driven, rather than waiting in the queue or left by a session that ended.
pub fn is_held(job_id: i64) -> bool {
    // pg_locks shows an int8 advisory key as its high and low 32 bits, objsubid 1.
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
             SELECT FROM pg_catalog.pg_locks l,
                    (SELECT pg_catalog.hashtextextended('tenant_ops:job', $1) AS k) x
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                AND l.classid = ((x.k >> 32) & 4294967295)::pg_catalog.oid
                AND l.objid = (x.k & 4294967295)::pg_catalog.oid)",
        &[job_id.into()],
    )
    .or_raise()
    .unwrap_or(false)
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
