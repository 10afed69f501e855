-- Citus functions on a server without Citus: refused with 0A000 and a HINT, nothing written;
-- the argument errors that come before the probe. (The cluster tests are the citus tier.)
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE SCHEMA "cit us";
CREATE TABLE "cit us".tenants (id int PRIMARY KEY, name text);
CREATE TABLE "cit us".notes (tenant_id int REFERENCES "cit us".tenants, id int, body text,
                             PRIMARY KEY (tenant_id, id));
INSERT INTO "cit us".tenants VALUES (1, 'one'), (2, 'two');
INSERT INTO "cit us".notes VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c');
SELECT tenant_ops.create_scope('cit', '"cit us".tenants', 'id');
CREATE SCHEMA "cit target";

-- move_tenant needs Citus
SELECT tenant_ops.move_tenant('cit', '1', '10.0.0.5:5432');
\echo :SQLSTATE
-- options are checked first
SELECT tenant_ops.move_tenant('cit', '1', '10.0.0.5:5432', '{"transfer_mode": "fast"}');
\echo :SQLSTATE
SELECT tenant_ops.move_tenant('cit', '1', '10.0.0.5:5432', '{"nodes": 2}');
\echo :SQLSTATE
SELECT tenant_ops.move_tenant('cit', '1', NULL);
\echo :SQLSTATE
-- "distribute" needs create_target, and Citus
SELECT tenant_ops.migrate_tenant('cit', '1', 'cit target', '{"distribute": true}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('cit', '1', 'cit target', '{"create_target": true, "distribute": true}');
\echo :SQLSTATE
SELECT count(*) AS move_jobs FROM tenant_ops.jobs WHERE kind = 'move_tenant';
SELECT count(*) AS created FROM pg_class WHERE relnamespace = '"cit target"'::regnamespace;
-- without "distribute" a migration works as ever
SELECT tenant_ops.migrate_tenant('cit', '1', 'cit target', '{"create_target": true}') > 0 AS migrated;
SELECT count(*) FROM "cit target".notes;
