-- import_data / import_data_bytes: CSV, NDJSON, JSON; conversions, mapping, rules, refused
-- rows by line, conflicts, dry runs, hostile files and every bad argument with its SQLSTATE.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
SET DateStyle = 'ISO, DMY';
CREATE SCHEMA "imp ört";
CREATE TABLE "imp ört".org (id int PRIMARY KEY, name text);
INSERT INTO "imp ört".org VALUES (1, 'one'), (2, 'two');
CREATE TABLE "imp ört"."Peo;ple" (
    id int PRIMARY KEY, name text NOT NULL, email text, born date, score numeric(6,2),
    active boolean, seen timestamptz, org int REFERENCES "imp ört".org,
    "Näme $1" text, upper_name text GENERATED ALWAYS AS (upper(name)) STORED);
CREATE FUNCTION pg_temp.people() RETURNS TABLE (n bigint, sum text) LANGUAGE sql AS $$
  SELECT count(*), md5(coalesce(string_agg(p::text, '|' ORDER BY id), '')) FROM "imp ört"."Peo;ple" p $$;
CREATE FUNCTION pg_temp.job(id bigint) RETURNS TABLE (status text, result jsonb) LANGUAGE sql AS $$
  SELECT status, result - 'bytes' FROM tenant_ops.jobs WHERE jobs.id = $1 $$;

-- 1. CSV: the delimiter sniffed, dates as DD.MM.YYYY, decimal commas, boolean words
SELECT tenant_ops.import_data_bytes('"imp ört"."Peo;ple"', convert_to(
'id;name;email;born;score;active;seen;org
1;Ann;ann@example.com;05.03.1990;3,5;yes;2024-03-05T10:00:00+02:00;1
2;"Bob; the ""second""";;12/31/1985;;nein;1709632800;2
3;Cem;cem@example.com;1990-01-02;10;1;05.03.2024 10:30;
', 'UTF8'), 'auto') AS job \gset
SELECT * FROM pg_temp.job(:job);
SET TimeZone = 'UTC';
SELECT id, name, email, born, score, active, seen, org, upper_name FROM "imp ört"."Peo;ple" ORDER BY id;
SELECT event, details -> 'format' AS format, details -> 'delimiter' AS delimiter FROM tenant_ops.job_log
 WHERE job_id = :job AND event = 'import.opened';

-- 2. columns mapped (with migrate_tenant's transforms), a constant, the tenant stamped
SELECT tenant_ops.import_data_bytes('"imp ört"."Peo;ple"', convert_to(
E'ID\tFull Name\tMail\n4\t  dora  \tDORA@Example.com \n5\tEd\t\n', 'UTF8'), 'csv',
  '{"delimiter": "\t", "columns": {"id": "ID", "name": {"from": "Full Name", "transform": ["trim", "initcap"]},
    "email": {"from": "Mail", "transform": "normalize_email"}, "Näme $1": {"value": "const"}},
    "tenant": {"column": "org", "value": 2}}') AS job \gset
SELECT * FROM pg_temp.job(:job);
SELECT id, name, email, org, "Näme $1" FROM "imp ört"."Peo;ple" WHERE id >= 4 ORDER BY id;

-- 3. NDJSON, JSON arrays, and the array records_path names inside a document
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört"."Peo;ple"', convert_to(
'{"id": 6, "name": "Fay", "score": 1.25, "active": true}

{"id": 7, "name": "Gus", "born": "Mar 5, 2024", "extra": [1, 2]}
', 'UTF8')))).result -> 'format' AS ndjson;
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört"."Peo;ple"', convert_to(
'[{"id": 8, "name": "Hal", "born": "45356"},
  {"id": 9, "name": "Ida", "active": "off"}]', 'UTF8')))).result -> 'records' AS json_records;
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört"."Peo;ple"', convert_to(
'{"meta": {"skip": [1, {"x": 2}]}, "data": {"items": [{"id": 10, "name": "Jo"}]}}', 'UTF8'), 'json',
  '{"records_path": "data.items"}'))).result -> 'rows_written' AS from_path;
SELECT id, name, born, score, active FROM "imp ört"."Peo;ple" WHERE id BETWEEN 6 AND 10 ORDER BY id;

-- 3b. XML: record_element, attributes and child elements as fields, entities as XML has them
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört"."Peo;ple"', convert_to(
'<?xml version="1.0"?>
<export><meta><skip>1</skip></meta>
  <person id="11"><name>K&amp;L &#228;</name><born>2024-03-05</born></person>
  <person id="12" name="Lu"><email/><score><![CDATA[2,5]]></score></person>
