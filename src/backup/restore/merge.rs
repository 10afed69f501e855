//! `mode: merge`: the backup's rows are added to the tenant's current rows, nothing deleted.
//! A backup row whose key the tenant holds already is a conflict, handled by `on_conflict`
//! with migrate_tenant's values and semantics (`OnConflict::clause`): `error` (refused before
//! anything changes, naming the table and keys), `skip` (the tenant's row stays), `overwrite`
//! (the backup's values), `merge` (the backup's values, except where they are NULL). A
//! backup row whose key another tenant's row holds is refused whatever the policy: written,
//! it would take over (or skip into) that tenant's row. Shared rows are added only where
//! missing, as in a replace.
//!
//! Afterwards, per table: the tenant's rows number those of before plus the rows inserted,
//! and the rows written as the backup has them (every row under `error` and `overwrite`; the
//! inserted ones under `skip` and `merge`) read back equal to the staged ones.

use serde_json::{json, Value};

use super::rows::{
    self, compare, deferred_key, insert_shared, insert_sql, set_deferred, staged_values, write,
    Comparison,
};
use super::target::Matched;
use super::Ctx;
use crate::backup::error::{Error, Result};
use crate::backup::TableSpec;
use crate::error::{Common, OrRaise};
use crate::migrate::options::OnConflict;
use crate::pg::quote_ident;
use crate::scope::graph::Role;
use pgrx::prelude::*;

/// One table's rows against the tenant's current ones.
struct Table<'a> {
    t: &'a Matched,
    rows_now: i64,
    /// The staged keys the tenant's rows hold already (keyed tables): a temporary table of
    /// them, and how many.
    conflicts: Option<(String, i64)>,
    /// A shared table's staged rows missing from it (the ones added).
    missing: i64,
}

fn policy_name(p: OnConflict) -> &'static str {
    match p {
        OnConflict::Error => "error",
        OnConflict::Skip => "skip",
        OnConflict::Overwrite => "overwrite",
        OnConflict::Merge => "merge",
    }
}

