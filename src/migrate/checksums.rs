//! Verification checksums computed by the copy itself, so that `verify` need not read every
//! row again on both sides.
//!
//! A checked copy statement takes its batch's rows once, as the target should hold them (the
//! plan's column expressions, through the key mapping), into a materialized CTE; hashes each
//! there the way `verify` hashes a source row (the value cast to the target column's type and
//! modifiers); inserts them; and hashes each row the insert stored, from `RETURNING` (the row
//! after BEFORE triggers, defaults and the assignment to the column types), the way `verify`
//! hashes a target row. Counts and sums per batch are added up in the table's checkpoint
//! details (`copy_checksums`), in the batch's transaction. The same statement counts the rows
//! it read that were written since the migration began (see `changes.rs`).
//!
//! Where the target stores every row exactly as the insert gives it (no BEFORE trigger that
//! could change it, no rule, a plain or partitioned table: [`check_for`]), the two hashes of
//! a row are equal by construction — `x` already casts each value to its column's type and
//! modifiers, which is what the assignment does — so such a copy counts the rows on both
//! sides and hashes nothing ([`Check::Counts`]: 0.35 s of 0.93 s for 750k order items).
//!
//! `verify` then compares the sums (see `verify.rs`); where they disagree it reads both sides
//! again to name the rows, and where a table's copy could not be checked (the reason is
//! recorded: `on_conflict` other than `error`, rows other migrations share, rows copied one by
//! one, columns set after the copy, AFTER triggers or rules on the target that may change rows
//! once stored) it compares as before. `verify_migration` always reads both sides.

use pgrx::prelude::*;
use serde_json::{json, Value};

use super::plan::TablePlan;
use super::row_hash::hashes_over;
use crate::error::OrRaise;
use crate::jobs::{self, JobTable};

/// The key of a table's checkpoint details that holds the sums.
const KEY: &str = "copy_checksums";

/// What a checked copy statement read and wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Sums {
    pub source_rows: i64,
    pub source_sum: i128,
    pub target_rows: i64,
    pub target_sum: i128,
    /// Rows read that were written since the migration began.
    pub new_rows: i64,
    /// Rows were only counted ([`Check::Counts`]), in this batch or one before it.
    pub counted: bool,
}

/// The plan's column expressions named `__tenant_ops_c<i>` (`expr AS name`), and the names:
/// what a copy's materialized rows are selected as, and read back by.
pub(super) fn numbered_columns(p: &TablePlan) -> (Vec<String>, Vec<String>) {
    let cols = p
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, e))| format!("{e} AS __tenant_ops_c{i}"))
        .collect();
    let list = (0..p.columns.len())
        .map(|i| format!("__tenant_ops_c{i}"))
        .collect();
    (cols, list)
}

/// How a checked copy compares the rows it read with the rows the target stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// Each row hashed as read (cast to the target's column types) and as stored
    /// (`RETURNING`): a BEFORE trigger may change a row on its way in.
    Hashes,
    /// Rows counted on both sides: the target stores each row as given ([`check_for`]), so
    /// its hashes would be equal by construction.
    Counts,
}

impl Sums {
    /// What `verify` records as having verified a table whose copy took these sums.
    pub(super) fn verified_by(&self) -> &'static str {
        if self.counted {
            "the copy's row counts (the target stores rows as given: no BEFORE trigger, no rule)"
        } else {
            "the copy's checksums"
        }
    }
}

