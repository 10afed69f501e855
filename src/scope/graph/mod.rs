//! The scope graph: which tables a tenant owns, through which path, which tables it only
//! references, and in what order they depend on each other.
//!
//! Free of pgrx on purpose: the catalog reader hands over tables and edges whose names are
//! already quoted by PostgreSQL, and everything here is plain graph work and string building,
//! covered by plain unit tests.
//!
//! This file holds the model (tables, columns, edges, the spec and its resolution); the work
//! is in `ownership` (who owns what, through which path; shared tables), `order` (parents
//! first, cycles broken) and `filters` (the SQL that selects one tenant's rows).

mod filters;
mod order;
mod ownership;
#[cfg(test)]
mod tests;

pub use filters::Filters;
pub use ownership::resolve;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub type TableId = u32;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    /// `quote_ident(name)`, as PostgreSQL quotes it.
    pub quoted: String,
    pub type_oid: u32,
    /// The type without modifiers, schema-qualified where needed (`format_type(oid, -1)`:
    /// `bpchar`, not `character`, which would mean `character(1)`).
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
    /// The schema and the table's own name, unquoted, as in the catalog.
    pub schema: String,
    pub name: String,
    /// `r` ordinary table, `p` partitioned table.
    pub kind: String,
    pub columns: Vec<Column>,
    pub primary_key: Option<Vec<String>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Column `name`, which must exist: every column an edge, key, link or the tenant key
    /// names is checked against the catalog when the scope is loaded (a column dropped or
    /// renamed since is a user error there, 42703 naming it). Missing here is our bug: a
    /// panic, which PostgreSQL reports as an internal error (XX000), never a guess spliced
    /// into SQL.
    pub fn known_column(&self, name: &str) -> &Column {
        match self.column(name) {
            Some(c) => c,
            None => panic!(
                "pg_tenant_ops internal error: table {} has no column {name:?}",
                self.display
            ),
        }
    }

    /// The quoted name of column `name`, which must exist ([`Table::known_column`]).
    pub fn quoted_col(&self, name: &str) -> &str {
        &self.known_column(name).quoted
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
        cols.iter().map(|c| t.quoted_col(c).to_string()).collect()
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
