//! `create_target` with `"distribute": true`: the target tables a migration creates become
//! Citus tables — the root's and every owned table's distributed by the column that holds
//! the tenant and colocated with the root's (a tenant's rows of every table on one node,
//! joins and foreign keys between them local there), shared tables reference tables.
//!
//! The column that holds the tenant is found along each table's ownership path: the root's
//! tenant key, then in each child the foreign-key column that references the parent's tenant
//! column. A Citus-style schema (the tenant column in every table, composite keys
//! `(tenant_id, id)`, foreign keys including it) has one everywhere; a legacy schema whose
//! children reach their tenant only through other keys has none, and is refused before
//! anything is created.

use std::collections::BTreeMap;

use pgrx::prelude::*;

use super::Error;
use crate::error::OrRaise;
use crate::scope::graph::{Catalog, ResolvedScope, Role, TableId};

/// The column of every root and owned table that holds the tenant, `None` where the
/// ownership path does not carry it.
pub fn tenant_columns(
    catalog: &Catalog,
    resolved: &ResolvedScope,
) -> BTreeMap<TableId, Option<String>> {
    let mut out: BTreeMap<TableId, Option<String>> = BTreeMap::new();
    out.insert(resolved.root, Some(resolved.tenant_key.clone()));
    // Parents come before children: each parent's column is known when its children ask.
    for t in &resolved.tables {
        if t.role != Role::Owned {
            continue;
        }
        let column = t.owner_edge.and_then(|i| {
            let edge = &catalog.edges[i];
            let parent_col = out.get(&edge.parent)?.as_ref()?;
            let at = edge.parent_cols.iter().position(|c| c == parent_col)?;
            edge.child_cols.get(at).cloned()
        });
        out.insert(t.oid, column);
    }
    out
}

/// How one created target table is to be made a Citus table.
pub enum Plan {
    /// `create_distributed_table(table, column, colocate_with => root)`.
    Distributed {
        column: String,
    },
    Reference,
}

/// What `distribute` makes of each source table's target: an error naming the first table
/// that has no tenant column.
pub fn plan(
    catalog: &Catalog,
    resolved: &ResolvedScope,
    sources: &[TableId],
) -> Result<BTreeMap<TableId, Plan>, Error> {
    let columns = tenant_columns(catalog, resolved);
    let mut out = BTreeMap::new();
    for source in sources {
        let Some(t) = resolved.get(*source) else {
            continue;
        };
        let plan = match t.role {
            Role::Shared => Plan::Reference,
            Role::Root | Role::Owned => match columns.get(source).cloned().flatten() {
                Some(column) => Plan::Distributed { column },
                None => {
                    let path = t
                        .owner_edge
                        .map(|i| catalog.describe_edge(&catalog.edges[i]))
                        .unwrap_or_default();
                    return Err(Error::NoTenantColumn {
                        table: catalog.table(*source).display.clone(),
                        path,
                    });
                }
            },
        };
        out.insert(*source, plan);
    }
    Ok(out)
}

/// Makes the created table `table` (quoted, qualified) a Citus table as `plan` says; a
/// distributed one colocated with `colocate_with` (the root's target), or starting a
/// colocation group of its own when it is the root's.
pub fn apply(table: &str, plan: &Plan, colocate_with: Option<&str>) {
    match plan {
        Plan::Reference => Spi::run_with_args(
            "SELECT pg_catalog.create_reference_table($1::pg_catalog.regclass)",
            &[table.into()],
        )
        .or_raise(),
        Plan::Distributed { column } => Spi::run_with_args(
            "SELECT pg_catalog.create_distributed_table($1::pg_catalog.regclass, $2::pg_catalog.text,
                                                        colocate_with => $3::pg_catalog.text)",
            &[
                table.into(),
                column.clone().into(),
                colocate_with.unwrap_or("default").into(),
            ],
        )
        .or_raise(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::graph::{resolve, Column, Edge, EdgeKind, ScopeSpec, Table};

    fn table(oid: TableId, name: &str, cols: &[&str]) -> Table {
        Table {
            oid,
            display: name.into(),
            sql: format!("public.{name}"),
            schema: "public".into(),
            name: name.into(),
            kind: "r".into(),
            columns: cols
                .iter()
                .map(|c| Column {
                    name: c.to_string(),
                    quoted: c.to_string(),
                    type_oid: 20,
                    type_name: "bigint".into(),
                    type_full: "bigint".into(),
                    not_null: true,
                })
                .collect(),
            primary_key: Some(vec![cols[0].into()]),
        }
    }

    fn fk(child: TableId, cc: &[&str], parent: TableId, pc: &[&str]) -> Edge {
        let name = format!("fk{child}_{parent}");
        Edge {
            name: name.clone(),
            kind: EdgeKind::ForeignKey {
                not_valid: false,
                found_on: vec![],
                names: vec![name],
            },
            child,
            child_cols: cc.iter().map(|s| s.to_string()).collect(),
            parent,
            parent_cols: pc.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// companies(1) ← ads(2) by (tenant_id) and ← clicks(3) by (tenant_id, ad_id) → ads;
    /// notes(4) → clicks by (click_tenant, click_id); tags(5) → notes by (note_id) only.
    #[test]
    fn tenant_column_follows_the_ownership_path() {
        let mut c = Catalog::default();
        for t in [
            table(1, "companies", &["id"]),
            table(2, "ads", &["tenant_id", "id"]),
            table(3, "clicks", &["tenant_id", "id", "ad_id"]),
            table(4, "notes", &["id", "click_tenant", "click_id"]),
            table(5, "tags", &["id", "note_id"]),
        ] {
            c.tables.insert(t.oid, t);
        }
        c.edges = vec![
            fk(2, &["tenant_id"], 1, &["id"]),
            fk(3, &["tenant_id", "ad_id"], 2, &["tenant_id", "id"]),
            fk(4, &["click_tenant", "click_id"], 3, &["tenant_id", "id"]),
            fk(5, &["note_id"], 4, &["id"]),
        ];
        let spec = ScopeSpec {
            root: 1,
            tenant_key: "id".into(),
            ..Default::default()
        };
        let resolved = resolve(&c, &spec).expect("resolves");
        let cols = tenant_columns(&c, &resolved);
        assert_eq!(cols[&1].as_deref(), Some("id"));
        assert_eq!(cols[&2].as_deref(), Some("tenant_id"));
        assert_eq!(cols[&3].as_deref(), Some("tenant_id"));
        assert_eq!(cols[&4].as_deref(), Some("click_tenant"));
        assert_eq!(cols[&5], None);
        match plan(&c, &resolved, &[1, 2, 3, 4, 5]) {
            Err(Error::NoTenantColumn { table, .. }) => assert_eq!(table, "tags"),
            _ => panic!("tags has no tenant column"),
        }
        assert!(plan(&c, &resolved, &[1, 2, 3, 4]).is_ok());
    }
}
