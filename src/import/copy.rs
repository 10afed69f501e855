//! The fast way to write a batch: PostgreSQL's own COPY FROM machinery, fed from memory
//! (`BeginCopyFrom` with a data callback, as logical replication's initial table copy uses
//! it): the batch's converted values as COPY text lines, written with COPY's multi-insert,
//! index and trigger handling. Used when nothing needs SQL around the values (no transform,
//! `on_conflict` error, no row-level security for the caller, INSERT granted on the table);
//! otherwise, and for a batch COPY fails on (its rows are then found row by row), the
//! INSERT ... SELECT of `plan.rs` writes it.

use std::cell::RefCell;
use std::ffi::{c_int, c_void, CString};

use pgrx::pg_sys;

use super::cells::Cells;
use super::plan::{Fill, Plan};
use crate::migrate::options::OnConflict;

thread_local! {
    /// The COPY text of the batch being written, and how much of it COPY has read.
    static FEED: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// COPY's data callback: the next bytes of [`FEED`] (0 at the end). Never raises.
unsafe extern "C-unwind" fn feed(outbuf: *mut c_void, _minread: c_int, maxread: c_int) -> c_int {
    FEED.with(|f| {
        let mut f = f.borrow_mut();
        let (buf, pos) = &mut *f;
        let n = (maxread.max(0) as usize).min(buf.len() - *pos);
        unsafe { std::ptr::copy_nonoverlapping(buf[*pos..].as_ptr(), outbuf as *mut u8, n) };
        *pos += n;
        n as c_int
    })
}

/// Whether batches of `plan` may go through COPY, for the current user now.
pub fn usable(plan: &Plan, on_conflict: OnConflict) -> bool {
    if on_conflict != OnConflict::Error {
        return false;
    }
    if plan.columns.iter().any(|c| {
        matches!(
            &c.fill,
            Fill::Field {
                transform: Some(_),
                ..
            }
        )
    }) {
        return false;
    }
    let oid = pg_sys::Oid::from(plan.target.oid as u32);
    unsafe {
        let user = pg_sys::GetUserId();
        // COPY FROM checks neither privileges nor policies itself (DoCopy does): a caller
        // without INSERT, or under row-level security, is written for by the INSERT.
        pg_sys::pg_class_aclcheck(oid, user, pg_sys::ACL_INSERT as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
            && pg_sys::check_enable_rls(oid, pg_sys::InvalidOid, true)
                != pg_sys::CheckEnableRlsResult::RLS_ENABLED as c_int
    }
}

/// The first byte COPY text escapes: a backslash, a tab or a line end. (A plain scan: fields
/// are short, shorter than memchr's set-up pays for.)
fn special(s: &[u8]) -> Option<usize> {
    s.iter()
        .position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
}

/// Appends `v` as a COPY text field.
fn push_field(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => out.extend_from_slice(b"\\N"),
        Some(s) => {
            let mut rest = s.as_bytes();
            // Runs without a byte to escape (most fields are one) copied whole.
            while let Some(k) = special(rest) {
                out.extend_from_slice(&rest[..k]);
                out.extend_from_slice(match rest[k] {
                    b'\\' => b"\\\\",
                    b'\t' => b"\\t",
                    b'\n' => b"\\n",
                    _ => b"\\r",
                });
                rest = &rest[k + 1..];
            }
            out.extend_from_slice(rest);
        }
    }
}

/// Writes the batch (`arrays` as the plan binds them, one row per index) with COPY; the rows
/// written. An ERROR (a constraint, a value its type refuses) goes up as it is.
pub fn write(plan: &Plan, arrays: &(impl Cells + ?Sized)) -> i64 {
    let rows = arrays.rows();
    let plain = arrays.plain();
    // The previous batch's buffer, its capacity kept: one allocation for the whole import.
    let mut text = FEED.with(|f| std::mem::take(&mut f.borrow_mut().0));
    text.clear();
    for i in 0..rows {
        for (k, c) in plan.columns.iter().enumerate() {
            if k > 0 {
                text.push(b'\t');
            }
            match &c.fill {
                Fill::Field { array, .. } => match arrays.cell(i, *array) {
                    Some(v) if plain => text.extend_from_slice(v.as_bytes()),
                    v => push_field(&mut text, v),
                },
                Fill::Constant { param } => {
                    push_field(&mut text, plan.constants[*param].as_deref())
                }
            }
        }
        text.push(b'\n');
    }
    FEED.with(|f| *f.borrow_mut() = (text, 0));
    let names: Vec<CString> = plan
        .columns
        .iter()
        .map(|c| CString::new(c.column.name.as_str()).expect("column names have no NUL"))
        .collect();
    let written = unsafe {
        let oid = pg_sys::Oid::from(plan.target.oid as u32);
        let rel = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        // The result relation is range table entry 1, as DoCopy (and logical replication's
        // table copy) set it up.
        pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel,
            pg_sys::RowExclusiveLock as c_int,
            std::ptr::null_mut(),
            false,
            false,
        );
        let mut list: *mut pg_sys::List = std::ptr::null_mut();
        for n in &names {
            list = pg_sys::lappend(
                list,
                pg_sys::makeString(pg_sys::pstrdup(n.as_ptr())) as *mut c_void,
            );
        }
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            rel,
            std::ptr::null_mut(),
            std::ptr::null(),
            false,
            Some(feed),
            list,
            std::ptr::null_mut(),
        );
        // Constraints, triggers and index checks run under a snapshot of their own (popped
        // by the subtransaction's abort should COPY fail).
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let n = pg_sys::CopyFrom(cstate);
        pg_sys::PopActiveSnapshot();
        pg_sys::EndCopyFrom(cstate);
        pg_sys::free_parsestate(pstate);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        n as i64
    };
    FEED.with(|f| {
        let mut f = f.borrow_mut();
        // Kept for the next batch, unless large enough to matter to an idle backend.
        if f.0.capacity() > 16 << 20 {
            f.0 = Vec::new();
        }
        f.1 = 0;
    });
    written
}

#[cfg(test)]
mod tests {
    use super::push_field;

    #[test]
    fn copy_text_fields() {
        let field = |v: Option<&str>| {
            let mut out = vec![];
            push_field(&mut out, v);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(field(None), "\\N");
        assert_eq!(field(Some("")), "");
        assert_eq!(field(Some("plain ünïcode")), "plain ünïcode");
        assert_eq!(field(Some("a\\b\tc\nd\re\\")), "a\\\\b\\tc\\nd\\re\\\\");
        assert_eq!(field(Some("\\N")), "\\\\N");
    }
}
