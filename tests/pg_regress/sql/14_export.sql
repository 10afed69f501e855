-- export_tenant in six formats, download_export, import_tenant round trips, and every bad
-- argument with its SQLSTATE. Hostile names throughout: spaces, quotes, a dot, $1, a
-- semicolon, upper case, non-ASCII.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE SCHEMA "Exp ört";
CREATE TABLE "Exp ört"."Org.x" (id int PRIMARY KEY, "Näme" text NOT NULL);
CREATE TABLE "Exp ört"."Peo;ple" (
    id serial PRIMARY KEY, org int NOT NULL REFERENCES "Exp ört"."Org.x",
    "full name" text, "$1" numeric(8,2), "it's" boolean, born date, seen timestamptz,
    big bigint, doc jsonb, raw bytea, "column" text, up text GENERATED ALWAYS AS (upper("full name")) STORED);
CREATE TABLE "Exp ört".note (id serial PRIMARY KEY, person int NOT NULL REFERENCES "Exp ört"."Peo;ple", body text);
CREATE TABLE "Exp ört".lonely (id int PRIMARY KEY);
INSERT INTO "Exp ört"."Org.x" VALUES (1, 'ørg "one"'), (2, 'two');
INSERT INTO "Exp ört"."Peo;ple" (org, "full name", "$1", "it's", born, seen, big, doc, raw, "column") VALUES
  (1, E'Ann, "the first"\nline two\r', 3.50, true, '1990-03-05', '2024-03-05 10:00:00+02', 9007199254740993,
      '{"a": [1, 2.50], "b": "x<&>"}', '\x00ff', ''),
  (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (1, E'back\\slash ''quote'' \\.', -0.01, false, '2000-01-01', '1999-12-31 23:59:59.999999+00', -1, 'null', '\x', '\.'),
  (2, 'other tenant', 1, true, '2001-01-01', now(), 2, '{}', '\x01', 'x');
INSERT INTO "Exp ört".note VALUES (1, 1, 'n1'), (2, 1, E'tab\there'), (3, 3, NULL), (4, 4, 'other');
SELECT tenant_ops.create_scope('exp ört', '"Exp ört"."Org.x"', 'id') IS NOT NULL AS scope_created;
-- A tenant's rows, by table: count and md5 in key order (keys included), in schema s.
CREATE FUNCTION pg_temp.sums(s text, org int) RETURNS TABLE (t text, n bigint, sum text) LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format($q$
    SELECT 'Org.x', count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM %1$I."Org.x" x WHERE id = $1
    UNION ALL SELECT 'Peo;ple', count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM %1$I."Peo;ple" x WHERE org = $1
    UNION ALL SELECT 'note', count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM %1$I.note x
              WHERE person IN (SELECT id FROM %1$I."Peo;ple" WHERE org = $1)$q$, s) USING org;
END $$;
CREATE FUNCTION pg_temp.job(id bigint) RETURNS jsonb LANGUAGE sql AS $$
  SELECT result - 'sha256' - 'size_bytes' FROM tenant_ops.jobs WHERE jobs.id = $1 $$;
-- The manifest of a plain (not gzip-compressed) export: the tar's first entry.
CREATE FUNCTION pg_temp.manifest(f text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT convert_from(substring(b FROM 1 FOR position('\x00'::bytea IN b) - 1), 'UTF8')::jsonb
         - 'created_at' - 'server_version' - 'extension_version'
    FROM (SELECT substring(tenant_ops.download_export(f, 512, 65536) FROM 1) b) x $$;

-- 1. Without tenant_ops.export_directory: refused
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv');
SET tenant_ops.export_directory = 'regress_exports';

-- 2. Every format; the job's result; the archives are there
-- (a workbook's size varies: it records when it was made)
SELECT CASE WHEN f = 'xlsx' THEN r - 'per_table' - 'data_bytes' ELSE r END AS result
  FROM unnest(ARRAY['csv', 'json', 'ndjson', 'xml', 'sql', 'xlsx']) f,
       pg_temp.job(tenant_ops.export_tenant('exp ört', '1', f, jsonb_build_object('file', 'e1.' || f || '.tar.gz'))) r;
SELECT f FROM pg_ls_dir('regress_exports') f ORDER BY f;
SELECT encode(substring(tenant_ops.download_export('e1.csv.tar.gz', 0, 16) FROM 1 FOR 2), 'hex') AS gzip_magic,
       length(tenant_ops.download_export('e1.csv.tar.gz')) = tenant_ops.export_size('e1.csv.tar.gz') AS whole_file;
SELECT kind, status, stage FROM tenant_ops.jobs WHERE kind = 'export' ORDER BY id LIMIT 1;
SELECT step, source, role, rows_done, details ->> 'file' AS file, (details -> 'bytes')::int > 0 AS bytes
  FROM tenant_ops.job_tables WHERE job_id = (SELECT min(id) FROM tenant_ops.jobs WHERE kind = 'export') ORDER BY step;

-- 3. Plain tar, chosen tables and columns (in dependency order whatever the order given), the manifest
SELECT pg_temp.job(tenant_ops.export_tenant('exp ört', '1', 'csv',
  '{"file": "cols.tar", "gzip": false, "tables": {"\"Exp ört\".note": {}, "\"Exp ört\".\"Peo;ple\"": {"columns": ["id", "org", "column", "full name"]}}}'));
SELECT jsonb_pretty(pg_temp.manifest('cols.tar'));
-- the data files hold what COPY ... CSV HEADER writes
SELECT position(convert_to(E'id,org,column,full name\n1,1,"","Ann, ""the first""\nline two\r"\n2,1,,\n3,1,"\\.",back\\slash ''quote'' \\.\n', 'UTF8')
                IN tenant_ops.download_export('cols.tar')) > 0 AS csv_as_copy_writes;
SELECT pg_temp.job(tenant_ops.export_tenant('exp ört', '1', 'sql', '{"file": "e1.sql.tar", "gzip": false}'));
SELECT position(convert_to($$INSERT INTO "Exp ört".note ("id", "person", "body") VALUES ('3', '3', NULL);$$, 'UTF8')
                IN tenant_ops.download_export('e1.sql.tar')) > 0 AS sql_inserts;
SELECT pg_temp.job(tenant_ops.export_tenant('exp ört', '1', 'ndjson', '{"file": "e1.ndjson.tar", "gzip": false}'));
SELECT position(convert_to('{"id":1,"org":1,"full name":"Ann, \"the first\"\nline two\r","$1":"3.50","it''s":true,"born":"1990-03-05","seen":"2024-03-05 08:00:00+00","big":9007199254740993,"doc":"{\"a\": [1, 2.50], \"b\": \"x<&>\"}","raw":"\\x00ff","column":""}', 'UTF8')
                IN tenant_ops.download_export('e1.ndjson.tar')) > 0 AS ndjson_objects;

-- 4. import_tenant: each format back into a staging copy of the tables, equal row for row
CREATE SCHEMA "stag ing";
CREATE TABLE "stag ing"."Org.x" (LIKE "Exp ört"."Org.x" INCLUDING ALL);
CREATE TABLE "stag ing"."Peo;ple" (LIKE "Exp ört"."Peo;ple" INCLUDING ALL);
CREATE TABLE "stag ing".note (LIKE "Exp ört".note INCLUDING ALL);
SELECT * FROM pg_temp.sums('Exp ört', 1);
CREATE FUNCTION pg_temp.round_trip(f text) RETURNS TABLE (format text, status text, same boolean) LANGUAGE plpgsql AS $$
DECLARE job bigint;
BEGIN
  TRUNCATE "stag ing"."Org.x", "stag ing"."Peo;ple", "stag ing".note;
  job := tenant_ops.import_tenant('exp ört', f, '{"target_schema": "stag ing"}');
  RETURN QUERY SELECT f, j.status, (SELECT array_agg(s ORDER BY t) FROM pg_temp.sums('stag ing', 1) s)
                                 = (SELECT array_agg(s ORDER BY t) FROM pg_temp.sums('Exp ört', 1) s)
    FROM tenant_ops.jobs j WHERE j.id = job;
END $$;
SELECT r.* FROM unnest(ARRAY['e1.csv.tar.gz', 'e1.json.tar.gz', 'e1.ndjson.tar.gz', 'e1.xml.tar.gz', 'e1.sql.tar.gz', 'e1.sql.tar', 'e1.ndjson.tar']) f,
  pg_temp.round_trip(f) r;
-- XLSX: every value as it was, the empty string too (written as the formula ="" with the
-- result "", since Excel has no empty text cell; NULL is a missing cell): no row differs
SELECT * FROM pg_temp.round_trip('e1.xlsx.tar.gz');
SELECT t, s.n, s.sum = e.sum AS same FROM pg_temp.sums('stag ing', 1) s JOIN pg_temp.sums('Exp ört', 1) e USING (t) ORDER BY t;
SELECT a.id, quote_nullable(a."column") AS exported, quote_nullable(b."column") AS imported
  FROM "Exp ört"."Peo;ple" a JOIN "stag ing"."Peo;ple" b USING (id) WHERE a::text IS DISTINCT FROM b::text;
SELECT label, tables, rows FROM tenant_ops.backups WHERE label LIKE 'import of %' ORDER BY id;
-- merge (the default) into rows that are there already: refused, nothing changed
SELECT tenant_ops.import_tenant('exp ört', 'e1.csv.tar.gz', '{"target_schema": "stag ing"}') AS refused;
SELECT tenant_ops.import_tenant('exp ört', 'e1.csv.tar.gz', '{"target_schema": "stag ing", "on_conflict": "skip"}') > 0 AS skipped;
-- a subset of columns: the others take their defaults
TRUNCATE "stag ing"."Org.x", "stag ing"."Peo;ple", "stag ing".note;
INSERT INTO "stag ing"."Org.x" VALUES (1, 'ørg "one"');
SELECT tenant_ops.import_tenant('exp ört', 'cols.tar', '{"target_schema": "stag ing"}') > 0 AS imported;
SELECT id, org, "full name", "$1", "column" FROM "stag ing"."Peo;ple" ORDER BY id;
-- re-keyed: loaded as tenant 7 with fresh keys (a clone; the serial draws them)
TRUNCATE "stag ing"."Org.x", "stag ing"."Peo;ple", "stag ing".note;
SELECT tenant_ops.import_tenant('exp ört', 'e1.json.tar.gz', '{"target_schema": "stag ing", "new_tenant": "7"}') > 0 AS cloned;
SELECT o.id, p."full name", p.id <> ALL (ARRAY[1, 2, 3]) AS fresh_key, count(n.id) AS notes
  FROM "stag ing"."Org.x" o JOIN "stag ing"."Peo;ple" p ON p.org = o.id LEFT JOIN "stag ing".note n ON n.person = p.id
 GROUP BY 1, 2, 3 ORDER BY 2;

-- 5. Bad arguments: each refused before anything is written
SELECT tenant_ops.export_tenant('exp ört', '1', 'parquet');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"tables": ["\"Exp ört\".nope"]}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"tables": ["\"Exp ört\".lonely"]}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"tables": {"\"Exp ört\".note": {"columns": ["id", "nope"]}}}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"tables": {"\"Exp ört\".\"Peo;ple\"": {"columns": ["up"]}}}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"tables": []}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"tables": "note"}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"zip": true}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"gzip": "yes"}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"file": "../../postgresql.conf"}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"file": "/etc/passwd"}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"file": ".hidden"}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"file": "no_such_dir/x.tar.gz"}');
SELECT tenant_ops.export_tenant('exp ört', '1', 'csv', '{"file": "e1.csv.tar.gz"}');
SELECT tenant_ops.export_tenant('exp ört', '9', 'csv');
SELECT tenant_ops.export_tenant('exp ört', 'x', 'csv');
SELECT tenant_ops.export_tenant('nope', '1', 'csv');
SELECT tenant_ops.export_tenant('exp ört', '1', NULL);
SELECT tenant_ops.download_export('../postgresql.conf');
SELECT tenant_ops.download_export('missing.tar.gz');
SELECT tenant_ops.download_export('e1.csv.tar.gz', -1);
SELECT count(*) AS exports_after_refusals FROM pg_ls_dir('regress_exports') f;

