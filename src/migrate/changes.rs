//! A tenant that changes while it is copied.
//!
//! Inline in a REPEATABLE READ or SERIALIZABLE transaction, every statement of a migration
//! reads the one snapshot of the caller's transaction: what other sessions write meanwhile is
//! not seen, and the copy is exactly that snapshot's rows. Elsewhere the tables are read at
//! different moments: inline in READ COMMITTED each statement takes a snapshot of its own, and
//! the committing executors (`CALL run_job`, the background workers) run a transaction per
//! step. A row written in between (a child whose parent was copied before the parent row
//! appeared) would make a copy statement fail with an error that names the wrong cause (a NULL
//! from the key mapping, a foreign key), or leave a target that matches no moment of the
//! source.
//!
//! So `prepare` records the snapshot the migration starts from (`pg_current_snapshot()`, in
//! the statement that counts each table's rows for a committing run) in every table's
//! checkpoint details. When a copy statement fails on a constraint, or verification finds the
//! target different, the tenant's source rows are looked at again: rows whose version was
//! written by a transaction that snapshot does not see (new or updated since), and rows of the
//! snapshot that are gone (fewer rows visible from it than were counted). If any, the
//! migration fails with [`Error::TenantChanged`] (40001), which asks for an undo: nothing of
//! the job is kept.

use pgrx::prelude::*;
use serde_json::Value;

use super::error::{Error, Result, TableChange};
use super::plan::TablePlan;
use super::Migration;
use crate::error::OrRaise;
use crate::jobs;
use crate::sys::CaughtPgError;

/// The key under which each table's checkpoint details keep the starting snapshot.
const SNAPSHOT: &str = "snapshot";
/// ... and the table's row count in that snapshot, when it was counted (committing runs).
const ROWS_AT_START: &str = "rows_at_start";

/// What `prepare` records before anything is copied: the snapshot, and the row counts of the
/// tables that were counted in it, by step.
pub(super) struct Start {
    snapshot: String,
    counts: Vec<(i32, i64)>,
}

impl Start {
    /// The table's row count in the starting snapshot, if it was counted.
    pub(super) fn rows(&self, step: i32) -> Option<i64> {
        self.counts
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, n)| *n)
    }

    /// What a table's checkpoint details keep of it (no snapshot: see [`Migration::start`]).
    pub(super) fn details(&self, step: i32) -> Value {
        if self.snapshot.is_empty() {
            return serde_json::json!({ROWS_AT_START: self.rows(step)});
        }
        serde_json::json!({SNAPSHOT: self.snapshot, ROWS_AT_START: self.rows(step)})
    }
}

impl Migration {
    /// The condition [`new_row_condition`] for the copy statements of table `jt`, over the
    /// row's `xmin` written `xmin`: `false` where every statement reads one snapshot, or no
    /// starting snapshot was recorded.
    pub(super) fn new_row_in_copy(&self, jt: &jobs::JobTable, xmin: &str) -> String {
        match start_snapshot(jt) {
            Some(snapshot) if !self.one_snapshot => new_row_condition(xmin, &snapshot),
            _ => "false".into(),
        }
    }

    /// Takes the snapshot the migration starts from and, in the same statement (so in that
    /// snapshot), the row counts of the tenant's rows of `counted`.
    pub(super) fn start(&self, counted: &[&TablePlan], all: &[TablePlan]) -> Start {
        let counts: Vec<String> = counted
            .iter()
            .map(|p| {
                format!(
                    "(SELECT pg_catalog.count(*) FROM {} s WHERE {})",
                    p.source_sql, p.filter
                )
            })
            .collect();
        let sql = format!(
            "SELECT pg_catalog.pg_current_snapshot()::text, ARRAY[{}]::pg_catalog.int8[]",
            counts.join(", ")
        );
        let (snapshot, rows) =
            Spi::get_two_with_args::<String, Vec<i64>>(&sql, &self.params.args()).or_raise();
        // A Citus table's rows live on the workers, whose transaction ids this node's snapshot
        // says nothing about: no snapshot then (rows written since are not told apart, a
        // failure is reported as it is).
        let on_workers = all
            .iter()
            .any(|p| crate::citus::table_type(p.source) != crate::citus::TableType::Local);
        Start {
            snapshot: if on_workers {
                String::new()
            } else {
                snapshot.unwrap_or_default()
            },
            counts: counted
                .iter()
                .map(|p| p.step)
                .zip(rows.unwrap_or_default())
                .collect(),
        }
    }

