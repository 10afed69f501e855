-- Backups: create, verify, restore (replace, dry run), read, drop, purge; every bad input
-- with its SQLSTATE. Checksums of the tenant's rows are compared before and after.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE SCHEMA "bäck up";
CREATE TYPE "bäck up".mood AS ENUM ('ok', 'meh');
CREATE DOMAIN "bäck up"."Pösitive" AS numeric(8,2) CHECK (VALUE > 0);
CREATE TABLE "bäck up".office (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE "bäck up".product (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE "bäck up"."Staff" (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, office_id int NOT NULL REFERENCES "bäck up".office,
    boss int REFERENCES "bäck up"."Staff", "full name" text, mood "bäck up".mood, tags text[],
    photo bytea, doc tsvector, seen timestamptz, pay "bäck up"."Pösitive", ratio real,
    upper_name text GENERATED ALWAYS AS (upper("full name")) STORED);
CREATE TABLE "bäck up".sale (office_id int NOT NULL REFERENCES "bäck up".office, no int NOT NULL,
    staff int REFERENCES "bäck up"."Staff", product int REFERENCES "bäck up".product, note text,
    PRIMARY KEY (office_id, no));
CREATE TABLE "bäck up".empty_one (id int PRIMARY KEY, office_id int REFERENCES "bäck up".office);
INSERT INTO "bäck up".office VALUES (1, 'north'), (2, 'south');
INSERT INTO "bäck up".product SELECT g, 'product ' || g FROM generate_series(1, 3) g;
INSERT INTO "bäck up"."Staff" (office_id, boss, "full name", mood, tags, photo, doc, seen, pay, ratio)
SELECT 1 + g % 2, CASE WHEN g > 2 THEN g - 2 END, E'name\t' || g || E'\n"quoted" \\ back', 'ok',
       ARRAY['a' || g, NULL, 'x,y'], decode('00ff' || lpad(to_hex(g), 2, '0'), 'hex'),
       to_tsvector('simple', 'staff ' || g), timestamptz '2025-06-01 12:00+02' + g * interval '1 hour',
       g * 10.5, g / 3.0
  FROM generate_series(1, 20) g;
INSERT INTO "bäck up".sale SELECT s.office_id, s.id, s.id, 1 + s.id % 3, CASE WHEN s.id % 4 = 0 THEN NULL ELSE 'süß ' || s.id END
  FROM "bäck up"."Staff" s;
SELECT tenant_ops.create_scope('bäck', '"bäck up".office', 'id') IS NOT NULL AS scope_created;
-- A checksum of the tenant's rows, table by table, in key order.
CREATE FUNCTION pg_temp.office_sums(o int) RETURNS TABLE (t text, n bigint, sum text) LANGUAGE sql AS $$
  SELECT 'office', count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM "bäck up".office x WHERE id = o
  UNION ALL SELECT 'Staff', count(*), md5(string_agg(x::text, '|' ORDER BY x.id)) FROM "bäck up"."Staff" x WHERE office_id = o
  UNION ALL SELECT 'sale', count(*), md5(string_agg(x::text, '|' ORDER BY x.no)) FROM "bäck up".sale x WHERE office_id = o
$$;
CREATE TABLE before AS SELECT * FROM pg_temp.office_sums(1);
CREATE TABLE other_before AS SELECT * FROM pg_temp.office_sums(2);

-- 1. a backup of office 1
SELECT tenant_ops.create_backup('bäck', '1', '{"label": "before the move", "retention": "7 days"}') AS job \gset
SELECT result ->> 'backup_id' AS backup_id FROM tenant_ops.jobs WHERE id = :job \gset
SELECT status, result -> 'tables' AS tables, result -> 'rows' AS rows, result -> 'per_table' AS per_table
  FROM tenant_ops.jobs WHERE id = :job;
SELECT scope, tenant, label, tables, rows, size_bytes > 0 AS has_bytes, sha256 ~ '^[0-9a-f]{64}$' AS sha256_hex,
       expires_at - created_at AS kept, file_name ~ '^tenant_ops_backup_' AS our_name,
       manifest -> 'tables' -> 1 -> 'columns' AS staff_columns
  FROM tenant_ops.backups WHERE id = :backup_id;
SELECT (tenant_ops.verify_backup(:backup_id)) - 'sha256' - 'size_bytes' - 'tables' AS verified;
-- the file can be read back in chunks: the pieces add up to the file and its SHA-256
SELECT sum(length(tenant_ops.read_backup(:backup_id, o, 1000))) = (SELECT size_bytes FROM tenant_ops.backups WHERE id = :backup_id) AS chunks_add_up,
       encode(sha256(string_agg(tenant_ops.read_backup(:backup_id, o, 1000), ''::bytea ORDER BY o)), 'hex')
         = (SELECT sha256 FROM tenant_ops.backups WHERE id = :backup_id) AS same_sha256
  FROM generate_series(0, (SELECT size_bytes FROM tenant_ops.backups WHERE id = :backup_id), 1000) o;

-- 2. the tenant is damaged, a dry run says what a restore would do and changes nothing
DELETE FROM "bäck up".sale WHERE office_id = 1 AND no > 10;
UPDATE "bäck up"."Staff" SET "full name" = 'changed' WHERE office_id = 1;
SELECT tenant_ops.restore_backup(:backup_id, '{"dry_run": true}') AS dry \gset
SELECT jsonb_path_query(result, '$.tables[*]') - 'added_columns' AS per_table FROM tenant_ops.jobs WHERE id = :dry;
SELECT count(*) AS sales_still_missing FROM "bäck up".sale WHERE office_id = 1;

-- 3. restore: every table of office 1 as before, office 2 untouched
SELECT tenant_ops.restore_backup(:backup_id) AS restore_job \gset
SELECT status, result -> 'verified' AS verified, result -> 'rows' AS rows FROM tenant_ops.jobs WHERE id = :restore_job;
SELECT b.t, b.n, b.sum = a.sum AS same FROM before b JOIN pg_temp.office_sums(1) a USING (t) ORDER BY 1;
SELECT b.t, b.sum = a.sum AS same FROM other_before b JOIN pg_temp.office_sums(2) a USING (t) ORDER BY 1;
SELECT count(*) AS bosses_resolved FROM "bäck up"."Staff" s JOIN "bäck up"."Staff" b ON b.id = s.boss WHERE s.office_id = 1;
-- a column added since (nullable) is reported and left to its default
ALTER TABLE "bäck up".sale ADD COLUMN "added since" text DEFAULT 'dflt';
SELECT tenant_ops.restore_backup(:backup_id) AS restore2 \gset
SELECT jsonb_path_query(result, '$.tables[*] ? (@.added_columns.size() > 0)') AS with_added FROM tenant_ops.jobs WHERE id = :restore2;
SELECT count(*) FILTER (WHERE "added since" = 'dflt') AS defaulted, count(*) AS sales FROM "bäck up".sale WHERE office_id = 1;

-- 4. bad input: each refused with its SQLSTATE, nothing written
\set VERBOSITY sqlstate
SELECT tenant_ops.create_backup(NULL, '1');
SELECT tenant_ops.create_backup('bäck', '99');
SELECT tenant_ops.create_backup('nope', '1');
\set VERBOSITY default
SELECT tenant_ops.create_backup('bäck', '1', '{"retention": "forever"}');
SELECT tenant_ops.create_backup('bäck', '1', '{"compress": 9}');
SELECT tenant_ops.create_backup('bäck', '1', '{"shared": "some"}');
SELECT tenant_ops.verify_backup(424242);
SELECT tenant_ops.restore_backup(424242);
SELECT tenant_ops.restore_backup(:backup_id, '{"mode": "merge_all"}');
SELECT tenant_ops.read_backup(:backup_id, -1, 10);
-- a column whose type changed since: refused before anything changes
ALTER TABLE "bäck up".sale ALTER COLUMN note TYPE varchar(100);
SELECT tenant_ops.restore_backup(:backup_id);
ALTER TABLE "bäck up".sale ALTER COLUMN note TYPE text;
-- a NOT NULL column without a default added since: refused
ALTER TABLE "bäck up".sale ADD COLUMN must int NOT NULL DEFAULT 0;
ALTER TABLE "bäck up".sale ALTER COLUMN must DROP DEFAULT;
SELECT tenant_ops.restore_backup(:backup_id);
ALTER TABLE "bäck up".sale DROP COLUMN must;
-- a table renamed away: refused
ALTER TABLE "bäck up".empty_one RENAME TO empty_two;
SELECT tenant_ops.restore_backup(:backup_id);
ALTER TABLE "bäck up".empty_two RENAME TO empty_one;
-- rows of another tenant that reference office 1's rows: the replace is refused, named
UPDATE "bäck up"."Staff" SET boss = (SELECT min(id) FROM "bäck up"."Staff" WHERE office_id = 1) WHERE id = (SELECT min(id) FROM "bäck up"."Staff" WHERE office_id = 2);
SELECT tenant_ops.restore_backup(:backup_id);
UPDATE "bäck up"."Staff" SET boss = NULL WHERE id = (SELECT min(id) FROM "bäck up"."Staff" WHERE office_id = 2);
SELECT b.t, b.sum = a.sum AS same FROM before b JOIN pg_temp.office_sums(1) a USING (t) ORDER BY 1;
SELECT count(*) AS backups, (SELECT count(*) FROM tenant_ops.jobs WHERE kind = 'restore' AND status = 'succeeded') AS restores
  FROM tenant_ops.backups;

-- 4b. moving a backup: read out, dropped, loaded back (whole and in chunks), verified, restored
\set VERBOSITY default
SELECT tenant_ops.create_backup('bäck', '1') AS job3 \gset
SELECT result ->> 'backup_id' AS b3 FROM tenant_ops.jobs WHERE id = :job3 \gset
CREATE TABLE at3 AS SELECT * FROM pg_temp.office_sums(1);
CREATE TABLE file3 AS SELECT string_agg(tenant_ops.read_backup(:b3, o, 100000), ''::bytea ORDER BY o) AS data
  FROM generate_series(0, (SELECT size_bytes FROM tenant_ops.backups WHERE id = :b3), 100000) o;
SELECT (tenant_ops.drop_backup(:b3)) ->> 'dropped' AS dropped;
SELECT tenant_ops.load_backup(data) AS loaded FROM file3 \gset
SELECT scope, tenant, label, encrypted, tables, rows, sha256 = encode(sha256((SELECT data FROM file3)), 'hex') AS same_sha256,
       size_bytes = (SELECT length(data) FROM file3) AS same_size, file_name ~ '^tenant_ops_backup_[0-9a-f-]+\.tar\.gz$' AS plain_name
  FROM tenant_ops.backups WHERE id = :loaded;
SELECT (tenant_ops.verify_backup(:loaded)) ->> 'verified' AS loaded_verified;
UPDATE "bäck up"."Staff" SET "full name" = 'changed again' WHERE office_id = 1;
SELECT tenant_ops.restore_backup(:loaded) AS restore3 \gset
SELECT status, result -> 'verified' AS verified FROM tenant_ops.jobs WHERE id = :restore3;
SELECT b.t, b.sum = a.sum AS same FROM at3 b JOIN pg_temp.office_sums(1) a USING (t) ORDER BY 1;
SELECT tenant_ops.load_backup_chunk('up-1', substring(data from 1 for 1000)) AS first_chunk FROM file3;
SELECT tenant_ops.load_backup_chunk('up-1', substring(data from 1001)) = length(data) AS all_sent FROM file3;
SELECT tenant_ops.load_backup_finish('up-1') AS loaded2 \gset
SELECT (tenant_ops.verify_backup(:loaded2)) ->> 'verified' AS chunked_verified;
-- damaged uploads: refused (XX001), nothing registered, no file left
SELECT count(*) AS backups_before FROM tenant_ops.backups \gset
CREATE FUNCTION pg_temp.backup_files() RETURNS SETOF text LANGUAGE sql AS $$
  SELECT f FROM pg_catalog.pg_ls_dir(coalesce(nullif(current_setting('tenant_ops.backup_directory'), ''), 'pg_tenant_ops_backups')
                                     || '/db_' || (SELECT oid FROM pg_database WHERE datname = current_database())) f $$;
SELECT count(*) AS files_before FROM pg_temp.backup_files() \gset
SELECT tenant_ops.load_backup('\x00010203'::bytea);
\echo :SQLSTATE
SELECT tenant_ops.load_backup(substring(data from 1 for length(data) - 100)) FROM file3;
\echo :SQLSTATE
SELECT tenant_ops.load_backup(set_byte(data, length(data) - 6, 255 - get_byte(data, length(data) - 6))) FROM file3;
\echo :SQLSTATE
SELECT tenant_ops.load_backup_chunk('up-2', substring(data from 1 for 500)) AS half_sent FROM file3;
SELECT tenant_ops.load_backup_finish('up-2');
\echo :SQLSTATE
SELECT tenant_ops.load_backup_finish('up-2');
\echo :SQLSTATE
SELECT tenant_ops.load_backup_chunk('../up', '\x00');
\echo :SQLSTATE
SELECT tenant_ops.load_backup_finish('');
\echo :SQLSTATE
SELECT tenant_ops.load_backup(NULL);
\echo :SQLSTATE
SELECT count(*) = :backups_before AS nothing_registered FROM tenant_ops.backups;
SELECT count(*) = :files_before AS no_file_left FROM pg_temp.backup_files();

-- 4c. encryption: age(tar.gz) to the setting's identity; without it or with another: 28000
SET tenant_ops.backup_encryption_key = 'AGE-SECRET-KEY-1GGEVLMEKDLZQ39GU294DS4SYCVSXJ7PQJ5X5JH8JLRD9ZHXNJV5S2ARCH2';
SELECT tenant_ops.create_backup('bäck', '1') AS job4 \gset
SELECT result ->> 'backup_id' AS b4, result -> 'encrypted' AS encrypted FROM tenant_ops.jobs WHERE id = :job4 \gset
SELECT :'encrypted' AS encrypted, encrypted AS registered_encrypted, file_name ~ '^tenant_ops_backup_[0-9a-f-]+\.tar\.gz\.age$' AS age_name,
       convert_from(tenant_ops.read_backup(:b4, 0, 21), 'UTF8') AS header
  FROM tenant_ops.backups WHERE id = :b4;
SELECT (tenant_ops.verify_backup(:b4)) ->> 'encrypted' AS verified_encrypted;
UPDATE "bäck up"."Staff" SET "full name" = 'changed once more' WHERE office_id = 1;
SELECT tenant_ops.restore_backup(:b4) AS restore4 \gset
SELECT status, result -> 'verified' AS verified FROM tenant_ops.jobs WHERE id = :restore4;
SELECT b.t, b.sum = a.sum AS same FROM at3 b JOIN pg_temp.office_sums(1) a USING (t) ORDER BY 1;
CREATE TABLE file4 AS SELECT string_agg(tenant_ops.read_backup(:b4, o, 100000), ''::bytea ORDER BY o) AS data
  FROM generate_series(0, (SELECT size_bytes FROM tenant_ops.backups WHERE id = :b4), 100000) o;
SELECT tenant_ops.load_backup(data) AS loaded4 FROM file4 \gset
SELECT encrypted, file_name ~ '\.tar\.gz\.age$' AS age_name FROM tenant_ops.backups WHERE id = :loaded4;
-- the key is not shown to others
CREATE ROLE backup_peeker;
SET ROLE backup_peeker;
SHOW tenant_ops.backup_encryption_key;
\echo :SQLSTATE
SELECT count(*) AS visible FROM pg_settings WHERE name = 'tenant_ops.backup_encryption_key';
RESET ROLE;
DROP ROLE backup_peeker;
-- without the key, with another key, with a setting that is no key: refused, nothing changed
UPDATE "bäck up"."Staff" SET "full name" = 'changed for good' WHERE office_id = 1;
CREATE TABLE damaged AS SELECT * FROM pg_temp.office_sums(1);
SELECT count(*) AS jobs_before FROM tenant_ops.jobs \gset
RESET tenant_ops.backup_encryption_key;
SELECT tenant_ops.verify_backup(:b4);
\echo :SQLSTATE
SELECT tenant_ops.restore_backup(:b4);
\echo :SQLSTATE
SELECT tenant_ops.load_backup(data) FROM file4;
\echo :SQLSTATE
SET tenant_ops.backup_encryption_key = 'AGE-SECRET-KEY-1N6GR77RX5M7J0J6DUN84JUHQ4KR4ZWMFH2D70FUX89PPRYDGQM9S7E3DR2';
SELECT tenant_ops.verify_backup(:b4);
\echo :SQLSTATE
SELECT tenant_ops.restore_backup(:b4);
\echo :SQLSTATE
SELECT tenant_ops.load_backup(data) FROM file4;
\echo :SQLSTATE
SET tenant_ops.backup_encryption_key = 'not a key';
SELECT tenant_ops.verify_backup(:b4);
\echo :SQLSTATE
SELECT tenant_ops.create_backup('bäck', '1');
\echo :SQLSTATE
RESET tenant_ops.backup_encryption_key;
-- a plain backup still reads with no key set
SELECT (tenant_ops.verify_backup(:loaded)) ->> 'verified' AS plain_verified;
SELECT b.t, b.sum = a.sum AS unchanged FROM damaged b JOIN pg_temp.office_sums(1) a USING (t) ORDER BY 1;
SELECT count(*) = :jobs_before AS no_job FROM tenant_ops.jobs;
SELECT count(*) = :files_before + 2 AS no_file_left FROM pg_temp.backup_files();
SELECT tenant_ops.restore_backup(:loaded) AS restore5 \gset
SELECT b.t, b.sum = a.sum AS same FROM at3 b JOIN pg_temp.office_sums(1) a USING (t) ORDER BY 1;

-- 5. drop and purge
SELECT tenant_ops.create_backup('bäck', '2', '{"retention": "1 second"}') AS job2 \gset
SELECT pg_sleep(1.1);
SELECT jsonb_array_length(tenant_ops.purge_backups() -> 'dropped') AS purged;
SELECT (tenant_ops.drop_backup(:backup_id)) ->> 'dropped' AS dropped;
SELECT count(*) AS backups_left FROM tenant_ops.backups;
SELECT tenant_ops.verify_backup(:backup_id);
SELECT action, target FROM tenant_ops.audit_log WHERE action ~ 'backup' ORDER BY id;
