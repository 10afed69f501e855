//! Reads tables and foreign keys from the system catalogs into a [`Catalog`], and resolves a
//! scope's options (table names, owners, links) against it into a [`ScopeSpec`].
//!
//! Names come back from PostgreSQL already quoted (`quote_ident`, `format('%I.%I')`), so the
//! SQL built from them in `graph.rs` needs no quoting of its own.

use std::collections::{BTreeMap, BTreeSet};

use pgrx::prelude::*;
use serde::Deserialize;

use super::graph::{Catalog, Edge, EdgeKind, OwnerChoice, ScopeSpec, Table, TableId};
use super::options::{LinkOption, ScopeOptions};
use super::Error;
use crate::error::Common;
use crate::sys::try_subtransaction;

/// Every ordinary and partitioned table outside the system schemas and our own, partitions
/// excluded (they are reached through their parent), with columns and primary key. Type names
/// are always schema-qualified (outside pg_catalog), so SQL built from them means the same
/// under any search_path, including the fixed one used when running as the extension owner.
const TABLES_TEMPLATE: &str = r#"
SELECT coalesce(pg_catalog.jsonb_agg(@RELATION@), '[]')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenant_ops')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
"#;

static TABLES_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::pg::relation_query(TABLES_TEMPLATE));

/// Every declared foreign key, mapped onto partition roots: a constraint declared on a
/// partition counts for the whole partitioned table; the per-partition clones of a constraint
/// declared on the parent (conparentid <> 0) are skipped.
const FOREIGN_KEYS_SQL: &str = r#"
SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
    'name', con.conname,
    'declared_on', con.conrelid::pg_catalog.regclass::pg_catalog.text,
    'child', coalesce(pg_catalog.pg_partition_root(con.conrelid), con.conrelid)::pg_catalog.oid::pg_catalog.int8,
    'child_cols', (SELECT pg_catalog.jsonb_agg(a.attname ORDER BY k.ord)
                   FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
    'parent', coalesce(pg_catalog.pg_partition_root(con.confrelid), con.confrelid)::pg_catalog.oid::pg_catalog.int8,
    'parent_cols', (SELECT pg_catalog.jsonb_agg(a.attname ORDER BY k.ord)
                    FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum),
    'not_valid', NOT con.convalidated) ORDER BY con.conname, con.conrelid), '[]')
FROM pg_catalog.pg_constraint con
WHERE con.contype = 'f' AND con.conparentid = 0
"#;

#[derive(Deserialize)]
struct RawForeignKey {
    name: String,
    declared_on: String,
    child: TableId,
    child_cols: Vec<String>,
    parent: TableId,
    parent_cols: Vec<String>,
    not_valid: bool,
}

/// Reads the whole catalog: every table and every FK between them.
pub fn load_catalog() -> Catalog {
    // Both queries aggregate with coalesce(..., '[]'): always one non-NULL row.
    let tables: Vec<Table> = crate::pg::query_json(&TABLES_SQL, &[]).unwrap_or_default();
    let mut catalog = Catalog {
        tables: tables.into_iter().map(|t| (t.oid, t)).collect(),
        edges: vec![],
    };

    // The same FK declared on several partitions becomes one edge of the partitioned table.
    let raw: Vec<RawForeignKey> = crate::pg::query_json(FOREIGN_KEYS_SQL, &[]).unwrap_or_default();
    let mut merged: BTreeMap<(TableId, Vec<String>, TableId, Vec<String>), Edge> = BTreeMap::new();
    for fk in raw {
        if !catalog.tables.contains_key(&fk.child) || !catalog.tables.contains_key(&fk.parent) {
            continue;
        }
        let key = (
            fk.child,
            fk.child_cols.clone(),
            fk.parent,
            fk.parent_cols.clone(),
        );
        let edge = merged.entry(key).or_insert_with(|| Edge {
            name: fk.name.clone(),
            kind: EdgeKind::ForeignKey {
                not_valid: false,
                found_on: vec![],
                names: vec![],
            },
            child: fk.child,
            child_cols: fk.child_cols,
            parent: fk.parent,
            parent_cols: fk.parent_cols,
        });
        if let EdgeKind::ForeignKey {
            not_valid,
            found_on,
            names,
        } = &mut edge.kind
        {
            *not_valid |= fk.not_valid;
            found_on.push(fk.declared_on);
            names.push(fk.name);
        }
    }
    catalog.edges = merged.into_values().collect();
    catalog
}