/// [`Check::Counts`] where the target `p` writes to stores every row exactly as the insert
/// gives it: a plain or partitioned table (not a foreign one), with no enabled BEFORE
/// trigger and no rule on it or on any of its partitions. Else [`Check::Hashes`].
pub(super) fn check_for(p: &TablePlan) -> Check {
    let may_change = Spi::get_one_with_args::<bool>(
        "WITH r AS (SELECT $1::pg_catalog.int8::pg_catalog.oid AS relid
                    UNION SELECT relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.int8::pg_catalog.oid))
         SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger
                         WHERE tgrelid IN (SELECT relid FROM r) AND NOT tgisinternal
                           AND tgenabled <> 'D' AND (tgtype & 2) <> 0)
             OR EXISTS (SELECT FROM pg_catalog.pg_rewrite WHERE ev_class IN (SELECT relid FROM r))
             OR EXISTS (SELECT FROM pg_catalog.pg_class
                         WHERE oid IN (SELECT relid FROM r) AND relkind NOT IN ('r', 'p'))",
        &[(p.target.oid as i64).into()],
    )
    .or_raise()
    .unwrap_or(true);
    if may_change {
        Check::Hashes
    } else {
        Check::Counts
    }
}

/// The common table expressions of a checked copy: `x`, the rows (columns
/// `__tenant_ops_c<i>`), each with its source hash ([`Check::Hashes`]) and whether it is new,
/// read `from` (a FROM clause over the source `s`, with its WHERE); and `ins`, the insert
/// with each stored row's hash (or 1). `new_row`: the condition on `s` that a row is new
/// (`changes::new_row_condition`).
pub(super) fn ctes(
    p: &TablePlan,
    from: &str,
    new_row: &str,
    extra: Option<&Extra>,
    check: Check,
) -> String {
    let (cols, list) = numbered_columns(p);
    let (source_hash, target_hash) = match check {
        Check::Hashes => {
            let (s, t) = hashes_over(p, |i, _| format!("y.__tenant_ops_c{i}"));
            (format!(", {s} AS __tenant_ops_h"), t)
        }
        Check::Counts => (String::new(), "1".to_string()),
    };
    let (extra_cols, extra_ctes) = match extra {
        Some(e) => (
            format!(", {}", e.columns),
            format!(",\n         {}", e.ctes),
        ),
        None => (String::new(), String::new()),
    };
    // OFFSET 0: each column expression is computed once, not again inside the hash.
    format!(
        "x AS MATERIALIZED (SELECT y.*{source_hash}
                              FROM (SELECT {cols}{extra_cols}, ({new_row}) AS __tenant_ops_new FROM {from} OFFSET 0) y),
         ins AS (INSERT INTO {tgt} AS t ({tcols}) SELECT {list} FROM x RETURNING {target_hash} AS __tenant_ops_h){extra_ctes}",
        cols = cols.join(", "),
        tgt = p.target.sql,
        tcols = p.target_columns(),
        list = list.join(", "),
    )
}

/// The output columns of a checked copy over [`ctes`], in [`read`]'s order, with their FROM
/// clause: each CTE is read once for all its figures (`x`, spilled to a temporary file beyond
/// `work_mem`, was read three times more when each figure had its own subquery).
pub(super) fn output(check: Check) -> &'static str {
    match check {
        Check::Hashes => {
            "__tenant_ops_xs.n, __tenant_ops_xs.h, __tenant_ops_is.n, __tenant_ops_is.h, __tenant_ops_xs.new
             FROM (SELECT pg_catalog.count(*) AS n, coalesce(pg_catalog.sum(__tenant_ops_h), 0)::text AS h,
                          pg_catalog.count(*) FILTER (WHERE __tenant_ops_new) AS new FROM x) __tenant_ops_xs,
                  (SELECT pg_catalog.count(*) AS n, coalesce(pg_catalog.sum(__tenant_ops_h), 0)::text AS h FROM ins) __tenant_ops_is"
        }
        Check::Counts => {
            "__tenant_ops_xs.n, '0', __tenant_ops_is.n, '0', __tenant_ops_xs.new
             FROM (SELECT pg_catalog.count(*) AS n,
                          pg_catalog.count(*) FILTER (WHERE __tenant_ops_new) AS new FROM x) __tenant_ops_xs,
                  (SELECT pg_catalog.count(*) AS n FROM ins) __tenant_ops_is"
        }
    }
}

/// What a copy statement that generates new ids adds to [`ctes`] (see `stage.rs`): columns
/// of `x` (over the source rows and the joins) and further CTEs reading `x`.
pub(super) struct Extra {
    pub columns: String,
    pub ctes: String,
}

