//! Dependency order of a scope's tables, parents first, with cycles broken.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// Orders the scope's tables parents first (Kahn's algorithm over the edges between them).
/// A cycle is broken at a nullable edge when there is one (its rows are inserted with the
/// reference unset, then updated); otherwise at a non-ownership edge, with a note that the
/// constraint must be deferrable. Returns the order and the deferred edges.
pub(super) fn dependency_order(
    catalog: &Catalog,
    members: &mut BTreeMap<TableId, ScopeTable>,
) -> (Vec<TableId>, Vec<usize>) {
    let mut active: BTreeSet<usize> = catalog
        .edges
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            !e.is_self_reference()
                && members.contains_key(&e.child)
                && members.contains_key(&e.parent)
        })
        .map(|(i, _)| i)
        .collect();
    let mut placed: Vec<TableId> = vec![];
    let mut remaining: BTreeSet<TableId> = members.keys().copied().collect();
    let mut deferred = vec![];

    let sort_key = |m: &BTreeMap<TableId, ScopeTable>, t: TableId| {
        let st = &m[&t];
        (st.role, st.depth, catalog.table(t).display.clone())
    };

    while !remaining.is_empty() {
        let ready: Vec<TableId> = remaining
            .iter()
            .copied()
            .filter(|t| {
                !active.iter().any(|i| {
                    let e = &catalog.edges[*i];
                    e.child == *t && remaining.contains(&e.parent)
                })
            })
            .collect();
        if let Some(next) = ready.into_iter().min_by_key(|t| sort_key(members, *t)) {
            remaining.remove(&next);
            placed.push(next);
            continue;
        }
        // A stall: every remaining table waits on another remaining one. Only edges that lie on
        // a cycle (the parent reaches back to the child) are candidates for breaking it.
        let between: Vec<usize> = active
            .iter()
            .copied()
            .filter(|i| {
                let e = &catalog.edges[*i];
                remaining.contains(&e.child) && remaining.contains(&e.parent)
            })
            .collect();
        let reaches = |from: TableId, to: TableId| {
            let mut seen = BTreeSet::from([from]);
            let mut stack = vec![from];
            while let Some(t) = stack.pop() {
                if t == to {
                    return true;
                }
                for i in &between {
                    let e = &catalog.edges[*i];
                    if e.child == t && seen.insert(e.parent) {
                        stack.push(e.parent);
                    }
                }
            }
            false
        };
        let in_cycle: Vec<usize> = between
            .iter()
            .copied()
            .filter(|i| reaches(catalog.edges[*i].parent, catalog.edges[*i].child))
            .collect();
        let is_owner_edge = |i: usize| members.values().any(|m| m.owner_edge == Some(i));
        let pick = in_cycle
            .iter()
            .copied()
            .filter(|i| catalog.edge_is_nullable(&catalog.edges[*i]))
            .max_by_key(|i| {
                (
                    !is_owner_edge(*i),
                    members[&catalog.edges[*i].child].depth,
                    *i,
                )
            })
            .map(|i| (i, true))
            .or_else(|| {
                in_cycle
                    .iter()
                    .copied()
                    .max_by_key(|i| {
                        (
                            !is_owner_edge(*i),
                            members[&catalog.edges[*i].child].depth,
                            *i,
                        )
                    })
                    .map(|i| (i, false))
            });
        let Some((edge, nullable)) = pick else {
            // Unreachable (a stall implies an edge between remaining tables), but never loop.
            placed.extend(remaining.iter().copied());
            break;
        };
        active.remove(&edge);
        deferred.push(edge);
        let e = &catalog.edges[edge];
        let note = if nullable {
            format!(
                "insertion cycle with {}: broken at nullable {} (set after both tables are loaded)",
                catalog.table(e.parent).display,
                catalog.describe_edge(e)
            )
        } else {
            format!(
                "insertion cycle with {}: {} is NOT NULL, so copying both tables needs it DEFERRABLE",
                catalog.table(e.parent).display,
                catalog.describe_edge(e)
            )
        };
        if let Some(m) = members.get_mut(&e.child) {
            m.notes.push(note);
        }
    }
    (placed, deferred)
}
