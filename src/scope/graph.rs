//! The scope graph: which tables a tenant owns, through which path, which tables it only
//! references, and in what order they depend on each other.
//!
//! Free of pgrx on purpose: the catalog reader hands over tables and edges whose names are
//! already quoted by PostgreSQL, and everything here is plain graph work and string building,
//! covered by plain unit tests.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{OpsError, OpsResult};

pub type TableId = u32;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    /// `quote_ident(name)`, as PostgreSQL quotes it.
    pub quoted: String,
    pub type_oid: u32,
    /// The type without modifiers, schema-qualified where needed (`format_type(oid, NULL)`).
    pub type_name: String,
    /// The type as declared, with modifiers (`character varying(20)`).
    pub type_full: String,
    pub not_null: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Table {
    pub oid: TableId,
    /// How the caller would write the table (`oid::regclass::text` under their search_path).
    pub display: String,
    /// Always schema-qualified and quoted: safe to splice into SQL.
    pub sql: String,
    /// `r` ordinary table, `p` partitioned table.
    pub kind: String,
    pub columns: Vec<Column>,
    pub primary_key: Option<Vec<String>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum EdgeKind {
    /// A foreign key constraint. `found_on` lists the relations that declare it (the table
    /// itself, or the partitions that carry it when it is declared per partition).
    ForeignKey {
        not_valid: bool,
        found_on: Vec<String>,
        names: Vec<String>,
    },
    /// A relationship declared in the scope's `links` option.
    Link,
}

/// A reference from `child_cols` of `child` to `parent_cols` of `parent`: an FK or a link.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Edge {
    pub name: String,
    pub kind: EdgeKind,
    pub child: TableId,
    pub child_cols: Vec<String>,
    pub parent: TableId,
    pub parent_cols: Vec<String>,
}

impl Edge {
    pub fn is_self_reference(&self) -> bool {
        self.child == self.parent
    }

    /// Whether `name` designates this edge: its name, or any of the constraint names it was
    /// found under (an FK declared on each partition has one name per partition).
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name
            || matches!(&self.kind, EdgeKind::ForeignKey { names, .. } if names.iter().any(|n| n == name))
    }
}

/// Everything the resolver needs to know about the database: tables by oid and every edge.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub tables: BTreeMap<TableId, Table>,
    pub edges: Vec<Edge>,
}

impl Catalog {
    pub fn table(&self, oid: TableId) -> &Table {
        // Edges are only ever built between tables of the map (see catalog.rs).
        &self.tables[&oid]
    }

    /// Whether every child column of the edge may be NULL (the edge can be left unset, then
    /// filled in later, to break an insertion cycle).
    pub fn edge_is_nullable(&self, edge: &Edge) -> bool {
        let t = self.table(edge.child);
        edge.child_cols
            .iter()
            .all(|c| t.column(c).is_some_and(|col| !col.not_null))
    }

    fn quoted_cols(&self, table: TableId, cols: &[String]) -> Vec<String> {
        let t = self.table(table);
        cols.iter()
            .map(|c| {
                t.column(c)
                    .map(|col| col.quoted.clone())
                    .unwrap_or_else(|| c.clone())
            })
            .collect()
    }

    /// `a` or `(a, b)`: a column list as it appears on either side of `IN`.
    fn col_tuple(&self, table: TableId, cols: &[String]) -> String {
        let q = self.quoted_cols(table, cols);
        if q.len() == 1 {
            q[0].clone()
        } else {
            format!("({})", q.join(", "))
        }
    }

    /// `a, b`: a column list as it appears in a select list.
    fn col_list(&self, table: TableId, cols: &[String]) -> String {
        self.quoted_cols(table, cols).join(", ")
    }

    /// One hop of an ownership path: `table.col`, or `table(a, b)` for a composite key.
    fn hop(&self, edge: &Edge) -> String {
        let table = &self.table(edge.child).display;
        if edge.child_cols.len() == 1 {
            format!("{table}.{}", self.col_tuple(edge.child, &edge.child_cols))
        } else {
            format!("{table}{}", self.col_tuple(edge.child, &edge.child_cols))
        }
    }

