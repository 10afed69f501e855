//! The rules a batch is checked by in the database, after each row passed its own: a
//! `references` value must be in the referenced table, a `unique` value must not be in a row
//! the target holds already (`unique` within the file is `rules::Distinct`'s, row by row).
//! One statement per rule and batch, its values bound as one text[] parameter. Shared by the
//! file imports (`load.rs`) and the key-value imports (`kv::import`).
//!
//! Checking `unique` against the table also makes it hold across a resumed import: the rows
//! written before the interruption are in the table.
//!
//! Where no index leads with a `unique` column, its values are copied once per session into
//! a temporary table of the job's, indexed (`pg_temp.__tenant_ops_held_<job>_<plan>_<column>`,
//! see `plan::UniqueInTable`): without it every batch would read the whole target. The copy is
//! made at the first batch that looks a value up (before that batch writes), so a resumed
//! import's copy holds the rows written before the interruption; [`release`] drops it when
//! the import is done or its session stops driving it (an inline import that fails takes it
//! with its transaction).

use std::collections::HashSet;

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::cells::Cells;
use super::error::Reason;
use super::plan::{Fill, Plan, UniqueInTable};
use crate::error::OrRaise;
use crate::sys::try_subtransaction;

/// The rows of `cells` these rules refuse, in row order, each with every reason; `unique`
/// looked up in the target only with `unique_in_table` (a file import into a table that was
/// empty when it began needs no lookup: its own rows are in its file-wide set). Runs in the
/// caller's batch context.
pub fn refusals(
    job_id: i64,
    plan_no: usize,
    plan: &Plan,
    cells: &(impl Cells + ?Sized),
    unique_in_table: bool,
) -> Vec<(usize, Vec<Reason>)> {
    let mut bad: Vec<(usize, Reason)> = vec![];
    let column = |array: usize| -> Vec<Option<&str>> {
        (0..cells.rows()).map(|r| cells.cell(r, array)).collect()
    };
    for (n, c) in plan.columns.iter().enumerate() {
        let Fill::Field { array, .. } = c.fill else {
            continue;
        };
        let values = column(array);
        if let Some(sql) = &c.references {
            // A value that is not of the referenced column's type references nothing.
            let missing = held(sql, &values, None)
                .unwrap_or_else(|| values.iter().flatten().map(|v| v.to_string()).collect());
            let reference = c
                .rules
                .as_ref()
                .and_then(|r| r.references.clone())
                .unwrap_or_default();
            flag(&values, &missing, &mut bad, |v| {
                Reason::new(
                    PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
                    format!(
                        "column \"{}\": \"{}\" is not in {reference}",
                        c.column.name,
                        super::rules::shorten(v)
                    ),
                )
            });
        }
        if let Some(u) = c.unique_in_table.as_ref().filter(|_| unique_in_table) {
            let keys = u.key_array.map(column);
            let copy = u
                .copied
                .then(|| copied(copy_name(job_id, plan_no, n), u))
                .flatten();
            // A value that is not of the column's type is in no row (its row fails anyway).
            // The target grows during the import and is not analyzed meanwhile: planned on
            // its statistics, the lookup reads it whole for every batch. An index on the
            // column (or on the copy of its values), is what it is for.
            let taken = crate::sys::with_settings(&[("enable_seqscan", "off")], || {
                held(&u.holds(copy.as_deref()), &values, keys.as_deref())
            })
            .unwrap_or_default();
            flag(&values, &taken, &mut bad, |v| {
                Reason::new(
                    PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
                    format!(
                        "column \"{}\": \"{}\" is in a row {} holds already (rule unique)",
                        c.column.name,
                        super::rules::shorten(v),
                        plan.target.display
                    ),
                )
            });
        }
    }
    bad.sort_by_key(|(i, _)| *i);
    let mut rows: Vec<(usize, Vec<Reason>)> = vec![];
    for (i, reason) in bad {
        match rows.last_mut() {
            Some((last, reasons)) if *last == i => reasons.push(reason),
            _ => rows.push((i, vec![reason])),
        }
    }
    rows
}

/// The name of job `job_id`'s copy of the values of column `n` of its plan `plan_no` (a
/// key-value import has one plan per mapping).
fn copy_name(job_id: i64, plan_no: usize, n: usize) -> String {
    format!("pg_temp.__tenant_ops_held_{job_id}_{plan_no}_{n}")
}

/// The copy `name` of a column's values (see the module documentation), made if this session
/// has none yet; None where it cannot be made (no TEMPORARY privilege on the database, a type
/// without a btree ordering): the lookups then read the target.
fn copied(name: String, u: &UniqueInTable) -> Option<String> {
    if crate::pg::regclass(&name).is_some() {
        return Some(name);
    }
    try_subtransaction(|| {
        for sql in u.copy(&name) {
            Spi::run(&sql).or_raise();
        }
    })
    .ok()
    .map(|_| name)
}

/// Drops the copies job `job_id`'s `unique` lookups made in this session (none: nothing):
/// when the import is done, and whenever a session that drives it step by step (`CALL
/// tenant_ops.run_job`, a worker) stops driving it (`Steps::stopped`: failed, paused, put
/// back in the queue), so that such a session does not keep them.
pub fn release(job_id: i64) {
    let copies: Vec<String> = Spi::connect(|c| {
        c.select(
            "SELECT pg_catalog.format('pg_temp.%I', c.relname) FROM pg_catalog.pg_class c
              WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind = 'r'
                AND c.relname LIKE '\\_\\_tenant\\_ops\\_held\\_' || $1 || '\\_%'",
            None,
            &[job_id.to_string().into()],
        )?
        .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
        .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .or_raise();
    for name in copies {
        Spi::run(&format!("DROP TABLE IF EXISTS {name}")).or_raise();
    }
}

/// What `sql` keeps of `values` (and `keys`, as `$2`); None when it fails (a value of
/// another type), in a subtransaction so that the batch goes on.
fn held(sql: &str, values: &[Option<&str>], keys: Option<&[Option<&str>]>) -> Option<Vec<String>> {
    try_subtransaction(|| {
        let mut args: Vec<pgrx::datum::DatumWithOid> = vec![values.to_vec().into()];
        if let Some(k) = keys {
            args.push(k.to_vec().into());
        }
        Spi::get_one_with_args::<Vec<String>>(sql, &args)
            .or_raise()
            .unwrap_or_default()
    })
    .ok()
}

/// Adds a reason for every row whose value is among `found`.
fn flag(
    values: &[Option<&str>],
    found: &[String],
    bad: &mut Vec<(usize, Reason)>,
    reason: impl Fn(&str) -> Reason,
) {
    if found.is_empty() {
        return;
    }
    let found: HashSet<&str> = found.iter().map(String::as_str).collect();
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v.filter(|v| found.contains(v)) {
            bad.push((i, reason(v)));
        }
    }
}
