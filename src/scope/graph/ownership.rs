//! Ownership: the one path from each owned table to the root, and the shared tables.

use std::collections::{BTreeMap, BTreeSet};

use super::order::dependency_order;
use super::*;
use crate::error::Common;
use crate::scope::Error;

/// Resolves ownership, shared tables and dependency order for `spec` over `catalog`.
pub fn resolve(catalog: &Catalog, spec: &ScopeSpec) -> Result<ResolvedScope, Error> {
    let owned = resolve_ownership(catalog, spec)?;
    let shared = resolve_shared(catalog, spec, &owned);

    for table in spec.owner.keys() {
        if !owned.contains_key(table) {
            return Err(Common::InvalidOption(
                format!(
                    "option \"owner\" names table {}, which the scope does not own",
                    catalog.table(*table).display
                ),
                Some(format!(
                    "Only tables reachable from the root {} through foreign keys or links can be given an owner.",
                    catalog.table(spec.root).display
                )),
            ).into());
        }
    }

    let mut members: BTreeMap<TableId, ScopeTable> = BTreeMap::new();
    for (oid, (depth, edge)) in &owned {
        let role = if *oid == spec.root {
            Role::Root
        } else {
            Role::Owned
        };
        members.insert(
            *oid,
            ScopeTable {
                oid: *oid,
                role,
                depth: *depth,
                owner_edge: *edge,
                referenced_by: vec![],
                notes: vec![],
            },
        );
    }
    for (oid, (depth, refs)) in &shared {
        members.insert(
            *oid,
            ScopeTable {
                oid: *oid,
                role: Role::Shared,
                depth: *depth,
                owner_edge: None,
                referenced_by: refs.clone(),
                notes: vec![],
            },
        );
    }

    let mut cross_references = vec![];
    for (i, e) in catalog.edges.iter().enumerate() {
        let (Some(child), Some(parent)) = (owned.get(&e.child), owned.get(&e.parent)) else {
            continue;
        };
        let _ = (child, parent);
        if owned[&e.child].1 == Some(i) {
            continue;
        }
        if e.child == spec.root && e.is_self_reference() {
            // A root row pointing at another root row (an employee's manager) references data
            // of another tenant the way shared data is referenced: never ownership.
            if let Some(t) = members.get_mut(&e.child) {
                t.notes.push(format!(
                    "self-reference {}: the root rows it points at belong to other tenants and are treated as shared",
                    catalog.describe_edge(e)
                ));
            }
            continue;
        }
        cross_references.push(i);
    }

    let (order, deferred_edges) = dependency_order(catalog, &mut members);
    let tables = order
        .into_iter()
        .map(|oid| members.remove(&oid).expect("ordered member"))
        .collect();
    Ok(ResolvedScope {
        root: spec.root,
        tenant_key: spec.tenant_key.clone(),
        tables,
        cross_references,
        deferred_edges,
    })
}

/// Owned tables with their depth and ownership edge, found layer by layer from the root so
/// that each table takes the path towards the table nearest the root.
fn resolve_ownership(
    catalog: &Catalog,
    spec: &ScopeSpec,
) -> Result<BTreeMap<TableId, (usize, Option<usize>)>, Error> {
    let eligible = |t: TableId| {
        t != spec.root
            && !spec.exclude.contains(&t)
            && !spec.shared.contains(&t)
            && spec.include.as_ref().is_none_or(|inc| inc.contains(&t))
    };

    // The explicit owner choices, checked against the table's own edges up front.
    let mut chosen: BTreeMap<TableId, usize> = BTreeMap::new();
    for (table, choice) in &spec.owner {
        chosen.insert(*table, pick_owner_edge(catalog, *table, choice)?);
    }

    let mut owned: BTreeMap<TableId, (usize, Option<usize>)> = BTreeMap::new();
    owned.insert(spec.root, (0, None));
    let mut ambiguities: Vec<(TableId, Vec<usize>)> = vec![];
    let mut depth = 0;
    loop {
        let frontier: BTreeSet<TableId> = owned
            .iter()
            .filter(|(_, (d, _))| *d == depth)
            .map(|(t, _)| *t)
            .collect();
        if frontier.is_empty() {
            break;
        }
        // Candidate ownership edges for tables not yet owned, whose parent is at this depth.
        let mut candidates: BTreeMap<TableId, Vec<usize>> = BTreeMap::new();
        for (i, e) in catalog.edges.iter().enumerate() {
            if e.is_self_reference() || owned.contains_key(&e.child) || !eligible(e.child) {
                continue;
            }
            if !frontier.contains(&e.parent) {
                continue;
            }
            if let Some(&pick) = chosen.get(&e.child) {
                if pick != i {
                    continue;
                }
            }
            candidates.entry(e.child).or_default().push(i);
        }
        // An ambiguous table takes its first candidate for now, so that resolution goes on
        // and finds the ambiguities of deeper layers too: they are all reported at once, with
        // one `owner` option that settles every one of them.
        for (table, edges) in candidates {
            if edges.len() > 1 {
                ambiguities.push((table, edges.clone()));
            }
            owned.insert(table, (depth + 1, Some(edges[0])));
        }
        depth += 1;
    }
    if !ambiguities.is_empty() {
        return Err(ambiguous(catalog, &ambiguities));
    }
    Ok(owned)
}

