-- Privileges, once every object exists. EXECUTE is revoked from PUBLIC on everything and
-- granted per role; the tables are readable by viewers and writable only by the extension
-- owner (the functions write them as the owner, see src/sys.rs).

REVOKE ALL ON ALL TABLES IN SCHEMA tenant_ops FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tenant_ops FROM PUBLIC;
REVOKE EXECUTE ON ALL PROCEDURES IN SCHEMA tenant_ops FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant_ops TO tenant_ops_viewer;

GRANT SELECT ON tenant_ops.scope, tenant_ops.scopes, tenant_ops.audit_log, tenant_ops.jobs, tenant_ops.job_tables,
                tenant_ops.job_log, tenant_ops.job_errors, tenant_ops.progress, tenant_ops.id_map,
                tenant_ops.job_extra, tenant_ops.scheduler_state, tenant_ops.integrity_issues,
                tenant_ops.integrity_history, tenant_ops.quarantine TO tenant_ops_viewer;

-- viewer
GRANT EXECUTE ON FUNCTION tenant_ops.plan(text, text) TO tenant_ops_viewer;
GRANT EXECUTE ON FUNCTION tenant_ops.job_report(bigint), tenant_ops.map_id(regclass, text),
                          tenant_ops.uuid5(uuid, text) TO tenant_ops_viewer;
GRANT EXECUTE ON FUNCTION tenant_ops.wait_for_job(bigint, interval), tenant_ops.scheduler_health(),
                          tenant_ops.verify_migration(bigint) TO tenant_ops_viewer;
-- operator
GRANT EXECUTE ON FUNCTION tenant_ops.migrate_tenant(text, text, name, jsonb, boolean),
                          tenant_ops.validate_integrity(text, text, text[], boolean),
                          tenant_ops.pause_job(bigint), tenant_ops.resume_job(bigint),
                          tenant_ops.cancel_job(bigint), tenant_ops.retry_job(bigint) TO tenant_ops_operator;
GRANT EXECUTE ON PROCEDURE tenant_ops.run_job(bigint) TO tenant_ops_operator;
-- admin
GRANT EXECUTE ON FUNCTION tenant_ops.rollback_migration(bigint), tenant_ops.purge_history(),
                          tenant_ops.repair_integrity(bigint, text, boolean),
                          tenant_ops.restore_quarantined(bigint) TO tenant_ops_admin;
GRANT EXECUTE ON FUNCTION tenant_ops.create_scope(text, regclass, name, jsonb),
                          tenant_ops.drop_scope(text) TO tenant_ops_admin;