    pub fn describe_edge(&self, edge: &Edge) -> String {
        let kind = match edge.kind {
            EdgeKind::ForeignKey { .. } => "foreign key",
            EdgeKind::Link => "link",
        };
        format!(
            "{kind} {} ({} → {})",
            edge.name,
            self.hop(edge),
            self.table(edge.parent).display
        )
    }
}

/// How the scope's `owner` option designates one table's ownership path.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerChoice {
    /// The text the user wrote: a constraint or link name, or a parent table name.
    pub text: String,
    /// The table that text names, when it names one.
    pub as_table: Option<TableId>,
}

/// The scope definition with every table name already resolved to an oid.
#[derive(Clone, Debug, Default)]
pub struct ScopeSpec {
    pub root: TableId,
    pub tenant_key: String,
    /// When set, only these tables (and the root) may be owned.
    pub include: Option<BTreeSet<TableId>>,
    pub exclude: BTreeSet<TableId>,
    pub shared: BTreeSet<TableId>,
    pub owner: BTreeMap<TableId, OwnerChoice>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Role {
    Shared,
    Root,
    Owned,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Owned => "owned",
            Role::Shared => "shared",
        }
    }
}

/// One table of a resolved scope.
#[derive(Clone, Debug, Serialize)]
pub struct ScopeTable {
    pub oid: TableId,
    pub role: Role,
    /// Hops from the root along ownership paths (owned), or along references (shared).
    pub depth: usize,
    /// Owned tables: index into `Catalog::edges` of the ownership path's first hop.
    pub owner_edge: Option<usize>,
    /// Shared tables: the edges through which scope rows reference this table.
    pub referenced_by: Vec<usize>,
    /// Explanations worth showing: insertion cycles and how they are broken, self-references.
    pub notes: Vec<String>,
}

/// A scope resolved against the catalog: every table in dependency order.
#[derive(Clone, Debug)]
pub struct ResolvedScope {
    pub root: TableId,
    pub tenant_key: String,
    /// Parents before children; `tables[i].oid` is unique.
    pub tables: Vec<ScopeTable>,
    /// Edges between owned tables (or from owned tables to the root) that are not an ownership
    /// path: a reference that must stay within the tenant.
    pub cross_references: Vec<usize>,
    /// Edges whose insertion must be deferred to break a cycle (child inserted first with NULL).
    pub deferred_edges: Vec<usize>,
}

impl ResolvedScope {
    pub fn get(&self, oid: TableId) -> Option<&ScopeTable> {
        self.tables.iter().find(|t| t.oid == oid)
    }

    pub fn count(&self, role: Role) -> usize {
        self.tables.iter().filter(|t| t.role == role).count()
    }
}

