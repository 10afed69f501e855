-- Key-value sources without a Redis server: localStorage dumps given as JSON, detect_kv's
-- report, import_kv through a mapping (key parts, JSON paths, defaults, rules, transforms,
-- on_conflict, dry run, one tenant) and every bad argument with its SQLSTATE.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE SCHEMA "kv ört";
CREATE TABLE "kv ört"."Prefs;" (
    username text PRIMARY KEY, theme text NOT NULL, emoji text NOT NULL DEFAULT '?',
    email text, visits int, seen timestamptz);
CREATE FUNCTION pg_temp.job(id bigint) RETURNS TABLE (status text, result jsonb) LANGUAGE sql AS $$
  SELECT status, result FROM tenant_ops.jobs WHERE jobs.id = $1 $$;
SET TimeZone = 'UTC';

-- 1. several users' dumps, one per tenant; values JSON-encoded strings, or plain text
SELECT tenant_ops.kv_source_from_json('browsers', '{
  "alice": {"settings": "{\"theme\":\"dark\",\"emoji\":\"🦊\",\"email\":\"ALICE@Example.com\",\"visits\":3,\"seen\":\"2024-05-06T07:08:09Z\"}", "token": "abc"},
  "bob o''neil": {"settings": "{\"theme\":\"light\"}", "token": "def"},
  "carol": {"settings": "{\"theme\":\"dark\",\"email\":\"not-an-email\"}"},
  "dave": {"settings": "{oops"}
}');
SELECT name, kind, url, options FROM tenant_ops.kv_sources ORDER BY name;
-- the dump's data is not in the readable catalog
SELECT count(*) AS secrets_readable_by_viewer FROM information_schema.table_privileges
 WHERE table_schema = 'tenant_ops' AND table_name = 'kv_source_secrets' AND grantee <> current_user;

-- 2. detect_kv: patterns, shapes, a suggested mapping
SELECT jsonb_pretty(tenant_ops.detect_kv('browsers'));
SELECT tenant_ops.detect_kv('browsers', '*:token') -> 'keys' AS token_keys;

-- 3. dry run: what would be written, every refused key
SELECT tenant_ops.import_kv('browsers', '{"pattern": "{user}:settings", "table": "\"kv ört\".\"Prefs;\"",
  "columns": {"username": "{user}", "theme": "$.theme", "emoji": {"from": "$.emoji", "default": "🙂"},
              "email": {"from": "$.email", "transform": "normalize_email", "rules": {"email": true}},
              "visits": "visits", "seen": "$.seen"}}', '{"dry_run": true}') AS job \gset
SELECT * FROM pg_temp.job(:job);
SELECT count(*) FROM "kv ört"."Prefs;";

-- 4. the import: refused keys in job_errors with the key and the reasons
SELECT tenant_ops.import_kv('browsers', '{"pattern": "{user}:settings", "table": "\"kv ört\".\"Prefs;\"",
  "columns": {"username": "{user}", "theme": "$.theme", "emoji": {"from": "$.emoji", "default": "🙂"},
              "email": {"from": "$.email", "rules": {"email": true}},
              "visits": "visits", "seen": "$.seen"}}', '{"continue_on_error": true}') AS job \gset
SELECT * FROM pg_temp.job(:job);
SELECT * FROM "kv ört"."Prefs;" ORDER BY username;
SELECT source_key, reason, sqlstate, row_data FROM tenant_ops.job_errors WHERE job_id = :job ORDER BY source_key;

-- 5. one tenant, overwritten from a changed dump; the others untouched
SELECT tenant_ops.drop_kv_source('browsers');
SELECT tenant_ops.kv_source_from_json('browsers', '{
  "alice": {"settings": "{\"theme\":\"solarized\"}"}, "bob o''neil": {"settings": "{\"theme\":\"changed\"}"}}');
SELECT tenant_ops.import_kv('browsers', '{"pattern": "{user}:settings", "table": "\"kv ört\".\"Prefs;\"",
  "columns": {"username": "{user}", "theme": "$.theme"}}', '{"tenant": "alice", "on_conflict": "merge"}') AS job \gset
SELECT result -> 'keys' AS keys, result -> 'rows_written' AS written FROM tenant_ops.jobs WHERE id = :job;
SELECT username, theme, emoji FROM "kv ört"."Prefs;" ORDER BY username;

