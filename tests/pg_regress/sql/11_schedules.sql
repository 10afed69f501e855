-- Schedules: the SQL surface (schedule_operation, alter_schedule, unschedule, the views),
-- every bad input with its own SQLSTATE and the culprit named (nothing written), privileges
-- (only tenant_ops_admin manages schedules) and the audit trail. Firing is tested end to end
-- (tests/e2e/tests/schedules.rs); the expressions here fire on 1 January at 03:00 at the
-- earliest, never during the suite.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE SCHEMA "Sched;ule";
CREATE TABLE "Sched;ule".shop (id int PRIMARY KEY, name text);
CREATE TABLE "Sched;ule".sale (id int PRIMARY KEY, shop_id int NOT NULL REFERENCES "Sched;ule".shop);
INSERT INTO "Sched;ule".shop VALUES (1, 'one'), (2, 'two');
INSERT INTO "Sched;ule".sale VALUES (1, 1), (2, 1), (3, 2);
SELECT tenant_ops.create_scope('shöp', '"Sched;ule".shop', 'id') IS NOT NULL AS scope_created;
SELECT count(*) AS jobs_before FROM tenant_ops.jobs \gset

-- 1. one of each operation, with hostile names
SELECT tenant_ops.schedule_operation('nightly backup "1"', '30 2 1 1 *', 'backup',
       '{"scope": "shöp", "tenant": "1", "options": {"label": "nightly"}, "timezone": "Europe/Oslo"}') > 0 AS created;
SELECT tenant_ops.schedule_operation('$1; DROP TABLE x', '@yearly', 'validate',
       '{"scope": "shöp", "checks": ["foreign_keys"], "overlap": "queue", "catch_up": "skip", "alert_after": 5}') > 0 AS created;
SELECT tenant_ops.schedule_operation('Purge''s', '0 3 1 1 *', 'purge_backups') > 0 AS created;
SELECT tenant_ops.schedule_operation('hist', '0 0 3 1 1 *', 'purge_history', '{}') > 0 AS created;
SET tenant_ops.timezone = 'America/New_York';
SELECT tenant_ops.schedule_operation('mïgrate', '0 3 1 1 *', 'migrate',
       '{"scope": "shöp", "tenant": "2", "target_schema": "Sched;ule"}') > 0 AS created;
RESET tenant_ops.timezone;
-- an export, and an import whose file is not there yet (a feed that arrives before each run)
SET tenant_ops.export_directory = 'regress_exports';
SET tenant_ops.import_directory = 'regress_imports';
SELECT tenant_ops.schedule_operation('exp "ört"', '0 4 1 1 *', 'export',
       '{"scope": "shöp", "tenant": "1", "format": "csv", "options": {"gzip": false}}') > 0 AS created;
SELECT tenant_ops.schedule_operation('feed;', '0 4 1 1 *', 'import',
       '{"target": "\"Sched;ule\".sale", "source": "not_there_yet.csv", "options": {"on_conflict": "skip"}}') > 0 AS created;
SELECT name, cron, operation, enabled, owner = current_user AS mine, time_zone, last_run, last_job, last_status,
       next_run > now() AS next_later, runs, failures, consecutive_failures, overlap, catch_up, alert_after, engine
  FROM tenant_ops.schedules ORDER BY name;
-- The next firing is in the schedule's zone: 02:30 in Oslo on 1 January is 01:30 UTC.
SELECT to_char(next_run AT TIME ZONE 'UTC', 'MM-DD HH24:MI:SS') AS next_utc FROM tenant_ops.schedules WHERE name = 'nightly backup "1"';
SELECT to_char(next_run AT TIME ZONE 'UTC', 'MM-DD HH24:MI:SS') AS next_utc FROM tenant_ops.schedules WHERE name = 'mïgrate';
-- The trial submission that checked the params left no job behind.
SELECT count(*) - :jobs_before AS new_jobs FROM tenant_ops.jobs;

