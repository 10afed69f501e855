//! Progress between commits: what a running step has done so far, in shared memory.
//!
//! `tenant_ops.progress` reads `job_tables`, which a step updates in its own transaction:
//! other sessions see it at the step's commit. That is often enough (a migration commits per
//! table and batch), but a backup, an export or a restore is one step in one transaction,
//! and its progress used to appear only when it was over. So a step's long loops also post
//! their counts here — one slot per backend in a small shared-memory board under an LWLock,
//! rows and bytes per table — and the view shows them beside (or in place of) the committed
//! figures. Posting is cheap (a lock and a few stores per fetch of rows), never fails the
//! step (no slot free, or the library not preloaded: nothing is posted), and only happens
//! while a committing executor runs a step ([`posting`]): an inline job's rows are not
//! visible to other sessions anyway. A slot is cleared when the step ends, however it ends,
//! and when the backend exits.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, pg_sys, PGRXSharedMemory, PgLwLock};

/// Backends that can post at once; more are not shown live (their commits still are).
const SLOTS: usize = 64;

/// One backend's slot of the board: what its running step has posted.
#[derive(Copy, Clone)]
pub struct Posted {
    /// The posting backend (0: a free slot).
    pub pid: i32,
    pub job_id: i64,
    /// The table being worked on (its oid).
    pub table: u32,
    pub rows: i64,
    pub bytes: i64,
    /// When the slot's table was first posted, and last (`TimestampTz`, microseconds).
    pub started: i64,
    pub updated: i64,
}

const FREE: Posted = Posted {
    pid: 0,
    job_id: 0,
    table: 0,
    rows: 0,
    bytes: 0,
    started: 0,
    updated: 0,
};

#[derive(Copy, Clone)]
pub struct Board {
    slots: [Posted; SLOTS],
}

impl Default for Board {
    fn default() -> Self {
        Board {
            slots: [FREE; SLOTS],
        }
    }
}

// SAFETY: plain old data, no pointers; only ever read or written under BOARD's lock.
unsafe impl PGRXSharedMemory for Board {}

static BOARD: PgLwLock<Board> = unsafe { PgLwLock::new(c"pg_tenant_ops live progress") };

/// Whether the board exists: set in the postmaster while preloading, inherited by every
/// backend it forks; false where the library was loaded later (no shared memory then).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The job whose step this backend is running under a committing executor (0: none).
static CURRENT: AtomicI64 = AtomicI64::new(0);
/// Whether this backend's exit clears its slot already.
static EXIT_HOOK: AtomicBool = AtomicBool::new(false);

/// Reserves the board's shared memory: called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(BOARD);
    ENABLED.store(true, Ordering::Relaxed);
}

/// While alive, the backend posts for `job_id`; dropping it clears the backend's slot (a
/// step's end, its ERROR unwinding included).
pub struct Posting(());

/// Starts posting for `job_id` (see [`Posting`]).
pub fn posting(job_id: i64) -> Posting {
    CURRENT.store(job_id, Ordering::Relaxed);
    Posting(())
}

impl Drop for Posting {
    fn drop(&mut self) {
        CURRENT.store(0, Ordering::Relaxed);
        clear();
    }
}

/// Whether what this backend posts is shown (a committing step runs, the board exists):
/// callers skip counting otherwise.
pub fn posting_now() -> bool {
    CURRENT.load(Ordering::Relaxed) != 0 && enabled()
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Posts that the running step has done `rows` rows (and `bytes` bytes) of `table` so far.
/// Does nothing outside a [`posting`] step or without the board.
pub fn post(table: u32, rows: i64, bytes: i64) {
    if !posting_now() {
        return;
    }
    let job_id = CURRENT.load(Ordering::Relaxed);
    if !EXIT_HOOK.swap(true, Ordering::Relaxed) {
        unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0)) };
    }
    let (pid, now) = unsafe { (pg_sys::MyProcPid, pg_sys::GetCurrentTimestamp()) };
    let mut board = BOARD.exclusive();
    let slot = match board.slots.iter().position(|s| s.pid == pid) {
        Some(i) => i,
        None => match board.slots.iter().position(|s| s.pid == 0) {
            Some(i) => i,
            None => return,
        },
    };
    let s = &mut board.slots[slot];
    if s.pid != pid || s.job_id != job_id || s.table != table {
        *s = Posted {
            pid,
            job_id,
            table,
            started: now,
            ..FREE
        };
    }
    s.rows = rows;
    s.bytes = bytes;
    s.updated = now;
}

/// Frees this backend's slot.
fn clear() {
    if !enabled() {
        return;
    }
    let pid = unsafe { pg_sys::MyProcPid };
    let mut board = BOARD.exclusive();
    for s in board.slots.iter_mut().filter(|s| s.pid == pid) {
        *s = FREE;
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    clear();
}

/// What the running steps have posted, one entry per backend posting (`tenant_ops.live_progress`).
pub fn posted() -> Vec<Posted> {
    if !enabled() {
        return vec![];
    }
    BOARD
        .share()
        .slots
        .iter()
        .filter(|s| s.pid != 0)
        .copied()
        .collect()
}
