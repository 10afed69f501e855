//! Background execution: one launcher for the cluster keeps a scheduler running in every
//! database where the extension is installed; a scheduler claims queued jobs and starts one
//! dynamic worker per job; a job worker drives the job's steps with a commit after each.
//!
//! - [`launcher`]: static worker registered in `_PG_init` (needs `shared_preload_libraries`);
//! - [`scheduler`]: per database; also recovers jobs whose worker died;
//! - [`job`]: per job; runs as the submitting role, records failures and retries.
//!
//! pgrx 0.18 traps handled here: signal flags are made sticky ([`Signals`]), SIGHUP reloads
//! the configuration explicitly, a failing step is caught in a subtransaction so the worker
//! records it instead of dying, and running out of worker slots leaves jobs queued.

#[cfg(not(feature = "pg13"))]
pub mod drop_database;
pub mod job;
pub mod launcher;
pub mod scheduler;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;

pub const LIBRARY: &str = "pg_tenant_ops";
pub const LAUNCHER_TYPE: &str = "pg_tenant_ops launcher";
pub const SCHEDULER_TYPE: &str = "pg_tenant_ops scheduler";
/// Job workers' backend_type is this followed by the job kind (`pg_tenant_ops job migrate`).
pub const JOB_TYPE_PREFIX: &str = "pg_tenant_ops job";

/// Registers the launcher. Called from `_PG_init` while shared_preload_libraries is processed.
pub fn register_launcher() {
    BackgroundWorkerBuilder::new(LAUNCHER_TYPE)
        .set_type(LAUNCHER_TYPE)
        .set_library(LIBRARY)
        .set_function("tenant_ops_launcher_main")
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .enable_spi_access()
        .load();
}

/// Whether the library is being loaded by shared_preload_libraries (workers can be registered).
pub fn preloading() -> bool {
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

static TERM: AtomicBool = AtomicBool::new(false);

/// Sticky view of the signals pgrx's handlers report (its flags reset when read).
pub struct Signals;

impl Signals {
    /// Waits on the latch up to `timeout`; false once a SIGTERM arrived or the postmaster died.
    pub fn wait(timeout: Duration) -> bool {
        if !BackgroundWorker::wait_latch(Some(timeout)) {
            TERM.store(true, Ordering::SeqCst);
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        !Self::terminating()
    }

    /// Whether a SIGTERM has arrived (without waiting).
    pub fn terminating() -> bool {
        if BackgroundWorker::sigterm_received() {
            TERM.store(true, Ordering::SeqCst);
        }
        TERM.load(Ordering::SeqCst)
    }
}

/// Wakes the scheduler of the current database now rather than at its next poll, after this
/// transaction commits (before, it could not see the job). Best effort: a missed wake-up only
/// costs the poll interval.
pub fn wake_scheduler_after_commit() {
    let pid = pgrx::Spi::get_one::<i32>(
        "SELECT (SELECT pid FROM tenant_ops.scheduler_state WHERE id = 1)",
    )
    .ok()
    .flatten();
    if let Some(pid) = pid {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || set_latch_of(pid));
    }
}

/// Sets the latch of the backend with this pid, if it is still there.
pub fn set_latch_of(pid: i32) {
    unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if !proc_.is_null() {
            pg_sys::SetLatch(&mut (*proc_).procLatch);
        }
    }
}

/// Background jobs need the launcher, which only runs when the library is preloaded.
pub fn require_workers() -> Result<(), crate::error::Common> {
    // As the owner: pg_stat_activity hides other roles' backend_type from ordinary roles.
    let running = crate::sys::owner::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity WHERE backend_type = $1)",
        &[LAUNCHER_TYPE.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if running {
        Ok(())
    } else {
        Err(crate::error::Common::FeatureNotSupported(
            "background jobs need the pg_tenant_ops launcher, which is not running".into(),
            Some("Add pg_tenant_ops to shared_preload_libraries and restart the server, or run the job with options {\"defer\": true} and CALL tenant_ops.run_job(id).".into()),
        ))
    }
}