/// Resolves ownership, shared tables and dependency order for `spec` over `catalog`.
pub fn resolve(catalog: &Catalog, spec: &ScopeSpec) -> OpsResult<ResolvedScope> {
    let owned = resolve_ownership(catalog, spec)?;
    let shared = resolve_shared(catalog, spec, &owned);

    for table in spec.owner.keys() {
        if !owned.contains_key(table) {
            return Err(OpsError::InvalidOption(
                format!(
                    "option \"owner\" names table {}, which the scope does not own",
                    catalog.table(*table).display
                ),
                Some(format!(
                    "Only tables reachable from the root {} through foreign keys or links can be given an owner.",
                    catalog.table(spec.root).display
                )),
            ));
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
) -> OpsResult<BTreeMap<TableId, (usize, Option<usize>)>> {
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
        // Every ambiguity of this layer is reported at once, so one `owner` option fixes all.
        let mut ambiguities = candidates.iter().filter(|(_, edges)| edges.len() > 1);
        if let Some((table, edges)) = ambiguities.next() {
            let also: Vec<String> = ambiguities
                .map(|(t, es)| {
                    let list: Vec<String> = es
                        .iter()
                        .map(|i| catalog.describe_edge(&catalog.edges[*i]))
                        .collect();
                    format!("{} ({})", catalog.table(*t).display, list.join("; "))
                })
                .collect();
            return Err(ambiguous(catalog, *table, edges, also));
        }
        for (table, edges) in candidates {
            owned.insert(table, (depth + 1, Some(edges[0])));
        }
        depth += 1;
    }
    Ok(owned)
}

/// The edge of `table` that an `owner` choice designates: by constraint or link name first,
/// then by parent table.
fn pick_owner_edge(catalog: &Catalog, table: TableId, choice: &OwnerChoice) -> OpsResult<usize> {
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
            Err(OpsError::UnknownObject {
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
        _ => Err(OpsError::InvalidOption(
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
        )),
    }
}

fn ambiguous(catalog: &Catalog, table: TableId, edges: &[usize], also: Vec<String>) -> OpsError {
    let t = catalog.table(table);
    let candidates: Vec<String> = edges
        .iter()
        .map(|i| catalog.describe_edge(&catalog.edges[*i]))
        .collect();
    let first = &catalog.edges[edges[0]];
    OpsError::AmbiguousOwnership {
        table: t.display.clone(),
        count: edges.len(),
        candidates: candidates.join("; "),
        also,
        hint: format!(
            "Say which one owns {} with the scope option \"owner\", e.g. '{{\"owner\": {{\"{}\": \"{}\"}}}}' (a constraint or link name, or the parent table's name).",
            t.display,
            json_escape(&t.display),
            json_escape(&first.name)
        ),
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

/// Orders the scope's tables parents first (Kahn's algorithm over the edges between them).
/// A cycle is broken at a nullable edge when there is one (its rows are inserted with the
/// reference unset, then updated); otherwise at a non-ownership edge, with a note that the
/// constraint must be deferrable. Returns the order and the deferred edges.
fn dependency_order(
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

/// SQL filters that select one tenant's rows of each scope table, with the tenant value as
/// `$1` (text, cast to the key's type where it is compared).
pub struct Filters<'a> {
    catalog: &'a Catalog,
    scope: &'a ResolvedScope,
    key_type: String,
    /// The tenant's own rows: what ownership chains are built from.
    base: BTreeMap<TableId, String>,
    /// What is taken of each table: the base, or the base OR an extension (rows of other
    /// tenants brought along). Shared tables follow these.
    finals: BTreeMap<TableId, String>,
    extensions: BTreeMap<TableId, String>,
}

impl<'a> Filters<'a> {
    pub fn new(catalog: &'a Catalog, scope: &'a ResolvedScope) -> Self {
        Self::with_extensions(catalog, scope, BTreeMap::new())
    }

    /// Filters where some root or owned tables also take the rows an extension condition
    /// selects (over the table's unqualified columns). Extensions widen what is taken of a
    /// table, and so the shared rows it references, but never its children's ownership.
    pub fn with_extensions(
        catalog: &'a Catalog,
        scope: &'a ResolvedScope,
        extensions: BTreeMap<TableId, String>,
    ) -> Self {
        let root = catalog.table(scope.root);
        let key_type = root
            .column(&scope.tenant_key)
            .map(|c| c.type_name.clone())
            .unwrap_or_default();
        let mut f = Filters {
            catalog,
            scope,
            key_type,
            base: BTreeMap::new(),
            finals: BTreeMap::new(),
            extensions,
        };
        // An owned table's filter uses its owner's, so the root and owned tables are built
        // parents first; a shared table's filter uses those of the tables referencing it, so
        // shared tables come after, nearest to the scope first.
        let mut order: Vec<&ScopeTable> = scope
            .tables
            .iter()
            .filter(|t| t.role != Role::Shared)
            .collect();
        let mut shared: Vec<&ScopeTable> = scope
            .tables
            .iter()
            .filter(|t| t.role == Role::Shared)
            .collect();
        shared.sort_by_key(|t| t.depth);
        order.extend(shared);
        for t in order {
            let sql = f.build(t);
            let last = match f.extensions.get(&t.oid) {
                Some(ext) if t.role != Role::Shared => format!("({sql}) OR {ext}"),
                _ => sql.clone(),
            };
            f.base.insert(t.oid, sql);
            f.finals.insert(t.oid, last);
        }
        f
    }

    /// The WHERE clause (without `WHERE`) selecting the tenant's rows of `table`.
    pub fn filter(&self, table: TableId) -> &str {
        self.finals
            .get(&table)
            .map(String::as_str)
            .unwrap_or("false")
    }

    /// The tenant's own rows of `table`, without extensions.
    pub fn base_filter(&self, table: TableId) -> &str {
        self.base.get(&table).map(String::as_str).unwrap_or("false")
    }

    fn param(&self) -> String {
        format!("$1::{}", self.key_type)
    }

    fn build(&self, t: &ScopeTable) -> String {
        let c = self.catalog;
        match t.role {
            Role::Root => {
                let root = c.table(t.oid);
                let key = root
                    .column(&self.scope.tenant_key)
                    .map(|c| c.quoted.clone())
                    .unwrap_or_default();
                format!("{key} = {}", self.param())
            }
            Role::Owned => {
                let e = &c.edges[t.owner_edge.expect("owned tables have an ownership edge")];
                let parent = c.table(e.parent);
                if e.parent == self.scope.root
                    && e.parent_cols.len() == 1
                    && e.parent_cols[0] == self.scope.tenant_key
                {
                    // The FK holds the tenant key itself: no need to visit the root.
                    return format!("{} = {}", c.col_tuple(e.child, &e.child_cols), self.param());
                }
                format!(
                    "{} IN (SELECT {} FROM {} WHERE {})",
                    c.col_tuple(e.child, &e.child_cols),
                    c.col_list(e.parent, &e.parent_cols),
                    parent.sql,
                    self.base_filter(e.parent)
                )
            }
            Role::Shared => {
                if t.referenced_by.is_empty() {
                    return "false".into();
                }
                let mut by_key: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
                for i in &t.referenced_by {
                    let e = &c.edges[*i];
                    // References from tables placed later (a cycle among shared tables) have
                    // no filter yet; they add nothing the earlier references did not.
                    let Some(child_filter) = self.finals.get(&e.child) else {
                        continue;
                    };
                    by_key
                        .entry(e.parent_cols.clone())
                        .or_default()
                        .push(format!(
                            "SELECT {} FROM {} WHERE {}",
                            c.col_list(e.child, &e.child_cols),
                            c.table(e.child).sql,
                            child_filter
                        ));
                }
                let self_refs: Vec<&Edge> = c
                    .edges
                    .iter()
                    .filter(|e| e.child == t.oid && e.is_self_reference())
                    .collect();
                let parts: Vec<String> = by_key
                    .into_iter()
                    .map(|(cols, selects)| {
                        // The referencing rows are computed first, in bulk (MATERIALIZED):
                        // left to itself the planner may start from the shared table and
                        // probe the tenant's rows once per shared row, which is ruinous for
                        // a small tenant of a large table.
                        let base = format!(
                            "{} IN (WITH refs AS MATERIALIZED ({}) SELECT * FROM refs)",
                            c.col_tuple(t.oid, &cols),
                            selects.join(" UNION ")
                        );
                        if self_refs.is_empty() {
                            base
                        } else {
                            self.with_self_references(t.oid, &cols, &base, &self_refs)
                        }
                    })
                    .collect();
                if parts.is_empty() {
                    "false".into()
                } else {
                    parts.join(" OR ")
                }
            }
        }
    }

    /// A shared table with a self-reference (a manager chain): the rows the tenant references
    /// and, recursively, the rows those point at.
    fn with_self_references(
        &self,
        table: TableId,
        key: &[String],
        base: &str,
        self_refs: &[&Edge],
    ) -> String {
        let c = self.catalog;
        let t = c.table(table);
        let mut cols: Vec<String> = key.to_vec();
        for e in self_refs {
            for col in e.child_cols.iter().chain(e.parent_cols.iter()) {
                if !cols.contains(col) {
                    cols.push(col.clone());
                }
            }
        }
        let list = c.col_list(table, &cols);
        let qualified = |alias: &str, cs: &[String]| -> String {
            let q: Vec<String> = c
                .quoted_cols(table, cs)
                .into_iter()
                .map(|x| format!("{alias}.{x}"))
                .collect();
            if q.len() == 1 {
                q[0].clone()
            } else {
                format!("({})", q.join(", "))
            }
        };
        let joins: Vec<String> = self_refs
            .iter()
            .map(|e| {
                format!(
                    "{} = {}",
                    qualified("s", &e.parent_cols),
                    qualified("r", &e.child_cols)
                )
            })
            .collect();
        let s_list: Vec<String> = c
            .quoted_cols(table, &cols)
            .into_iter()
            .map(|x| format!("s.{x}"))
            .collect();
        format!(
            "{key_tuple} IN (WITH RECURSIVE r AS (SELECT {list} FROM {sql} WHERE {base} UNION SELECT {s_list} FROM {sql} s JOIN r ON {joins}) SELECT {key_list} FROM r)",
            key_tuple = c.col_tuple(table, key),
            sql = t.sql,
            s_list = s_list.join(", "),
            joins = joins.join(" OR "),
            key_list = c.col_list(table, key),
        )
    }

    /// The ownership path of a table, child first: `invoice_line.invoice_id → invoice.customer_id → customer.support_rep_id → employee`.
    pub fn path(&self, table: TableId) -> String {
        let c = self.catalog;
        let Some(t) = self.scope.get(table) else {
            return String::new();
        };
        match t.role {
            Role::Root => format!("root (tenant key {})", {
                let root = c.table(table);
                root.column(&self.scope.tenant_key)
                    .map(|c| c.quoted.clone())
                    .unwrap_or_default()
            }),
            Role::Owned => {
                let mut hops = vec![];
                let mut cur = t;
                while let Some(i) = cur.owner_edge {
                    let e = &c.edges[i];
                    hops.push(c.hop(e));
                    match self.scope.get(e.parent) {
                        Some(p) => cur = p,
                        None => break,
                    }
                }
                hops.push(c.table(self.scope.root).display.clone());
                hops.join(" → ")
            }
            Role::Shared => {
                if t.referenced_by.is_empty() {
                    "shared (declared; not referenced by the scope)".into()
                } else {
                    let refs: Vec<String> = t
                        .referenced_by
                        .iter()
                        .map(|i| c.hop(&c.edges[*i]))
                        .collect();
                    format!("referenced by {}", refs.join(", "))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, not_null: bool) -> Column {
        Column {
            name: name.into(),
            quoted: name.into(),
            type_oid: 23,
            type_name: "integer".into(),
            type_full: "integer".into(),
            not_null,
        }
    }

    fn table(oid: TableId, name: &str, cols: &[(&str, bool)]) -> Table {
        Table {
            oid,
            display: name.into(),
            sql: format!("public.{name}"),
            kind: "r".into(),
            columns: cols.iter().map(|(n, nn)| col(n, *nn)).collect(),
            primary_key: Some(vec![cols[0].0.into()]),
        }
    }

    fn fk(name: &str, child: TableId, cc: &[&str], parent: TableId, pc: &[&str]) -> Edge {
        Edge {
            name: name.into(),
            kind: EdgeKind::ForeignKey {
                not_valid: false,
                found_on: vec![],
                names: vec![name.into()],
            },
            child,
            child_cols: cc.iter().map(|s| s.to_string()).collect(),
            parent,
            parent_cols: pc.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// chinook's shape: employee(1) ← customer(2) ← invoice(3) ← invoice_line(4) → track(5) → album(6).
    fn chinook() -> Catalog {
        let mut c = Catalog::default();
        for t in [
            table(
                1,
                "employee",
                &[("employee_id", true), ("reports_to", false)],
            ),
            table(
                2,
                "customer",
                &[("customer_id", true), ("support_rep_id", false)],
            ),
            table(3, "invoice", &[("invoice_id", true), ("customer_id", true)]),
            table(
                4,
                "invoice_line",
                &[
                    ("invoice_line_id", true),
                    ("invoice_id", true),
                    ("track_id", true),
                ],
            ),
            table(5, "track", &[("track_id", true), ("album_id", false)]),
            table(6, "album", &[("album_id", true)]),
            table(
                7,
                "playlist_track",
                &[("playlist_id", true), ("track_id", true)],
            ),
        ] {
            c.tables.insert(t.oid, t);
        }
        c.edges = vec![
            fk("fk_reports_to", 1, &["reports_to"], 1, &["employee_id"]),
            fk(
                "fk_support_rep",
                2,
                &["support_rep_id"],
                1,
                &["employee_id"],
            ),
            fk(
                "fk_invoice_customer",
                3,
                &["customer_id"],
                2,
                &["customer_id"],
            ),
            fk("fk_line_invoice", 4, &["invoice_id"], 3, &["invoice_id"]),
            fk("fk_line_track", 4, &["track_id"], 5, &["track_id"]),
            fk("fk_track_album", 5, &["album_id"], 6, &["album_id"]),
            fk("fk_pt_track", 7, &["track_id"], 5, &["track_id"]),
        ];
        c
    }

    fn spec(root: TableId, key: &str) -> ScopeSpec {
        ScopeSpec {
            root,
            tenant_key: key.into(),
            ..Default::default()
        }
    }

    #[test]
    fn chinook_roles_order_and_filters() {
        let c = chinook();
        let s = resolve(&c, &spec(1, "employee_id")).unwrap();
        let roles: Vec<(&str, Role)> = s
            .tables
            .iter()
            .map(|t| (c.table(t.oid).display.as_str(), t.role))
            .collect();
        assert_eq!(
            roles,
            vec![
                ("album", Role::Shared),
                ("track", Role::Shared),
                ("employee", Role::Root),
                ("customer", Role::Owned),
                ("invoice", Role::Owned),
                ("invoice_line", Role::Owned),
            ]
        );
        assert!(
            s.get(7).is_none(),
            "playlist_track only references shared data"
        );
        let f = Filters::new(&c, &s);
        assert_eq!(f.filter(1), "employee_id = $1::integer");
        assert_eq!(f.filter(2), "support_rep_id = $1::integer");
        assert_eq!(
            f.filter(3),
            "customer_id IN (SELECT customer_id FROM public.customer WHERE support_rep_id = $1::integer)"
        );
        assert_eq!(
            f.path(4),
            "invoice_line.invoice_id → invoice.customer_id → customer.support_rep_id → employee"
        );
        assert_eq!(
            f.filter(6),
            "album_id IN (WITH refs AS MATERIALIZED (SELECT album_id FROM public.track WHERE track_id IN (WITH refs AS MATERIALIZED (SELECT track_id FROM public.invoice_line WHERE invoice_id IN (SELECT invoice_id FROM public.invoice WHERE customer_id IN (SELECT customer_id FROM public.customer WHERE support_rep_id = $1::integer))) SELECT * FROM refs)) SELECT * FROM refs)"
        );
        assert!(s.tables[2].notes[0].contains("self-reference foreign key fk_reports_to"));
        assert!(s.cross_references.is_empty());
    }

    /// pagila's shape: rental has three equally near parents.
    fn pagila() -> Catalog {
        let mut c = Catalog::default();
        for t in [
            table(
                1,
                "store",
                &[("store_id", true), ("manager_staff_id", true)],
            ),
            table(2, "staff", &[("staff_id", true), ("store_id", true)]),
            table(3, "customer", &[("customer_id", true), ("store_id", true)]),
            table(
                4,
                "inventory",
                &[("inventory_id", true), ("store_id", true)],
            ),
            table(
                5,
                "rental",
                &[
                    ("rental_id", true),
                    ("inventory_id", true),
                    ("customer_id", true),
                    ("staff_id", true),
                ],
            ),
        ] {
            c.tables.insert(t.oid, t);
        }
        c.edges = vec![
            fk(
                "store_manager_staff_id_fkey",
                1,
                &["manager_staff_id"],
                2,
                &["staff_id"],
            ),
            fk("staff_store_id_fkey", 2, &["store_id"], 1, &["store_id"]),
            fk("customer_store_id_fkey", 3, &["store_id"], 1, &["store_id"]),
            fk(
                "inventory_store_id_fkey",
                4,
                &["store_id"],
                1,
                &["store_id"],
            ),
            fk(
                "rental_inventory_id_fkey",
                5,
                &["inventory_id"],
                4,
                &["inventory_id"],
            ),
            fk(
                "rental_customer_id_fkey",
                5,
                &["customer_id"],
                3,
                &["customer_id"],
            ),
            fk("rental_staff_id_fkey", 5, &["staff_id"], 2, &["staff_id"]),
        ];
        c
    }

    #[test]
    fn equally_near_paths_need_an_owner() {
        let c = pagila();
        let err = resolve(&c, &spec(1, "store_id")).unwrap_err();
        match &err {
            OpsError::AmbiguousOwnership {
                table,
                count,
                candidates,
                hint,
                ..
            } => {
                assert_eq!(table, "rental");
                assert_eq!(*count, 3);
                assert!(candidates.contains("rental_inventory_id_fkey"));
                assert!(candidates.contains("rental_customer_id_fkey"));
                assert!(candidates.contains("rental_staff_id_fkey"));
                assert!(hint.contains("\"owner\""));
            }
            other => panic!("unexpected {other:?}"),
        }

        let mut sp = spec(1, "store_id");
        sp.owner.insert(
            5,
            OwnerChoice {
                text: "inventory".into(),
                as_table: Some(4),
            },
        );
        let s = resolve(&c, &sp).unwrap();
        assert_eq!(s.get(5).unwrap().owner_edge, Some(4));
        // customer and staff references from rental are cross references, as is the store's manager.
        let cross: BTreeSet<&str> = s
            .cross_references
            .iter()
            .map(|i| c.edges[*i].name.as_str())
            .collect();
        assert_eq!(
            cross,
            BTreeSet::from([
                "rental_customer_id_fkey",
                "rental_staff_id_fkey",
                "store_manager_staff_id_fkey"
            ])
        );
        // store ↔ staff is a NOT NULL cycle: broken at the non-ownership edge, with a note.
        assert_eq!(s.deferred_edges, vec![0]);
        assert!(s.get(1).unwrap().notes[0].contains("DEFERRABLE"));
        let order: Vec<TableId> = s.tables.iter().map(|t| t.oid).collect();
        assert_eq!(order, vec![1, 3, 4, 2, 5]);

        // By constraint name works too, and an unknown name says what there is.
        sp.owner.insert(
            5,
            OwnerChoice {
                text: "rental_staff_id_fkey".into(),
                as_table: None,
            },
        );
        assert_eq!(
            resolve(&c, &sp).unwrap().get(5).unwrap().owner_edge,
            Some(6)
        );
        sp.owner.insert(
            5,
            OwnerChoice {
                text: "nope".into(),
                as_table: None,
            },
        );
        let err = resolve(&c, &sp).unwrap_err();
        assert!(
            matches!(err, OpsError::UnknownObject { ref name, .. } if name == "nope"),
            "{err:?}"
        );
        assert!(err.hint().unwrap().contains("rental_customer_id_fkey"));
    }

    #[test]
    fn nullable_cycle_is_broken_at_the_nullable_edge() {
        let mut c = Catalog::default();
        for t in [
            table(1, "org", &[("id", true)]),
            table(
                2,
                "dept",
                &[("id", true), ("org_id", true), ("head_id", false)],
            ),
            table(3, "person", &[("id", true), ("dept_id", true)]),
        ] {
            c.tables.insert(t.oid, t);
        }
        c.edges = vec![
            fk("dept_org", 2, &["org_id"], 1, &["id"]),
            fk("person_dept", 3, &["dept_id"], 2, &["id"]),
            fk("dept_head", 2, &["head_id"], 3, &["id"]),
        ];
        let s = resolve(&c, &spec(1, "id")).unwrap();
        assert_eq!(s.deferred_edges, vec![2]);
        assert!(s.get(2).unwrap().notes[0].contains("nullable"));
        let order: Vec<TableId> = s.tables.iter().map(|t| t.oid).collect();
        assert_eq!(order, vec![1, 2, 3]);
    }

    #[test]
    fn composite_keys_exclusions_and_shared_self_references() {
        let mut c = Catalog::default();
        for t in [
            table(1, "tenant", &[("id", true)]),
            table(
                2,
                "ord",
                &[("tenant_id", true), ("ord_no", true), ("rep_id", false)],
            ),
            table(
                3,
                "line",
                &[("tenant_id", true), ("ord_no", true), ("line_no", true)],
            ),
            table(4, "rep", &[("id", true), ("boss_id", false)]),
            table(5, "audit", &[("id", true), ("tenant_id", true)]),
        ] {
            c.tables.insert(t.oid, t);
        }
        c.edges = vec![
            fk("ord_tenant", 2, &["tenant_id"], 1, &["id"]),
            fk(
                "line_ord",
                3,
                &["tenant_id", "ord_no"],
                2,
                &["tenant_id", "ord_no"],
            ),
            fk("ord_rep", 2, &["rep_id"], 4, &["id"]),
            fk("rep_boss", 4, &["boss_id"], 4, &["id"]),
            fk("audit_tenant", 5, &["tenant_id"], 1, &["id"]),
        ];
        let mut sp = spec(1, "id");
        sp.exclude.insert(5);
        let s = resolve(&c, &sp).unwrap();
        assert!(s.get(5).is_none());
        let f = Filters::new(&c, &s);
        assert_eq!(
            f.filter(3),
            "(tenant_id, ord_no) IN (SELECT tenant_id, ord_no FROM public.ord WHERE tenant_id = $1::integer)"
        );
        assert_eq!(
            f.path(3),
            "line(tenant_id, ord_no) → ord.tenant_id → tenant"
        );
        assert_eq!(
            f.filter(4),
            "id IN (WITH RECURSIVE r AS (SELECT id, boss_id FROM public.rep WHERE id IN (WITH refs AS MATERIALIZED (SELECT rep_id FROM public.ord WHERE tenant_id = $1::integer) SELECT * FROM refs) UNION SELECT s.id, s.boss_id FROM public.rep s JOIN r ON s.id = r.boss_id) SELECT id FROM r)"
        );

        // `tables` restricts ownership; a referenced table left out becomes shared.
        let mut sp = spec(1, "id");
        sp.include = Some(BTreeSet::from([2]));
        let s = resolve(&c, &sp).unwrap();
        assert_eq!(s.get(2).unwrap().role, Role::Owned);
        assert!(s.get(3).is_none());
        assert_eq!(s.get(4).unwrap().role, Role::Shared);
    }

    #[test]
    fn owner_for_a_table_outside_the_scope_is_refused() {
        let c = chinook();
        let mut sp = spec(1, "employee_id");
        sp.owner.insert(
            7,
            OwnerChoice {
                text: "fk_pt_track".into(),
                as_table: None,
            },
        );
        let err = resolve(&c, &sp).unwrap_err();
        assert!(
            err.to_string()
                .contains("playlist_track, which the scope does not own"),
            "{err}"
        );
    }
}
