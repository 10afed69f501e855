//! A column's distinct values read from its index, one descent per value (a loose index
//! scan, as PostgreSQL 15 has no skip scan): what a migration's `prepare` and one tenant's
//! `validate_integrity` ask of a foreign key column into a small table, where reading the
//! tenant's rows would cost a pass over all of them.
//!
//! - the values without a parent ([`missing_values`]): an orphan check (a migration's of a
//!   `NOT VALID` FK, a validation's of every FK) reads only the rows holding one, and none
//!   when there are none (order items' products: 0.1 s -> 1 ms);
//! - the values the tenant references ([`referenced_values`]): each value is looked for
//!   among the first rows holding it, the rest by the walk over the tenant's rows restricted
//!   to the values not found (0.3 s -> a few ms for office 1's products).
//!
//! Only where it is cheap: the column leads a plain btree index (valid, not partial, its
//! default ordering and collation) of an ordinary table without inheritance children (whose
//! rows the scans would read too, perhaps without an index) and holds few distinct values for
//! its rows (planner statistics: under one in 200, and, where the rows written since the
//! last ANALYZE could have changed that, the scan finding no more than ten times the values
//! they count, at least 1000). Elsewhere `None`: the callers read the rows.

use pgrx::prelude::*;

use crate::error::OrRaise;
use crate::scope::graph::Table;

/// Rows holding a value that are read for a tenant's row before the value is left to the walk.
const PROBE: usize = 64;

/// Distinct values a loose index scan may find whatever the statistics say (at a few µs a
/// descent, a few ms) before it is given up for reading the rows.
const MIN_BOUND: i64 = 1000;

/// `SELECT __tenant_ops_v.__tenant_ops_x FROM ... __tenant_ops_v WHERE ...`: the distinct
/// non-NULL values of `child`'s column `col`, with how many the statistics count, or None
/// where a loose index scan is not cheap.
fn distinct_values(child: &Table, col: &str) -> Option<(String, f64)> {
    let (distinct, rows, changed) = Spi::get_three_with_args::<f64, f64, f64>(
        "SELECT pg_catalog.max(CASE WHEN st.n_distinct >= 0 THEN st.n_distinct
                                    ELSE -st.n_distinct * c.reltuples END)::float8,
                pg_catalog.max(c.reltuples)::float8,
                pg_catalog.max(pg_catalog.pg_stat_get_mod_since_analyze(c.oid)
                               + pg_catalog.pg_stat_get_xact_tuples_inserted(c.oid)
                               + pg_catalog.pg_stat_get_xact_tuples_updated(c.oid))::float8
           FROM pg_catalog.pg_attribute a
           JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_catalog.pg_stats st
             ON st.schemaname = n.nspname AND st.tablename = c.relname AND st.attname = a.attname
          WHERE a.attrelid = $1 AND a.attname = $2 AND c.relkind = 'r' AND NOT c.relhassubclass
            AND NOT st.inherited
            AND EXISTS (SELECT FROM pg_catalog.pg_index i
                          JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                          JOIN pg_catalog.pg_opclass opc ON opc.oid = i.indclass[0]
                         WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum
                           AND i.indisvalid AND i.indpred IS NULL
                           AND i.indcollation[0] = a.attcollation
                           AND opc.opcdefault AND opc.opcintype = a.atttypid
                           AND ic.relam = (SELECT oid FROM pg_catalog.pg_am WHERE amname = 'btree'))",
        &[pg_sys::Oid::from(child.oid).into(), col.into()],
    )
    .or_raise();
    let (Some(distinct), Some(rows), Some(changed)) = (distinct, rows, changed) else {
        return None;
    };
    if rows <= 0.0 || distinct * 200.0 > rows {
        return None;
    }
    let c = child.quoted_col(col);
    // Prefixed aliases: a table or column of the user's named `v` or `x` cannot capture them.
    let values = format!(
        "SELECT __tenant_ops_v.__tenant_ops_x
           FROM (WITH RECURSIVE __tenant_ops_d(__tenant_ops_x) AS (
                     (SELECT s.{c} FROM {t} s WHERE s.{c} IS NOT NULL ORDER BY s.{c} LIMIT 1)
                     UNION ALL
                     SELECT (SELECT s.{c} FROM {t} s WHERE s.{c} > __tenant_ops_d.__tenant_ops_x
                              ORDER BY s.{c} LIMIT 1)
                       FROM __tenant_ops_d WHERE __tenant_ops_d.__tenant_ops_x IS NOT NULL)
                 SELECT __tenant_ops_x FROM __tenant_ops_d) __tenant_ops_v
          WHERE __tenant_ops_v.__tenant_ops_x IS NOT NULL",
        t = child.sql,
    );
    // The statistics may be stale (a column whose distinct values grew a hundredfold since
    // its last ANALYZE would make the scan descend that many times). No more new values than
    // rows written since (the cumulative statistics, this transaction's own included) can
    // have come; where that many could pass ten times what the statistics say, the scan
    // itself is counted, stopped past that, and then the rows are read after all.
    let bound = ((distinct * 10.0) as i64).max(MIN_BOUND);
    if distinct + changed <= bound as f64 {
        return Some((values, distinct));
    }
    let seen = Spi::get_one_with_args::<i64>(
        &format!("SELECT pg_catalog.count(*) FROM ({values} LIMIT $1) __tenant_ops_n"),
        &[(bound + 1).into()],
    )
    .or_raise()
    .unwrap_or(i64::MAX);
    (seen <= bound).then_some((values, distinct))
}