</export>', 'UTF8'), 'auto', '{"record_element": "person"}'))).result -> 'format' AS xml;
SELECT id, name, email, born, score FROM "imp ört"."Peo;ple" WHERE id IN (11, 12) ORDER BY id;

-- 4. gzip, UTF-16 and UTF-8 with their BOMs, a legacy single-byte encoding
CREATE TABLE "imp ört".plain (id int PRIMARY KEY, name text);
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört".plain',
  '\x1f8b0800000000000203cb4cd1c94bcc4de53234d049af52c8cf03b20c41ac92f27c2e002e133bfc1c000000'))).result
  -> 'gzip' AS gzip;
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört".plain',
  '\xfffe690064003b006e0061006d0065000a00320030003b0075007400660020007300690078007400650065006e002000e9000a00'))).result
  -> 'encoding' AS utf16;
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört".plain',
  '\xefbbbf69642c6e616d650a33302c626f6d20757466380a'))).result -> 'fields' AS bom_fields;
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört".plain',
  convert_to(E'id,name\n40,Müller Straße\n', 'LATIN1'), 'csv', '{"encoding": "windows-1252"}'))).result
  -> 'encoding' AS latin;
-- auto reads enough of a decoded file to tell NDJSON (a decoder's first read can be a few bytes)
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört".plain',
  convert_to(E'{"id": 50, "name": "Grüße"}\n{"id": 51, "name": "Straße"}\n', 'LATIN1'), 'auto',
  '{"encoding": "windows-1252"}'))).result -> 'format' AS ndjson_latin;
SELECT * FROM "imp ört".plain ORDER BY id;
DELETE FROM "imp ört".plain WHERE id IN (50, 51);

-- 5. on_conflict: error (the line named, nothing written), skip, overwrite, merge
SELECT * FROM pg_temp.people() \gset before_
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n41,new\n10,again\n', 'UTF8'));
\echo :SQLSTATE
SELECT count(*) AS plain_rows FROM "imp ört".plain;
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n41,new\n10,again\n', 'UTF8'),
  'csv', '{"on_conflict": "skip"}'))).result -> 'rows_written' AS skipped_one;
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n10,over\n', 'UTF8'),
  'csv', '{"on_conflict": "overwrite"}'))).result -> 'rows_written' AS overwritten;
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n11,\n', 'UTF8'),
  'csv', '{"on_conflict": "merge"}') IS NOT NULL AS merged;
SELECT * FROM "imp ört".plain WHERE id IN (10, 11, 41) ORDER BY id;

-- 6. rules, and refused rows: without continue_on_error the first bad line fails the job
CREATE TABLE "imp ört".contact (id int PRIMARY KEY, email text, code text, kind text, org int);
\set rules '{"email": {"required": true, "email": true, "unique": true}, "code": {"min_length": 2, "max_length": 4, "pattern": "^[A-Z]+$"}, "kind": {"one_of": ["a", "b"]}, "org": {"references": "\\"imp ört\\".org(id)"}}'
\set contacts 'id,email,code,kind,org\n1,a@x.org,AB,a,1\n2,not-mail,ABCDEFG,c,9\n3,a@x.org,AB,b,2\n4,,x1,a,\n5,e@x.org,ABC,b,2\n6,f@x.org,ABC,a,9\n'
SELECT tenant_ops.import_data_bytes('"imp ört".contact', convert_to(:'contacts', 'UTF8'), 'csv',
  jsonb_build_object('rules', :'rules'::jsonb));
\echo :SQLSTATE
SELECT count(*) AS contacts FROM "imp ört".contact;
-- with it, each refused row is kept with its line, the record and every reason
SELECT tenant_ops.import_data_bytes('"imp ört".contact', convert_to(:'contacts', 'UTF8'), 'csv',
  jsonb_build_object('rules', :'rules'::jsonb, 'continue_on_error', true)) AS job \gset
SELECT * FROM pg_temp.job(:job);
SELECT source_key AS line, sqlstate, reason, row_data FROM tenant_ops.job_errors WHERE job_id = :job ORDER BY id;
SELECT id FROM "imp ört".contact ORDER BY id;
-- unique against the table too: a value a row holds already is refused (23505), so it holds
-- across imports (and across a resumed one); under on_conflict overwrite the row with the
-- incoming row's own key does not count
SELECT tenant_ops.import_data_bytes('"imp ört".contact', convert_to(E'id,email\n7,a@x.org\n8,h@x.org\n', 'UTF8'), 'csv',
  '{"rules": {"email": {"unique": true}}, "continue_on_error": true}') AS job \gset