-- 2. bad input: its own SQLSTATE each, the culprit named, nothing written
SELECT count(*) AS schedules, (SELECT count(*) FROM tenant_ops.audit_log) AS audit FROM tenant_ops.schedule \gset before_
SELECT tenant_ops.schedule_operation('bad cron', '61 * * * *', 'purge_history');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad cron', '* * * *', 'purge_history');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad cron', '0 0 * * FUNDAY', 'purge_history');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad cron', '@fortnightly', 'purge_history');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad cron', '0 0 30 2 *', 'purge_history');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad zone', '@daily', 'purge_history', '{"timezone": "Mars/Olympus_Mons"}');
\echo :SQLSTATE
SET tenant_ops.timezone = 'Atlantis/Capital';
SELECT tenant_ops.schedule_operation('bad zone', '@daily', 'purge_history');
\echo :SQLSTATE
RESET tenant_ops.timezone;
SELECT tenant_ops.schedule_operation('bad op', '@daily', 'vacuum_everything');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad param', '@daily', 'backup', '{"scope": "shöp", "tenant": "1", "checks": ["isolation"]}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad param', '@daily', 'purge_history', '{"scope": "shöp"}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad param', '@daily', 'migrate', '{"scope": "shöp", "tenant": "1"}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad param', '@daily', 'backup', '{"scope": "shöp", "tenant": 1}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad param', '@daily', 'purge_history', '{"overlap": "sometimes"}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad param', '@daily', 'purge_history', '[1, 2]');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad param', '@daily', 'export', '{"scope": "shöp", "tenant": "1"}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad param', '@daily', 'import', '{"target": "\"Sched;ule\".sale", "source": "x.csv", "tenant": "1"}');
\echo :SQLSTATE
-- what the operation itself refuses, found by the trial submission
SELECT tenant_ops.schedule_operation('bad format', '@daily', 'export', '{"scope": "shöp", "tenant": "1", "format": "pdf"}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad target', '@daily', 'import', '{"target": "nope.nope", "source": "x.csv"}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad source', '@daily', 'import', '{"target": "\"Sched;ule\".sale", "source": "../x.csv"}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad scope', '@daily', 'backup', '{"scope": "nope", "tenant": "1"}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad check', '@daily', 'validate', '{"scope": "shöp", "checks": ["vibes"]}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('bad option', '@daily', 'backup', '{"scope": "shöp", "tenant": "1", "options": {"colour": "red"}}');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('nightly backup "1"', '@daily', 'purge_history');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('', '@daily', 'purge_history');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation(NULL, '@daily', 'purge_history');
\echo :SQLSTATE
SELECT tenant_ops.schedule_operation('no pg_cron', '@daily', 'purge_history', '{"engine": "pg_cron"}');
\echo :SQLSTATE
SELECT tenant_ops.unschedule('nope');
\echo :SQLSTATE
SELECT tenant_ops.alter_schedule('nope', '@daily');
\echo :SQLSTATE
SELECT tenant_ops.alter_schedule('hist', '99 * * * *');
\echo :SQLSTATE
SELECT tenant_ops.alter_schedule('hist', params => '{"tenant": "1"}');
\echo :SQLSTATE
SELECT tenant_ops.trigger_schedule('nope');
\echo :SQLSTATE
SELECT count(*) - :before_schedules AS new_schedules, (SELECT count(*) FROM tenant_ops.audit_log) - :before_audit AS new_audit
  FROM tenant_ops.schedule;

-- 3. alter: a new expression, params, enabled; the next firing follows
SELECT tenant_ops.alter_schedule('hist', '0 4 1 1 *') - 'next_run' AS altered;
SELECT tenant_ops.alter_schedule('hist', enabled => false) ->> 'enabled' AS enabled;
SELECT name, cron, enabled, next_run FROM tenant_ops.schedules WHERE name = 'hist';
SELECT tenant_ops.alter_schedule('hist', params => '{"timezone": "Asia/Tokyo"}', enabled => true) ->> 'time_zone' AS zone;
SELECT to_char(next_run AT TIME ZONE 'UTC', 'MM-DD HH24:MI') AS next_utc FROM tenant_ops.schedules WHERE name = 'hist';

-- 4. privileges: only tenant_ops_admin manages schedules; viewers read them
CREATE ROLE regress_sched_viewer IN ROLE tenant_ops_viewer;
CREATE ROLE regress_sched_operator IN ROLE tenant_ops_operator;
CREATE ROLE regress_sched_admin IN ROLE tenant_ops_admin;
GRANT USAGE ON SCHEMA "Sched;ule" TO regress_sched_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA "Sched;ule" TO regress_sched_admin;
SET ROLE regress_sched_operator;
SELECT tenant_ops.schedule_operation('op', '@daily', 'purge_history');
\echo :SQLSTATE
SELECT tenant_ops.unschedule('hist');
\echo :SQLSTATE
SELECT tenant_ops.trigger_schedule('hist');
\echo :SQLSTATE
UPDATE tenant_ops.schedule SET owner = 'postgres';
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_sched_viewer;
SELECT count(*) AS visible FROM tenant_ops.schedules;
SELECT count(*) AS runs FROM tenant_ops.schedule_runs;
SELECT count(*) >= 0 AS stats FROM tenant_ops.scheduler_stats();
SELECT database = current_database() AS here, status IN ('ok', 'degraded') AS has_status FROM tenant_ops.scheduler_health();
RESET ROLE;
SET ROLE regress_sched_admin;
SELECT tenant_ops.schedule_operation('admin''s', '0 5 1 1 *', 'validate', '{"scope": "shöp", "tenant": "2"}') > 0 AS created;
SELECT owner FROM tenant_ops.schedules WHERE name = 'admin''s';
SELECT tenant_ops.unschedule('admin''s');
RESET ROLE;

-- 5. unschedule
SELECT tenant_ops.unschedule('$1; DROP TABLE x');
SELECT name FROM tenant_ops.schedules ORDER BY name;

-- 6. the audit trail
SELECT action, target, outcome ~ '^(schedule [0-9]+|altered|removed)$' AS outcome_ok
  FROM tenant_ops.audit_log WHERE action IN ('schedule_operation', 'alter_schedule', 'unschedule') ORDER BY id;

-- 7. metrics and health have their columns
SELECT DISTINCT metric FROM tenant_ops.metrics WHERE metric LIKE 'schedule%' ORDER BY metric;
SELECT schedule, operation, runs, failures, missed_last_day FROM tenant_ops.scheduler_stats() ORDER BY schedule;

SELECT tenant_ops.unschedule(name) FROM tenant_ops.schedules;
DROP OWNED BY regress_sched_viewer, regress_sched_operator, regress_sched_admin;
DROP ROLE regress_sched_viewer, regress_sched_operator, regress_sched_admin;
SELECT tenant_ops.drop_scope('shöp');
DROP SCHEMA "Sched;ule" CASCADE;
