//! One tenant's rows counted: a table whose pass over the tenant's rows only counts them is
//! counted in its owner's statement where the planner reaches its rows by index anyway.
//!
//! A one-tenant validation counts every table's rows of the tenant (`rows_checked`), each
//! table by a statement that finds the tenant's rows down the ownership path: the order items'
//! statement walks doctors, patients and orders again to reach them, after the orders'
//! statement walked doctors and patients. Where a table's foreign keys are all checked from an
//! index (`distinct_values.rs`), its pass is a count, and for a small tenant the planner finds
//! its rows by one index probe per owner row: the same probes, made from the owner's own
//! statement (`LATERAL` per owner row), count both tables in one walk (office 4 of the
//! validation benchmark: its 30k orders enumerated once instead of twice). For a large tenant
//! the planner reads the child whole and hashes (office 1: 750k order items by a parallel
//! hash join), which a per-row `LATERAL` would turn into 300k probes: the child is then
//! counted by its own statement as before. Which of the two the planner does is asked of it
//! (`EXPLAIN` of the child's own count: the child read only by index probes per row of its
//! owner). `job_log` names each table counted with its owner (`table.counted`).

use std::collections::{BTreeMap, BTreeSet};

use pgrx::prelude::*;
use serde_json::Value;

use super::{quoted, Issue, Validation};
use crate::error::OrRaise;
use crate::scope::graph::{EdgeKind, Role, TableId};
use crate::scope::LoadedScope;

/// What the one-tenant check of a table does besides the checks read from an index.
pub(super) struct TablePass {
    /// Foreign keys checked by the pass over the tenant's rows (a LEFT JOIN each).
    pub in_pass: Vec<usize>,
    /// Links (no unique parent key): an anti-join each.
    pub links: Vec<usize>,
    /// Findings of the checks made from an index, reported in the table's turn.
    pub early: Vec<Issue>,
}

impl Validation {
    /// The tables counted with their owner: child → ownership edge. A table qualifies when
    /// both its pass and its owner's only count (no foreign key left to join), it is owned
    /// through a foreign key (a unique parent key: each child row meets one owner row) from
    /// an owned or root table, it is a plain table (a partitioned one's scans name its
    /// partitions), and the planner reads its rows by index for this tenant. A table counted
    /// by its owner counts no child of its own, nor is an owner counted by its own owner
    /// (deepest tables first).
    pub(super) fn counted_with_owner(
        &self,
        l: &LoadedScope,
        passes: &[TablePass],
    ) -> BTreeMap<TableId, usize> {
        let (c, r) = (&l.catalog, &l.resolved);
        let only_counts: BTreeSet<TableId> = r
            .tables
            .iter()
            .zip(passes)
            .filter(|(t, p)| t.role != Role::Shared && p.in_pass.is_empty())
            .map(|(t, _)| t.oid)
            .collect();
        let mut candidates: Vec<_> = r
            .tables
            .iter()
            .filter(|t| t.role == Role::Owned && only_counts.contains(&t.oid))
            .filter(|t| c.table(t.oid).kind == "r")
            .filter_map(|t| {
                let e = t.owner_edge?;
                let edge = &c.edges[e];
                (matches!(edge.kind, EdgeKind::ForeignKey { .. })
                    && edge.parent != t.oid
                    && only_counts.contains(&edge.parent))
                .then_some((t.depth, t.oid, e))
            })
            .collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        let mut fused = BTreeMap::new();
        let mut owners = BTreeSet::new();
        for (_, child, e) in candidates {
            let parent = c.edges[e].parent;
            if owners.contains(&child) || owners.contains(&parent) || fused.contains_key(&parent) {
                continue;
            }
            let alone = format!(
                "SELECT pg_catalog.count(*)::int8 FROM {}",
                self.rows(l, child, "c")
            );
            if self.reads_by_index(&alone, &c.table(child).name) {
                fused.insert(child, e);
                owners.insert(parent);
            }
        }
        fused
    }