-- 6. Bad archives: damaged, a manifest that does not match its files, another scope
SELECT lo_from_bytea(0, convert_to('not an archive', 'UTF8')) AS lo \gset
SELECT lo_export(:lo, 'regress_exports/junk.tar.gz') = 1 AS written;
SELECT lo_unlink(:lo) = 1 AS unlinked;
SELECT tenant_ops.import_tenant('exp ört', 'junk.tar.gz');
SELECT lo_from_bytea(0, convert_to('', 'UTF8')) AS lo \gset
SELECT lo_put(:lo, 0, replace_bytes) FROM (
  SELECT overlay(b PLACING convert_to('"rows": 4', 'UTF8') FROM position(convert_to('"rows": 3', 'UTF8') IN b) FOR 9) AS replace_bytes
    FROM (SELECT tenant_ops.download_export('e1.sql.tar') b) x) y;
SELECT lo_export(:lo, 'regress_exports/rows.tar') = 1 AS written;
SELECT tenant_ops.import_tenant('exp ört', 'rows.tar');
SELECT lo_unlink(:lo) = 1 AS unlinked;
SELECT lo_from_bytea(0, (
  SELECT overlay(b PLACING convert_to('Bnn', 'UTF8') FROM position(convert_to('Ann', 'UTF8') IN b) FOR 3)
    FROM (SELECT tenant_ops.download_export('e1.ndjson.tar') b) x)) AS lo \gset
