//! What the modes share: the statements that write staged rows, shared rows added only where
//! missing, the deferred columns set last, and the comparison of rows written with the rows
//! staged.

use pgrx::prelude::*;

use super::target::Matched;
use super::Ctx;
use crate::backup::error::{Error, Result};
use crate::backup::{export, RowsDigest, TableSpec};
use crate::error::OrRaise;
use crate::pg::quote_ident;
use crate::sys::try_subtransaction;

/// Runs a statement writing into `t`; returns the rows it wrote. A failure (a constraint, a
/// trigger) is reported with the table named and PostgreSQL's SQLSTATE, and changes nothing
/// (the whole restore is one transaction).
pub(super) fn write(
    ctx: &Ctx,
    t: &Matched,
    sql: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> Result<i64> {
    try_subtransaction(|| Spi::connect_mut(|c| c.update(sql, None, args).map(|r| r.len() as i64)))
        .map_err(|e| Error::RowsRefused {
            backup: ctx.b.id,
            table: t.name(),
            sqlstate: e.sqlstate,
            message: e.message,
        })
        .map(|r| r.or_raise())
}

/// `INSERT INTO t (columns) [OVERRIDING SYSTEM VALUE] SELECT select FROM from` (then `tail`):
/// identity `ALWAYS` values are written as the backup (or the key mapping) has them.
pub(super) fn insert_sql(t: &Matched, select: &[String], from: &str, tail: &str) -> String {
    let cols: Vec<String> = t.spec.columns.iter().map(|c| c.quoted.clone()).collect();
    let overriding = if t.spec.columns.iter().any(|c| c.identity_always) {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    format!(
        "INSERT INTO {} ({}){overriding} SELECT {} FROM {from}{tail}",
        t.spec.sql,
        cols.join(", "),
        select.join(", ")
    )
}

/// The staged values as they are inserted: deferred columns NULL (set by [`set_deferred`]).
pub(super) fn staged_values(t: &Matched) -> Vec<String> {
    t.spec
        .columns
        .iter()
        .map(|c| {
            if t.deferred.contains(&c.name) {
                "NULL".to_string()
            } else {
                format!("s.{}", c.quoted)
            }
        })
        .collect()
}

/// A shared table's staged rows whose key is missing from it, inserted; the others are
/// referenced as they are (a keyless shared table is left alone). Returns the rows added.
pub(super) fn insert_shared(ctx: &Ctx, t: &Matched) -> Result<i64> {
    let Some(on) = t.key_equal("x", "s") else {
        return Ok(0);
    };
    let sql = insert_sql(
        t,
        &staged_values(t),
        &format!("{} s", t.stage),
        &format!(
            " WHERE NOT EXISTS (SELECT FROM {} x WHERE {on})",
            t.spec.sql
        ),
    );
    write(ctx, t, &sql, &[])
}

/// Sets `t`'s deferred columns once every table is loaded: `UPDATE t x SET c = value FROM
/// from WHERE where_` for each `(c, value)`.
pub(super) fn set_deferred(
    ctx: &Ctx,
    t: &Matched,
    sets: &[(String, String)],
    from: &str,
    where_: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> Result<i64> {
    if sets.is_empty() {
        return Ok(0);
    }
    let sets: Vec<String> = sets
        .iter()
        .map(|(c, v)| format!("{} = {v}", quote_ident(c)))
        .collect();
    let sql = format!(
        "UPDATE {} x SET {} FROM {from} WHERE {where_}",
        t.spec.sql,
        sets.join(", ")
    );
    write(ctx, t, &sql, args)
}

/// `t` needs a primary key to set its deferred columns by: 0A000 naming it when it has none.
pub(super) fn deferred_key(t: &Matched) -> Result<()> {
    if t.deferred.is_empty() || t.primary_key.is_some() {
        return Ok(());
    }
    Err(crate::error::Common::FeatureNotSupported(
        format!(
            "{} breaks an insertion cycle but has no primary key to set it by",
            t.name()
        ),
        None,
    )
    .into())
}

/// Rows written and the rows they must equal: `actual` (a table, the rows written) against
/// `expected` (a staging table, the rows they came from), over the same columns.
pub(super) struct Comparison {
    pub table: String,
    pub actual: TableSpec,
    pub expected: TableSpec,
}

/// Reads both sides of every comparison (as the backup wrote its rows: the same text forms,
/// the same order-independent digest) in one statement, with `$1` = `tenant`; the first
/// that differs is the error.
pub(super) fn compare(comparisons: &[Comparison], tenant: &str) -> Result<()> {
    if comparisons.is_empty() {
        return Ok(());
    }
    let specs: Vec<TableSpec> = comparisons
        .iter()
        .flat_map(|c| [c.actual.clone(), c.expected.clone()])
        .collect();
    let mut digests = vec![RowsDigest::default(); specs.len()];
    export(&specs, tenant, |i, line| {
        digests[i].add(line);
        Ok(())
    })?;
    for (c, d) in comparisons.iter().zip(digests.chunks(2)) {
        let (got, want) = (d[0], d[1]);
        if got.rows != want.rows || got.sum != want.sum {
            return Err(Error::RestoreUnverified {
                table: c.table.clone(),
                detail: format!(
                    "The backup's rows: {} (digest {}); the rows written, read back: {} (digest {}).",
                    want.rows,
                    want.hex(),
                    got.rows,
                    got.hex()
                ),
            });
        }
    }
    Ok(())
}

/// Rows of `sql` selected by `filter` (`$1`: the tenant value).
pub(super) fn count(sql: &str, filter: &str, tenant: &str) -> i64 {
    Spi::get_one_with_args::<i64>(
        &format!("SELECT pg_catalog.count(*) FROM {sql} WHERE {filter}"),
        &[tenant.into()],
    )
    .or_raise()
    .unwrap_or(0)
}
