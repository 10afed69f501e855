-- The pii option of migrate_tenant and export_tenant: "mask" applies scan_pii's suggestions
-- (resolved once, at submission, into the explicit form the job stores), {"mask": {...}}
-- names the columns; key columns are never masked; every bad value with its SQLSTATE.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE SCHEMA "pii mask";
CREATE TABLE "pii mask".org (id int PRIMARY KEY, name text);
CREATE TABLE "pii mask"."Cust;omer" (id serial PRIMARY KEY, org int NOT NULL REFERENCES "pii mask".org,
    email text, phone text, card varchar(30), ip inet, "IP text" text, birthday date, note text, code text);
INSERT INTO "pii mask".org VALUES (1, 'one'), (2, 'two');
INSERT INTO "pii mask"."Cust;omer"
SELECT g, 1 + g % 2, 'user' || g || '@example.com', '+47 22 33 ' || lpad(g::text, 4, '0'),
       '4111 1111 1111 1111', ('10.0.' || g || '.1')::inet, '10.0.' || g || '.1',
       date '1950-01-01' + g * 97,
       CASE WHEN g % 10 = 0 THEN 'call me at +47 22 33 44 55 or ann@example.com' ELSE 'nothing to see ' || g END,
       'C-' || g
  FROM generate_series(1, 40) g;
SELECT setval(pg_get_serial_sequence('"pii mask"."Cust;omer"', 'id'), 40) AS id_seq;
SELECT tenant_ops.create_scope('pii mask', '"pii mask".org', 'id') IS NOT NULL AS scope;
CREATE FUNCTION pg_temp.status(id bigint) RETURNS text LANGUAGE sql AS $$
  SELECT status FROM tenant_ops.jobs WHERE jobs.id = $1 $$;

