//! Rows several migrations into one target share: the rows of shared tables, and borrowed
//! rows (the managers a root row points at, other tenants' rows `cross_tenant: copy` brings
//! along; see `TablePlan::borrowed`). Tenant after tenant into one schema is the main use, so
//! an earlier migration's copy of such a row is reused, never copied twice, and an undo
//! removes it only when no other migration into that target still uses it.
//!
//! The bookkeeping is per job and target table, in `tenant_ops.job_archive`, each row's target
//! key as a jsonb array:
//!
//! - `shared_added`: the job inserted the row (its undo removes it, unless others use it);
//! - `shared_used`: the job needed the row and found it there (an earlier migration's, or data
//!   the target held), so its undo leaves it.
//!
//! An undo that keeps a row it added because another live job (not rolled back or cancelled)
//! recorded it hands the row over: that job gets a `shared_added` record of it, and removes it
//! in turn when it is undone. Reading other jobs' records needs the owner (the archive is
//! readable only inside its own job's window); the statements below are literal and touch
//! nothing but `tenant_ops.*`, with already computed keys as values.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use super::plan::TablePlan;
use crate::error::OrRaise;
use crate::sys::owner;

/// The keys other live migrations recorded (added or used) in target table `target` (as
/// job_tables names it), as a jsonb array.
pub(super) fn used_by_others(job_id: i64, target: &str) -> Value {
    owner::get_one::<JsonB>(
        "SELECT coalesce(pg_catalog.jsonb_agg(DISTINCT a.row_data), '[]'::jsonb)
           FROM tenant_ops.job_archive a
           JOIN tenant_ops.job_tables t ON t.job_id = a.job_id AND t.step = a.step
           JOIN tenant_ops.jobs j ON j.id = a.job_id
          WHERE t.target = $1 AND a.job_id <> $2 AND a.kind IN ('shared_added', 'shared_used')
            AND j.kind = 'migrate' AND j.status NOT IN ('rolled_back', 'cancelled')",
        &[target.into(), job_id.into()],
    )
    .or_raise()
    .map(|j| j.0)
    .unwrap_or_else(|| Value::Array(vec![]))
}

/// The jobs (other than `job_id`, live) that recorded any of `keys` in target table `target`.
pub(super) fn users_of(job_id: i64, target: &str, keys: &Value) -> Vec<i64> {
    owner::get_one::<Vec<i64>>(
        "SELECT coalesce(pg_catalog.array_agg(DISTINCT a.job_id ORDER BY a.job_id), '{}')
           FROM tenant_ops.job_archive a
           JOIN tenant_ops.job_tables t ON t.job_id = a.job_id AND t.step = a.step
           JOIN tenant_ops.jobs j ON j.id = a.job_id
          WHERE t.target = $1 AND a.job_id <> $2 AND a.kind IN ('shared_added', 'shared_used')
            AND j.kind = 'migrate' AND j.status NOT IN ('rolled_back', 'cancelled')
            AND a.row_data IN (SELECT pg_catalog.jsonb_array_elements($3))",
        &[target.into(), job_id.into(), JsonB(keys.clone()).into()],
    )
    .or_raise()
    .unwrap_or_default()
}

/// Hands the rows `keys` of target table `target`, which job `job_id` added and now keeps for
/// others, over to the live job that uses each (the lowest id), unless another live job
/// already counts as having added it.
pub(super) fn hand_over(job_id: i64, target: &str, keys: Value) {
    if keys.as_array().is_none_or(|k| k.is_empty()) {
        return;
    }
    owner::execute(
        "WITH live AS MATERIALIZED (
              SELECT a.job_id, a.step, a.kind, a.row_data
                FROM tenant_ops.job_archive a
                JOIN tenant_ops.job_tables t ON t.job_id = a.job_id AND t.step = a.step
                JOIN tenant_ops.jobs j ON j.id = a.job_id
               WHERE t.target = $1 AND a.job_id <> $2 AND a.kind IN ('shared_added', 'shared_used')
                 AND j.kind = 'migrate' AND j.status NOT IN ('rolled_back', 'cancelled')),
              keys AS MATERIALIZED (SELECT DISTINCT k FROM pg_catalog.jsonb_array_elements($3) k)
         INSERT INTO tenant_ops.job_archive (job_id, step, kind, row_data)
         SELECT DISTINCT ON (u.row_data) u.job_id, u.step, 'shared_added', u.row_data
           FROM live u JOIN keys ON keys.k = u.row_data
          WHERE u.kind = 'shared_used'
            AND u.row_data NOT IN (SELECT l.row_data FROM live l WHERE l.kind = 'shared_added')
          ORDER BY u.row_data, u.job_id",
        &[target.into(), job_id.into(), JsonB(keys).into()],
    )
    .or_raise();
}