-- 6. one dump (key -> string), hashes of the value read whole ("$")
CREATE TABLE "kv ört".raw (k text PRIMARY KEY, v text);
SELECT tenant_ops.kv_source_from_json('one', '{"cart": "[1,2,3]", "profile": "{\"a\": {\"b\": [10, 20]}}", "flag": true, "note": "plain text"}');
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": "key", "v": "$"}}') AS job \gset
SELECT * FROM "kv ört".raw ORDER BY k;
SELECT tenant_ops.detect_kv('one') -> 'patterns' -> 0 -> 'keys' AS one_pattern_keys;

-- 6b. the rules checked in the database hold for keys too: references (a value another
-- table must hold) and unique against the rows the table holds already
CREATE TABLE "kv ört".lang (code text PRIMARY KEY);
INSERT INTO "kv ört".lang VALUES ('de'), ('en');
CREATE TABLE "kv ört".pref (k text PRIMARY KEY, lang text, handle text);
INSERT INTO "kv ört".pref VALUES ('old', 'de', 'taken');
SELECT tenant_ops.kv_source_from_json('langs', '{"u1": "{\"lang\": \"de\", \"handle\": \"h1\"}",
  "u2": "{\"lang\": \"xx\", \"handle\": \"h2\"}", "u3": "{\"lang\": \"en\", \"handle\": \"taken\"}"}') AS keys;
SELECT tenant_ops.import_kv('langs', '{"pattern": "{name}", "table": "\"kv ört\".pref",
  "columns": {"k": "key", "lang": {"from": "$.lang", "rules": {"references": "\"kv ört\".lang"}},
              "handle": {"from": "$.handle", "rules": {"unique": true}}}}', '{"continue_on_error": true}') AS job \gset
SELECT result -> 'rows_written' AS written, result -> 'keys_refused' AS refused FROM tenant_ops.jobs WHERE id = :job;
SELECT source_key, sqlstate, reason FROM tenant_ops.job_errors WHERE job_id = :job ORDER BY source_key;
SELECT * FROM "kv ört".pref ORDER BY k;
SELECT tenant_ops.drop_kv_source('langs');

-- 7. bad input, each with its SQLSTATE; nothing written
SELECT tenant_ops.kv_source_from_json('browsers', '{}');
\echo :SQLSTATE
SELECT tenant_ops.kv_source_from_json('bad', '[1, 2]');
\echo :SQLSTATE
-- several dumps only when every value is an object: here one dump, "a" kept as JSON text
SELECT tenant_ops.kv_source_from_json('bad', '{"a": {"x": "1"}, "b": "mixed"}');
\echo :SQLSTATE
SELECT tenant_ops.drop_kv_source('bad');
SELECT tenant_ops.kv_source_from_json('bad:name', '{"a:b": {"x": "1"}}');
\echo :SQLSTATE
SELECT tenant_ops.kv_source_from_json(' ', '{}');
\echo :SQLSTATE
SELECT tenant_ops.kv_source_from_json(NULL, '{}');
\echo :SQLSTATE
SELECT tenant_ops.create_kv_source('r', 'http://localhost/');
\echo :SQLSTATE
SELECT tenant_ops.create_kv_source('r', 'rediss://localhost:6380/0');
\echo :SQLSTATE
SELECT tenant_ops.create_kv_source('r', 'redis://:pw@localhost:notaport/0');
\echo :SQLSTATE
SELECT tenant_ops.create_kv_source('r', 'redis://localhost:6379/0', '{"read_timeout_ms": 0}');
\echo :SQLSTATE
SELECT tenant_ops.create_kv_source('r', 'redis://localhost:6379/0', '{"timeout": 5}');
\echo :SQLSTATE
SELECT tenant_ops.create_kv_source('r', 'file:');
\echo :SQLSTATE
SELECT tenant_ops.drop_kv_source('nope');
SELECT tenant_ops.detect_kv('nope');
\echo :SQLSTATE
SELECT tenant_ops.detect_kv('one', '*', 0);
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '[]');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '"x"');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw"}');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": "key"}, "colour": 1}');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{a}{b}", "table": "\"kv ört\".raw", "columns": {"k": "key"}}');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": "$x"}}');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": {"from": "key", "value": 1}}}');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": {"from": "key", "transform": "nope"}}}');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": "key"}}', '{"on_conflict": "sometimes"}');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": "key"}}', '{"tenant": 7}');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": "key"}}', '{"backup": "yes"}');
\echo :SQLSTATE
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": "key"}, "tenant_part": "who"}');
\echo :SQLSTATE
-- a key refused without continue_on_error: the call fails naming it, nothing written
SELECT tenant_ops.import_kv('one', '{"pattern": "{name}", "table": "\"kv ört\".raw", "columns": {"k": "key", "v": "$.a"}}', '{"on_conflict": "overwrite"}');
\echo :SQLSTATE
SELECT count(*) FROM "kv ört".raw;
SELECT tenant_ops.drop_kv_source('one');
SELECT tenant_ops.drop_kv_source('browsers');