SELECT status, result -> 'rows_written' AS written, result -> 'rows_refused' AS refused FROM pg_temp.job(:job);
SELECT source_key AS line, sqlstate, reason FROM tenant_ops.job_errors WHERE job_id = :job ORDER BY id;
SELECT tenant_ops.import_data_bytes('"imp ört".contact', convert_to(E'id,email\n5,e@x.org\n9,a@x.org\n', 'UTF8'), 'csv',
  '{"rules": {"email": {"unique": true}}, "on_conflict": "overwrite"}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".contact', convert_to(E'id,email,code\n5,e@x.org,NEW\n1,a@x.org,NEW\n', 'UTF8'), 'csv',
  '{"rules": {"email": {"unique": true}}, "on_conflict": "overwrite"}') IS NOT NULL AS same_rows_overwritten;
SELECT id, email, code FROM "imp ört".contact ORDER BY id;
-- no index leads with email: its values are looked up in a copy made at the first batch,
-- each found one confirmed in the row it was copied from, so a value the import moves off a
-- row is free for the rows after it (row 1's a@x.org becomes z@x.org in the first batch of
-- one row, row 9 takes a@x.org in the second); the copy is dropped when the import is done
SELECT tenant_ops.import_data_bytes('"imp ört".contact', convert_to(E'id,email\n1,z@x.org\n9,a@x.org\n', 'UTF8'), 'csv',
  '{"rules": {"email": {"unique": true}}, "on_conflict": "overwrite", "batch_size": 1}') IS NOT NULL AS moved;
SELECT id, email FROM "imp ört".contact ORDER BY id;
SELECT count(*) AS copies_left FROM pg_catalog.pg_class WHERE relname LIKE '\_\_tenant\_ops\_held%';
-- with an index on the column, the values are looked up there: a@x.org is row 9's now
CREATE INDEX contact_email ON "imp ört".contact (email);
SELECT tenant_ops.import_data_bytes('"imp ört".contact', convert_to(E'id,email\n10,a@x.org\n', 'UTF8'), 'csv',
  '{"rules": {"email": {"unique": true}}, "batch_size": 1}');
\echo :SQLSTATE
DROP INDEX "imp ört".contact_email;
DELETE FROM "imp ört".contact WHERE id IN (8, 9);
-- more than max_errors: the job fails (54000)
TRUNCATE "imp ört".contact;
SELECT tenant_ops.import_data_bytes('"imp ört".contact', convert_to(:'contacts', 'UTF8'), 'csv',
  jsonb_build_object('rules', :'rules'::jsonb, 'continue_on_error', true, 'max_errors', 1));
\echo :SQLSTATE
-- a value that does not convert names the column and the line
SELECT tenant_ops.import_data_bytes('"imp ört"."Peo;ple"', convert_to(E'id,name,born\n50,x,2024-01-01\n51,y,31.02.2024\n', 'UTF8'));
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört"."Peo;ple"', convert_to(E'id,name,score\n52,x,much\n', 'UTF8'));
\echo :SQLSTATE
-- a constraint of the target (NOT NULL) found row by row
SELECT tenant_ops.import_data_bytes('"imp ört"."Peo;ple"', convert_to(E'id,name\n53,x\n54,\n', 'UTF8'));
\echo :SQLSTATE
-- with continue_on_error, the rows the batch's COPY fails on are found one by one and kept
-- with the record as read; values holding a tab, a backslash or a line end go through COPY
-- text escaped
CREATE TABLE "imp ört".notes (id int PRIMARY KEY, note text NOT NULL);
INSERT INTO "imp ört".notes VALUES (1, 'there');
SELECT tenant_ops.import_data_bytes('"imp ört".notes', convert_to(E'id,note\n1,again\n2,"tab\there, back\\slash"\n3,\n4,"two\nlines"\n', 'UTF8'),
  'csv', '{"continue_on_error": true}') AS job \gset
SELECT status, result -> 'rows_written' AS written, result -> 'rows_refused' AS refused FROM pg_temp.job(:job);
SELECT source_key AS line, sqlstate, reason, row_data FROM tenant_ops.job_errors WHERE job_id = :job ORDER BY id;
SELECT tenant_ops.import_data_bytes('"imp ört".notes', convert_to(E'id,note\n5,"a\\N"\n6,"cr\r\nlf"\n7,\\N\n', 'UTF8')) IS NOT NULL AS escaped;
SELECT id, note, length(note) FROM "imp ört".notes ORDER BY id;
-- the same for NDJSON lines: refused ones kept with their line and object
SELECT tenant_ops.import_data_bytes('"imp ört".notes', convert_to(E'{"id": 1, "note": "dup"}\n{"id": 8, "note": "esc \\"q\\" \\u00fc\\ttab", "extra": {"b": [1, 2]}}\n\n{"id": "nine", "note": "x"}\n{"id": 10, "note": null}\n{"id": 11, "note": 12.50}\n', 'UTF8'),
  'ndjson', '{"continue_on_error": true}') AS job \gset