    /// The tenant's rows of `owner` and of `child` (owned by it through edge `e`), counted in
    /// one walk: per owner row, its child rows by the ownership foreign key.
    pub(super) fn count_with_child(
        &self,
        l: &LoadedScope,
        owner: TableId,
        child: TableId,
        e: usize,
    ) -> i64 {
        let c = &l.catalog;
        let edge = &c.edges[e];
        let sql = format!(
            "SELECT (pg_catalog.count(*) + coalesce(pg_catalog.sum(k.n), 0))::int8
               FROM {rows}
              CROSS JOIN LATERAL (SELECT pg_catalog.count(*) AS n FROM {child} x
                                   WHERE ({fk}) = ({key})) k",
            rows = self.rows(l, owner, "c"),
            child = c.table(child).sql,
            fk = quoted(c, child, &edge.child_cols, "x").join(", "),
            key = quoted(c, owner, &edge.parent_cols, "c").join(", "),
        );
        let n = Spi::get_one_with_args::<i64>(&sql, &self.args())
            .or_raise()
            .unwrap_or(0);
        // Said in the job log, as a migration says how it selected a table's rows.
        crate::jobs::log(
            self.job_id,
            "table.counted",
            Some("check"),
            Some(child),
            None,
            Some(&format!(
                "counted with {}, by index from each of its rows",
                c.table(owner).display
            )),
            None,
        );
        n
    }

    /// Whether the plan of `sql` reads the relation named `name` only by index probes made
    /// per row of another (see [`probed_per_row`]).
    fn reads_by_index(&self, sql: &str, name: &str) -> bool {
        let plan = Spi::get_one_with_args::<pgrx::Json>(
            &format!("EXPLAIN (FORMAT JSON) {sql}"),
            &self.args(),
        )
        .or_raise();
        plan.is_some_and(|p| probed_per_row(&p.0, name))
    }
}

/// Whether an `EXPLAIN (FORMAT JSON)` plan reads relation `name`, and only by index scans
/// that are the inner side of a nested loop (probes per outer row) and not parallel: what a
/// `LATERAL` per owner row does too. A sequential scan, or an index read whole into a hash
/// join (office 1's orders: a parallel index-only scan of the whole index), is not.
fn probed_per_row(plan: &Value, name: &str) -> bool {
    let mut scans = vec![];
    collect_scans(plan, None, name, &mut scans);
    !scans.is_empty() && scans.iter().all(|probe| *probe)
}

/// Walks the plan: for each node reading `name`, whether it is a probe (see above).
/// `inner_of_loop`: the node is the inner side of a nested loop (or below one, through
/// nodes that pass the outer row's parameters on, a bitmap heap scan's index scan).
fn collect_scans(node: &Value, inner_of_loop: Option<bool>, name: &str, out: &mut Vec<bool>) {
    match node {
        Value::Array(items) => {
            for v in items {
                collect_scans(v, inner_of_loop, name, out);
            }
        }
        Value::Object(map) => {
            let kind = map.get("Node Type").and_then(Value::as_str).unwrap_or("");
            let inner = map.get("Parent Relationship").and_then(Value::as_str) == Some("Inner");
            let probe_here = inner_of_loop.unwrap_or(false) && inner;
            if map.get("Relation Name").and_then(Value::as_str) == Some(name) {
                let parallel = map.get("Parallel Aware").and_then(Value::as_bool) == Some(true);
                let by_index =
                    matches!(kind, "Index Scan" | "Index Only Scan" | "Bitmap Heap Scan");
                out.push(by_index && !parallel && probe_here);
            }
            let below = if kind == "Nested Loop" {
                Some(true)
            } else {
                None
            };
            for (k, v) in map {
                match k.as_str() {
                    "Plans" => collect_scans(v, below, name, out),
                    "Plan" => collect_scans(v, None, name, out),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probes_only_as_the_inner_side_of_a_nested_loop() {
        let hashed = json!([{"Plan": {"Node Type": "Aggregate", "Plans": [
            {"Node Type": "Hash Join", "Parent Relationship": "Outer", "Plans": [
                {"Node Type": "Index Only Scan", "Parent Relationship": "Outer", "Parallel Aware": true, "Relation Name": "orders"},
                {"Node Type": "Hash", "Parent Relationship": "Inner", "Plans": [
                    {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "patients"}]}]}]}}]);
        assert!(
            !probed_per_row(&hashed, "orders"),
            "an index read whole into a hash join"
        );
        assert!(!probed_per_row(&hashed, "patients"), "a sequential scan");
        assert!(!probed_per_row(&hashed, "items"), "not read at all");
        let probed = json!([{"Plan": {"Node Type": "Aggregate", "Plans": [
            {"Node Type": "Nested Loop", "Parent Relationship": "Outer", "Plans": [
                {"Node Type": "Index Scan", "Parent Relationship": "Outer", "Relation Name": "patients"},
                {"Node Type": "Index Only Scan", "Parent Relationship": "Inner", "Parallel Aware": false, "Relation Name": "orders"}]}]}}]);
        assert!(probed_per_row(&probed, "orders"));
        assert!(
            !probed_per_row(&probed, "patients"),
            "the outer side is read once, not probed"
        );
    }
}
