//! Thin, safe wrappers around the PostgreSQL machinery pgrx does not wrap: subtransactions that
//! catch an ERROR, role switching, and the two ways the extension writes its own tables.
//!
//! # Who runs what (the rule every module follows)
//!
//! Every function runs with the caller's privileges on tenant data (a background worker first
//! switches to the role that submitted the job, see [`as_role`]). The extension's own tables
//! (`tenant_ops.*`) are readable by its roles but writable by nobody but the extension owner,
//! which keeps the audit log, the job catalog and the key mappings honest. Two ways in:
//!
//! 1. [`owner`]: statements run **as the extension owner**. They take only a `&'static str`
//!    (a literal: no identifier or value can be spliced in) and values as `$n` arguments, and
//!    may touch nothing but `tenant_ops.*` and the catalogs. The owner is a superuser, so a
//!    statement here must never evaluate anything a user defined: no user table (its triggers,
//!    rules, policies), no user type (its output, cast or operator functions), no function
//!    found through a user's `search_path`. Only already-computed values go in.
//! 2. [`with_job_window`]: statements that read user rows and write what they computed into
//!    `tenant_ops.*` (key mappings, archives of rows, quarantined rows) run **as the caller**.
//!    Row-level security on those tables lets a row in only while the extension has opened a
//!    window for that row's job in this backend (`tenant_ops.job_window_open(job_id)`, see
//!    `sql/finalize.sql`); outside a window an ordinary role can write nothing there, and
//!    user code that runs inside one (a trigger, a cast) runs as the caller and can at most
//!    add rows to the caller's own job.
//!
//! Anything else that touches user tables, user types or user functions simply runs as the
//! caller, outside both.