    /// After a copy statement failed with `caught`: the clear error when the tenant changed
    /// during the migration, else the failure raised again as it was.
    pub(super) fn copy_failed(&mut self, caught: CaughtPgError) -> Result<Error> {
        match self.changed_after(&caught.sqlstate_text())? {
            Some(e) => Ok(e),
            None => caught.raise(),
        }
    }

    /// After a failure with SQLSTATE `sqlstate`: [`Error::TenantChanged`] if it is one a
    /// concurrent change causes (a NOT NULL column left NULL by the key mapping, a foreign
    /// key, a duplicate key, or `verify` for a verification that found the target different)
    /// and the tenant changed since the migration began.
    pub(super) fn changed_after(&mut self, sqlstate: &str) -> Result<Option<Error>> {
        if self.one_snapshot || !["23502", "23503", "23505", "verify"].contains(&sqlstate) {
            return Ok(None);
        }
        self.tenant_changed()
    }

    /// Once the copy is done, read committed: a child table selected by joining its parent's
    /// staged keys (`copy.rs`, `owner_join`) left out any child of a parent written after the
    /// parent's table was copied, where the tenant filter would have met it. Such a parent
    /// was written after the starting snapshot and before the child's copy, so it is seen
    /// now: each parent joined is scanned for row versions the snapshot does not see (one
    /// pass over its xmins, nothing more on a quiet database), and if there are any, the
    /// tenant's tables are counted as [`Self::tenant_changed`] does (another tenant's new rows
    /// change nothing).
    pub(super) fn late_parents(&mut self) -> Result<Option<Error>> {
        if self.joined_parents.is_empty() {
            return Ok(None);
        }
        let Some(new_row) = new_row_since_start(&jobs::tables(self.job_id)) else {
            return Ok(None);
        };
        let joined = self.joined_parents.clone();
        let parents: Vec<String> = self
            .plans()?
            .iter()
            .filter(|p| joined.contains(&p.source))
            .map(|p| p.source_sql.clone())
            .collect();
        for source in parents {
            let any = Spi::get_one::<bool>(&format!(
                "SELECT EXISTS (SELECT FROM {source} s WHERE {new_row})"
            ))
            .or_raise()
            .unwrap_or(false);
            if any {
                return self.tenant_changed();
            }
        }
        Ok(None)
    }

    /// [`Error::TenantChanged`] naming every table whose tenant rows changed since the
    /// starting snapshot, if any did.
    pub(super) fn tenant_changed(&mut self) -> Result<Option<Error>> {
        let tables = jobs::tables(self.job_id);
        let Some(new_row) = new_row_since_start(&tables) else {
            return Ok(None);
        };
        let plans = self.plans()?.clone();
        let mut changed = vec![];
        for p in &plans {
            let (now, new) = Spi::get_two_with_args::<i64, i64>(
                &format!(
                    "SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE {new_row})
                       FROM {} s WHERE ({})",
                    p.source_sql, p.filter
                ),
                &self.params.args(),
            )
            .or_raise();
            let (now, new) = (now.unwrap_or(0), new.unwrap_or(0));
            // The rows of the starting snapshot still there are those seen now less the new.
            let gone = tables
                .iter()
                .find(|t| t.step == p.step)
                .and_then(|t| t.details.get(ROWS_AT_START)?.as_i64())
                .map_or(0, |at_start| (at_start - (now - new)).max(0));
            if new > 0 || gone > 0 {
                changed.push(TableChange {
                    table: p.source_display.clone(),
                    new,
                    gone,
                });
            }
        }
        if changed.is_empty() {
            return Ok(None);
        }
        Ok(Some(Error::TenantChanged {
            scope: self.scope.clone(),
            tenant: self.tenant.clone(),
            tables: changed,
        }))
    }
}

/// The condition on a source row `s` that it was written since the migration's starting
/// snapshot (kept in the checkpoint details of its tables); None where none was recorded.
fn new_row_since_start(tables: &[jobs::JobTable]) -> Option<String> {
    let snapshot = tables.iter().find_map(start_snapshot)?;
    Some(new_row_condition("s.xmin", &snapshot))
}

