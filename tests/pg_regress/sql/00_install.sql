-- The extension installs cleanly and creates what it promises: schema, tables, view, roles,
-- and EXECUTE granted per role rather than to PUBLIC.
CREATE EXTENSION pg_tenant_ops;
SELECT extname, extrelocatable, n.nspname AS schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'pg_tenant_ops';
SELECT c.relname, c.relkind, obj_description(c.oid, 'pg_class') IS NOT NULL AS has_comment
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'tenant_ops' AND c.relkind IN ('r', 'v') ORDER BY 1;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'tenant\_ops\_%' ORDER BY 1;
SELECT r.rolname AS member, m.rolname AS of_role
  FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.member JOIN pg_roles m ON m.oid = a.roleid
 WHERE m.rolname LIKE 'tenant\_ops\_%' AND r.rolname LIKE 'tenant\_ops\_%' ORDER BY 1, 2;
-- Who may execute what (PUBLIC never).
SELECT p.oid::regprocedure AS function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       has_function_privilege('tenant_ops_viewer', p.oid, 'EXECUTE') AS viewer,
       has_function_privilege('tenant_ops_operator', p.oid, 'EXECUTE') AS operator,
       has_function_privilege('tenant_ops_admin', p.oid, 'EXECUTE') AS admin
  FROM pg_proc p WHERE p.pronamespace = 'tenant_ops'::regnamespace ORDER BY p.proname;
-- The settings exist with their defaults, and the prefix is reserved.
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'tenant\_ops.%' ORDER BY 1;
SET tenant_ops.batchsize = 10;
\echo :SQLSTATE
SET tenant_ops.batch_size = 0;
\echo :SQLSTATE
-- The job kinds are the library's registry (src/kinds.rs); the catalog refuses any other.
SELECT k, tenant_ops.is_job_kind(k) FROM unnest(ARRAY['migrate', 'validate', 'nope']) k;
\set VERBOSITY terse
-- (an explicit id: a failed insert must not use up a job id the later suites expect)
INSERT INTO tenant_ops.jobs (id, kind) OVERRIDING SYSTEM VALUE VALUES (0, 'nope');
\set VERBOSITY default