use std::ffi::CString;
use std::panic::AssertUnwindSafe;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// An ERROR caught inside [`try_subtransaction`]: its SQLSTATE, message, DETAIL and HINT.
#[derive(Debug, Clone)]
pub struct CaughtPgError {
    pub sqlstate: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl CaughtPgError {
    /// The five-character SQLSTATE.
    pub fn sqlstate_text(&self) -> String {
        sqlstate_text(self.sqlstate)
    }

    /// Raises the caught error again, as it was.
    pub fn raise(self) -> ! {
        let mut report =
            pgrx::pg_sys::panic::ErrorReport::new(self.sqlstate, self.message, "pg_tenant_ops");
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

/// The five-character SQLSTATE of an error code.
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    let v = code as i32;
    // PostgreSQL packs the five characters six bits each, low bits first (MAKE_SQLSTATE).
    (0..5)
        .map(|i| char::from((((v >> (6 * i)) & 0x3F) as u8) + b'0'))
        .collect()
}

/// Runs `f` in an internal subtransaction. An ERROR raised inside rolls the subtransaction
/// back and comes out as `Err`, leaving the outer transaction usable (the pattern PL/pgSQL's
/// `EXCEPTION` blocks use).
pub fn try_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, CaughtPgError> {
    subtransaction(f, |_| true)
}

/// As [`try_subtransaction`], the subtransaction kept only when `keep` says so of what `f`
/// returned (a job step's error that will be retried leaves nothing behind, see the
/// executor).
pub fn try_subtransaction_keeping<R>(
    f: impl FnOnce() -> R,
    keep: impl FnOnce(&R) -> bool,
) -> Result<R, CaughtPgError> {
    subtransaction(f, keep)
}

/// Runs `f` in an internal subtransaction that is always rolled back: what `f` wrote is
/// undone, what it returned is kept (dry runs).
pub fn rolled_back_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, CaughtPgError> {
    subtransaction(f, |_| false)
}

/// An internal subtransaction begun in the caller's memory context and resource owner, which
/// [`SubXact::end`] releases or rolls back and then restores them (the pattern PL/pgSQL's
/// `EXCEPTION` blocks use). Plain addresses, so that closures holding it stay UnwindSafe.
#[derive(Clone, Copy)]
struct SubXact {
    cxt: usize,
    owner: usize,
}

impl SubXact {
    fn begin() -> SubXact {
        unsafe {
            let sub = SubXact {
                cxt: pg_sys::CurrentMemoryContext as usize,
                owner: pg_sys::CurrentResourceOwner as usize,
            };
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            pg_sys::MemoryContextSwitchTo(sub.cxt as pg_sys::MemoryContext);
            sub
        }
    }

    fn end(self, keep: bool) {
        unsafe {
            if keep {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
            pg_sys::MemoryContextSwitchTo(self.cxt as pg_sys::MemoryContext);
            pg_sys::CurrentResourceOwner = self.owner as pg_sys::ResourceOwner;
        }
    }
}

/// Runs `f` in an internal subtransaction, kept when `keep` says so of what `f` returned,
/// rolled back otherwise and on an ERROR (caught, see below).
fn subtransaction<R>(
    f: impl FnOnce() -> R,
    keep: impl FnOnce(&R) -> bool,
) -> Result<R, CaughtPgError> {
    let sub = SubXact::begin();
    PgTryBuilder::new(AssertUnwindSafe(|| {
        let r = f();
        sub.end(keep(&r));
        Ok(r)
    }))
    .catch_others(move |e| {
        sub.end(false);
        // A query cancel, a statement timeout or a termination (class 57, operator
        // intervention) is not the step's or the row's fault: it goes on up, never becomes a
        // rejected row, a recorded failure or a retry.
        let code = match &e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.sql_error_code(),
            CaughtError::RustPanic { ereport, .. } => ereport.sql_error_code(),
        };
        if sqlstate_text(code).starts_with("57") {
            e.rethrow();
        }
        let r = match &e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        Err(CaughtPgError {
            sqlstate: r.sql_error_code(),
            message: r.message().to_string(),
            detail: r.detail().map(str::to_string),
            hint: r.hint().map(str::to_string),
        })
    })
    .execute()
}

/// Runs `f` in an internal subtransaction that is kept only when `f` returns `Ok`: an `Err`
/// rolls back everything `f` wrote (a failed stage leaves nothing behind, even though the
/// error is a value, not an ERROR), and an ERROR raised inside rolls it back and goes on up as
/// it was, for the caller's own handling.
pub fn subtransaction_kept_if_ok<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let sub = SubXact::begin();
    PgTryBuilder::new(AssertUnwindSafe(|| {
        let r = f();
        sub.end(r.is_ok());
        r
    }))
    .catch_others(move |e| {
        sub.end(false);
        e.rethrow()
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
/// SECURITY DEFINER function would. Private: the rest of the extension goes through [`owner`],
/// whose statements are literals over the extension's own tables (see the module comment).
fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
    as_role(owner, || with_safe_search_path(f))
}

/// Statements run as the extension owner: literal SQL over `tenant_ops.*` and the catalogs,
/// values as `$n` arguments (see the module comment for why nothing else may run here).
pub mod owner {
    use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
    use pgrx::prelude::*;
    use pgrx::spi::{SpiHeapTupleData, SpiResult};

    /// Runs a statement; returns the rows it processed.
    pub fn execute(sql: &'static str, args: &[DatumWithOid]) -> SpiResult<i64> {
        super::as_extension_owner(|| {
            Spi::connect_mut(|c| c.update(sql, None, args).map(|t| t.len() as i64))
        })
    }

    /// The first column of the first row (None without a row or for NULL).
    pub fn get_one<T: FromDatum + IntoDatum>(
        sql: &'static str,
        args: &[DatumWithOid],
    ) -> SpiResult<Option<T>> {
        super::as_extension_owner(|| {
            Spi::connect_mut(|c| {
                let t = c.update(sql, Some(1), args)?;
                if t.is_empty() {
                    Ok(None)
                } else {
                    t.first().get::<T>(1)
                }
            })
        })
    }

    /// Every row, each mapped by `f` (which sees only the finished values).
    pub fn rows<R>(
        sql: &'static str,
        args: &[DatumWithOid],
        f: impl Fn(SpiHeapTupleData) -> SpiResult<R>,
    ) -> SpiResult<Vec<R>> {
        super::as_extension_owner(|| {
            Spi::connect_mut(|c| c.update(sql, None, args)?.map(&f).collect())
        })
    }
}

thread_local! {
    /// The jobs whose window is open in this backend, innermost last.
    static OPEN_WINDOWS: std::cell::RefCell<Vec<i64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Closes a job window when dropped, also while unwinding from an ERROR.
struct WindowGuard;

impl Drop for WindowGuard {
    fn drop(&mut self) {
        OPEN_WINDOWS.with(|w| {
            w.borrow_mut().pop();
        });
    }
}

/// Runs `f` (as the caller) with job `job_id`'s window open: the statements in `f` may write
/// that job's rows into the extension's tables guarded by row-level security (key mappings,
/// archives, quarantine) and read its archive. See the module comment.
pub fn with_job_window<R>(job_id: i64, f: impl FnOnce() -> R) -> R {
    OPEN_WINDOWS.with(|w| w.borrow_mut().push(job_id));
    let _guard = WindowGuard;
    f()
}

/// Whether this backend is inside [`with_job_window`] for `job_id`: the check of the
/// row-level security policies on the extension's tables (see `sql/finalize.sql`).
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.job_window_open(job_id bigint) RETURNS boolean
STRICT STABLE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.job_window_open(bigint) IS
    'Internal: true while pg_tenant_ops itself writes rows of this job (row-level security of its tables).';
"#)]
fn job_window_open(job_id: i64) -> bool {
    OPEN_WINDOWS.with(|w| w.borrow().contains(&job_id))
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

/// Runs `f` (as the caller) with `session_replication_role = replica`, which only a superuser
/// may set: it is set as the extension owner, then `f` runs with the caller's rights. What
/// needs it: putting rows back exactly as they were, broken references included, which the
/// foreign key triggers would refuse (restore_quarantined). Only ordinary triggers are off;
/// `ENABLE ALWAYS` triggers still fire, as the caller.
pub fn with_replica_role<R>(f: impl FnOnce() -> R) -> R {
    unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        // As the owner, but not through `as_extension_owner`: its own nest level would
        // undo the setting on the way out.
        as_role(extension_owner(), || {
            set_option("session_replication_role", "replica")
        });
        let r = f();
        pg_sys::AtEOXact_GUC(true, nest);
        r
    }
}

/// Sets one option for the current GUC nest level (checked against the current user).
unsafe fn set_option(name: &str, value: &str) {
    let (name, value) = (
        CString::new(name).expect("setting name"),
        CString::new(value).expect("setting value"),
    );
    unsafe {
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
}

/// Runs `f` with the given settings, restored afterwards, the way a function's SET clause
/// scopes them (an ERROR restores them through transaction or subtransaction abort).
pub fn with_settings<R>(settings: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        for (name, value) in settings {
            set_option(name, value);
        }
        let r = f();
        pg_sys::AtEOXact_GUC(true, nest);
        r
    }
}

/// Runs `f` with one snapshot as the active one, taken now (after making this transaction's
/// own changes so far visible): statements that read through [`open_read_only_cursor`] inside
/// `f` all see that one snapshot, whatever the isolation level. Popped when `f` returns; an
/// ERROR out of `f` leaves it to the (sub)transaction's abort, which pops what it pushed.
pub fn with_one_snapshot<R>(f: impl FnOnce() -> R) -> R {
    unsafe {
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::UpdateActiveSnapshotCommandId();
    }
    let r = f();
    unsafe { pg_sys::PopActiveSnapshot() };
    r
}

/// A cursor over `sql` opened **read-only**: its portal reads with the active snapshot (see
/// [`with_one_snapshot`]) rather than a new one, which is what a pgrx cursor takes once the
/// transaction has written anything. `sql` must be a SELECT.
pub fn open_read_only_cursor<'conn>(
    client: &pgrx::spi::SpiClient<'conn>,
    sql: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> pgrx::spi::SpiCursor<'conn> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "pg_tenant_ops_read_{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let c_name = CString::new(name.as_str()).expect("a cursor name has no NUL");
    let c_sql = CString::new(sql).expect("SQL text has no NUL");
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    let mut values: Vec<pg_sys::Datum> = args
        .iter()
        .map(|a| {
            a.datum()
                .map_or(pg_sys::Datum::from(0usize), |d| d.sans_lifetime())
        })
        .collect();
    let nulls: Vec<std::os::raw::c_char> = args
        .iter()
        .map(|a| if a.datum().is_some() { b' ' } else { b'n' } as std::os::raw::c_char)
        .collect();
    // SAFETY: the arrays hold args.len() entries each and outlive the call; SPI raises an
    // ERROR (never returns NULL) when the cursor cannot be opened.
    unsafe {
        pg_sys::SPI_cursor_open_with_args(
            c_name.as_ptr(),
            c_sql.as_ptr(),
            args.len() as i32,
            types.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_ptr(),
            true,
            0,
        );
    }
    client
        .find_cursor(&name)
        .expect("the cursor just opened exists")
}

#[cfg(test)]
mod tests {
    use pgrx::PgSqlErrorCode::*;

    #[test]
    fn sqlstate_text_spells_the_five_characters() {
        assert_eq!(super::sqlstate_text(ERRCODE_UNIQUE_VIOLATION), "23505");
        assert_eq!(super::sqlstate_text(ERRCODE_QUERY_CANCELED), "57014");
        assert_eq!(super::sqlstate_text(ERRCODE_DATA_CORRUPTED), "XX001");
        assert_eq!(super::sqlstate_text(ERRCODE_LOCK_NOT_AVAILABLE), "55P03");
    }
}
