//! Schedules: `schedule_operation`, `alter_schedule`, `unschedule`, `trigger_schedule`.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use super::required;
use crate::audit;
use crate::error::OrRaise;
use crate::schedule::{define, fire};

/// Runs `operation` (backup, validate, migrate, export, import, purge_backups, purge_history) with the
/// arguments in `params` (as its function takes them) whenever `cron` says, in the time zone
/// `params.timezone` (default: the setting `tenant_ops.timezone`), as the calling role. Also
/// in `params`: `overlap` (`skip`, `queue`), `catch_up` (`once`, `skip`), `alert_after`,
/// `engine` (`builtin`, `pg_cron`). Returns the schedule's id.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.schedule_operation(name text, cron text, operation text, params jsonb DEFAULT '{}')
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.schedule_operation(text, text, text, jsonb) IS
'Runs an operation (backup, validate, migrate, export, import, purge_backups, purge_history) on a cron schedule, as the calling role; returns the schedule id.';
"#)]
fn schedule_operation(
    name: Option<&str>,
    cron: Option<&str>,
    operation: Option<&str>,
    params: default!(Option<super::JsonArg>, "'{}'"),
) -> i64 {
    let name = required(name, "name");
    let cron = required(cron, "cron");
    let operation = required(operation, "operation");
    let params = super::options(params);
    let id = define::create(name, cron, operation, &params)
        .inspect_err(|e| audit::log_failure("schedule_operation", name, e))
        .or_raise();
    audit::record(
        "schedule_operation",
        name,
        json!({"cron": cron, "operation": operation, "params": params}),
        &format!("schedule {id}"),
    );
    id
}

/// Changes a schedule: a new expression, new params (replacing the old), enabled or not;
/// NULL keeps what is there. The next firing follows at once. Returns the schedule as it is.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.alter_schedule(name text, cron text DEFAULT NULL, params jsonb DEFAULT NULL,
                                          enabled boolean DEFAULT NULL)
RETURNS jsonb VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.alter_schedule(text, text, jsonb, boolean) IS
'Changes a schedule''s cron expression, params or enabled; returns it as it is now.';
"#)]
fn alter_schedule(
    name: Option<&str>,
    cron: default!(Option<&str>, "NULL"),
    params: default!(Option<super::JsonArg>, "NULL"),
    enabled: default!(Option<bool>, "NULL"),
) -> JsonB {
    let name = required(name, "name");
    let params = params.map(super::JsonArg::value);
    let now = define::alter(name, cron, params.as_ref(), enabled)
        .inspect_err(|e| audit::log_failure("alter_schedule", name, e))
        .or_raise();
    audit::record(
        "alter_schedule",
        name,
        json!({"cron": cron, "params": params, "enabled": enabled}),
        "altered",
    );
    JsonB(now)
}

/// Removes a schedule (and its history, and its pg_cron job). Runs already queued go on.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.unschedule(name text)
RETURNS boolean VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.unschedule(text) IS 'Removes a schedule, its history and its pg_cron job.';
"#)]
fn unschedule(name: Option<&str>) -> bool {
    let name = required(name, "name");
    define::drop(name)
        .inspect_err(|e| audit::log_failure("unschedule", name, e))
        .or_raise();
    audit::record("unschedule", name, json!({}), "removed");
    true
}

/// Runs a schedule now (also what pg_cron calls for a pg_cron schedule), as its owner, with
/// its overlap rule. Returns the job id, or NULL when the run was skipped or queued behind
/// the one still going.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.trigger_schedule(name text)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.trigger_schedule(text) IS 'Runs a schedule now; returns the job id (NULL: skipped, one run at a time).';
"#)]
fn trigger_schedule(name: Option<&str>) -> Option<i64> {
    let name = required(name, "name");
    define::require_admin().or_raise();
    crate::worker::require_workers().or_raise();
    let job = fire::trigger(name)
        .inspect_err(|e| audit::log_failure("trigger_schedule", name, e))
        .or_raise();
    audit::record(
        "trigger_schedule",
        name,
        json!({}),
        &match job {
            Some(j) => format!("job {j}"),
            None => "skipped".into(),
        },
    );
    job
}
