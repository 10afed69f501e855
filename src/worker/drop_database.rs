//! `DROP DATABASE` of a database where our scheduler (or a job worker) is connected would fail
//! with "being accessed by other users": a ProcessUtility hook stops them first, the way
//! TimescaleDB does for its scheduler. PostgreSQL itself then waits (up to five seconds) for
//! them to exit; the launcher does not start a scheduler in a database that no longer exists.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{JOB_TYPE_PREFIX, SCHEDULER_TYPE};

static mut PREVIOUS: pg_sys::ProcessUtility_hook_type = None;

/// Installs the hook (from `_PG_init`, in every process that loads the library).
pub fn install() {
    unsafe {
        PREVIOUS = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

#[allow(clippy::too_many_arguments)]
#[pg_guard]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    unsafe {
        let stmt = (*pstmt).utilityStmt;
        if !stmt.is_null() && (*stmt).type_ == pg_sys::NodeTag::T_DropdbStmt {
            let name = (*(stmt as *mut pg_sys::DropdbStmt)).dbname;
            if !name.is_null() {
                stop_workers_in(&CStr::from_ptr(name).to_string_lossy());
            }
        }
        match PREVIOUS {
            Some(previous) => previous(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
}

/// Sends SIGTERM to our scheduler and job workers connected to `database`. Signalled directly:
/// they are this extension's own processes, whoever drops the database.
fn stop_workers_in(database: &str) {
    let pids: Vec<i32> = Spi::connect(|c| {
        c.select(
            "SELECT pid FROM pg_catalog.pg_stat_activity
              WHERE datname = $1 AND (backend_type = $2 OR backend_type LIKE $3 || '%')",
            None,
            &[
                database.into(),
                SCHEDULER_TYPE.into(),
                JOB_TYPE_PREFIX.into(),
            ],
        )
        .map(|rows| {
            rows.filter_map(|r| r.get::<i32>(1).ok().flatten())
                .collect()
        })
        .unwrap_or_default()
    });
    for pid in pids {
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}