SELECT lo_export(:lo, 'regress_exports/flipped.tar') = 1 AS written;
SELECT tenant_ops.import_tenant('exp ört', 'flipped.tar');
SELECT lo_unlink(:lo) = 1 AS unlinked;
SELECT lo_from_bytea(0, substring(tenant_ops.download_export('e1.csv.tar.gz') FROM 1 FOR 200)) AS lo \gset
SELECT lo_export(:lo, 'regress_exports/cut.tar.gz') = 1 AS written;
SELECT tenant_ops.import_tenant('exp ört', 'cut.tar.gz');
SELECT lo_unlink(:lo) = 1 AS unlinked;
SELECT tenant_ops.import_tenant('exp ört', 'missing.tar.gz');
SELECT tenant_ops.import_tenant('exp ört', '../x');
SELECT tenant_ops.import_tenant('exp ört', 'e1.csv.tar.gz', '{"mode": "sideways"}');
CREATE TABLE "Exp ört".other_root (id int PRIMARY KEY);
SELECT tenant_ops.create_scope('other', '"Exp ört".other_root', 'id') IS NOT NULL AS other_scope;
SELECT tenant_ops.import_tenant('other', 'e1.csv.tar.gz');
SELECT count(*) AS staged FROM "stag ing"."Peo;ple";

