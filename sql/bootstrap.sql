-- pg_tenant_ops catalog: roles, the tables the extension owns, and the views over them.
-- Runs first in CREATE EXTENSION (schema tenant_ops is created from the control file).

-- Roles are cluster-wide and may already exist from another database: create only when missing.
DO $roles$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tenant_ops_viewer', 'tenant_ops_operator', 'tenant_ops_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    -- admin ⊃ operator ⊃ viewer
    IF NOT pg_catalog.pg_has_role('tenant_ops_operator', 'tenant_ops_viewer', 'MEMBER') THEN
        GRANT tenant_ops_viewer TO tenant_ops_operator;
    END IF;
    IF NOT pg_catalog.pg_has_role('tenant_ops_admin', 'tenant_ops_operator', 'MEMBER') THEN
        GRANT tenant_ops_operator TO tenant_ops_admin;
    END IF;
END
$roles$;

COMMENT ON ROLE tenant_ops_viewer IS 'pg_tenant_ops: reads scopes, plans, reports, progress and the audit log';
COMMENT ON ROLE tenant_ops_operator IS 'pg_tenant_ops: viewer + migrates, validates, backs up and controls its jobs';
COMMENT ON ROLE tenant_ops_admin IS 'pg_tenant_ops: operator + scopes, restores, repairs, rollbacks, schedules';

CREATE TABLE tenant_ops.scope (
    name        text PRIMARY KEY CHECK (name <> '' AND pg_catalog.length(name) <= 200),
    root        regclass NOT NULL,
    tenant_key  name NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}',
    summary     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE tenant_ops.scope IS
    'Tenant scope definitions as given to create_scope; resolved against the catalog at every use.';
COMMENT ON COLUMN tenant_ops.scope.summary IS
    'What the definition resolved to when it was created (owned and shared tables).';

CREATE TABLE tenant_ops.audit_log (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    session_user_name  name NOT NULL,
    current_user_name  name NOT NULL,
    backend_pid        int NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    action             text NOT NULL,
    target             text NOT NULL,
    arguments          jsonb NOT NULL DEFAULT '{}',
    outcome            text NOT NULL
);
CREATE INDEX audit_log_at_idx ON tenant_ops.audit_log (at);
COMMENT ON TABLE tenant_ops.audit_log IS
    'Every state-changing pg_tenant_ops call: who (session and current user), when, what, arguments, outcome. '
    'Append-only: only the extension owner may change or delete rows.';

CREATE VIEW tenant_ops.scopes AS
SELECT s.name,
       s.root,
       s.tenant_key,
       s.options,
       pg_catalog.jsonb_array_length(s.summary -> 'owned_tables')  AS owned_tables,
       pg_catalog.jsonb_array_length(s.summary -> 'shared_tables') AS shared_tables,
       s.created_at,
       s.created_by
  FROM tenant_ops.scope s;
COMMENT ON VIEW tenant_ops.scopes IS
    'Defined tenant scopes, with how many tables each owned and shared when it was created.';

-- pg_dump keeps the definitions and the audit trail with the database.
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.scope', '');
SELECT pg_catalog.pg_extension_config_dump('tenant_ops.audit_log', '');
