-- Every bad input gets its own SQLSTATE, a message naming the culprit, a HINT where one
-- helps, and writes nothing (the scope count and the audit log stay as they were).
\set SHOW_CONTEXT never
CREATE SCHEMA bad;
CREATE TABLE bad.tenant (id int PRIMARY KEY, label text);
CREATE TABLE bad.item (id int PRIMARY KEY, tenant_id int NOT NULL REFERENCES bad.tenant, code text);
CREATE TABLE bad.other (id bigint PRIMARY KEY, code uuid);
CREATE TABLE bad.dual (id int PRIMARY KEY, a int REFERENCES bad.tenant, b int REFERENCES bad.tenant);
CREATE VIEW bad.tenant_view AS SELECT * FROM bad.tenant;
CREATE TABLE bad.parted (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE bad.parted_2025 PARTITION OF bad.parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO bad.tenant VALUES (1, 'one'), (2, 'two');
INSERT INTO bad.item VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c');
SELECT tenant_ops.create_scope('good', 'bad.tenant', 'id', '{"exclude": ["bad.dual"]}');
SELECT count(*) AS scopes, (SELECT count(*) FROM tenant_ops.audit_log) AS audit FROM tenant_ops.scopes \gset before_

-- unknown scope
SELECT * FROM tenant_ops.plan('nope', '1');
\echo :SQLSTATE
SELECT tenant_ops.drop_scope('nope');
\echo :SQLSTATE
-- scope name already taken
SELECT tenant_ops.create_scope('good', 'bad.tenant', 'id');
\echo :SQLSTATE
-- empty scope name, NULL arguments
SELECT tenant_ops.create_scope('', 'bad.tenant', 'id');
\echo :SQLSTATE
SELECT tenant_ops.create_scope(NULL, 'bad.tenant', 'id');
\echo :SQLSTATE
SELECT * FROM tenant_ops.plan('good', NULL);
\echo :SQLSTATE
-- key column missing on the root
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'tenant_id');
\echo :SQLSTATE
-- root that is not a table, or a partition
SELECT tenant_ops.create_scope('x', 'bad.tenant_view', 'id');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.parted_2025', 'id');
\echo :SQLSTATE
-- tenant value that does not cast to the key's type; a tenant that does not exist
SELECT * FROM tenant_ops.plan('good', 'abc');
\echo :SQLSTATE
SELECT * FROM tenant_ops.plan('good', '99999999999');
\echo :SQLSTATE
SELECT * FROM tenant_ops.plan('good', '999');
\echo :SQLSTATE
-- malformed options: not an object, unknown names, wrong shapes
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '[]');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["bad.dual"], "sharde": []}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"tables": "bad.item"}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"owner": {"bad.dual": 3}}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"links": [{"name": "l", "child": "bad.item", "parent": "bad.other", "columns": ["id"], "via": "x"}]}');
\echo :SQLSTATE
-- options naming unknown tables
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"shared": ["bad.nope"]}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["no.such.thing.at.all"]}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"tables": ["bad.tenant_view"]}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"owner": {"bad.nope": "x"}}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["bad.tenant"]}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["bad.item"], "shared": ["bad.item"]}');
\echo :SQLSTATE
-- owner naming an unknown constraint, or a table the scope does not own
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"owner": {"bad.dual": "dual_c_fkey"}}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["bad.dual"], "owner": {"bad.other": "bad.tenant"}}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["bad.dual"], "owner": {"bad.dual": "dual_a_fkey"}}');
\echo :SQLSTATE
-- ambiguous ownership without owner
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id');
\echo :SQLSTATE
-- links: unknown columns, mismatched types, missing keys
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["bad.dual"], "links": [{"name": "l", "child": "bad.other", "columns": ["tenant"], "parent": "bad.tenant"}]}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["bad.dual"], "links": [{"name": "l", "child": "bad.other", "columns": ["code"], "parent": "bad.tenant"}]}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["bad.dual"], "links": [{"name": "l", "child": "bad.other", "columns": ["id"], "parent": "bad.parted"}]}');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('x', 'bad.tenant', 'id', '{"exclude": ["bad.dual"], "links": [{"name": "l", "child": "bad.other", "columns": ["id"], "parent": "bad.tenant", "parent_columns": ["label"]}]}');
\echo :SQLSTATE
-- a bigint → int link is fine: integer types compare as they would in an FK
SELECT tenant_ops.create_scope('linked', 'bad.tenant', 'id', '{"exclude": ["bad.dual"], "links": [{"name": "l", "child": "bad.other", "columns": ["id"], "parent": "bad.tenant"}]}');
SELECT table_name, role, path FROM tenant_ops.plan('linked', '1') ORDER BY step;
SELECT tenant_ops.drop_scope('linked');

-- Nothing above was written: same scopes, and the audit log grew only by linked's create and drop.
SELECT count(*) = :before_scopes AS scopes_unchanged,
       (SELECT count(*) FROM tenant_ops.audit_log) = :before_audit + 2 AS audit_only_linked
  FROM tenant_ops.scopes;
-- every ambiguous table at once, on every layer, with one owner option that settles them all
CREATE SCHEMA amb;
CREATE TABLE amb.r (id int PRIMARY KEY);
CREATE TABLE amb.a (id int PRIMARY KEY, r_id int NOT NULL REFERENCES amb.r);
CREATE TABLE amb.b (id int PRIMARY KEY, r_id int NOT NULL REFERENCES amb.r);
CREATE TABLE amb.c (id int PRIMARY KEY, a_id int NOT NULL CONSTRAINT c_a REFERENCES amb.a, b_id int NOT NULL CONSTRAINT c_b REFERENCES amb.b);
CREATE TABLE amb.e (id int PRIMARY KEY, c1 int NOT NULL CONSTRAINT e_c1 REFERENCES amb.c, c2 int NOT NULL CONSTRAINT e_c2 REFERENCES amb.c);
SELECT tenant_ops.create_scope('amb', 'amb.r', 'id');
\echo :SQLSTATE
SELECT tenant_ops.create_scope('amb', 'amb.r', 'id', '{"owner": {"amb.c": "c_a", "amb.e": "e_c1"}}');
SELECT tenant_ops.drop_scope('amb');
DROP SCHEMA amb CASCADE;
