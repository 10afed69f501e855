//! PostgreSQL glue shared by more than one module: how a relation and its columns are read
//! from the catalogs (one definition for the scope catalog and the migration targets), type
//! names that mean the same under any search_path, identifier quoting, and the lookups and
//! privilege checks every capability makes. (Subtransactions and role switching: `sys.rs`.)

use pgrx::prelude::*;
use pgrx::JsonB;
use serde::Deserialize;

use crate::error::{internal_error, Common, OrRaise};

/// The jsonb object describing relation `c` (a `pg_class` row joined to its `pg_namespace n`):
/// oid, `schema` and `name` (unquoted, as the catalog has them: never re-parsed from SQL),
/// `sql` (`"schema"."name"`), `display` (as regclass prints it), `kind`, every live column
/// (name, quoted name, type oid, type name without and with modifiers, NOT NULL, default,
/// generated or identity ALWAYS) in order, and the primary key's columns in key order (NULL
/// without one). Read by `scope::catalog` for every table and by `migrate::target` for one;
/// each takes the fields it needs.
pub const RELATION_JSON: &str = r#"pg_catalog.jsonb_build_object(
    'oid', c.oid::pg_catalog.int8,
    'schema', n.nspname,
    'name', c.relname,
    'sql', pg_catalog.format('%I.%I', n.nspname, c.relname),
    'display', c.oid::pg_catalog.regclass::pg_catalog.text,
    'kind', c.relkind::pg_catalog.text,
    'columns', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                    'name', a.attname, 'quoted', pg_catalog.quote_ident(a.attname),
                    'type_oid', a.atttypid::pg_catalog.int8,
                    'type_name', @TYPE_NAME@,
                    'type_full', @TYPE_FULL@,
                    'not_null', a.attnotnull,
                    'has_default', a.atthasdef OR a.attidentity = 'd',
                    'generated', a.attidentity = 'a' OR a.attgenerated <> '') ORDER BY a.attnum), '[]')
                FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
    'primary_key', (SELECT pg_catalog.jsonb_agg(a.attname ORDER BY k.ord)
                    FROM pg_catalog.pg_constraint pk
                         CROSS JOIN LATERAL pg_catalog.unnest(pk.conkey) WITH ORDINALITY AS k(attnum, ord)
                         JOIN pg_catalog.pg_attribute a ON a.attrelid = pk.conrelid AND a.attnum = k.attnum
                    WHERE pk.conrelid = c.oid AND pk.contype = 'p'))"#;

/// `template` with `@RELATION@` replaced by [`RELATION_JSON`] and its type markers filled in.
pub fn relation_query(template: &str) -> String {
    with_qualified_types(&template.replace("@RELATION@", RELATION_JSON))
}

/// Fills the `@TYPE_NAME@` / `@TYPE_FULL@` markers of a catalog query over `pg_attribute a`
/// with the column's type, schema-qualified unless in pg_catalog (without / with modifiers):
/// SQL built from them means the same under any search_path.
pub fn with_qualified_types(template: &str) -> String {
    template
        .replace("@TYPE_NAME@", &qualified_type_sql("a.atttypid", "-1"))
        .replace(
            "@TYPE_FULL@",
            &qualified_type_sql("a.atttypid", "a.atttypmod"),
        )
}

/// SQL naming the type `oid` (with modifier `typmod`) so that it resolves under any
/// search_path: pg_catalog types as format_type() writes them, others schema-qualified.
/// Without modifiers means typmod -1, never NULL: `format_type(oid, NULL)` writes `character`
/// and `bit`, which as a cast mean `character(1)` and `bit(1)` (a `char(20)` value cast to it
/// kept one character), while with -1 it writes `bpchar` and `"bit"`, the unconstrained types.
fn qualified_type_sql(oid: &str, typmod: &str) -> String {
    format!(
        "(SELECT CASE WHEN ty.typnamespace = 'pg_catalog'::pg_catalog.regnamespace
                      THEN pg_catalog.format_type(ty.oid, {typmod})
                      WHEN ty.typcategory = 'A' AND ty.typelem <> 0
                      THEN (SELECT pg_catalog.format('%I.%I[]', en.nspname, et.typname)
                              FROM pg_catalog.pg_type et JOIN pg_catalog.pg_namespace en ON en.oid = et.typnamespace
                             WHERE et.oid = ty.typelem)
                      ELSE (SELECT pg_catalog.format('%I.%I', tn.nspname, ty.typname)
                              FROM pg_catalog.pg_namespace tn WHERE tn.oid = ty.typnamespace) END
            FROM pg_catalog.pg_type ty WHERE ty.oid = {oid})"
    )
}