/// The edge of `table` that an `owner` choice designates: by constraint or link name first,
/// then by parent table.
fn pick_owner_edge(
    catalog: &Catalog,
    table: TableId,
    choice: &OwnerChoice,
) -> Result<usize, Error> {
    let outgoing: Vec<usize> = catalog
        .edges
        .iter()
        .enumerate()
        .filter(|(_, e)| e.child == table && !e.is_self_reference())
        .map(|(i, _)| i)
        .collect();
    let by_name: Vec<usize> = outgoing
        .iter()
        .copied()
        .filter(|i| catalog.edges[*i].answers_to(&choice.text))
        .collect();
    let matches = if by_name.is_empty() {
        match choice.as_table {
            Some(parent) => outgoing
                .iter()
                .copied()
                .filter(|i| catalog.edges[*i].parent == parent)
                .collect(),
            None => vec![],
        }
    } else {
        by_name
    };
    let tdisplay = &catalog.table(table).display;
    match matches.len() {
        1 => Ok(matches[0]),
        0 => {
            let names: Vec<String> = outgoing
                .iter()
                .map(|i| catalog.describe_edge(&catalog.edges[*i]))
                .collect();
            Err(Error::UnknownObject {
                what: "foreign key, link or parent table",
                name: choice.text.clone(),
                context: format!("option \"owner\" for table {tdisplay}"),
                hint: Some(if names.is_empty() {
                    format!("Table {tdisplay} has no foreign keys or links to other tables.")
                } else {
                    format!(
                        "Table {tdisplay} references other tables through: {}.",
                        names.join("; ")
                    )
                }),
            })
        }
        _ => Err(Common::InvalidOption(
            format!(
                "option \"owner\" for table {tdisplay}: \"{}\" matches {} references",
                choice.text,
                matches.len()
            ),
            Some(format!(
                "Name one constraint or link instead: {}.",
                matches
                    .iter()
                    .map(|i| catalog.edges[*i].name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        )
        .into()),
    }
}

/// Every ambiguous table (nearest the root first) with its candidates; the HINT is a complete
/// `owner` option, the first candidate of each, ready to paste.
fn ambiguous(catalog: &Catalog, found: &[(TableId, Vec<usize>)]) -> Error {
    let describe = |edges: &[usize]| -> Vec<String> {
        edges
            .iter()
            .map(|i| catalog.describe_edge(&catalog.edges[*i]))
            .collect()
    };
    let (table, edges) = &found[0];
    let t = catalog.table(*table);
    let also: Vec<String> = found[1..]
        .iter()
        .map(|(t, es)| {
            format!(
                "{} ({})",
                catalog.table(*t).display,
                describe(es).join("; ")
            )
        })
        .collect();
    let owner: Vec<String> = found
        .iter()
        .map(|(t, es)| {
            format!(
                "\"{}\": \"{}\"",
                json_escape(&catalog.table(*t).display),
                json_escape(&catalog.edges[es[0]].name)
            )
        })
        .collect();
    Error::AmbiguousOwnership {
        table: t.display.clone(),
        count: edges.len(),
        candidates: describe(edges).join("; "),
        also,
        hint: if found.len() == 1 {
            format!(
                "Say which reference owns {} with the scope option \"owner\" (a constraint or link name, or the parent table's name), e.g. '{{\"owner\": {{{}}}}}'.",
                t.display,
                owner.join(", ")
            )
        } else {
            format!(
                "Say which reference owns each of these {} tables with the scope option \"owner\" (a constraint or link name, or the parent table's name), e.g. with the first candidate of each: '{{\"owner\": {{{}}}}}'.",
                found.len(),
                owner.join(", ")
            )
        },
    }
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].replace('\'', "''")
}

/// Shared tables: referenced by scope rows but not owned, transitively, with the edges that
/// reference them.
fn resolve_shared(
    catalog: &Catalog,
    spec: &ScopeSpec,
    owned: &BTreeMap<TableId, (usize, Option<usize>)>,
) -> BTreeMap<TableId, (usize, Vec<usize>)> {
    let mut shared: BTreeMap<TableId, (usize, Vec<usize>)> = BTreeMap::new();
    let mut frontier: BTreeSet<TableId> = owned.keys().copied().collect();
    let mut depth = 1;
    let mut seen: BTreeSet<TableId> = owned.keys().copied().collect();
    while !frontier.is_empty() {
        let mut next = BTreeSet::new();
        for (i, e) in catalog.edges.iter().enumerate() {
            if !frontier.contains(&e.child)
                || e.is_self_reference()
                || owned.contains_key(&e.parent)
                || spec.exclude.contains(&e.parent)
            {
                continue;
            }
            if seen.contains(&e.parent) && !next.contains(&e.parent) {
                // Already placed at a smaller depth; still record this reference to it.
                if let Some(entry) = shared.get_mut(&e.parent) {
                    entry.1.push(i);
                }
                continue;
            }
            shared.entry(e.parent).or_insert((depth, vec![])).1.push(i);
            next.insert(e.parent);
        }
        seen.extend(next.iter().copied());
        frontier = next;
        depth += 1;
    }
    // Tables declared shared that nothing in the scope references still belong to the scope.
    for t in &spec.shared {
        shared.entry(*t).or_insert((1, vec![]));
    }
    for entry in shared.values_mut() {
        entry.1.sort_unstable();
        entry.1.dedup();
    }
    shared
}