/// A condition over `t` (a row of target table `target`): some other row of the target
/// references it through a foreign key. An undo keeps such rows of a shared table: whoever
/// references them (a `shared: expect` migration, which copies no shared rows and so records
/// none, or the application's own rows) would otherwise stop the delete with 23503. The undo
/// deletes children first, so the job's own references from other tables are gone by then;
/// references within the table (a manager) are settled by deleting until nothing more goes.
/// None where nothing references the table.
pub(super) fn referenced_in_target(target: u32) -> Option<String> {
    // The identifiers are quoted by the server (%I); nothing here comes from a user.
    Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.string_agg(pg_catalog.format('EXISTS (SELECT FROM %I.%I __tenant_ops_r WHERE (%s) = (%s)%s)',
                    n.nspname, c.relname,
                    (SELECT pg_catalog.string_agg(pg_catalog.format('__tenant_ops_r.%I', a.attname), ', ' ORDER BY k.i)
                       FROM pg_catalog.unnest(f.conkey) WITH ORDINALITY k(att, i)
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.att),
                    (SELECT pg_catalog.string_agg(pg_catalog.format('t.%I', a.attname), ', ' ORDER BY k.i)
                       FROM pg_catalog.unnest(f.confkey) WITH ORDINALITY k(att, i)
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.att),
                    -- a row that references itself does not keep itself
                    CASE WHEN f.conrelid = f.confrelid THEN ' AND __tenant_ops_r.ctid <> t.ctid' ELSE '' END),
                ' OR ' ORDER BY f.oid)
           FROM pg_catalog.pg_constraint f
           JOIN pg_catalog.pg_class c ON c.oid = f.conrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE f.contype = 'f' AND f.confrelid = $1",
        &[pgrx::pg_sys::Oid::from(target).into()],
    )
    .or_raise()
    .map(|c| format!("({c})"))
}

/// Whether job `job_id` recorded rows of `kind` (`shared_added`, `shared_used`) at `step`.
/// `shared_used` of a table that is not shared: some of the tenant's own rows are reused
/// (recorded by `prepare`).
pub(super) fn recorded(job_id: i64, step: i32, kind: &str) -> bool {
    owner::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM tenant_ops.job_archive
                         WHERE job_id = $1 AND step = $2 AND kind = $3)",
        &[job_id.into(), step.into(), kind.into()],
    )
    .or_raise()
    .unwrap_or(false)
}

/// The insert of rows others may share (`where_` over `s`): rows already in the target are
/// skipped, and every row is recorded, `shared_added` where inserted, `shared_used` where
/// found. Returns the rows inserted (one row, one column). Runs in the job's window. Into a
/// table the job created and has not built yet, every row is inserted (nothing is there).
pub(super) fn recorded_insert(p: &TablePlan, job_id: i64, where_: &str) -> String {
    let keys: Vec<String> = p
        .target_key
        .as_ref()
        .expect("shared rows are keyed")
        .iter()
        .map(|(c, _)| c.clone())
        .collect();
    let conflict = if p.target.bare {
        String::new()
    } else {
        format!("ON CONFLICT ({}) DO NOTHING", keys.join(", "))
    };
    format!(
        "WITH __tenant_ops_ins AS (
             INSERT INTO {tgt} AS __tenant_ops_t ({cols}) SELECT {sel} FROM {src} s{joins} WHERE {where_}
             {conflict} RETURNING {tk} AS k),
              __tenant_ops_need AS (SELECT DISTINCT {sk} AS k FROM {src} s{joins} WHERE {where_}),
              __tenant_ops_rec AS (
             INSERT INTO tenant_ops.job_archive (job_id, step, kind, row_data)
             SELECT {job_id}, {step}, 'shared_added', i.k FROM __tenant_ops_ins i
              UNION ALL
             SELECT {job_id}, {step}, 'shared_used', n.k FROM __tenant_ops_need n
              WHERE n.k NOT IN (SELECT i.k FROM __tenant_ops_ins i))
         SELECT pg_catalog.count(*) FROM __tenant_ops_ins",
        tgt = p.target.sql,
        cols = p.target_columns(),
        sel = p.select_list(),
        src = p.source_sql,
        joins = p.joins,
        tk = p.target_key_json("__tenant_ops_t"),
        sk = p.source_key_json(),
        step = p.step,
    )
}