/// A whole checked copy statement of the rows `from` selects.
fn statement(
    p: &TablePlan,
    from: &str,
    new_row: &str,
    extra: Option<&Extra>,
    check: Check,
) -> String {
    format!(
        "WITH {} SELECT {}",
        ctes(p, from, new_row, extra, check),
        output(check)
    )
}

/// The checked copy of the rows `from` selects, in one statement: [`run_counted`] where the
/// counts are the check and a row written since the migration began can be noted as it is
/// read (`tenant_ops.note_changed_row()`, which a database made by an earlier build of this
/// version lacks), else the [`statement`] that takes the figures from its materialized rows.
pub(super) fn copy(
    p: &TablePlan,
    from: &str,
    new_row: &str,
    extra: Option<&Extra>,
    check: Check,
    args: &[pgrx::datum::DatumWithOid],
) -> Sums {
    match check {
        Check::Counts if new_row == "false" || super::changes::can_note_changed_rows() => {
            run_counted(p, from, new_row, extra, args)
        }
        _ => run(&statement(p, from, new_row, extra, check), args, check),
    }
}

/// A [`Check::Counts`] copy of the rows `from` selects, counted by the insert itself: a row
/// written since the migration began is noted as it is selected (`changes::note_changed_row`,
/// kept by the planner as a volatile output of the subquery although nothing reads it), and
/// with `on_conflict: error` (see [`unchecked_because`]) every row read is a row stored, so
/// the insert's count is both sides'. Without `extra` (a copy that generates nothing) the rows
/// are not materialized (0.58 s -> 0.47 s for 750k order items); a generating copy's rows are
/// (its `extra` CTEs read them too), but neither counted again nor returned.
fn run_counted(
    p: &TablePlan,
    from: &str,
    new_row: &str,
    extra: Option<&Extra>,
    args: &[pgrx::datum::DatumWithOid],
) -> Sums {
    let (cols, list) = numbered_columns(p);
    let guard = if new_row == "false" {
        String::new()
    } else {
        format!(
            ", CASE WHEN ({new_row}) THEN tenant_ops.note_changed_row() END AS __tenant_ops_new"
        )
    };
    // A plain INSERT, its count the executor's: a RETURNING counted in a CTE would keep every
    // row's 1 in a tuplestore first (0.11 µs a row, 85 ms for 750k order items).
    let cols = cols.join(", ");
    let (with, rows) = match extra {
        None => (
            String::new(),
            format!("(SELECT {cols}{guard} FROM {from} OFFSET 0) y"),
        ),
        Some(e) => (
            format!(
                "WITH x AS MATERIALIZED (SELECT {cols}, {}{guard} FROM {from}), {} ",
                e.columns, e.ctes
            ),
            "x".to_string(),
        ),
    };
    let sql = format!(
        "{with}INSERT INTO {tgt} ({tcols}) SELECT {list} FROM {rows}",
        tgt = p.target.sql,
        tcols = p.target_columns(),
        list = list.join(", "),
    );
    let (rows, new_rows) =
        super::changes::noting_changed_rows(|| super::sql::rows_written(&sql, args));
    Sums {
        source_rows: rows,
        target_rows: rows,
        new_rows,
        counted: true,
        ..Sums::default()
    }
}

/// Reads [`output`] from a result row, starting at column `first`.
pub(super) fn read(
    row: &pgrx::spi::SpiTupleTable,
    first: usize,
    check: Check,
) -> Result<Sums, pgrx::spi::Error> {
    let sum = |s: Option<String>| s.and_then(|s| s.parse::<i128>().ok()).unwrap_or(0);
    Ok(Sums {
        source_rows: row.get::<i64>(first)?.unwrap_or(0),
        source_sum: sum(row.get::<String>(first + 1)?),
        target_rows: row.get::<i64>(first + 2)?.unwrap_or(0),
        target_sum: sum(row.get::<String>(first + 3)?),
        new_rows: row.get::<i64>(first + 4)?.unwrap_or(0),
        counted: check == Check::Counts,
    })
}