/// The snapshot the migration started from, as the table's checkpoint details keep it (none
/// where no starting snapshot was recorded: see [`Migration::start`]).
pub(super) fn start_snapshot(jt: &jobs::JobTable) -> Option<String> {
    jt.details.get(SNAPSHOT)?.as_str().map(str::to_string)
}

thread_local! {
    /// Rows a counted copy statement read that were written since the migration began (see
    /// [`note_changed_row`]).
    static CHANGED_ROWS: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// Counts a row a copy statement read that was written since the migration began. A copy
/// that need not materialize its rows (`checksums.rs`, [`Check::Counts`]) evaluates it in its
/// SELECT list under [`new_row_condition`], where a copy that does counts such rows in its
/// materialized CTE. Anyone may call it: all it does is make this backend's running copy
/// report a change (40001).
///
/// [`Check::Counts`]: super::checksums::Check::Counts
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.note_changed_row() RETURNS boolean
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.note_changed_row() IS
    'Internal: counts a row a migration''s copy read that was written since the migration began.';
"#)]
fn note_changed_row() -> bool {
    CHANGED_ROWS.with(|c| c.set(c.get() + 1));
    true
}

/// Whether the catalog has `tenant_ops.note_changed_row()`. A database whose extension was
/// created by an earlier build of this version lacks it (there is no upgrade script within a
/// version); its copies then count such rows the older way, in their materialized rows.
pub(super) fn can_note_changed_rows() -> bool {
    crate::pg::function_exists("tenant_ops.note_changed_row()")
}

/// Runs `f` (a copy statement that calls `tenant_ops.note_changed_row()`) and returns what
/// it returned with the rows it noted.
pub(super) fn noting_changed_rows<R>(f: impl FnOnce() -> R) -> (R, i64) {
    CHANGED_ROWS.with(|c| c.set(0));
    let r = f();
    (r, CHANGED_ROWS.with(|c| c.replace(0)))
}

/// Whether every statement of a run reads one snapshot: an inline run in a REPEATABLE READ or
/// SERIALIZABLE transaction.
pub(super) fn reads_one_snapshot(executor: jobs::Executor) -> bool {
    executor == jobs::Executor::Inline
        && Spi::get_one::<String>("SELECT pg_catalog.current_setting('transaction_isolation')")
            .or_raise()
            .is_some_and(|level| level != "read committed" && level != "read uncommitted")
}

/// A condition on a row whose `xmin` is `xmin`: the row's version was written by a transaction
/// that `snapshot` does not see (committed after it was taken, or in progress then).
///
/// `xmin` is a 32-bit transaction id. It is compared through `age()`, which counts back from
/// this transaction's reference xid and so is free of wraparound within 2^31 transactions:
/// a row is new when its age lies between that of the next xid now (exclusive) and that of
/// the snapshot's `xmax` (inclusive), or when it is one of the snapshot's in-progress xids. The
/// bounds are computed here once, as integers, so the condition costs one `age()` per row. (A
/// row frozen more than 2^31 transactions ago keeps a raw xmin that may fall in that window by
/// chance: one in 2^32 per xid the migration lasts; frozen xids, which `age()` gives
/// `INT_MAX`, never do.)
pub(super) fn new_row_condition(xmin: &str, snapshot: &str) -> String {
    let (since_start, since_now, xip) = Spi::get_three_with_args::<i32, i32, String>(
        "SELECT pg_catalog.age(x.x0), pg_catalog.age(x.xnow), x.xip::text
           FROM (SELECT (pg_catalog.pg_snapshot_xmax(q.s)::text::int8 % 4294967296)::text::xid AS x0,
                        (pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::int8
                           % 4294967296)::text::xid AS xnow,
                        ARRAY(SELECT (i::text::int8 % 4294967296)::text::xid
                                FROM pg_catalog.pg_snapshot_xip(q.s) i) AS xip
                   FROM (SELECT $1::pg_catalog.pg_snapshot AS s) q) x",
        &[snapshot.into()],
    )
    .or_raise();
    let (hi, lo) = (since_start.unwrap_or(0), since_now.unwrap_or(0));
    // Numbers computed by the server and an array of them: nothing of a user's is spliced.
    format!(
        "(pg_catalog.age({xmin}) > {lo} AND pg_catalog.age({xmin}) <= {hi}
          OR {xmin} = ANY ({}::pg_catalog.xid[]))",
        pgrx::spi::quote_literal(xip.unwrap_or_else(|| "{}".into()))
    )
}