-- 7. Privileges: an operator exports; downloads and imports are an admin's; the directory a superuser's
CREATE ROLE exp_operator IN ROLE tenant_ops_operator;
GRANT USAGE ON SCHEMA "Exp ört" TO exp_operator;
GRANT SELECT ON ALL TABLES IN SCHEMA "Exp ört" TO exp_operator;
SET ROLE exp_operator;
SET tenant_ops.export_directory = '/tmp';
SELECT pg_temp.job(tenant_ops.export_tenant('exp ört', '2', 'ndjson', '{"file": "op.ndjson.tar.gz"}')) -> 'rows' AS rows;
SELECT tenant_ops.download_export('op.ndjson.tar.gz');
SELECT tenant_ops.import_tenant('exp ört', 'op.ndjson.tar.gz');
RESET ROLE;
REVOKE SELECT ON "Exp ört".note FROM exp_operator;
SET ROLE exp_operator;
SELECT tenant_ops.export_tenant('exp ört', '2', 'csv');
RESET ROLE;
SELECT action, target, outcome LIKE 'job %' AS job FROM tenant_ops.audit_log WHERE action IN ('export_tenant', 'import_tenant') ORDER BY id DESC LIMIT 2;

-- clean up: the files, the objects
DROP OWNED BY exp_operator;
DROP ROLE exp_operator;
SELECT tenant_ops.drop_scope('other') IS NOT NULL, tenant_ops.drop_scope('exp ört') IS NOT NULL;
DROP SCHEMA "Exp ört", "stag ing" CASCADE;