/// Resolves a table name as the caller would write it (their search_path applies).
/// `Ok(None)` when no relation has that name.
fn lookup_relation(name: &str) -> Result<Option<(TableId, String)>, Error> {
    let found = try_subtransaction(|| {
        Spi::get_two_with_args::<i64, String>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.int8,
                    (SELECT c.relkind::pg_catalog.text FROM pg_catalog.pg_class c
                      WHERE c.oid = pg_catalog.to_regclass($1))",
            &[name.into()],
        )
    });
    match found {
        Ok(Ok((Some(oid), Some(kind)))) => Ok(Some((oid as TableId, kind))),
        Ok(_) => Ok(None),
        // A name that does not even parse (`a.b.c.d`) names no table either.
        Err(_) => Ok(None),
    }
}

/// The partitioned root of a partition, when `oid` is one.
fn partition_root(oid: TableId) -> Option<TableId> {
    Spi::get_one_with_args::<i64>(
        "SELECT pg_catalog.pg_partition_root($1::pg_catalog.oid)::pg_catalog.oid::pg_catalog.int8",
        &[(oid as i64).into()],
    )
    .ok()
    .flatten()
    .map(|r| r as TableId)
    .filter(|r| *r != oid)
}

fn relation_display(oid: TableId) -> String {
    Spi::get_one_with_args::<String>(
        "SELECT $1::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text",
        &[(oid as i64).into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| oid.to_string())
}

/// Checks that `oid` is a table the scope machinery can use, naming it in errors.
pub fn require_table(catalog: &Catalog, oid: TableId, context: &str) -> Result<(), Error> {
    if catalog.tables.contains_key(&oid) {
        return Ok(());
    }
    let display = relation_display(oid);
    if let Some(root) = partition_root(oid) {
        return Err(Common::InvalidParameter(
            format!("{display} is a partition; {context} must name the partitioned table"),
            Some(format!("Use {} instead.", relation_display(root))),
        )
        .into());
    }
    Err(Error::NotATable {
        relation: display,
        context: context.to_string(),
    })
}

fn resolve_table(catalog: &Catalog, name: &str, context: &str) -> Result<TableId, Error> {
    match lookup_relation(name)? {
        Some((oid, _)) => {
            require_table(catalog, oid, context)?;
            Ok(oid)
        }
        None => Err(Error::UnknownTable {
            name: name.to_string(),
            context: context.to_string(),
        }),
    }
}

fn require_columns(table: &Table, cols: &[String], context: &str) -> Result<(), Error> {
    for c in cols {
        if table.column(c).is_none() {
            return Err(Error::UnknownColumn {
                table: table.display.clone(),
                column: c.clone(),
                context: context.to_string(),
            });
        }
    }
    Ok(())
}

/// Integer types compare with each other, and so do the string types; anything else must be
/// the very same type on both sides of a link.
fn comparable(a: &str, b: &str) -> bool {
    const INTS: &[&str] = &["smallint", "integer", "bigint"];
    const STRINGS: &[&str] = &["text", "character varying", "bpchar"];
    a == b
        || (INTS.contains(&a) && INTS.contains(&b))
        || (STRINGS.contains(&a) && STRINGS.contains(&b))
}

fn link_edge(catalog: &Catalog, link: &LinkOption) -> Result<Edge, Error> {
    let context = format!("link \"{}\"", link.name);
    let child = resolve_table(catalog, &link.child, &format!("\"child\" of {context}"))?;
    let parent = resolve_table(catalog, &link.parent, &format!("\"parent\" of {context}"))?;
    let (ct, pt) = (catalog.table(child), catalog.table(parent));
    require_columns(ct, &link.columns, &format!("\"columns\" of {context}"))?;
    let parent_cols = match &link.parent_columns {
        Some(cols) => cols.clone(),
        None => pt.primary_key.clone().ok_or_else(|| {
            Common::InvalidOption(
                format!(
                    "{context}: {} has no primary key, so the link must give \"parent_columns\"",
                    pt.display
                ),
                None,
            )
        })?,
    };
    require_columns(
        pt,
        &parent_cols,
        &format!("\"parent_columns\" of {context}"),
    )?;
    if parent_cols.len() != link.columns.len() {
        return Err(Common::InvalidOption(
            format!(
                "{context} has {} columns but {}'s key has {}",
                link.columns.len(),
                pt.display,
                parent_cols.len()
            ),
            None,
        )
        .into());
    }
    for (c, p) in link.columns.iter().zip(&parent_cols) {
        let (cc, pc) = (
            ct.column(c).expect("checked"),
            pt.column(p).expect("checked"),
        );
        if !comparable(&cc.type_name, &pc.type_name) {
            return Err(Common::DatatypeMismatch {
                message: format!(
                    "{context}: column {}.{} is of type {} but {}.{} is of type {}",
                    ct.display, cc.quoted, cc.type_name, pt.display, pc.quoted, pc.type_name
                ),
                hint: Some("A link joins columns of the same type, as a foreign key would.".into()),
            }
            .into());
        }
    }
    Ok(Edge {
        name: link.name.clone(),
        kind: EdgeKind::Link,
        child,
        child_cols: link.columns.clone(),
        parent,
        parent_cols,
    })
}

/// Loads the catalog and resolves a scope definition against it: the root, its tenant key,
/// and every table, owner and link the options name. Links become edges of the catalog.
pub fn prepare(root: TableId, tenant_key: &str, options: &ScopeOptions) -> Result<Prepared, Error> {
    let mut catalog = load_catalog();
    require_table(&catalog, root, "the scope's root")?;
    let root_table = catalog.table(root);
    if root_table.column(tenant_key).is_none() {
        return Err(Error::UnknownColumn {
            table: root_table.display.clone(),
            column: tenant_key.to_string(),
            context: "the scope's tenant_key".into(),
        });
    }

    let resolve_list = |names: &[String], option: &str| -> Result<BTreeSet<TableId>, Error> {
        names
            .iter()
            .map(|n| resolve_table(&catalog, n, &format!("option \"{option}\"")))
            .collect()
    };
    let include = match &options.tables {
        Some(names) => Some(resolve_list(names, "tables")?),
        None => None,
    };
    let exclude = resolve_list(&options.exclude, "exclude")?;
    let shared = resolve_list(&options.shared, "shared")?;

    let root_display = catalog.table(root).display.clone();
    for (set, option) in [(&exclude, "exclude"), (&shared, "shared")] {
        if set.contains(&root) {
            return Err(Common::InvalidOption(
                format!("option \"{option}\" names the root table {root_display}"),
                None,
            )
            .into());
        }
    }
    if let Some(t) = exclude.intersection(&shared).next() {
        return Err(Common::InvalidOption(
            format!(
                "table {} is named in both \"exclude\" and \"shared\"",
                catalog.table(*t).display
            ),
            None,
        )
        .into());
    }

    // The same options with every table name fully qualified, so that the stored definition
    // means the same thing whatever search_path a later caller has.
    let qualified = |set: &BTreeSet<TableId>| -> Vec<String> {
        set.iter().map(|t| catalog.table(*t).sql.clone()).collect()
    };
    let mut normalized = ScopeOptions {
        tables: include.as_ref().map(qualified),
        exclude: qualified(&exclude),
        shared: qualified(&shared),
        owner: BTreeMap::new(),
        links: vec![],
    };

    for link in &options.links {
        let edge = link_edge(&catalog, link)?;
        normalized.links.push(LinkOption {
            name: link.name.clone(),
            child: catalog.table(edge.child).sql.clone(),
            columns: link.columns.clone(),
            parent: catalog.table(edge.parent).sql.clone(),
            parent_columns: Some(edge.parent_cols.clone()),
        });
        catalog.edges.push(edge);
    }

    let mut owner = BTreeMap::new();
    for (table, path) in &options.owner {
        let oid = resolve_table(&catalog, table, "option \"owner\"")?;
        let names_an_edge = catalog
            .edges
            .iter()
            .any(|e| e.child == oid && e.answers_to(path));
        let as_table = lookup_relation(path)?.map(|(t, _)| partition_root(t).unwrap_or(t));
        let stored = match as_table {
            Some(t) if !names_an_edge && catalog.tables.contains_key(&t) => {
                catalog.table(t).sql.clone()
            }
            _ => path.clone(),
        };
        normalized
            .owner
            .insert(catalog.table(oid).sql.clone(), stored);
        owner.insert(
            oid,
            OwnerChoice {
                text: path.clone(),
                as_table,
            },
        );
    }

    Ok(Prepared {
        catalog,
        spec: ScopeSpec {
            root,
            tenant_key: tenant_key.to_string(),
            include,
            exclude,
            shared,
            owner,
        },
        normalized,
    })
}

/// A scope definition resolved against the catalog.
pub struct Prepared {
    pub catalog: Catalog,
    pub spec: ScopeSpec,
    /// The options with fully qualified table names: what is stored.
    pub normalized: ScopeOptions,
}
