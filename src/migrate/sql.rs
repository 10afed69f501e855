//! Small SQL builders and catalog lookups the stages share (`relation_name` and
//! `require_privileges` are used beyond the migration too).

use pgrx::prelude::*;

use crate::error::{OpsError, OpsResult, OrRaise};
use crate::scope::graph::Table;

/// `f(i, item)` for each item with its position: the numbered aliases of generated SQL.
pub(super) fn numbered<T>(items: &[T], f: impl Fn(usize, &T) -> String) -> Vec<String> {
    items.iter().enumerate().map(|(i, x)| f(i, x)).collect()
}

/// Runs a data-modifying statement; returns the rows it wrote.
pub(super) fn rows_written(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> i64 {
    Spi::connect_mut(|c| c.update(sql, None, args).map(|t| t.len() as i64)).or_raise()
}

/// `"col"` for each column of an edge side or key (as given where the table has no such
/// column).
pub(super) fn quoted_cols(t: &Table, cols: &[String]) -> Vec<String> {
    cols.iter()
        .map(|c| t.column(c).map(|x| x.quoted.clone()).unwrap_or(c.clone()))
        .collect()
}

/// `alias."col"` for each column of an edge side.
pub(super) fn qualified_cols(t: &Table, cols: &[String], alias: &str) -> Vec<String> {
    quoted_cols(t, cols)
        .into_iter()
        .map(|c| format!("{alias}.{c}"))
        .collect()
}

/// Checks the caller's privileges on a table explicitly, so that a job that lacks one is
/// refused with the table named before it changes anything (the statements themselves run
/// as the caller and would fail anyway, but later and less clearly).
pub(crate) fn require_privileges(
    table_sql: &str,
    display: &str,
    privileges: &str,
    why: &str,
) -> OpsResult<()> {
    let ok = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.has_table_privilege(current_user, $1::pg_catalog.regclass, $2)",
        &[table_sql.into(), privileges.into()],
    )
    .or_raise()
    .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(OpsError::InsufficientPrivilege(
            format!("permission denied for table {display}: {why} needs {privileges}"),
            Some("Grant those privileges to the role that runs the job (jobs run with the caller's privileges).".into()),
        ))
    }
}

pub fn relation_name(oid: u32) -> String {
    Spi::get_one_with_args::<String>(
        "SELECT $1::pg_catalog.oid::pg_catalog.regclass::text",
        &[(oid as i64).into()],
    )
    .or_raise()
    .unwrap_or_default()
}
