//! Thin, safe wrappers around the PostgreSQL machinery pgrx does not wrap: subtransactions that
//! catch an ERROR, and running a closure as the extension's owner.

use std::ffi::CString;
use std::panic::AssertUnwindSafe;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// An ERROR caught inside [`try_subtransaction`]: its SQLSTATE and message.
#[derive(Debug, Clone)]
pub struct CaughtPgError {
    pub sqlstate: PgSqlErrorCode,
    pub message: String,
}

impl CaughtPgError {
    /// The five-character SQLSTATE.
    pub fn sqlstate_text(&self) -> &'static str {
        sqlstate_text(self.sqlstate)
    }
}

/// The five-character SQLSTATE of an error code.
pub fn sqlstate_text(code: PgSqlErrorCode) -> &'static str {
    let v = code as i32;
    // PostgreSQL packs the five characters six bits each, low bits first (MAKE_SQLSTATE).
    let chars: Vec<u8> = (0..5)
        .map(|i| (((v >> (6 * i)) & 0x3F) as u8) + b'0')
        .collect();
    Box::leak(
        String::from_utf8_lossy(&chars)
            .into_owned()
            .into_boxed_str(),
    )
}

/// Runs `f` in an internal subtransaction. An ERROR raised inside rolls the subtransaction
/// back and comes out as `Err`, leaving the outer transaction usable (the pattern PL/pgSQL's
/// `EXCEPTION` blocks use).
pub fn try_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, CaughtPgError> {
    subtransaction(f, false)
}

/// Runs `f` in an internal subtransaction that is always rolled back: what `f` wrote is
/// undone, what it returned is kept (dry runs).
pub fn rolled_back_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, CaughtPgError> {
    subtransaction(f, true)
}

fn subtransaction<R>(f: impl FnOnce() -> R, always_roll_back: bool) -> Result<R, CaughtPgError> {
    // Saved as plain addresses so that the catch closure stays UnwindSafe.
    let (old_cxt, old_owner) = unsafe {
        (
            pg_sys::CurrentMemoryContext as usize,
            pg_sys::CurrentResourceOwner as usize,
        )
    };
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(old_cxt as pg_sys::MemoryContext);
        pg_sys::CurrentResourceOwner = old_owner as pg_sys::ResourceOwner;
    };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(old_cxt as pg_sys::MemoryContext);
    }
    PgTryBuilder::new(AssertUnwindSafe(|| {
        let r = f();
        unsafe {
            if always_roll_back {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            } else {
                pg_sys::ReleaseCurrentSubTransaction();
            }
        }
        restore();
        Ok(r)
    }))
    .catch_others(move |e| {
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        Err(match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => CaughtPgError {
                sqlstate: r.sql_error_code(),
                message: r.message().to_string(),
            },
            CaughtError::RustPanic { ereport, .. } => CaughtPgError {
                sqlstate: ereport.sql_error_code(),
                message: ereport.message().to_string(),
            },
        })
    })
    .execute()
}

/// Restores the user id and security context when dropped, also while unwinding from an ERROR.
struct UserGuard {
    uid: pg_sys::Oid,
    ctx: i32,
}

impl Drop for UserGuard {
    fn drop(&mut self) {
        unsafe { pg_sys::SetUserIdAndSecContext(self.uid, self.ctx) };
    }
}

/// The role that owns the extension (and so its tables).
pub fn extension_owner() -> pg_sys::Oid {
    Spi::get_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_tenant_ops'",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_tenant_ops is loaded but the extension is not installed in this database",
            "pg_tenant_ops",
        )
        .set_hint("Run CREATE EXTENSION pg_tenant_ops first.")
        .report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    })
}

/// Runs `f` as the extension owner with a fixed `search_path` (pg_catalog, pg_temp), the way a
/// SECURITY DEFINER function would. Used only for writes to the extension's own tables, which
/// ordinary roles may read but never write directly; that is what keeps the audit log and the
/// catalog honest while every function still runs with the caller's privileges on user data.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
    as_role(owner, || with_safe_search_path(f))
}

/// Runs `f` as `role` (the way SET ROLE would, restored afterwards, also on error). Background
/// workers connect as a superuser and run each job step as the role that submitted the job.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut uid = pg_sys::Oid::INVALID;
    let mut ctx = 0i32;
    unsafe { pg_sys::GetUserIdAndSecContext(&mut uid, &mut ctx) };
    let _guard = UserGuard { uid, ctx };
    unsafe {
        pg_sys::SetUserIdAndSecContext(role, ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    f()
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`, restored afterwards (an ERROR restores it
/// through transaction abort, as for a function's SET clause).
pub fn with_safe_search_path<R>(f: impl FnOnce() -> R) -> R {
    with_settings(&[("search_path", "pg_catalog, pg_temp")], f)
}

/// Runs `f` with the given settings, restored afterwards, the way a function's SET clause
/// scopes them (an ERROR restores them through transaction or subtransaction abort).
pub fn with_settings<R>(settings: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    let pairs: Vec<(CString, CString)> = settings
        .iter()
        .map(|(n, v)| {
            (
                CString::new(*n).expect("setting name"),
                CString::new(*v).expect("setting value"),
            )
        })
        .collect();
    unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        for (name, value) in &pairs {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        let r = f();
        pg_sys::AtEOXact_GUC(true, nest);
        r
    }
}