SELECT status, result -> 'rows_written' AS written, result -> 'rows_refused' AS refused FROM pg_temp.job(:job);
SELECT source_key AS line, sqlstate, reason, row_data FROM tenant_ops.job_errors WHERE job_id = :job ORDER BY id;
SELECT id, note FROM "imp ört".notes WHERE id >= 8 ORDER BY id;

-- 7. dry_run: everything checked, nothing written, the counts and first errors reported
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört".contact', convert_to(:'contacts', 'UTF8'), 'csv',
  jsonb_build_object('rules', :'rules'::jsonb, 'dry_run', true)))).result
  - 'fields' - 'columns' - 'encoding' - 'gzip' - 'format_detected' AS dry_run;
SELECT count(*) AS contacts_after_dry_run FROM "imp ört".contact;

-- 8. hostile files: each an error naming the line, nothing written
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n60,ok\n61,"never closed\n62,x\n', 'UTF8'));
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n60,ok\n61,"closed at the end\n', 'UTF8'));
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n60,ok\n61,a,too many\n', 'UTF8'));
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', '\x69642c6e616d650a36302c6f6b0a36312cff0a'::bytea);
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', '\x69642c6e616d650a36302c6f6b0aefbbbf36312c780a'::bytea);
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', '\xefbbbf69642c6e616d650a33302c626f6d20757466380a'::bytea,
  'csv', '{"encoding": "utf-16le"}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'{"id": 60}\n{"id": 61, name}\n', 'UTF8'), 'ndjson');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'{"id": 60}\n[1]\n', 'UTF8'), 'ndjson');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('{"rows": []}', 'UTF8'), 'json');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'[{"id": 60},\n {"id": 61,]', 'UTF8'), 'json');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('{"data": {}}', 'UTF8'), 'json', '{"records_path": "data.items"}');
\echo :SQLSTATE
-- an XML bomb: entity declarations are refused before anything is expanded
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<rows><row><id>60</id><name>&lol2;</name></row></rows>', 'UTF8'), 'xml');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('<rows><row><id>60</id><name>&nbsp;</name></row></rows>', 'UTF8'), 'xml');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'<rows>\n<row><id>60</id></rows>', 'UTF8'), 'xml');
\echo :SQLSTATE
SELECT count(*) AS plain_rows_still FROM "imp ört".plain;

-- 9. bad arguments
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('id', 'UTF8'), 'xls');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('id', 'UTF8'), 'csv', '{"delimitr": ";"}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('id', 'UTF8'), 'csv', '{"delimiter": ";;"}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('id', 'UTF8'), 'csv', '{"encoding": "klingon"}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('id', 'UTF8'), 'csv', '{"max_errors": 3}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('id', 'UTF8'), 'csv', '{"rules": {"nope": {"required": true}}}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('id', 'UTF8'), 'csv', '{"rules": {"name": {"pattern": "("}}}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to('id', 'UTF8'), 'csv', '{"rules": {"name": {"requird": true}}}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,x\n1,2\n', 'UTF8'), 'csv', '{"columns": {"name": "nope"}}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,x\n1,2\n', 'UTF8'), 'csv', '{"columns": {"name": {"expr": "1"}}}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'a,b\n1,2\n', 'UTF8'));
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n1,2\n', 'UTF8'), 'csv', '{"on_conflict": "replace"}');
\echo :SQLSTATE
CREATE TABLE "imp ört".keyless (id int, name text);
SELECT tenant_ops.import_data_bytes('"imp ört".keyless', convert_to(E'id,name\n1,2\n', 'UTF8'), 'csv', '{"on_conflict": "merge"}');
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', NULL);
\echo :SQLSTATE
SELECT tenant_ops.import_data('"imp ört".plain', '../../postgresql.conf');
\echo :SQLSTATE
SELECT tenant_ops.import_data('"imp ört".plain', '/etc/passwd');
\echo :SQLSTATE
SELECT tenant_ops.import_data('"imp ört".plain', '.tenant_ops_import_x');
\echo :SQLSTATE
\set VERBOSITY terse
SELECT tenant_ops.import_data('"imp ört".plain', 'missing.csv');
\echo :SQLSTATE
\set VERBOSITY default

