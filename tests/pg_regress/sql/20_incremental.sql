-- Incremental backups: a base with a change capture, two incrementals, verify and restore of
-- the chain; every refusal with its SQLSTATE, message and hint (backup ids shown as N: they
-- depend on the suites before).
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE SCHEMA "incr ém";
CREATE TABLE "incr ém"."Shop" (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE "incr ém"."line;item" (shop int NOT NULL REFERENCES "incr ém"."Shop", no int NOT NULL,
    "qty ""x""" int, note text, PRIMARY KEY (shop, no));
CREATE TABLE "incr ém".part (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, shop int NOT NULL,
    no int NOT NULL, label text, FOREIGN KEY (shop, no) REFERENCES "incr ém"."line;item" ON UPDATE CASCADE);
INSERT INTO "incr ém"."Shop" VALUES (1, 'one'), (2, 'two');
INSERT INTO "incr ém"."line;item" SELECT 1 + g % 2, g, g * 10, E'n\t' || g FROM generate_series(1, 20) g;
INSERT INTO "incr ém".part (shop, no, label) SELECT shop, no, 'p' || no FROM "incr ém"."line;item";
SELECT tenant_ops.create_scope('incr', '"incr ém"."Shop"', 'id') IS NOT NULL AS scope_created;
CREATE FUNCTION pg_temp.sums(o int) RETURNS TABLE (t text, n bigint, sum text) LANGUAGE sql AS $$
  SELECT 'Shop', count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM "incr ém"."Shop" x WHERE id = o
  UNION ALL SELECT 'line;item', count(*), md5(string_agg(x::text, '|' ORDER BY x.no)) FROM "incr ém"."line;item" x WHERE shop = o
  UNION ALL SELECT 'part', count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM "incr ém".part x WHERE shop = o
$$;
-- What a call is refused with: SQLSTATE, message and hint, digits as N.
CREATE FUNCTION pg_temp.refused(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text; m text; h text;
BEGIN
  EXECUTE q;
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, h = PG_EXCEPTION_HINT;
  RETURN s || ': ' || regexp_replace(m, '\m[0-9]+\M', 'N', 'g') || coalesce(' | HINT: ' || nullif(h, ''), '');
END $$;
CREATE FUNCTION pg_temp.backup_of(job bigint) RETURNS bigint LANGUAGE sql AS $$
  SELECT (result ->> 'backup_id')::bigint FROM tenant_ops.jobs WHERE id = job $$;

-- 1. refusals before any chain: an unknown backup, both options, a base without capture
SELECT pg_temp.refused($$SELECT tenant_ops.create_backup('incr', '1', '{"incremental": 999999999}')$$);
SELECT pg_temp.refused($$SELECT tenant_ops.create_backup('incr', '1', '{"capture": true, "incremental": 1}')$$);
SELECT pg_temp.refused($$SELECT tenant_ops.create_backup('incr', '1', '{"incremental": "x"}')$$);
SELECT pg_temp.backup_of(tenant_ops.create_backup('incr', '1')) AS plain \gset
SELECT pg_temp.refused(format($$SELECT tenant_ops.create_backup('incr', '1', '{"incremental": %s}')$$, :plain));
-- a base at REPEATABLE READ: its snapshot would predate the capture
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.refused($$SELECT tenant_ops.create_backup('incr', '1', '{"capture": true}')$$);
ROLLBACK;

-- an operator without the TRIGGER privilege may back up, not start a capture
CREATE ROLE incr_operator;
GRANT tenant_ops_operator TO incr_operator;
GRANT USAGE ON SCHEMA "incr ém" TO incr_operator;
GRANT SELECT ON ALL TABLES IN SCHEMA "incr ém" TO incr_operator;
SET ROLE incr_operator;
SELECT pg_temp.refused($$SELECT tenant_ops.create_backup('incr', '1', '{"capture": true}')$$);
RESET ROLE;

-- 2. the base, with a capture: the tenant's tables get its triggers
SELECT tenant_ops.create_backup('incr', '1', '{"capture": true}') AS job \gset
SELECT pg_temp.backup_of(:job) AS base \gset
SELECT status, result -> 'capture' IS NOT NULL AS has_capture FROM tenant_ops.jobs WHERE id = :job;
SELECT c.scope, c.tenant, c.status, c.tables FROM tenant_ops.captures c
 WHERE c.id = (SELECT (manifest ->> 'capture')::bigint FROM tenant_ops.backups WHERE id = :base);
CREATE TABLE s0 AS SELECT * FROM pg_temp.sums(1);
-- a TRUNCATE of a captured table would lose its changes: refused, naming the backup job
SELECT pg_temp.refused($$TRUNCATE "incr ém".part$$);

-- 3. writes: an insert, an update, a delete, a key update cascading to the parts
INSERT INTO "incr ém"."line;item" VALUES (1, 100, 1, 'new');
UPDATE "incr ém"."line;item" SET note = 'changed' WHERE shop = 1 AND no = 2;
DELETE FROM "incr ém".part WHERE shop = 1 AND no = 4;
DELETE FROM "incr ém"."line;item" WHERE shop = 1 AND no = 4;
UPDATE "incr ém"."line;item" SET no = 200 WHERE shop = 1 AND no = 6;
UPDATE "incr ém"."line;item" SET note = 'not ours' WHERE shop = 2 AND no = 1;
CREATE TABLE s1 AS SELECT * FROM pg_temp.sums(1);
SELECT tenant_ops.create_backup('incr', '1', format('{"incremental": %s}', :base)::jsonb) AS job \gset
SELECT pg_temp.backup_of(:job) AS i1 \gset
SELECT result -> 'incremental' -> 'link' AS link, result -> 'incremental' -> 'changes' AS changes,
       jsonb_path_query_array(result, '$.per_table[*] ? (@.rows > 0)') AS per_table
  FROM tenant_ops.jobs WHERE id = :job;
-- another tenant's, another scope's, shared rows: refused
SELECT pg_temp.refused(format($$SELECT tenant_ops.create_backup('incr', '2', '{"incremental": %s}')$$, :i1));
SELECT pg_temp.refused(format($$SELECT tenant_ops.create_backup('incr', '1', '{"incremental": %s, "shared": "include"}')$$, :i1));

-- 4. more writes, the second incremental; a branch from the first refused
UPDATE "incr ém"."Shop" SET name = 'one, renamed' WHERE id = 1;
UPDATE "incr ém".part SET label = 'relabelled' WHERE shop = 1 AND no = 200;
INSERT INTO "incr ém".part (shop, no, label) VALUES (1, 100, 'new part');
DELETE FROM "incr ém".part WHERE shop = 1 AND no = 8;
CREATE TABLE s2 AS SELECT * FROM pg_temp.sums(1);
-- each state differs from the one before it in every table written
SELECT (SELECT count(*) FROM (TABLE s1 EXCEPT TABLE s0) d) AS changed_at_1, (SELECT count(*) FROM (TABLE s2 EXCEPT TABLE s1) d) AS changed_at_2;
SELECT pg_temp.backup_of(tenant_ops.create_backup('incr', '1', format('{"incremental": %s}', :i1)::jsonb)) AS i2 \gset
SELECT pg_temp.refused(format($$SELECT tenant_ops.create_backup('incr', '1', '{"incremental": %s}')$$, :i1));
SELECT v -> 'verified' AS verified, jsonb_array_length(v -> 'chain') AS links, v -> 'chain' = jsonb_build_array(:base, :i1, :i2) AS chain
  FROM tenant_ops.verify_backup(:i2) v;

-- 5. restores: link 2, link 1, into an emptied tenant; only as "replace"
SELECT pg_temp.refused(format($$SELECT tenant_ops.restore_backup(%s, '{"mode": "merge"}')$$, :i2));
SELECT pg_temp.refused(format($$SELECT tenant_ops.restore_backup(%s, '{"target_schema": "public"}')$$, :i2));
-- a dry run names the chain and changes nothing
SELECT tenant_ops.restore_backup(:i2, '{"dry_run": true}') AS job \gset
SELECT status, result -> 'dry_run' AS dry_run, result -> 'chain' = jsonb_build_array(:base, :i1, :i2) AS chain
  FROM tenant_ops.jobs WHERE id = :job;
SELECT count(*) AS differing_from_state_2 FROM ((TABLE s2 EXCEPT SELECT * FROM pg_temp.sums(1)) UNION ALL (SELECT * FROM pg_temp.sums(1) EXCEPT TABLE s2)) d;
CREATE TABLE other AS SELECT * FROM pg_temp.sums(2);
DELETE FROM "incr ém".part WHERE shop = 1;
DELETE FROM "incr ém"."line;item" WHERE shop = 1;
SELECT tenant_ops.restore_backup(:i2) AS job \gset
SELECT status, result -> 'verified' AS verified, result -> 'chain' = jsonb_build_array(:base, :i1, :i2) AS chain,
       jsonb_path_query_array(result, '$.links[*].tables[*]') AS applied
  FROM tenant_ops.jobs WHERE id = :job;
SELECT count(*) AS differing_from_state_2 FROM ((TABLE s2 EXCEPT SELECT * FROM pg_temp.sums(1)) UNION ALL (SELECT * FROM pg_temp.sums(1) EXCEPT TABLE s2)) d;
SELECT tenant_ops.restore_backup(:i1) IS NOT NULL AS restored;
SELECT count(*) AS differing_from_state_1 FROM ((TABLE s1 EXCEPT SELECT * FROM pg_temp.sums(1)) UNION ALL (SELECT * FROM pg_temp.sums(1) EXCEPT TABLE s1)) d;
SELECT count(*) AS other_tenant_changed FROM (TABLE other EXCEPT SELECT * FROM pg_temp.sums(2)) d;

-- 6. a missing link: refused by verify and restore, nothing changed
SELECT tenant_ops.drop_backup(:i1) ->> 'dropped' AS dropped;
SELECT pg_temp.refused(format('SELECT tenant_ops.verify_backup(%s)', :i2));
SELECT pg_temp.refused(format('SELECT tenant_ops.restore_backup(%s)', :i2));
SELECT pg_temp.refused(format($$SELECT tenant_ops.create_backup('incr', '1', '{"incremental": %s}')$$, :i2));
SELECT count(*) AS differing_from_state_1 FROM ((TABLE s1 EXCEPT SELECT * FROM pg_temp.sums(1)) UNION ALL (SELECT * FROM pg_temp.sums(1) EXCEPT TABLE s1)) d;

-- 7. dropping the base stops its capture: no trigger left, no record kept
SELECT (manifest ->> 'capture')::bigint AS capture FROM tenant_ops.backups WHERE id = :base \gset
SELECT tenant_ops.drop_backup(:base) ->> 'dropped' AS dropped;
SELECT status, stopped_at IS NOT NULL AS stopped FROM tenant_ops.captures WHERE id = :capture;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname LIKE 'tenant_ops_capture_' || :capture || '%';
SELECT count(*) AS records_left FROM tenant_ops.capture_changes WHERE capture_id = :capture;
SELECT tenant_ops.drop_backup(:i2) ->> 'dropped' AS dropped;
SELECT tenant_ops.drop_backup(:plain) ->> 'dropped' AS dropped;

-- 8. a table without a primary key cannot be captured
CREATE TABLE "incr ém".loose (shop int REFERENCES "incr ém"."Shop", v text);
SELECT tenant_ops.create_scope('incr loose', '"incr ém"."Shop"', 'id') IS NOT NULL AS scope_created;
SELECT pg_temp.refused($$SELECT tenant_ops.create_backup('incr loose', '1', '{"capture": true}')$$);
SELECT tenant_ops.drop_scope('incr loose');
SELECT tenant_ops.drop_scope('incr');
DROP SCHEMA "incr ém" CASCADE;
DROP OWNED BY incr_operator;
DROP ROLE incr_operator;