-- 1. "pii": "mask": every column the scan finds, masked as it suggests (redact where the
--    pseudonymize key is not set, a value of the column's type for inet and dates); the
--    job stores the explicit form; keys and the other columns as they were
CREATE SCHEMA "masked 1";
SELECT pg_temp.status(tenant_ops.migrate_tenant('pii mask', '1', 'masked 1',
  '{"create_target": true, "pii": "mask"}')) AS masked;
SELECT jsonb_pretty(options -> 'pii') FROM tenant_ops.jobs WHERE kind = 'migrate' ORDER BY id DESC LIMIT 1;
SELECT id, org, email, phone, card, ip, "IP text", birthday, note, code
  FROM "masked 1"."Cust;omer" WHERE id IN (2, 10, 40) ORDER BY id;
SELECT count(*) AS rows, count(*) FILTER (WHERE email ~ '^u\*+@example\.com$') AS emails_masked,
       count(*) FILTER (WHERE card = '**** **** **** 1111') AS cards_masked,
       count(*) FILTER (WHERE code = 'C-' || id) AS codes_kept
  FROM "masked 1"."Cust;omer";
SELECT * FROM "masked 1".org;

-- 2. The explicit form: only the columns named; the mask applies after a transform "columns" gives
CREATE SCHEMA "masked 2";
SELECT pg_temp.status(tenant_ops.migrate_tenant('pii mask', '2', 'masked 2', '{"create_target": true,
  "pii": {"mask": {"\"pii mask\".\"Cust;omer\"": {"email": "mask_email", "note": {"name": "redact", "with": "-"}}}},
  "columns": {"Cust;omer": {"note": {"from": "note", "transform": "upper"}}}}')) AS explicit;
SELECT id, email, phone, note FROM "masked 2"."Cust;omer" WHERE id IN (1, 3) ORDER BY id;

-- 3. export_tenant: the same option, the archive holds the masked values only
SET tenant_ops.export_directory = 'regress_exports';
SELECT pg_temp.status(tenant_ops.export_tenant('pii mask', '1', 'csv',
  '{"file": "masked.tar", "gzip": false, "pii": "mask"}')) AS exported;
SELECT position(convert_to('u***@example.com', 'UTF8') IN tenant_ops.download_export('masked.tar')) > 0 AS masked_email_there,
       position(convert_to('user2@example.com', 'UTF8') IN tenant_ops.download_export('masked.tar')) = 0 AS no_email,
       position(convert_to('4111 1111 1111 1111', 'UTF8') IN tenant_ops.download_export('masked.tar')) = 0 AS no_card,
       position(convert_to('C-40', 'UTF8') IN tenant_ops.download_export('masked.tar')) > 0 AS code_kept;
SELECT options -> 'pii' -> 'mask' -> '"pii mask"."Cust;omer"' -> 'email' AS stored
  FROM tenant_ops.jobs WHERE kind = 'export' ORDER BY id DESC LIMIT 1;

-- 3b. A column a unique index covers: its masked values would collide, so "mask" refuses it
--     without the pseudonymize key, and pseudonymizes it (distinct values stay distinct) with it
CREATE UNIQUE INDEX "cust email" ON "pii mask"."Cust;omer" (email);
CREATE SCHEMA "masked u";
SELECT tenant_ops.migrate_tenant('pii mask', '2', 'masked u', '{"create_target": true, "pii": "mask"}');
\echo :SQLSTATE
SELECT count(*) AS tables_in_masked_u FROM pg_tables WHERE schemaname = 'masked u';
SET tenant_ops.pseudonymize_key = 'regress key';
SELECT pg_temp.status(tenant_ops.migrate_tenant('pii mask', '2', 'masked u', '{"create_target": true, "pii": "mask"}')) AS pseudonymized;
SELECT count(*) AS rows, count(DISTINCT email) AS distinct_emails,
       count(*) FILTER (WHERE email ~ '^[0-9a-f]{64}$') AS email_pseudonyms,
       count(*) FILTER (WHERE "IP text" ~ '^[0-9a-f]{64}$') AS ip_pseudonyms
  FROM "masked u"."Cust;omer";
RESET tenant_ops.pseudonymize_key;
DROP INDEX "pii mask"."cust email";

-- 4. Bad values: refused before anything is written
CREATE SCHEMA "masked 3";
SELECT tenant_ops.migrate_tenant('pii mask', '1', 'masked 3', '{"create_target": true, "pii": 5}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('pii mask', '1', 'masked 3', '{"create_target": true, "pii": "hide"}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('pii mask', '1', 'masked 3', '{"create_target": true, "pii": {"columns": {}}}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('pii mask', '1', 'masked 3', '{"create_target": true, "pii": {"mask": {"nope": {"x": "redact"}}}}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('pii mask', '1', 'masked 3', '{"create_target": true, "pii": {"mask": {"Cust;omer": {"nope": "redact"}}}}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('pii mask', '1', 'masked 3', '{"create_target": true, "pii": {"mask": {"Cust;omer": {"org": "redact"}}}}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('pii mask', '1', 'masked 3', '{"create_target": true, "pii": {"mask": {"Cust;omer": {"email": "vanish"}}}}');
\echo :SQLSTATE
SELECT tenant_ops.migrate_tenant('pii mask', '1', 'masked 3', '{"create_target": true, "pii": {"mask": {"Cust;omer": ["email"]}}}');
\echo :SQLSTATE
SELECT tenant_ops.export_tenant('pii mask', '1', 'csv', '{"pii": {"mask": {"org": {"id": "redact"}}}}');
\echo :SQLSTATE
SELECT count(*) AS tables_in_masked_3 FROM pg_tables WHERE schemaname = 'masked 3';

-- 5. restore_backup's clone: a masked copy of a tenant under a new key; the tenant itself as
--    it was
SELECT tenant_ops.create_backup('pii mask', '1') AS job \gset
SELECT (result ->> 'backup_id')::int8 AS b FROM tenant_ops.jobs WHERE id = :job \gset
SELECT pg_temp.status(tenant_ops.restore_backup(:b, '{"mode": "clone", "new_tenant": "3", "pii": "mask"}')) AS cloned;
SELECT count(*) AS rows, count(*) FILTER (WHERE email ~ '^u\*+@example\.com$') AS emails_masked,
       count(*) FILTER (WHERE card = '**** **** **** 1111') AS cards_masked,
       count(*) FILTER (WHERE code LIKE 'C-%') AS codes_kept, min(id) > 40 AS fresh_keys
  FROM "pii mask"."Cust;omer" WHERE org = 3;
SELECT count(*) FILTER (WHERE email LIKE 'user%@example.com') AS tenant_1_unmasked FROM "pii mask"."Cust;omer" WHERE org = 1;
-- (a restore job keeps "mask": the clone decides from the backup's rows, which never change)
SELECT options -> 'pii' AS stored FROM tenant_ops.jobs WHERE kind = 'restore' ORDER BY id DESC LIMIT 1;
SELECT tenant_ops.restore_backup(:b, '{"mode": "merge", "pii": "mask"}');
\echo :SQLSTATE
SELECT tenant_ops.restore_backup(:b, '{"mode": "clone", "new_tenant": "4", "pii": {"mask": {"Cust;omer": {"nope": "redact"}}}}');
\echo :SQLSTATE
-- the scan reads the backup's rows, not the live ones: with tenant 1's customers gone, its
-- clone is masked all the same
DELETE FROM "pii mask"."Cust;omer" WHERE org = 1;
SELECT pg_temp.status(tenant_ops.restore_backup(:b, '{"mode": "clone", "new_tenant": "4", "pii": "mask"}')) AS cloned;
SELECT count(*) AS rows, count(*) FILTER (WHERE email ~ '^u\*+@example\.com$') AS emails_masked
  FROM "pii mask"."Cust;omer" WHERE org = 4;
SELECT jsonb_object_keys(details -> 'mask' -> '"pii mask"."Cust;omer"') AS masked_columns
  FROM tenant_ops.job_log WHERE event = 'pii.masked' ORDER BY job_id DESC, 1 LIMIT 7;
SELECT tenant_ops.drop_backup(:b) IS NOT NULL AS dropped;

SELECT tenant_ops.drop_scope('pii mask');
DROP SCHEMA "pii mask", "masked 1", "masked 2", "masked 3", "masked u" CASCADE;
