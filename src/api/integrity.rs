//! `validate_integrity`.

use pgrx::prelude::*;
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::{OrRaise, UserError};
use crate::integrity;

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
        Option<Vec<Option<String>>>,
        "'{foreign_keys,primary_keys,isolation}'"
    ),
    background: default!(Option<bool>, false),
) -> i64 {
    let scope_name = required(scope, "scope");
    let checks: Vec<String> = checks
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            c.unwrap_or_else(|| {
                crate::error::Common::InvalidParameter(
                    "checks must not contain NULL".into(),
                    Some(format!("The checks are: {}.", integrity::CHECKS.join(", "))),
                )
                .raise()
            })
        })
        .collect();
    let background = super::background(background);
    let (job_id, options) = integrity::submit(scope_name, tenant, &checks, background)
        .inspect_err(|e| audit::log_failure("validate_integrity", scope_name, e))
        .or_raise();
    audit::record(
        "validate_integrity",
        &format!("{scope_name}/{}", tenant.unwrap_or("*")),
        options,
        &format!("job {job_id}"),
    );
    super::start_job(job_id, &crate::integrity::kind::Validate, background);
    job_id
}

/// Repairs what a validation found: `quarantine` (rows saved as jsonb in
/// `tenant_ops.quarantine`, then removed, with the rows referencing them), `delete` (refused
/// where other rows still reference them), or `set_null` (the offending references, where
/// nullable). A dry run (the default) reports what would change and changes nothing.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.repair_integrity(validation_job bigint, strategy text, dry_run boolean DEFAULT true)
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.repair_integrity(bigint, text, boolean) IS
'Repairs what a validation found (quarantine, delete, set_null); a dry run by default.';
"#)]
fn repair_integrity(
    validation_job: Option<i64>,
    strategy: Option<&str>,
    dry_run: default!(Option<bool>, true),
) -> pgrx::JsonB {
    let validation_job = required(validation_job, "validation_job");
    let strategy = required(strategy, "strategy");
    let dry_run = dry_run.unwrap_or(true);
    let report = integrity::repair::repair(validation_job, strategy, dry_run)
        .inspect_err(|e| audit::log_failure("repair_integrity", &validation_job.to_string(), e))
        .or_raise();
    if !dry_run {
        audit::record(
            "repair_integrity",
            &format!("job {validation_job}"),
            json!({"strategy": strategy}),
            &report["repair_id"].to_string(),
        );
    }
    pgrx::JsonB(report)
}

/// Puts back the rows a quarantine removed, as they were.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.restore_quarantined(repair_id bigint)
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.restore_quarantined(bigint) IS 'Puts back the rows a quarantine repair removed.';
"#)]
fn restore_quarantined(repair_id: Option<i64>) -> pgrx::JsonB {
    let repair_id = required(repair_id, "repair_id");
    let report = integrity::repair::restore(repair_id).or_raise();
    audit::record(
        "restore_quarantined",
        &format!("repair {repair_id}"),
        json!({"repair_id": repair_id}),
        "restored",
    );
    pgrx::JsonB(report)
}
