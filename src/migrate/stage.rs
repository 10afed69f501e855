//! Job-local key staging: new ids generated in the copy's own pass, for inline runs.
//!
//! An inline run copies each table in one statement (`copy.rs`, `Rows::Whole`). For a
//! re-keyed table whose keys nobody else can map (the tenant's own rows, mapped by no earlier
//! migration in this namespace), that statement generates each row's new id itself (a
//! `LATERAL` subquery, once per row), and from the same materialized rows writes
//!
//! - `tenant_ops.id_map`, in one bulk insert: the durable mapping every later user needs
//!   (`map_id`, rollbacks, later tenants' shared-row reuse, clone namespaces, a resume), in
//!   the same transaction as the rows;
//! - a temporary table of this transaction (`ON COMMIT DROP`), the key in its own type beside
//!   the new id, indexed once filled: what the copy statements of the tables after it join to
//!   map their foreign keys, as hand-written SQL joins its mapping temp tables; where every
//!   statement reads one snapshot, a child's join to its parent's staged keys also selects
//!   the child's rows in place of its tenant filter (`copy.rs`, `owner_join`).
//!
//! What this saves against recording the ids first (a statement of its own that evaluated the
//! tenant filter again) and looking them up in id_map (a scan of every table's mappings, joined
//! on the key's text): the second pass over the tenant's rows, the join back for the table's
//! own key, and the text casts and hashes of every foreign key lookup.
//!
//! Everything else reads id_map as before (the self-reference fixup, verification when sums
//! disagree, online and background runs, whose steps commit in between): the staged set is an
//! exact copy of the job's id_map rows of that table in this transaction, never the only one.
//! A staged table is known by name *and* registered here with the transaction it was made in,
//! so a temporary table of the same name made by anyone else is never taken for it (the
//! `CREATE` would fail first).

use std::cell::RefCell;

use pgrx::prelude::*;

use super::plan::TablePlan;
use crate::error::OrRaise;
use crate::scope::graph::TableId;

thread_local! {
    /// (job, source table, top-level transaction) of every table staged by this backend.
    static STAGED: RefCell<Vec<(i64, TableId, pg_sys::TransactionId)>> = const { RefCell::new(Vec::new()) };
}

/// The staged keys of `source` for job `job_id` (schema-qualified; digits only beside the
/// fixed prefix, so no quoting is needed).
pub(super) fn name(job_id: i64, source: TableId) -> String {
    format!("pg_temp.__tenant_ops_keys_{job_id}_{source}")
}

fn current_xid() -> pg_sys::TransactionId {
    unsafe { pg_sys::GetTopTransactionIdIfAny() }
}

/// Creates the (empty) staging table of `source`, keyed by `key_type`, and registers it.
pub(super) fn create(job_id: i64, source: TableId, key_type: &str) {
    Spi::run(&format!(
        "CREATE TEMPORARY TABLE {} (k {key_type}, new_id uuid NOT NULL) ON COMMIT DROP",
        name(job_id, source)
    ))
    .or_raise();
    let xid = current_xid();
    STAGED.with(|s| {
        let mut s = s.borrow_mut();
        s.retain(|(_, _, x)| *x == xid);
        s.push((job_id, source, xid));
    });
}

/// A filled staging table made ready for the joins: a unique index on the key (built once
/// from the rows, as hand-written SQL gives its mapping table a primary key), then planner
/// statistics (its owner is the caller). With the index, a child table read in its own key's
/// order (order items by their primary key, led by the order) is merge-joined to its
/// parents' keys instead of hashing them: a hash of 300k keys does not fit the steps'
/// 16 MB and spills the 1.5M items it is probed with (0.49 s -> 0.29 s for that join).
pub(super) fn finish(job_id: i64, source: TableId) {
    let table = name(job_id, source);
    Spi::run(&format!("CREATE UNIQUE INDEX ON {table} (k)")).or_raise();
    Spi::run(&format!("ANALYZE {table}")).or_raise();
}

