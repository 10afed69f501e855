-- import_data format 'sql': INSERT statements parsed with PostgreSQL's parser, never run;
-- rows through the same conversions, rules, job_errors and on_conflict as other formats;
-- every statement that is not an INSERT of constants into the target refused with its line.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
SET DateStyle = 'ISO, DMY';
CREATE SCHEMA "sq l";
CREATE TABLE "sq l"."T;1" (id int PRIMARY KEY, name text NOT NULL, price numeric, ok boolean,
    born date, tags int[], up text GENERATED ALWAYS AS (upper(name)) STORED, extra text DEFAULT 'dflt');
CREATE TABLE "sq l".other (id int);
CREATE FUNCTION pg_temp.job(id bigint) RETURNS TABLE (status text, result jsonb) LANGUAGE sql AS $$
  SELECT status, result - 'bytes' FROM tenant_ops.jobs WHERE jobs.id = $1 $$;
CREATE FUNCTION pg_temp.sql(t text) RETURNS bytea LANGUAGE sql AS $$ SELECT convert_to(t, 'UTF8') $$;

-- 1. detected by its content; quotes, dollar quotes, comments, casts, multi-row VALUES, DEFAULT
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql($q$-- a comment; with a semicolon
/* a /* nested */ comment; */
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
INSERT INTO "sq l"."T;1" VALUES (1, 'it''s; a \ test', 1.5, true, '2024-03-05', '{1,2}', DEFAULT, 'x');
insert into "sq l"."T;1" (id, name, born) values
  (2, $$dollar; 'quoted'$$, '05.03.2024'),
  (3, E'tab\there', NULL);
INSERT INTO "sq l"."T;1" (name, id, price, extra) VALUES ('cast', 4, '-2.5'::numeric, DEFAULT);
BEGIN;
INSERT INTO "sq l"."T;1" VALUES (5, 'neg', -7, false)
; COMMIT;
SELECT pg_catalog.setval('"sq l".seq', 42, true);
$q$)) AS job \gset
SELECT * FROM pg_temp.job(:job);
SELECT id, name, price, ok, born, tags, up, extra FROM "sq l"."T;1" ORDER BY id;

-- 2. bad rows go to job_errors with their statement's line (continue_on_error)
TRUNCATE "sq l"."T;1";
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(
'INSERT INTO "sq l"."T;1" (id, name) VALUES (10, ''ok'');
INSERT INTO "sq l"."T;1" (id, name, price) VALUES
  (11, ''bad price'', ''lots''),
  (12, NULL, 1);
INSERT INTO "sq l"."T;1" (id, name, born) VALUES (13, ''bad date'', ''31.02.2024'');
INSERT INTO "sq l"."T;1" (id, name) VALUES (10, ''dup'');
INSERT INTO "sq l"."T;1" (id, name) VALUES (14, ''fine'');
'), 'sql', '{"continue_on_error": true}') AS job \gset
SELECT status, result -> 'rows_written' AS written, result -> 'rows_refused' AS refused FROM pg_temp.job(:job);
SELECT source_key, sqlstate, reason FROM tenant_ops.job_errors WHERE job_id = :job ORDER BY source_key::int, sqlstate;
SELECT id, name FROM "sq l"."T;1" ORDER BY id;
-- without continue_on_error the first bad line fails the job, nothing written
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(
E'INSERT INTO "sq l"."T;1" (id, name) VALUES (20, \'x\');\n\nINSERT INTO "sq l"."T;1" (id, name, ok) VALUES (21, \'y\', \'maybe\');'), 'sql');
\echo :SQLSTATE
SELECT count(*) FROM "sq l"."T;1" WHERE id >= 20;
-- on_conflict applies as for every format
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(
'INSERT INTO "sq l"."T;1" (id, name) VALUES (10, ''over''), (15, ''new'');'), 'sql', '{"on_conflict": "overwrite"}'))).result -> 'rows_written' AS overwritten;
SELECT id, name FROM "sq l"."T;1" WHERE id IN (10, 15) ORDER BY id;

-- 3. refused: anything but an INSERT of constants into the target (nothing written)
TRUNCATE "sq l"."T;1";
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'-- drop it\nINSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a\');\nDROP TABLE "sq l"."T;1";\n'), 'sql');
\echo :SQLSTATE
SELECT count(*) AS written FROM "sq l"."T;1";
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'DELETE FROM "sq l"."T;1";'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'SELECT 1;'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'SELECT pg_catalog.set_config(\'a.b\', current_user, false);'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'UPDATE "sq l"."T;1" SET name = \'x\';'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'ROLLBACK;'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'\n\nINSERT INTO "sq l".other VALUES (1);'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO nowhere VALUES (1);'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" VALUES (1, now()::text);'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a\'), (2, (SELECT \'b\'));'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, name) VALUES (1, 1 + 1);'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, name) SELECT 1, \'a\';'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a\') ON CONFLICT (id) DO UPDATE SET name = \'b\';'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a\') RETURNING id;'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'WITH x AS (SELECT 1) INSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a\');'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, nope) VALUES (1, \'a\');'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a\', 3);'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, name) VALUES (1);'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, tags[1]) VALUES (1, 2);'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a\');\nINSERT INTO "sq l"."T;1" (id, name) VALUS (2, \'b\');\n'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'INSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a);\n'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'SET standard_conforming_strings = off;\nINSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a\\\'b\');'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', pg_temp.sql(E'\\restrict abc\nINSERT INTO "sq l"."T;1" (id, name) VALUES (1, \'a\');\n\\! rm -rf /\n'), 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', '\x494e5345525420494e544f20782056414c5545532028312c202700272900'::bytea, 'sql');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"sq l"."T;1"', '\x494e5345525420494e544f20782056414c5545532028312c2027ff2729'::bytea, 'sql');
\echo :SQLSTATE
SELECT count(*) AS still_nothing FROM "sq l"."T;1";

-- 4. DEFAULT VALUES, an empty file, and detection: 'auto' reads INSERT as SQL. The columns
-- filled are those of the first row (and those without a default), as for JSON: a later
-- DEFAULT or DEFAULT VALUES leaves such a column NULL, not to its default.
CREATE TABLE "sq l".d (id serial PRIMARY KEY, note text DEFAULT 'none', at int DEFAULT 7);
SELECT tenant_ops.import_data_bytes('"sq l".d', pg_temp.sql('insert into "sq l".d (note) values (''n'');
INSERT INTO "sq l".d DEFAULT VALUES;
INSERT INTO "sq l".d VALUES (DEFAULT, DEFAULT, 1);'), 'auto', '{"continue_on_error": true}') AS job \gset
SELECT result -> 'format' AS format, result -> 'rows_written' AS written FROM pg_temp.job(:job);
SELECT source_key, sqlstate, reason FROM tenant_ops.job_errors WHERE job_id = :job;
SELECT * FROM "sq l".d ORDER BY id;
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"sq l".d', pg_temp.sql('-- nothing here
'), 'sql'))).result -> 'rows_written' AS empty;
DROP SCHEMA "sq l" CASCADE;
