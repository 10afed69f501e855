//! The target side of a migration: which table each source table goes to, what columns it
//! has, and creating missing target tables from the source definitions (`create_target`).

use pgrx::prelude::*;
use serde::Deserialize;

use std::collections::BTreeSet;

use super::options::IdStrategy;
use super::plan::Planner;
use super::sql::quoted_cols;
use super::Migration;
use crate::error::{OpsError, OpsResult, OrRaise};
use crate::jobs;
use crate::scope::graph::TableId;
use crate::scope::LoadedScope;

#[derive(Clone, Debug, Deserialize)]
pub struct TargetColumn {
    pub name: String,
    pub quoted: String,
    /// With modifiers, as it would be declared (`character varying(20)`).
    pub type_full: String,
    /// Without modifiers (`character varying`): what values are cast to.
    pub type_name: String,
    pub not_null: bool,
    pub has_default: bool,
    /// Identity ALWAYS or generated: never written by us.
    pub generated: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TargetTable {
    pub oid: u32,
    pub sql: String,
    /// The schema and the table's own name, unquoted, as in the catalog.
    pub schema: String,
    pub name: String,
    pub display: String,
    pub columns: Vec<TargetColumn>,
    pub primary_key: Option<Vec<String>>,
}

impl TargetTable {
    pub fn column(&self, name: &str) -> Option<&TargetColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

// A scalar subquery, so that a missing table gives one NULL row rather than none.
const TARGET_TEMPLATE: &str = r#"
SELECT (SELECT @RELATION@
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))
"#;

static TARGET_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::pg::relation_query(TARGET_TEMPLATE));

/// Reads a target table by schema and name, if it exists.
pub fn read(schema: &str, name: &str) -> Option<TargetTable> {
    crate::pg::query_json(&TARGET_SQL, &[schema.into(), name.into()])
}

/// Checks that the target schema exists.
pub fn require_schema(schema: &str) -> OpsResult<()> {
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        &[schema.into()],
    )
    .or_raise()
    .unwrap_or(false);
    if exists {
        Ok(())
    } else {
        Err(OpsError::UnknownSchema(schema.into()))
    }
}

pub use crate::pg::{qualified, quote_ident};

impl Migration {
    /// The target table name for a source table: the `tables` map, else `strip_prefix`.
    pub(super) fn target_name(&self, loaded: &LoadedScope, source: TableId) -> String {
        let t = loaded.catalog.table(source);
        // The name as the catalog has it: a table named `Ten"ant.$1 x` stays that, whatever
        // dots and quotes it holds.
        let relname = t.name.clone();
        let unquoted_qualified = format!("{}.{}", t.schema, t.name);
        for (from, to) in &self.options.tables {
            if *from == relname
                || *from == t.display
                || *from == t.sql
                || *from == unquoted_qualified
            {
                return to.clone();
            }
        }
        match &self.options.strip_prefix {
            Some(p) if relname.starts_with(p.as_str()) && relname.len() > p.len() => {
                relname[p.len()..].to_string()
            }
            _ => relname,
        }
    }

    /// Creates missing target tables from the source definitions: same columns, re-keyed key
    /// and FK columns typed uuid, primary keys, and FKs between the created tables.
    pub(super) fn create_targets(&self, loaded: &LoadedScope) -> OpsResult<()> {
        let copied = self.copied(loaded);
        let strategy_rekeys = self.options.id_strategy != IdStrategy::Keep;
        // Which tables will be re-keyed: existing targets by their key type, new ones always.
        let mut created = vec![];
        for (source, _) in &copied {
            let name = self.target_name(loaded, *source);
            if read(&self.target_schema, &name).is_none() {
                created.push((*source, name));
            }
        }
        if created.is_empty() {
            return Ok(());
        }
        let mut rekeyed_set = BTreeSet::new();
        for (source, _) in &copied {
            let t = loaded.catalog.table(*source);
            if !strategy_rekeys || !matches!(t.primary_key.as_deref(), Some([_])) {
                continue;
            }
            let name = self.target_name(loaded, *source);
            let is_new = created.iter().any(|(s, _)| s == source);
            let uuid_target = read(&self.target_schema, &name).is_some_and(|tt| {
                tt.primary_key
                    .as_deref()
                    .and_then(|pk| pk.first())
                    .and_then(|k| tt.column(k))
                    .is_some_and(|c| c.type_name == "uuid")
            });
            if is_new || uuid_target {
                rekeyed_set.insert(*source);
            }
        }
        let planner = Planner {
            loaded,
            options: &self.options,
            rekeyed: rekeyed_set,
            is_admin: true,
            lookups: Default::default(),
        };
        for (source, name) in &created {
            let t = loaded.catalog.table(*source);
            let mut defs = vec![];
            for col in &t.columns {
                let mapped = planner.mapped_column(*source, &col.name);
                let ty = if strategy_rekeys
                    && mapped != format!("s.{}", col.quoted)
                    && !mapped.starts_with("CASE")
                {
                    "uuid".to_string()
                } else {
                    col.type_full.clone()
                };
                defs.push(format!(
                    "{} {}{}",
                    col.quoted,
                    ty,
                    if col.not_null { " NOT NULL" } else { "" }
                ));
            }
            if let Some(pk) = &t.primary_key {
                defs.push(format!("PRIMARY KEY ({})", quoted_cols(t, pk).join(", ")));
            }
            let sql = format!(
                "CREATE TABLE {} ({})",
                qualified(&self.target_schema, name),
                defs.join(", ")
            );
            Spi::run(&sql).or_raise();
            jobs::log(
                self.job_id,
                "target.created",
                Some("prepare"),
                Some(*source),
                None,
                Some(&sql),
                None,
            );
        }
        // Foreign keys between created tables, where the parent side is its primary key.
        for e in &loaded.catalog.edges {
            let Some((_, child_name)) = created.iter().find(|(s, _)| *s == e.child) else {
                continue;
            };
            if !copied.iter().any(|(s, _)| *s == e.parent) {
                continue;
            }
            let parent = loaded.catalog.table(e.parent);
            if parent.primary_key.as_ref() != Some(&e.parent_cols) {
                continue;
            }
            let child = loaded.catalog.table(e.child);
            let q = |t, cols| quoted_cols(t, cols).join(", ");
            let sql = format!(
                "ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} ({})",
                qualified(&self.target_schema, child_name),
                q(child, &e.child_cols),
                qualified(&self.target_schema, &self.target_name(loaded, e.parent)),
                q(parent, &e.parent_cols)
            );
            Spi::run(&sql).or_raise();
        }
        Ok(())
    }
}