-- 10. files of the import directory: written by COPY, read back, the same rows
CREATE TABLE "imp ört".copy_of (LIKE "imp ört"."Peo;ple");
DO $$ BEGIN
  EXECUTE format('COPY (SELECT id, name, email, born, score, active, seen, org, "Näme $1" FROM "imp ört"."Peo;ple") TO %L WITH (FORMAT csv, HEADER)',
                 current_setting('data_directory') || '/pg_tenant_ops_imports/people.csv');
END $$;
SELECT (pg_temp.job(tenant_ops.import_data('"imp ört".copy_of', 'people.csv'))).result -> 'rows_written' AS from_file;
SELECT (SELECT md5(string_agg(p::text, '|' ORDER BY id)) FROM (SELECT id, name, email, born, score, active, seen, org, "Näme $1" FROM "imp ört"."Peo;ple") p)
     = (SELECT md5(string_agg(p::text, '|' ORDER BY id)) FROM (SELECT id, name, email, born, score, active, seen, org, "Näme $1" FROM "imp ört".copy_of) p) AS same_rows;

-- 11. a deferred job run by CALL run_job: the whole file checked first, then loaded
TRUNCATE "imp ört".copy_of;
SELECT tenant_ops.import_data('"imp ört".copy_of', 'people.csv', 'csv', '{"defer": true, "batch_size": 3}') AS job \gset
CALL tenant_ops.run_job(:job);
SELECT status, result -> 'rows_written' AS rows, (SELECT count(*) FROM "imp ört".copy_of) AS loaded,
       (SELECT array_agg(event ORDER BY id) FILTER (WHERE event LIKE 'import.%') FROM tenant_ops.job_log WHERE job_id = :job) AS events
  FROM tenant_ops.jobs WHERE id = :job;
SELECT step, stage, rows_done, details ->> 'records' AS records FROM tenant_ops.job_tables WHERE job_id = :job;
-- a deferred job that fails (more than max_errors, 54000) drops the copy its unique lookups
-- made in this session, committed with its first step, as a finished one does
CREATE TABLE "imp ört".held (id int PRIMARY KEY, email text);
INSERT INTO "imp ört".held VALUES (1, 'a@x.org'), (2, 'b@x.org');
SELECT tenant_ops.import_data_bytes('"imp ört".held', convert_to(E'id,email\n3,c@x.org\n4,a@x.org\n5,b@x.org\n', 'UTF8'), 'csv',
  '{"rules": {"email": {"unique": true}}, "continue_on_error": true, "max_errors": 1, "batch_size": 1, "defer": true}') AS job \gset
CALL tenant_ops.run_job(:job);
\echo :SQLSTATE
SELECT status, (SELECT count(*) FROM tenant_ops.job_errors WHERE job_id = :job) AS refused,
       (SELECT array_agg(id ORDER BY id) FROM "imp ört".held) AS ids
  FROM tenant_ops.jobs WHERE id = :job;
SELECT count(*) AS copies_left FROM pg_catalog.pg_class WHERE relname LIKE '\_\_tenant\_ops\_held%';
DROP TABLE "imp ört".held;

-- 12. privileges: the setting is a superuser's; an operator needs INSERT on the target
CREATE ROLE imp_operator IN ROLE tenant_ops_operator;
GRANT USAGE ON SCHEMA "imp ört" TO imp_operator;
SET ROLE imp_operator;
SET tenant_ops.import_directory = '/tmp';
\echo :SQLSTATE
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n70,x\n', 'UTF8'));
\echo :SQLSTATE
RESET ROLE;
GRANT INSERT ON "imp ört".plain TO imp_operator;
SET ROLE imp_operator;
SELECT (pg_temp.job(tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n70,x\n', 'UTF8')))).status AS as_operator;
-- a unique rule on a column no unique index covers reads the target: SELECT needed (42501)
SELECT tenant_ops.import_data_bytes('"imp ört".plain', convert_to(E'id,name\n71,y\n', 'UTF8'), 'csv',
  '{"rules": {"name": {"unique": true}}}');
\echo :SQLSTATE
RESET ROLE;
SELECT action, target, outcome LIKE 'job %' AS job_outcome FROM tenant_ops.audit_log WHERE action = 'import_data' ORDER BY id DESC LIMIT 1;
DROP SCHEMA "imp ört" CASCADE;
DROP OWNED BY imp_operator;
DROP ROLE imp_operator;
