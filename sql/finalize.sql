-- Privileges, once every object exists. EXECUTE is revoked from PUBLIC on everything and
-- granted per role; the tables are readable by viewers and writable only by the extension
-- owner (the functions write them as the owner, see src/sys.rs).

REVOKE ALL ON ALL TABLES IN SCHEMA tenant_ops FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tenant_ops FROM PUBLIC;
GRANT USAGE ON SCHEMA tenant_ops TO tenant_ops_viewer;

GRANT SELECT ON tenant_ops.scope, tenant_ops.scopes, tenant_ops.audit_log TO tenant_ops_viewer;

-- viewer
GRANT EXECUTE ON FUNCTION tenant_ops.plan(text, text) TO tenant_ops_viewer;
-- admin
GRANT EXECUTE ON FUNCTION tenant_ops.create_scope(text, regclass, name, jsonb),
                          tenant_ops.drop_scope(text) TO tenant_ops_admin;