-- 8. compare, sync one tenant, clean up (a dump: read-only, so the store always wins)
CREATE TABLE "kv ört".accounts (name text PRIMARY KEY);
INSERT INTO "kv ört".accounts VALUES ('alice'), ('bob');
CREATE TABLE "kv ört".p2 (username text PRIMARY KEY, theme text);
SELECT tenant_ops.kv_source_from_json('cmp', '{"alice": {"settings": "{\"theme\":\"dark\"}"},
  "bob": {"settings": "{\"theme\":\"light\"}"}, "zed": {"settings": "{\"theme\":\"x\"}"}}');
\set m '{"pattern": "{user}:settings", "table": "\\"kv ört\\".p2", "columns": {"username": "{user}", "theme": "$.theme"}}'
SELECT tenant_ops.import_kv('cmp', :'m') AS job \gset
UPDATE "kv ört".p2 SET theme = 'changed' WHERE username = 'alice';
INSERT INTO "kv ört".p2 VALUES ('ghost', 'none');
DELETE FROM "kv ört".p2 WHERE username = 'zed';
SELECT tenant_ops.compare_kv('cmp', :'m') AS job \gset
SELECT result - 'mappings' AS summary, result -> 'mappings' -> 0 AS figures FROM tenant_ops.jobs WHERE id = :job;
SELECT check_name, table_name, constraint_name, count, sample FROM tenant_ops.integrity_issues WHERE job_id = :job ORDER BY check_name;
SELECT tenant_ops.compare_kv('cmp', :'m', '{"tenant": "alice"}') AS job \gset
SELECT result -> 'score' AS alice_score FROM tenant_ops.jobs WHERE id = :job;
SELECT tenant_ops.sync_kv('cmp', :'m', 'alice') -> 'mappings';
\echo :SQLSTATE
SELECT tenant_ops.sync_kv('cmp', :'m', 'ghost') -> 'mappings';
\echo :SQLSTATE
SELECT tenant_ops.sync_kv('cmp', :'m', 'zed') -> 'mappings';
\echo :SQLSTATE
SELECT * FROM "kv ört".p2 ORDER BY username;
SELECT tenant_ops.compare_kv('cmp', :'m') AS job \gset
SELECT result -> 'score' AS score, result -> 'issues' AS issues FROM tenant_ops.jobs WHERE id = :job;
SELECT tenant_ops.sync_kv('cmp', :'m', 'alice', '{"wins": "table"}');
\echo :SQLSTATE
SELECT tenant_ops.sync_kv('cmp', :'m', 'alice', '{"wins": "nobody"}');
\echo :SQLSTATE
SELECT tenant_ops.sync_kv('cmp', '{"pattern": "{user}:settings", "table": "\"kv ört\".p2", "columns": {"username": "key"}}', 'alice');
\echo :SQLSTATE
-- cleanup: zed's key names no account (an orphaned key); then bob's too, and a row no key gives
-- (the row is quarantined and deleted; a dump's keys are reported, never deleted)
SELECT tenant_ops.cleanup_kv('cmp', :'m', '{"tenants": "\"kv ört\".accounts(name)"}') AS job \gset
SELECT result - 'mappings' AS summary, result -> 'mappings' -> 0 -> 'orphaned_key_names' AS keys FROM tenant_ops.jobs WHERE id = :job;
DELETE FROM "kv ört".accounts WHERE name = 'bob';
INSERT INTO "kv ört".p2 VALUES ('old', 'gone');
SELECT tenant_ops.cleanup_kv('cmp', :'m', '{"tenants": "\"kv ört\".accounts(name)", "dry_run": false}') AS job \gset
SELECT result - 'mappings' - 'quarantine_repair_id' AS summary FROM tenant_ops.jobs WHERE id = :job;
SELECT * FROM "kv ört".p2 ORDER BY username;
SELECT reason, row_data FROM tenant_ops.quarantine WHERE validation_job = :job ORDER BY reason, row_data::text;
SELECT tenant_ops.cleanup_kv('cmp', :'m', '{"tenants": "nowhere(x)"}');
\echo :SQLSTATE
SELECT tenant_ops.cleanup_kv('cmp', :'m', '{"dry": true}');
\echo :SQLSTATE
SELECT tenant_ops.drop_kv_source('cmp');
SELECT count(*) AS sources_left FROM tenant_ops.kv_sources;
SELECT count(*) AS secrets_left FROM tenant_ops.kv_source_secrets;
