//! The Citus functions: `move_tenant`.

use pgrx::prelude::*;
use serde_json::json;

use super::required;
use crate::audit;
use crate::citus;
use crate::error::OrRaise;

/// Moves one tenant to another node of a Citus cluster, as a job: its rows of every table
/// colocated with the scope's root get a shard of their own (`isolate_tenant_to_new_shard`,
/// CASCADE), which Citus then moves to `node` (`host:port`, as `pg_dist_node` has it) with
/// `citus_move_shard_placement`; the tenant's rows are counted and hashed before and after,
/// and must be the same. Options: `transfer_mode` (`block_writes`, the default, or
/// `force_logical`: writes go on during the move; needs a replica identity on every table
/// and a committing executor), `defer` (create the job for `CALL tenant_ops.run_job`).
/// Returns the job id.
#[pg_extern(sql = r#"
CREATE FUNCTION tenant_ops.move_tenant(scope text, tenant text, node text,
                                       options jsonb DEFAULT '{}', background boolean DEFAULT false)
RETURNS bigint VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION tenant_ops.move_tenant(text, text, text, jsonb, boolean) IS
'Moves one tenant''s shards to another Citus node (isolate, move, verify by checksums) as a job; returns the job id.';
"#)]
fn move_tenant(
    scope: Option<&str>,
    tenant: Option<&str>,
    node: Option<&str>,
    options: default!(Option<super::JsonArg>, "'{}'"),
    background: default!(Option<bool>, false),
) -> i64 {
    let scope = required(scope, "scope");
    let tenant = required(tenant, "tenant");
    let node = required(node, "node");
    let options = super::options(options);
    let background = super::background(background);
    let (job_id, parsed) = citus::move_tenant::submit(scope, tenant, node, &options, background)
        .inspect_err(|e| audit::log_failure("move_tenant", scope, e))
        .or_raise();
    audit::record(
        "move_tenant",
        &format!("{scope}/{tenant}"),
        json!({"node": node, "options": options}),
        &format!("job {job_id}"),
    );
    if parsed.defer && !background {
        return job_id;
    }
    super::start_job(job_id, &citus::kind::MoveTenantKind, background);
    job_id
}
