//! Small SQL builders the stages share (catalog lookups used beyond the migration are in
//! `crate::pg`).

use pgrx::prelude::*;

use crate::error::OrRaise;
use crate::scope::graph::Table;

/// `f(i, item)` for each item with its position: the numbered aliases of generated SQL.
pub(super) fn numbered<T>(items: &[T], f: impl Fn(usize, &T) -> String) -> Vec<String> {
    items.iter().enumerate().map(|(i, x)| f(i, x)).collect()
}

/// Runs a data-modifying statement; returns the rows it wrote.
pub(super) fn rows_written(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> i64 {
    Spi::connect_mut(|c| c.update(sql, None, args).map(|t| t.len() as i64)).or_raise()
}

/// `"col"` for each column of an edge side or key (which the scope's catalog guarantees
/// exist: [`Table::known_column`]).
pub(super) fn quoted_cols(t: &Table, cols: &[String]) -> Vec<String> {
    cols.iter().map(|c| t.quoted_col(c).to_string()).collect()
}

/// `alias."col"` for each column of an edge side.
pub(super) fn qualified_cols(t: &Table, cols: &[String], alias: &str) -> Vec<String> {
    quoted_cols(t, cols)
        .into_iter()
        .map(|c| format!("{alias}.{c}"))
        .collect()
}