/// A query of the values of `child`'s one column `child_cols[0]` that no row of `parent`
/// holds in `parent_cols[0]` (see the module documentation), or None.
pub(crate) fn missing_values(
    child: &Table,
    child_cols: &[String],
    parent: &Table,
    parent_cols: &[String],
) -> Option<String> {
    let ([col], [parent_col]) = (child_cols, parent_cols) else {
        return None;
    };
    let (values, _) = distinct_values(child, col)?;
    Some(format!(
        "{values} AND NOT EXISTS (SELECT FROM {p} p WHERE p.{pc} = __tenant_ops_v.__tenant_ops_x)",
        p = parent.sql,
        pc = parent.quoted_col(parent_col),
    ))
}

/// Whether a [`missing_values`] query yields anything: one look at the index, and where it
/// yields nothing, no row of the child needs checking.
pub(crate) fn any(missing: &str) -> bool {
    Spi::get_one::<bool>(&format!("SELECT EXISTS ({missing})"))
        .or_raise()
        .unwrap_or(true)
}

/// A query of the values of `child`'s one column `child_cols[0]` that the rows `filter`
/// selects hold (what `SELECT DISTINCT col FROM child WHERE filter` gives; see the module
/// documentation), or None. `filter` is written for `child`'s columns, unqualified.
///
/// Each value is first looked for among the first [`PROBE`] rows holding it (an index scan
/// each): a tenant with a large share of the table is found there for nearly every value
/// (office 1's half of the order items: all 200 products; office 4's 5%: nearly all). The
/// values not found are few then, and each is looked for among all its rows by index, until
/// a tenant row turns up (a value no row of the tenant holds reads them all: at most a tenth
/// of the table, as at most a tenth of the values take this way). Where more are left, the
/// tenant's share is small, and its own rows are walked for them instead. The planner cannot
/// tell how many are left (they come out of the probe), so both ways are planned and a
/// one-time filter on their count runs one: left to itself it walked office 1's 750k rows
/// for the one value of another office (0.33 s; now a few ms), and office 4's for its few.
pub(crate) fn referenced_values(
    child: &Table,
    child_cols: &[String],
    filter: &str,
) -> Option<String> {
    let [col] = child_cols else {
        return None;
    };
    let (values, distinct) = distinct_values(child, col)?;
    let few = ((distinct / 10.0) as i64).max(2);
    let c = child.quoted_col(col);
    // The filter is written for the child's columns, unqualified: it is evaluated over a
    // subquery of the child's rows, whose columns are all in scope.
    Some(format!(
        "WITH __tenant_ops_probe AS MATERIALIZED (
             SELECT __tenant_ops_w.__tenant_ops_x,
                    EXISTS (SELECT FROM (SELECT __tenant_ops_r.* FROM {t} __tenant_ops_r
                                          WHERE __tenant_ops_r.{c} = __tenant_ops_w.__tenant_ops_x
                                          LIMIT {PROBE}) s
                             WHERE ({filter})) AS __tenant_ops_found
               FROM ({values}) __tenant_ops_w (__tenant_ops_x)),
         __tenant_ops_left AS MATERIALIZED (
             SELECT __tenant_ops_x FROM __tenant_ops_probe WHERE NOT __tenant_ops_found)
         SELECT __tenant_ops_x FROM __tenant_ops_probe WHERE __tenant_ops_found
         UNION ALL
         SELECT __tenant_ops_l.__tenant_ops_x FROM __tenant_ops_left __tenant_ops_l
          WHERE (SELECT pg_catalog.count(*) FROM __tenant_ops_left) <= {few}
            AND EXISTS (SELECT FROM {t} s WHERE s.{c} = __tenant_ops_l.__tenant_ops_x AND ({filter}))
         UNION ALL
         SELECT DISTINCT s.{c} FROM {t} s
          WHERE (SELECT pg_catalog.count(*) FROM __tenant_ops_left) > {few}
            AND s.{c} IN (SELECT __tenant_ops_x FROM __tenant_ops_left)
            AND ({filter})",
        t = child.sql,
    ))
}