/// `"__tenant_ops_k0", ...`: the key columns of a conflicts table (named apart from the
/// table's own, so that a condition over both reads unambiguously).
fn conflict_cols(t: &Matched, alias: &str) -> String {
    (0..t.primary_key.as_ref().map_or(0, Vec::len))
        .map(|i| format!("{alias}.__tenant_ops_k{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn run(ctx: &Ctx) -> Result<Value> {
    let policy = ctx.options.on_conflict;
    let tenant = &ctx.b.tenant;
    let mut tables = vec![];
    for (i, t) in ctx.matched.iter().enumerate() {
        deferred_key(t)?;
        let rows_now = rows::count(&t.spec.sql, &t.spec.filter, tenant);
        if t.spec.role == Role::Shared {
            let missing = match t.key_equal("x", "s") {
                Some(on) => rows::count(
                    &format!("{} s", t.stage),
                    &format!("NOT EXISTS (SELECT FROM {} x WHERE {on})", t.spec.sql),
                    tenant,
                ),
                None => 0,
            };
            tables.push(Table {
                t,
                rows_now,
                conflicts: None,
                missing,
            });
            continue;
        }
        let conflicts = match &t.primary_key {
            None if matches!(policy, OnConflict::Overwrite | OnConflict::Merge) => {
                return Err(Common::InvalidOption(
                    format!(
                        "on_conflict \"{}\" needs a primary key on table {}",
                        policy_name(policy),
                        t.name()
                    ),
                    Some("Without a key a row of the backup cannot be told to be one the tenant holds; choose \"error\" or \"skip\".".into()),
                )
                .into());
            }
            None => None,
            Some(_) => Some(find_conflicts(ctx, t, i)?),
        };
        tables.push(Table {
            t,
            rows_now,
            conflicts,
            missing: 0,
        });
    }
    let counts: Vec<(i64, i64, i64)> = tables.iter().map(|x| expected(x, policy)).collect();
    let report = |x: &Table, (ins, upd, skip): (i64, i64, i64)| {
        json!({
            "table": x.t.name(), "role": x.t.entry.role, "rows_now": x.rows_now,
            "rows_in_backup": x.t.entry.rows, "inserted": ins, "updated": upd, "skipped": skip,
            "added_columns": x.t.added,
        })
    };
    if ctx.options.dry_run {
        let report: Vec<Value> = tables
            .iter()
            .zip(&counts)
            .map(|(x, c)| report(x, *c))
            .collect();
        drop_conflicts(&tables);
        return Ok(json!({"on_conflict": policy_name(policy), "tables": report}));
    }
    let mut written = vec![];
    for x in &tables {
        written.push(if x.t.spec.role == Role::Shared {
            let added = insert_shared(ctx, x.t)?;
            (added, 0, x.t.entry.rows - added)
        } else {
            insert(ctx, x, policy)?
        });
    }
    for x in tables.iter().filter(|x| !x.t.deferred.is_empty()) {
        set_deferred_columns(ctx, x, policy)?;
    }
    verify(ctx, &tables, &written, policy)?;
    drop_conflicts(&tables);
    Ok(json!({
        "on_conflict": policy_name(policy), "verified": true,
        "rows": written.iter().zip(&tables).filter(|(_, x)| x.t.spec.role != Role::Shared)
                    .map(|(w, _)| w.0 + w.1).sum::<i64>(),
        "tables": tables.iter().zip(&written).map(|(x, w)| report(x, *w)).collect::<Vec<_>>(),
    }))
}

/// Stages the keys of `t`'s backup rows that the table holds already, with whether the row
/// holding it is the tenant's; refuses keys of other tenants' rows (any policy) and, under
/// `on_conflict: error`, keys of the tenant's own.
fn find_conflicts(ctx: &Ctx, t: &Matched, i: usize) -> Result<(String, i64)> {
    let name = ctx.temp("conflicts", i);
    let keys = t.key_list("s").expect("keyed");
    let named: Vec<String> = t
        .primary_key
        .as_ref()
        .expect("keyed")
        .iter()
        .enumerate()
        .map(|(k, c)| format!("s.{} AS __tenant_ops_k{k}", quote_ident(c)))
        .collect();
    let on = t.key_equal("x", "s").expect("keyed");
    // The tenant's filter is written for the table's unqualified columns: inside the
    // subquery over the table (`x`), they are its.
    Spi::run_with_args(
        &format!(
            "CREATE TEMP TABLE {name} ON COMMIT DROP AS
             SELECT {named}, ROW({keys})::pg_catalog.text AS __tenant_ops_text,
                    EXISTS (SELECT FROM {tbl} x WHERE ({filter}) AND {on}) AS __tenant_ops_own
               FROM {stage} s WHERE EXISTS (SELECT FROM {tbl} x WHERE {on})",
            named = named.join(", "),
            tbl = t.spec.sql,
            filter = t.spec.filter,
            stage = t.stage,
        ),
        &[ctx.b.tenant.clone().into()],
    )
    .or_raise();
    let (own, own_keys, others, others_keys) = Spi::connect(|c| {
        let row = c
            .select(
                &format!(
                    "SELECT pg_catalog.count(*) FILTER (WHERE __tenant_ops_own),
                            (pg_catalog.array_agg(__tenant_ops_text) FILTER (WHERE __tenant_ops_own))[1:3],
                            pg_catalog.count(*) FILTER (WHERE NOT __tenant_ops_own),
                            (pg_catalog.array_agg(__tenant_ops_text) FILTER (WHERE NOT __tenant_ops_own))[1:3]
                       FROM {name}"
                ),
                Some(1),
                &[],
            )?
            .first();
        Ok::<_, pgrx::spi::Error>((
            row.get::<i64>(1)?.unwrap_or(0),
            row.get::<Vec<String>>(2)?.unwrap_or_default(),
            row.get::<i64>(3)?.unwrap_or(0),
            row.get::<Vec<String>>(4)?.unwrap_or_default(),
        ))
    })
    .or_raise();
    if others > 0 {
        return Err(Error::OthersKeys {
            backup: ctx.b.id,
            table: t.name(),
            count: others,
            keys: others_keys,
        });
    }
    if own > 0 && ctx.options.on_conflict == OnConflict::Error {
        return Err(Error::Conflict {
            backup: ctx.b.id,
            table: t.name(),
            count: own,
            keys: own_keys,
        });
    }
    Ok((name, own))
}

/// Rows (inserted, updated, skipped) the policy makes of a table's backup rows.
fn expected(x: &Table, policy: OnConflict) -> (i64, i64, i64) {
    let rows = x.t.entry.rows;
    match &x.conflicts {
        None if x.t.spec.role == Role::Shared => (x.missing, 0, rows - x.missing),
        None => (rows, 0, 0),
        Some((_, n)) => match policy {
            OnConflict::Error => (rows, 0, 0),
            OnConflict::Skip => (rows - n, 0, *n),
            OnConflict::Overwrite | OnConflict::Merge => (rows - n, *n, 0),
        },
    }
}

/// Inserts a table's backup rows under the policy; returns (inserted, updated, skipped).
fn insert(ctx: &Ctx, x: &Table, policy: OnConflict) -> Result<(i64, i64, i64)> {
    let t = x.t;
    let key = t.primary_key.as_ref().map(|pk| {
        pk.iter()
            .map(|k| quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ")
    });
    // Neither key columns, nor deferred ones (set afterwards), nor identity ALWAYS columns
    // (which an UPDATE may only set to their default) are updated.
    let updatable: Vec<&str> = t
        .spec
        .columns
        .iter()
        .filter(|c| {
            !t.primary_key
                .as_ref()
                .is_some_and(|pk| pk.contains(&c.name))
                && !t.deferred.contains(&c.name)
                && !c.identity_always
        })
        .map(|c| c.quoted.as_str())
        .collect();
    let clause = policy.clause(&t.spec.sql, key.as_deref(), &updatable);
    let tail = if clause.is_empty() {
        String::new()
    } else {
        format!(" {clause}")
    };
    let sql = insert_sql(t, &staged_values(t), &format!("{} s", t.stage), &tail);
    let n = write(ctx, t, &sql, &[])?;
    let (ins, upd, skip) = expected(x, policy);
    if x.conflicts.is_some() && n != ins + upd {
        return Err(Error::RestoreUnverified {
            table: t.name(),
            detail: format!(
                "{} rows were to be inserted and {upd} updated, but {n} were written: rows changed meanwhile.",
                ins
            ),
        });
    }
    Ok(match x.conflicts {
        Some(_) => (ins, upd, skip),
        // Keyless: what the statement wrote (`skip` leaves out rows a unique index refuses).
        None => (n, 0, t.entry.rows - n),
    })
}

/// The staged rows the policy writes as the backup has them, as a condition on the staged
/// row whose key is `keys`: all of them, or, for `skip` (the tenant's rows stay) and `merge`
/// (their values stay where the backup's are NULL), only those not in conflict.
fn written_as_staged(x: &Table, policy: OnConflict, keys: &str) -> String {
    match (&x.conflicts, policy) {
        (Some((c, _)), OnConflict::Skip | OnConflict::Merge) => format!(
            "NOT EXISTS (SELECT FROM {c} c WHERE ({}) = ({keys}))",
            conflict_cols(x.t, "c")
        ),
        _ => "true".into(),
    }
}

/// Sets a table's deferred columns on the rows the policy wrote (`merge`: where the backup's
/// value is not NULL).
fn set_deferred_columns(ctx: &Ctx, x: &Table, policy: OnConflict) -> Result<()> {
    let t = x.t;
    let sets: Vec<(String, String)> = t
        .deferred
        .iter()
        .map(|c| {
            let q = quote_ident(c);
            let v = if policy == OnConflict::Merge {
                format!("COALESCE(s.{q}, x.{q})")
            } else {
                format!("s.{q}")
            };
            (c.clone(), v)
        })
        .collect();
    let mut where_ = t.key_equal("x", "s").expect("checked by deferred_key");
    if policy == OnConflict::Skip {
        let keys = t.key_list("s").expect("keyed");
        where_ = format!("{where_} AND {}", written_as_staged(x, policy, &keys));
    }
    set_deferred(ctx, t, &sets, &format!("{} s", t.stage), &where_, &[])?;
    Ok(())
}

/// Counts, then the rows written as the backup has them against the staged ones.
fn verify(
    ctx: &Ctx,
    tables: &[Table],
    written: &[(i64, i64, i64)],
    policy: OnConflict,
) -> Result<()> {
    let tenant = &ctx.b.tenant;
    let mut comparisons = vec![];
    for (x, w) in tables.iter().zip(written) {
        let t = x.t;
        if t.spec.role == Role::Shared {
            continue;
        }
        let now = rows::count(&t.spec.sql, &t.spec.filter, tenant);
        if now != x.rows_now + w.0 {
            return Err(Error::RestoreUnverified {
                table: t.name(),
                detail: format!(
                    "The tenant had {} rows and {} were inserted, but it holds {now} now.",
                    x.rows_now, w.0
                ),
            });
        }
        let (Some(keys), Some(unqualified)) = (t.key_list("s"), t.key_list("")) else {
            continue;
        };
        comparisons.push(Comparison {
            table: t.name(),
            actual: TableSpec {
                filter: format!(
                    "({}) AND ({unqualified}) IN (SELECT {keys} FROM {} s WHERE {})",
                    t.spec.filter,
                    t.stage,
                    written_as_staged(x, policy, &keys)
                ),
                ..t.spec.clone()
            },
            // The staging table's own columns, unqualified (the conflicts table's are named
            // apart).
            expected: TableSpec {
                sql: t.stage.clone(),
                filter: written_as_staged(x, policy, &unqualified),
                ..t.spec.clone()
            },
        });
    }
    compare(&comparisons, tenant)
}

fn drop_conflicts(tables: &[Table]) {
    for (c, _) in tables.iter().filter_map(|x| x.conflicts.as_ref()) {
        Spi::run(&format!("DROP TABLE {c}")).or_raise();
    }
}
