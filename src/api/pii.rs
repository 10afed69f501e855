//! `pseudonymize`: the SQL function the `pseudonymize` transform calls.

use pgrx::prelude::*;

use crate::error::{Common, UserError};

/// HMAC-SHA256 of `value` under `tenant_ops.pseudonymize_key` (superuser-only), as hex; NULL
/// for NULL. The same value gives the same result under one key, so keys and joins survive
/// masking; without a key set it is an error, never an unkeyed hash.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.pseudonymize(value text) RETURNS text
STABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.pseudonymize(text) IS
'HMAC-SHA256 of the value under tenant_ops.pseudonymize_key, as hex: deterministic under one key (joins survive), not reversible.';
"#)]
fn pseudonymize(value: &str) -> String {
    let Some(key) = crate::gucs::pseudonymize_key() else {
        Common::InvalidParameter(
            "tenant_ops.pseudonymize_key is not set".into(),
            Some("A superuser sets the key (ALTER SYSTEM SET tenant_ops.pseudonymize_key = '...', then a reload); background jobs read it from the server's configuration.".into()),
        )
        .report()
        .raise()
    };
    crate::pii::pseudonymize(key.as_bytes(), value)
}

/// What the columns of a scope's tables hold: up to `sample` rows of each table (the
/// tenant's rows when `tenant` is given) classified value by value. One row per column found
/// to hold personal data: what (`email`, `phone`, `payment_card`, `iban`, `ip_address`,
/// `date_of_birth`, `free_text`), the share of the sampled values that are of it, and the
/// transform that masks it (as `columns` takes it).
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.scan_pii(scope text, tenant text DEFAULT NULL, sample int DEFAULT 10000)
RETURNS TABLE(table_name regclass, column_name text, holds text, share float8, matched bigint, sampled bigint, transform jsonb)
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.scan_pii(text, text, int) IS
'Personal data in the columns of a scope''s tables, from a sample of rows: what each column holds, the share that matches, and the transform that masks it.';
"#)]
#[allow(clippy::type_complexity)]
fn scan_pii(
    scope: Option<&str>,
    tenant: default!(Option<&str>, "NULL"),
    sample: default!(Option<i32>, 10000),
) -> TableIterator<
    'static,
    (
        name!(table_name, pg_sys::Oid),
        name!(column_name, String),
        name!(holds, String),
        name!(share, f64),
        name!(matched, i64),
        name!(sampled, i64),
        name!(transform, pgrx::JsonB),
    ),
> {
    let scope = super::required(scope, "scope");
    let findings = match crate::pii::scan::scan(scope, tenant, sample.unwrap_or(10000)) {
        Ok(f) => f,
        Err(report) => report.raise(),
    };
    TableIterator::new(findings.into_iter().map(|f| {
        (
            pg_sys::Oid::from(f.table),
            f.column.clone(),
            f.kind.name().to_string(),
            f.share(),
            f.matched as i64,
            f.sampled as i64,
            pgrx::JsonB(f.kind.transform()),
        )
    }))
}
