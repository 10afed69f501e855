//! The rules a batch is checked by in the database, after each row passed its own: a
//! `references` value must be in the referenced table, a `unique` value must not be in a row
//! the target holds already (`unique` within the file is `rules::Distinct`'s, row by row).
//! One statement per rule and batch, its values bound as one text[] parameter. Shared by the
//! file imports (`load.rs`) and the key-value imports (`kv::import`).
//!
//! Checking `unique` against the table also makes it hold across a resumed import: the rows
//! written before the interruption are in the table.

use std::collections::HashSet;

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::cells::Cells;
use super::error::Reason;
use super::plan::{Fill, Plan};
use crate::error::OrRaise;
use crate::sys::try_subtransaction;

/// The rows of `cells` these rules refuse, in row order, each with every reason; `unique`
/// looked up in the target only with `unique_in_table` (a file import into a table that was
/// empty when it began needs no lookup: its own rows are in its file-wide set). Runs in the
/// caller's batch context.
pub fn refusals(
    plan: &Plan,
    cells: &(impl Cells + ?Sized),
    unique_in_table: bool,
) -> Vec<(usize, Vec<Reason>)> {
    let mut bad: Vec<(usize, Reason)> = vec![];
    let column = |array: usize| -> Vec<Option<&str>> {
        (0..cells.rows()).map(|r| cells.cell(r, array)).collect()
    };
    for c in &plan.columns {
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
            // A value that is not of the column's type is in no row (its row fails anyway).
            // The target grows during the import and is not analyzed meanwhile: planned on
            // its statistics, the lookup reads it whole for every batch. An index on the
            // column, when there is one, is what it is for.
            let taken = crate::sys::with_settings(&[("enable_seqscan", "off")], || {
                held(&u.sql, &values, keys.as_deref())
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