/// Runs a [`statement`].
fn run(sql: &str, args: &[pgrx::datum::DatumWithOid], check: Check) -> Sums {
    Spi::connect_mut(|c| {
        let t = c.update(sql, Some(1), args)?.first();
        read(&t, 1, check)
    })
    .or_raise()
}

/// Adds one step's sums to the table's (`Ok(Some)`), or records why the step could not be
/// checked (`Err`): then the table is compared by reading it again. A step that copied
/// nothing (`Ok(None)`) changes nothing.
pub(super) fn record(job_id: i64, jt: &JobTable, step: Result<Option<Sums>, &str>) {
    let so_far = jt.details.get(KEY);
    if so_far.is_some_and(|v| v.get("unchecked").is_some()) {
        return;
    }
    let value = match step {
        Err(reason) => json!({ "unchecked": reason }),
        Ok(None) if so_far.is_some() => return,
        Ok(step) => {
            let before = so_far.map(parse).unwrap_or_default();
            let s = step.unwrap_or_default();
            json!({
                "source_rows": before.source_rows + s.source_rows,
                "source_checksum": (before.source_sum + s.source_sum).to_string(),
                "target_rows": before.target_rows + s.target_rows,
                "target_checksum": (before.target_sum + s.target_sum).to_string(),
                "counted": before.counted || s.counted,
            })
        }
    };
    jobs::set_table_details(job_id, jt.step, &json!({ KEY: value }));
}

fn parse(v: &Value) -> Sums {
    let sum = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<i128>().ok())
            .unwrap_or(0)
    };
    Sums {
        source_rows: v.get("source_rows").and_then(Value::as_i64).unwrap_or(0),
        source_sum: sum("source_checksum"),
        target_rows: v.get("target_rows").and_then(Value::as_i64).unwrap_or(0),
        target_sum: sum("target_checksum"),
        new_rows: 0,
        counted: v.get("counted").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// What the copy of a table came to: its sums when every step was checked, else why not.
pub(super) fn of_table(jt: &JobTable) -> Result<Sums, String> {
    match jt.details.get(KEY) {
        None => Err("the table was copied before checksums were taken in the copy".into()),
        Some(v) => match v.get("unchecked").and_then(Value::as_str) {
            Some(reason) => Err(reason.to_string()),
            None => Ok(parse(v)),
        },
    }
}

/// Why a table's copy cannot be checked in its own pass, if it cannot. `isolated`: a failing
/// batch is copied again row by row; `reuses`: some of its rows are in the target already.
pub(super) fn unchecked_because(
    p: &TablePlan,
    on_conflict_error: bool,
    isolated: bool,
    reuses: bool,
) -> Option<&'static str> {
    if !on_conflict_error {
        Some("on_conflict is not \"error\": target rows may differ from the source by design")
    } else if p.shares_rows() || reuses {
        Some("rows other migrations share are skipped when they are in the target already")
    } else if isolated {
        Some("a failing batch is copied row by row (transforms that may fail, continue_on_error)")
    } else if !p.deferred.is_empty() {
        Some("columns are set after the copy (self-references, reference cycles)")
    } else if target_may_change_rows(p.target.oid) {
        Some("the target has AFTER triggers or rules, which may change rows once stored")
    } else {
        None
    }
}

/// Whether statements on table `oid` may change rows after the insert returned them: enabled
/// AFTER triggers of the user's (not the foreign keys' own), or rules.
fn target_may_change_rows(oid: u32) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger
                         WHERE tgrelid = $1::pg_catalog.int8::pg_catalog.oid AND NOT tgisinternal
                           AND tgenabled <> 'D' AND (tgtype & 2) = 0)
             OR EXISTS (SELECT FROM pg_catalog.pg_rewrite WHERE ev_class = $1::pg_catalog.int8::pg_catalog.oid)",
        &[(oid as i64).into()],
    )
    .or_raise()
    .unwrap_or(true)
}
