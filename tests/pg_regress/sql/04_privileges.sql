-- Roles: a viewer cannot create a scope, an operator cannot drop one, the audit log is
-- append-only for everyone but the extension owner, and PUBLIC can execute nothing.
\set SHOW_CONTEXT never
CREATE SCHEMA priv;
CREATE TABLE priv.t (id int PRIMARY KEY);
CREATE TABLE priv.c (t_id int REFERENCES priv.t);
INSERT INTO priv.t VALUES (1);
INSERT INTO priv.c VALUES (1), (1);
CREATE ROLE regress_viewer IN ROLE tenant_ops_viewer;
CREATE ROLE regress_operator IN ROLE tenant_ops_operator;
CREATE ROLE regress_admin IN ROLE tenant_ops_admin;
CREATE ROLE regress_nobody;
GRANT USAGE ON SCHEMA priv TO regress_viewer, regress_operator, regress_admin, regress_nobody;
GRANT SELECT ON ALL TABLES IN SCHEMA priv TO regress_viewer, regress_operator, regress_admin, regress_nobody;

SET ROLE regress_viewer;
SELECT tenant_ops.create_scope('priv', 'priv.t', 'id');
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_admin;
SELECT tenant_ops.create_scope('priv', 'priv.t', 'id');
RESET ROLE;
SET ROLE regress_viewer;
SELECT step, table_name, role, rows FROM tenant_ops.plan('priv', '1') ORDER BY step;
SELECT name, owned_tables FROM tenant_ops.scopes WHERE name = 'priv';
-- The catalog tables are read-only to everyone but the owner, even to admins.
INSERT INTO tenant_ops.scope (name, root, tenant_key) VALUES ('sneaky', 'priv.t', 'id');
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_operator;
SELECT tenant_ops.drop_scope('priv');
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_nobody;
SELECT * FROM tenant_ops.plan('priv', '1');
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_admin;
UPDATE tenant_ops.audit_log SET outcome = 'forged';
\echo :SQLSTATE
DELETE FROM tenant_ops.audit_log;
\echo :SQLSTATE
INSERT INTO tenant_ops.audit_log (session_user_name, current_user_name, action, target, outcome)
     VALUES ('x', 'x', 'forged', 'x', 'ok');
\echo :SQLSTATE
SELECT tenant_ops.drop_scope('priv');
RESET ROLE;
-- The audit log records who did it: the session user and the role in effect.
SELECT session_user_name = session_user AS session_user_recorded, current_user_name, action, target, outcome,
       arguments -> 'resolved' -> 'owned_tables' AS owned
  FROM tenant_ops.audit_log WHERE target = 'priv' ORDER BY id;
DROP OWNED BY regress_viewer, regress_operator, regress_admin, regress_nobody;
DROP ROLE regress_viewer, regress_operator, regress_admin, regress_nobody;
