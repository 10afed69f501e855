//! `validate_integrity`.

use pgrx::prelude::*;
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::OrRaise;
use crate::integrity;
use crate::jobs::{self, executor};
use crate::scope;

/// Checks a scope's data — orphans (`foreign_keys`), duplicate keys (`primary_keys`) and rows
/// referencing another tenant's rows (`isolation`) — for one tenant, or all of them (NULL),
/// as a job. Findings go to `tenant_ops.integrity_issues`; the job's result holds a summary
/// and a score, and `tenant_ops.integrity_history` the scores over time. Returns the job id.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.validate_integrity(scope text, tenant text DEFAULT NULL,
       checks text[] DEFAULT '{foreign_keys,primary_keys,isolation}', background boolean DEFAULT false)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.validate_integrity(text, text, text[], boolean) IS
'Finds orphans, duplicate keys and cross-tenant references of a scope (one tenant or all) as a job; returns its id.';
"#)]
fn validate_integrity(
    scope: Option<&str>,
    tenant: default!(Option<&str>, "NULL"),
    checks: default!(
        Option<Vec<String>>,
        "'{foreign_keys,primary_keys,isolation}'"
    ),
    background: default!(Option<bool>, false),
) -> i64 {
    let scope_name = required(scope, "scope");
    let checks = integrity::parse_checks(&checks.unwrap_or_default()).or_raise();
    let loaded = scope::load(scope_name).or_raise();
    if let Some(t) = tenant {
        loaded.check_tenant(t).or_raise();
    }
    let background = background.unwrap_or(false);
    if background {
        crate::worker::require_workers().or_raise();
    }
    let options = json!({"checks": checks});
    let job_id = jobs::create(
        "validate",
        scope_name,
        tenant.unwrap_or(""),
        &options,
        if background { "background" } else { "inline" },
    );
    audit::record(
        "validate_integrity",
        &format!("{scope_name}/{}", tenant.unwrap_or("*")),
        options,
        &format!("job {job_id}"),
    );
    if background {
        crate::worker::wake_scheduler_after_commit();
    } else {
        executor::run_inline(job_id, crate::kinds::steps_for).or_raise();
    }
    job_id
}
