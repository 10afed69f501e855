//! What a target table is: its columns and key as the catalog has them ([`read`]), and which
//! target table each source table goes to ([`Migration::target_name`]). Creating missing ones
//! is `target.rs`'s.

use serde::Deserialize;

use super::Migration;
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
    /// Created by this job, its keys, indexes and foreign keys still to be built (see
    /// `constraints.rs`): `primary_key` is then the one it will get.
    #[serde(default)]
    pub bare: bool,
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
}
