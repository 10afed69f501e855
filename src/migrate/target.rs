//! The target side of a migration: which table each source table goes to, what columns it
//! has, and creating missing target tables from the source definitions (`create_target`).

use pgrx::prelude::*;
use pgrx::JsonB;
use serde::Deserialize;

use crate::error::{internal_error, OpsError, OpsResult, OrRaise};

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
SELECT (SELECT pg_catalog.jsonb_build_object(
    'oid', c.oid::pg_catalog.int8,
    'sql', pg_catalog.format('%I.%I', n.nspname, c.relname),
    'display', c.oid::pg_catalog.regclass::pg_catalog.text,
    'columns', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                    'name', a.attname, 'quoted', pg_catalog.quote_ident(a.attname),
                    'type_full', @TYPE_FULL@,
                    'type_name', @TYPE_NAME@,
                    'not_null', a.attnotnull, 'has_default', a.atthasdef OR a.attidentity = 'd',
                    'generated', a.attidentity = 'a' OR a.attgenerated <> '') ORDER BY a.attnum), '[]')
                FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
    'primary_key', (SELECT pg_catalog.jsonb_agg(a.attname ORDER BY k.ord)
                    FROM pg_catalog.pg_constraint pk
                    CROSS JOIN LATERAL pg_catalog.unnest(pk.conkey) WITH ORDINALITY AS k(attnum, ord)
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = pk.conrelid AND a.attnum = k.attnum
                    WHERE pk.conrelid = c.oid AND pk.contype = 'p'))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))
"#;

static TARGET_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::scope::catalog::with_qualified_types(TARGET_TEMPLATE));

/// Reads a target table by schema and name, if it exists.
pub fn read(schema: &str, name: &str) -> Option<TargetTable> {
    let v =
        Spi::get_one_with_args::<JsonB>(&TARGET_SQL, &[schema.into(), name.into()]).or_raise()?;
    Some(serde_json::from_value(v.0).unwrap_or_else(|e| {
        internal_error(format!(
            "pg_tenant_ops: unexpected target catalog shape: {e}"
        ))
    }))
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

pub fn quote_ident(name: &str) -> String {
    pgrx::spi::quote_identifier(name)
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}
