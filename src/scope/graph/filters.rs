//! The SQL filters that select one tenant's rows of every scope table.

use std::collections::BTreeMap;

use super::*;

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
        let key_type = root.known_column(&scope.tenant_key).type_name.clone();
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
                let key = root.quoted_col(&self.scope.tenant_key);
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
                            "{} FROM {} WHERE {}",
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
                        // a small tenant of a large table. Each distinct value once (UNION
                        // does that for several references): the set is hashed as it is
                        // computed instead of materializing every referencing row first
                        // (office 1 of the demo data: 750k order items, 200 products;
                        // 0.37 s -> 0.21 s).
                        let refs = if selects.len() == 1 {
                            format!("SELECT DISTINCT {}", selects[0])
                        } else {
                            let each: Vec<String> =
                                selects.iter().map(|s| format!("SELECT {s}")).collect();
                            each.join(" UNION ")
                        };
                        let base = format!(
                            "{} IN (WITH refs AS MATERIALIZED ({refs}) SELECT * FROM refs)",
                            c.col_tuple(t.oid, &cols),
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
                root.quoted_col(&self.scope.tenant_key).to_string()
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
