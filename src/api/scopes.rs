//! `create_scope`, `drop_scope` and `plan`.

use std::ffi::CStr;

use pgrx::prelude::*;
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::OrRaise;
use crate::scope;

/// Defines a tenant scope: the root table with one row per tenant, its tenant key column, and
/// options that shape which tables are owned. The whole definition is checked (every table,
/// column, constraint and ownership path) before anything is stored.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.create_scope(name text, root regclass, tenant_key name, options jsonb DEFAULT '{}')
RETURNS text VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.create_scope(text, regclass, name, jsonb) IS
'Defines a tenant scope: root table, tenant key column and options (tables, exclude, shared, owner, links). Returns the scope name.';
"#)]
fn create_scope(
    name: Option<&str>,
    root: Option<pg_sys::Oid>,
    tenant_key: Option<&CStr>,
    options: default!(Option<super::JsonArg>, "'{}'"),
) -> String {
    let name = required(name, "name");
    let root = required(root, "root");
    let tenant_key = required(tenant_key, "tenant_key")
        .to_string_lossy()
        .into_owned();
    let options = super::options(options);
    let summary = scope::create(name, root.to_u32(), &tenant_key, &options)
        .inspect_err(|e| crate::audit::log_failure("create_scope", name, e))
        .or_raise();
    audit::record(
        "create_scope",
        name,
        json!({"tenant_key": tenant_key, "options": options, "resolved": summary.json}),
        "ok",
    );
    name.to_string()
}

/// Removes a scope definition. The tenant data is not touched.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.drop_scope(name text)
RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.drop_scope(text) IS 'Removes a scope definition (tenant data is not touched).';
"#)]
fn drop_scope(name: Option<&str>) {
    let name = required(name, "name");
    scope::drop(name)
        .inspect_err(|e| crate::audit::log_failure("drop_scope", name, e))
        .or_raise();
    audit::record("drop_scope", name, json!({}), "ok");
}

/// The dry-run plan for one tenant: every table of the scope in dependency order, its role,
/// ownership path, the SQL filter selecting the tenant's rows (`$1` is the tenant value as
/// text), and the exact number of those rows.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.plan(scope text, tenant text)
RETURNS TABLE(step int, table_name regclass, role text, path text, filter text, rows bigint, notes text)
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.plan(text, text) IS
'Dry-run plan for one tenant: tables in dependency order with role, ownership path, filter SQL and exact row counts.';
"#)]
#[allow(clippy::type_complexity)]
fn plan(
    scope: Option<&str>,
    tenant: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(table_name, pg_sys::Oid),
        name!(role, String),
        name!(path, String),
        name!(filter, String),
        name!(rows, i64),
        name!(notes, Option<String>),
    ),
> {
    let scope = required(scope, "scope");
    let tenant = required(tenant, "tenant");
    let rows = scope::plan(scope, tenant).or_raise();
    TableIterator::new(rows.into_iter().map(|r| {
        (
            r.step,
            pg_sys::Oid::from(r.table),
            r.role.to_string(),
            r.path,
            r.filter,
            r.rows,
            r.notes,
        )
    }))
}
