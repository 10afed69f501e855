//! `mode: replace`: the tenant's current rows are deleted (children first; shared rows stay)
//! and the backup's inserted (parents first; shared rows only where missing), then the
//! deferred columns set; the restored rows' digest must equal the manifest's, table by table.
//!
//! Refused before anything changes: rows outside the tenant (other tenants' rows, rows of
//! tables outside the scope) that reference the rows the replace would delete, through any
//! foreign key — the delete would fail, or worse, cascade into them or set their references
//! NULL.

use pgrx::prelude::*;
use serde_json::{json, Value};

use super::rows::{self, deferred_key, insert_sql, set_deferred, staged_values, write};
use super::target::Matched;
use super::Ctx;
use crate::backup::error::{Error, Result};
use crate::backup::{export, RowsDigest, TableSpec};
use crate::error::OrRaise;
use crate::pg::quote_ident;
use crate::scope::graph::{EdgeKind, Role};
use crate::sys::try_subtransaction;

pub(super) fn run(ctx: &Ctx) -> Result<Value> {
    let tenant = &ctx.b.tenant;
    check_referenced(ctx)?;
    for t in ctx.matched {
        deferred_key(t)?;
    }
    let report: Vec<Value> = ctx
        .matched
        .iter()
        .map(|t| {
            json!({
                "table": t.name(), "role": t.entry.role,
                "rows_now": rows::count(&t.spec.sql, &t.spec.filter, tenant),
                "rows_in_backup": t.entry.rows, "added_columns": t.added,
            })
        })
        .collect();
    if ctx.options.dry_run {
        return Ok(json!({"tables": report}));
    }
    replace(ctx)?;
    verify(ctx)?;
    Ok(json!({
        "verified": true,
        "rows": ctx.own().map(|t| t.entry.rows).sum::<i64>(),
        "tables": report,
    }))
}

/// Rows outside the tenant that reference its rows of a table the replace deletes from, by
/// any foreign key into it: the first such constraint is the error, named with its table and
/// the count. (Rows of the tenant's own tables are deleted with the rest: not counted.)
fn check_referenced(ctx: &Ctx) -> Result<()> {
    let c = &ctx.loaded.catalog;
    for p in ctx.own() {
        for e in c
            .edges
            .iter()
            .filter(|e| e.parent == p.oid && matches!(e.kind, EdgeKind::ForeignKey { .. }))
        {
            let Some(child) = c.tables.get(&e.child) else {
                continue;
            };
            let q = |cols: &[String], alias: &str| -> String {
                cols.iter()
                    .map(|col| format!("{alias}.{}", quote_ident(col)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            // The child's own filter is written for its unqualified columns: evaluated in a
            // subquery over the child itself, found by the row's address.
            let inside = match ctx.own().find(|t| t.oid == e.child) {
                Some(t) => format!(
                    " AND NOT EXISTS (SELECT FROM {} y WHERE ({}) AND y.tableoid = x.tableoid AND y.ctid = x.ctid)",
                    t.spec.sql, t.spec.filter
                ),
                None => String::new(),
            };
            let n = rows::count(
                &format!("{} x", child.sql),
                &format!(
                    "({}) IN (SELECT {} FROM {} p WHERE {}){inside}",
                    q(&e.child_cols, "x"),
                    q(&e.parent_cols, "p"),
                    p.spec.sql,
                    p.spec.filter
                ),
                &ctx.b.tenant,
            );
            if n > 0 {
                return Err(Error::Referenced {
                    backup: ctx.b.id,
                    table: p.name(),
                    by: Some((child.display.clone(), quote_ident(&e.name), n)),
                    detail: None,
                });
            }
        }
    }
    Ok(())
}

/// Deletes the tenant's current rows (children first; shared rows stay) and inserts the
/// backup's (parents first; shared rows only where missing), then sets deferred columns.
fn replace(ctx: &Ctx) -> Result<()> {
    let tenant = ctx.b.tenant.clone();
    for t in ctx.matched.iter().filter(|t| !t.deferred.is_empty()) {
        let sets: Vec<String> = t
            .deferred
            .iter()
            .map(|c| format!("{} = NULL", quote_ident(c)))
            .collect();
        Spi::run_with_args(
            &format!(
                "UPDATE {} SET {} WHERE {}",
                t.spec.sql,
                sets.join(", "),
                t.spec.filter
            ),
            &[tenant.clone().into()],
        )
        .or_raise();
    }
    for t in ctx.own().rev() {
        let sql = format!("DELETE FROM {} WHERE {}", t.spec.sql, t.spec.filter);
        // Checked above; what remains (a trigger's reference, a row committed since) is
        // reported as PostgreSQL words it.
        try_subtransaction(|| Spi::run_with_args(&sql, &[tenant.clone().into()]))
            .map_err(|e| Error::Referenced {
                backup: ctx.b.id,
                table: t.name(),
                by: None,
                detail: Some(e.message.clone()),
            })?
            .or_raise();
    }
    for t in ctx.matched {
        if t.spec.role == Role::Shared {
            rows::insert_shared(ctx, t)?;
            continue;
        }
        let sql = insert_sql(t, &staged_values(t), &format!("{} s", t.stage), "");
        write(ctx, t, &sql, &[])?;
    }
    for t in ctx.matched.iter().filter(|t| !t.deferred.is_empty()) {
        let sets: Vec<(String, String)> = t
            .deferred
            .iter()
            .map(|c| (c.clone(), format!("s.{}", quote_ident(c))))
            .collect();
        let on = t.key_equal("x", "s").expect("checked by deferred_key");
        set_deferred(ctx, t, &sets, &format!("{} s", t.stage), &on, &[])?;
    }
    Ok(())
}

/// The restored rows, read back as the backup wrote them, against the manifest.
fn verify(ctx: &Ctx) -> Result<()> {
    let own: Vec<&Matched> = ctx.own().collect();
    let specs: Vec<TableSpec> = own.iter().map(|t| t.spec.clone()).collect();
    let mut digests = vec![RowsDigest::default(); specs.len()];
    export(&specs, &ctx.b.tenant, |i, line| {
        digests[i].add(line);
        Ok(())
    })?;
    for (t, d) in own.iter().zip(&digests) {
        if d.rows != t.entry.rows || d.hex() != t.entry.rows_digest {
            return Err(Error::RestoreUnverified {
                table: t.name(),
                detail: format!(
                    "The backup holds {} rows (digest {}); the table now holds {} of the tenant's (digest {}).",
                    t.entry.rows, t.entry.rows_digest, d.rows, d.hex()
                ),
            });
        }
    }
    Ok(())
}