/// Runs a catalog query returning one jsonb and decodes it; NULL is `None`. A shape that does
/// not decode is our bug, an internal error.
pub fn query_json<T: for<'de> Deserialize<'de>>(
    sql: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> Option<T> {
    let value = Spi::get_one_with_args::<JsonB>(sql, args).or_raise()?;
    Some(serde_json::from_value(value.0).unwrap_or_else(|e| {
        internal_error(format!("pg_tenant_ops: unexpected catalog shape: {e}"))
    }))
}

/// `"name"`, quoted as PostgreSQL would.
pub fn quote_ident(name: &str) -> String {
    pgrx::spi::quote_identifier(name)
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// The relation `name` designates (as `regclass` reads it, on the search_path), if any; a
/// name that does not even parse as one designates none.
pub fn regclass(name: &str) -> Option<u32> {
    crate::sys::try_subtransaction(|| {
        Spi::get_one_with_args::<i64>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.int8",
            &[name.into()],
        )
    })
    .ok()
    .and_then(|r| r.ok().flatten())
    .map(|oid| oid as u32)
}

/// Whether the function `signature` (e.g. `tenant_ops.uuid4()`) exists: a database whose
/// extension an earlier build of this version created lacks the functions added since (there
/// is no upgrade script within a version), and its callers fall back.
pub fn function_exists(signature: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
        &[signature.into()],
    )
    .or_raise()
    .unwrap_or(false)
}

/// When the current (top-level) transaction started: what per-transaction caches of a
/// backend are keyed by (a new transaction, a new value).
pub fn transaction_start() -> pg_sys::TimestampTz {
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// A relation's name as regclass prints it (schema-qualified where not on the search_path).
pub fn relation_name(oid: u32) -> String {
    Spi::get_one_with_args::<String>(
        "SELECT $1::pg_catalog.oid::pg_catalog.regclass::text",
        &[(oid as i64).into()],
    )
    .or_raise()
    .unwrap_or_default()
}

/// Whether the caller is a member of `role` or a superuser.
pub fn has_role(role: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_has_role(current_user, $1, 'MEMBER')
             OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)",
        &[role.into()],
    )
    .or_raise()
    .unwrap_or(false)
}

/// Refuses (42501) a caller who is not a member of `role` (nor a superuser): what a job kind
/// needs to run, resume or retry its jobs, beyond EXECUTE on the function.
pub fn require_role(role: &str, action: &str) -> Result<(), Common> {
    if has_role(role) {
        Ok(())
    } else {
        Err(Common::InsufficientPrivilege(
            format!("permission denied to {action}: it needs the role {role}"),
            Some(format!("GRANT {role} TO the role that runs it.")),
        ))
    }
}

/// Checks the caller's privileges on a table explicitly, so that a job that lacks one is
/// refused with the table named before it changes anything (the statements themselves run
/// as the caller and would fail anyway, but later and less clearly). `privileges` is a
/// comma-separated list; each is checked on its own (`has_table_privilege` with a list is true
/// when *any* of them is held), and the message names the ones missing.
pub fn require_table_privileges(
    table_sql: &str,
    display: &str,
    privileges: &str,
    why: &str,
) -> Result<(), Common> {
    let missing = Spi::get_one_with_args::<Vec<String>>(
        "SELECT coalesce(pg_catalog.array_agg(p ORDER BY o), '{}')
           FROM pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.replace($2, ' ', ''), ',')) WITH ORDINALITY AS x(p, o)
          WHERE NOT pg_catalog.has_table_privilege(current_user, $1::pg_catalog.regclass, p)",
        &[table_sql.into(), privileges.into()],
    )
    .or_raise()
    .unwrap_or_default();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Common::InsufficientPrivilege(
            format!(
                "permission denied for table {display}: {why} needs {}",
                missing.join(", ")
            ),
            Some(format!(
                "GRANT {} ON {display} TO the role that runs the job (jobs run with the caller's privileges).",
                missing.join(", ")
            )),
        ))
    }
}

/// As [`require_table_privileges`], for a schema (`USAGE`, `CREATE`).
/// 3F000 unless schema `schema` exists (a target schema, a restore's `target_schema`).
pub fn require_schema(schema: &str) -> Result<(), Common> {
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        &[schema.into()],
    )
    .or_raise()
    .unwrap_or(false);
    if exists {
        Ok(())
    } else {
        Err(Common::UnknownSchema(schema.into()))
    }
}

pub fn require_schema_privileges(schema: &str, privileges: &str, why: &str) -> Result<(), Common> {
    let missing = Spi::get_one_with_args::<Vec<String>>(
        "SELECT coalesce(pg_catalog.array_agg(p ORDER BY o), '{}')
           FROM pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.replace($2, ' ', ''), ',')) WITH ORDINALITY AS x(p, o)
          WHERE NOT pg_catalog.has_schema_privilege(current_user, $1, p)",
        &[schema.into(), privileges.into()],
    )
    .or_raise()
    .unwrap_or_default();
    if missing.is_empty() {
        Ok(())
    } else {
        let quoted = quote_ident(schema);
        Err(Common::InsufficientPrivilege(
            format!(
                "permission denied for schema {quoted}: {why} needs {}",
                missing.join(", ")
            ),
            Some(format!(
                "GRANT {} ON SCHEMA {quoted} TO the role that runs the job (jobs run with the caller's privileges).",
                missing.join(", ")
            )),
        ))
    }
}