/// The share of `source`'s rows whose keys are staged for job `job_id`, by planner statistics
/// (the staged table is analyzed once filled, the source as autovacuum last did); 0 where the
/// source's size is unknown (never analyzed).
pub(super) fn share_of_parent(job_id: i64, source: TableId) -> f64 {
    Spi::get_one_with_args::<f64>(
        "SELECT coalesce((SELECT CASE WHEN s.reltuples > 0 THEN k.reltuples / s.reltuples END
                            FROM pg_catalog.pg_class s, pg_catalog.pg_class k
                           WHERE s.oid = $1 AND k.oid = pg_catalog.to_regclass($2)), 0)::float8",
        &[
            pg_sys::Oid::from(source).into(),
            name(job_id, source).into(),
        ],
    )
    .or_raise()
    .unwrap_or(0.0)
}

/// Whether `source`'s keys are staged for job `job_id` in this transaction.
pub(super) fn staged(job_id: i64, source: TableId) -> bool {
    let xid = current_xid();
    let registered = STAGED.with(|s| {
        s.borrow()
            .iter()
            .any(|(j, t, x)| *j == job_id && *t == source && *x == xid)
    });
    // A subtransaction rolled back since would have dropped it: the registry alone is not
    // enough.
    registered
        && Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[name(job_id, source).into()],
        )
        .or_raise()
        .unwrap_or(false)
}

/// The lookup whose ids a copy statement generates itself (see [`joins`]).
pub(super) struct Own<'a> {
    /// Its alias number.
    pub n: usize,
    /// The SQL of a fresh id.
    pub generator: &'a str,
    /// Some keys may be mapped already (by an earlier migration of the tenant in this
    /// namespace): those keep their ids, read from id_map, and only the others are fresh.
    pub mapped_before: bool,
}

/// The joins of `p`'s key lookups: staged keys where this transaction staged them (on the
/// value itself where the types agree, else on its text, as id_map compares), id_map for the
/// rest. `own`: the lookup whose ids the statement generates itself; its alias then also
/// says whether the id is fresh (`__tenant_ops_fresh`, to be written to id_map). `filter_by`:
/// the staged lookup joined as the tenant filter (an inner join: only rows whose parent was
/// copied), as hand-written SQL joins its mapping table.
pub(super) fn joins(
    p: &TablePlan,
    job_id: i64,
    own: Option<&Own>,
    filter_by: Option<usize>,
) -> String {
    p.lookups
        .iter()
        .enumerate()
        .map(|(n, l)| {
            if let Some(own) = own.filter(|o| o.n == n) {
                // OFFSET 0 and the reference to `s`: evaluated once per source row, never
                // pulled up into (and repeated by) each column that uses it.
                let (before, id, fresh) = if own.mapped_before {
                    (
                        format!(
                            " LEFT JOIN (SELECT legacy_key, new_id FROM tenant_ops.id_map
                                          WHERE namespace = $2 AND source = {tbl}::pg_catalog.regclass) __tenant_ops_e{n}
                                 ON __tenant_ops_e{n}.legacy_key = ({input})::text",
                            tbl = l.table,
                            input = l.input
                        ),
                        format!("coalesce(__tenant_ops_e{n}.new_id, {})", own.generator),
                        format!("__tenant_ops_e{n}.new_id IS NULL"),
                    )
                } else {
                    (String::new(), own.generator.to_string(), "true".to_string())
                };
                return format!(
                    "{before} CROSS JOIN LATERAL (SELECT {id} AS __tenant_ops_new_id, ({input}) AS __tenant_ops_key,
                                                  {fresh} AS __tenant_ops_fresh OFFSET 0) __tenant_ops_m{n}",
                    input = l.input
                );
            }
            if staged(job_id, l.table) {
                let (key, input) = if l.same_type {
                    ("k".to_string(), format!("({})", l.input))
                } else {
                    ("(k)::text".to_string(), format!("({})::text", l.input))
                };
                format!(
                    " {kind} JOIN (SELECT {key} AS __tenant_ops_key, new_id AS __tenant_ops_new_id FROM {stage}) __tenant_ops_m{n}
                       ON __tenant_ops_m{n}.__tenant_ops_key = {input}",
                    kind = if filter_by == Some(n) { "INNER" } else { "LEFT" },
                    stage = name(job_id, l.table)
                )
            } else {
                l.id_map_join(n)
            }
        })
        .collect()
}
