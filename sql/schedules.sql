-- Health, statistics and metrics of the background machinery and the schedules (see
-- src/schedule/health.rs). Plain SQL over the extension's tables; SECURITY DEFINER (owned by
-- the extension owner, search_path fixed) where pg_stat_activity must show other roles'
-- background workers.

CREATE FUNCTION tenant_ops.scheduler_health()
RETURNS TABLE(launcher_pid int, scheduler_pid int, scheduler_started_at timestamptz, last_heartbeat timestamptz,
              queued bigint, running bigint, failed bigint, workers_running bigint, max_workers int,
              database name, schedules bigint, schedules_due bigint, missed_last_day bigint,
              runs_last_hour bigint, failures_last_hour bigint, runs_last_day bigint, failures_last_day bigint,
              mean_lag interval, failing_schedules text[], status text, reason text)
STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp LANGUAGE sql AS $$
WITH h AS (
    SELECT (SELECT a.pid FROM pg_stat_activity a WHERE a.backend_type = 'pg_tenant_ops launcher' LIMIT 1) AS launcher_pid,
           (SELECT s.pid FROM tenant_ops.scheduler_state s
             WHERE s.pid IN (SELECT a.pid FROM pg_stat_activity a WHERE a.pid IS NOT NULL)) AS scheduler_pid,
           (SELECT s.started_at FROM tenant_ops.scheduler_state s) AS started_at,
           (SELECT s.heartbeat FROM tenant_ops.scheduler_state s) AS heartbeat,
           (SELECT count(*) FROM tenant_ops.jobs j WHERE j.status = 'queued') AS queued,
           (SELECT count(*) FROM tenant_ops.jobs j WHERE j.status = 'running') AS running,
           (SELECT count(*) FROM tenant_ops.jobs j WHERE j.status = 'failed') AS failed,
           (SELECT count(*) FROM pg_stat_activity a WHERE a.backend_type LIKE 'pg_tenant_ops job%') AS workers,
           coalesce(current_setting('tenant_ops.max_workers', true), '8')::int AS max_workers,
           (SELECT count(*) FROM tenant_ops.schedule s WHERE s.enabled) AS schedules,
           (SELECT count(*) FROM tenant_ops.schedule s
             WHERE s.enabled AND s.engine = 'builtin' AND s.next_run < now() - interval '5 seconds') AS due,
           (SELECT coalesce(sum(r.firings), 0)::bigint FROM tenant_ops.schedule_runs r
             WHERE r.outcome = 'missed' AND r.started_at > now() - interval '1 day') AS missed,
           (SELECT count(*) FROM tenant_ops.schedule_runs r
             WHERE r.job_id IS NOT NULL AND r.started_at > now() - interval '1 hour') AS runs_hour,
           (SELECT count(*) FROM tenant_ops.schedule_runs r
             WHERE r.outcome = 'failed' AND r.started_at > now() - interval '1 hour') AS failures_hour,
           (SELECT count(*) FROM tenant_ops.schedule_runs r
             WHERE r.job_id IS NOT NULL AND r.started_at > now() - interval '1 day') AS runs_day,
           (SELECT count(*) FROM tenant_ops.schedule_runs r
             WHERE r.outcome = 'failed' AND r.started_at > now() - interval '1 day') AS failures_day,
           (SELECT avg(r.lag) FROM tenant_ops.schedule_runs r
             WHERE r.job_id IS NOT NULL AND r.started_at > now() - interval '1 day') AS mean_lag,
           (SELECT array_agg(s.name ORDER BY s.name) FROM tenant_ops.schedule s
             WHERE s.consecutive_failures >= s.alert_after) AS failing,
           -- A queued job the scheduler found no worker slot for (job.waiting) and still queued.
           EXISTS (SELECT FROM tenant_ops.jobs j
                    WHERE j.status = 'queued' AND j.executor = 'background'
                      AND EXISTS (SELECT FROM tenant_ops.job_log l
                                   WHERE l.job_id = j.id AND l.event = 'job.waiting')) AS no_slot
), why AS (
    SELECT h.*,
           array_remove(ARRAY[
               CASE WHEN h.launcher_pid IS NULL THEN 'no launcher (is pg_tenant_ops in shared_preload_libraries?)' END,
               CASE WHEN h.launcher_pid IS NOT NULL AND h.scheduler_pid IS NULL THEN 'no scheduler running in this database' END,
               CASE WHEN h.scheduler_pid IS NOT NULL AND h.heartbeat < now() - interval '30 seconds'
                    THEN 'the scheduler''s last heartbeat is ' || date_trunc('second', now() - h.heartbeat) || ' old' END,
               CASE WHEN h.no_slot THEN 'worker slots exhausted: jobs wait for a free background worker (raise max_worker_processes)' END,
               CASE WHEN h.failing IS NOT NULL
                    THEN 'schedule(s) failing repeatedly: ' || array_to_string(h.failing, ', ') END,
               CASE WHEN h.due > 0 THEN h.due || ' schedule(s) overdue' END
           ], NULL) AS reasons
      FROM h
)
SELECT w.launcher_pid, w.scheduler_pid, w.started_at, w.heartbeat, w.queued, w.running, w.failed, w.workers,
       w.max_workers, current_database(), w.schedules, w.due, w.missed, w.runs_hour, w.failures_hour,
       w.runs_day, w.failures_day, w.mean_lag, coalesce(w.failing, '{}'),
       CASE WHEN cardinality(w.reasons) = 0 THEN 'ok' ELSE 'degraded' END,
       nullif(array_to_string(w.reasons, '; '), '')
  FROM why w
$$;
COMMENT ON FUNCTION tenant_ops.scheduler_health() IS
'Launcher and scheduler of this database (pids, heartbeat), the job queue, the schedules (due, missed, runs and failures over the last hour and day, mean lag) and a plain status: ok, or degraded with the reason.';

CREATE FUNCTION tenant_ops.scheduler_stats()
RETURNS TABLE(schedule text, operation text, enabled boolean, engine text, next_run timestamptz, last_run timestamptz,
              last_status text, runs bigint, failures bigint, consecutive_failures int,
              runs_last_hour bigint, failures_last_hour bigint, runs_last_day bigint, failures_last_day bigint,
              skipped_last_day bigint, missed_last_day bigint, mean_lag interval, p95_lag interval, max_lag interval)
STABLE SET search_path = pg_catalog, pg_temp LANGUAGE sql AS $$
SELECT s.name, s.operation, s.enabled, s.engine, CASE WHEN s.enabled AND s.engine = 'builtin' THEN s.next_run END,
       s.last_run, j.status, s.runs, s.failures, s.consecutive_failures,
       count(*) FILTER (WHERE r.job_id IS NOT NULL AND r.started_at > now() - interval '1 hour'),
       count(*) FILTER (WHERE r.outcome = 'failed' AND r.started_at > now() - interval '1 hour'),
       count(*) FILTER (WHERE r.job_id IS NOT NULL AND r.started_at > now() - interval '1 day'),
       count(*) FILTER (WHERE r.outcome = 'failed' AND r.started_at > now() - interval '1 day'),
       count(*) FILTER (WHERE r.outcome = 'skipped' AND r.started_at > now() - interval '1 day'),
       coalesce(sum(r.firings) FILTER (WHERE r.outcome = 'missed' AND r.started_at > now() - interval '1 day'), 0)::bigint,
       avg(r.lag) FILTER (WHERE r.job_id IS NOT NULL AND r.started_at > now() - interval '1 day'),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY r.lag)
           FILTER (WHERE r.job_id IS NOT NULL AND r.started_at > now() - interval '1 day'),
       max(r.lag) FILTER (WHERE r.job_id IS NOT NULL AND r.started_at > now() - interval '1 day')
  FROM tenant_ops.schedule s
  LEFT JOIN tenant_ops.jobs j ON j.id = s.last_job
  LEFT JOIN tenant_ops.schedule_runs r ON r.schedule_id = s.id
 GROUP BY s.id, j.status
 ORDER BY s.name
$$;
COMMENT ON FUNCTION tenant_ops.scheduler_stats() IS
'Per schedule: next and last run, last status, runs and failures in all and over the last hour and day, skipped and missed firings, lag between scheduled and actual start (mean, 95th percentile, max).';

-- One row per figure, in the shape dashboards take (postgres_exporter: see
-- monitoring/postgres_exporter.yml): metric, the labels that apply, value.
CREATE VIEW tenant_ops.metrics AS
WITH jobs AS (
    SELECT j.kind, j.status, extract(epoch FROM j.finished_at - j.started_at) AS seconds,
           (SELECT sum(t.rows_done) FROM tenant_ops.job_tables t WHERE t.job_id = j.id) AS rows_done
      FROM tenant_ops.jobs j
     WHERE j.status IN ('succeeded', 'failed')
)
SELECT 'jobs_succeeded'::text AS metric, k.kind, NULL::text AS scope, NULL::text AS tenant, NULL::text AS schedule,
       (SELECT count(*) FROM jobs WHERE jobs.kind = k.kind AND jobs.status = 'succeeded')::float8 AS value
  FROM (SELECT DISTINCT kind FROM tenant_ops.jobs) k
UNION ALL
SELECT 'jobs_failed', k.kind, NULL, NULL, NULL,
       (SELECT count(*) FROM jobs WHERE jobs.kind = k.kind AND jobs.status = 'failed')::float8
  FROM (SELECT DISTINCT kind FROM tenant_ops.jobs) k
UNION ALL
SELECT m.metric, m.kind, NULL, NULL, NULL, m.value
  FROM (SELECT jobs.kind,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY jobs.seconds) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY jobs.seconds) AS p95,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY jobs.seconds) AS p99,
               sum(jobs.rows_done) / nullif(sum(jobs.seconds) FILTER (WHERE jobs.rows_done IS NOT NULL), 0) AS rps
          FROM jobs WHERE jobs.status = 'succeeded' GROUP BY jobs.kind) p
  CROSS JOIN LATERAL (VALUES ('job_duration_p50_seconds', p.kind, p.p50), ('job_duration_p95_seconds', p.kind, p.p95),
                             ('job_duration_p99_seconds', p.kind, p.p99),
                             ('job_rows_per_second', p.kind, p.rps::float8)) AS m(metric, kind, value)
 WHERE m.value IS NOT NULL
UNION ALL
SELECT 'integrity_score', 'validate', i.scope, i.tenant, NULL, i.score
  FROM (SELECT DISTINCT ON (h.scope, h.tenant) h.scope, coalesce(h.tenant, '*') AS tenant, h.score::float8 AS score
          FROM tenant_ops.integrity_history h
         WHERE h.score IS NOT NULL
         ORDER BY h.scope, h.tenant, h.finished_at DESC) i
UNION ALL
SELECT 'backups_succeeded', 'backup', j.scope, j.tenant, NULL, count(*) FILTER (WHERE j.status = 'succeeded')::float8
  FROM tenant_ops.jobs j WHERE j.kind = 'backup' AND j.status IN ('succeeded', 'failed') GROUP BY j.scope, j.tenant
UNION ALL
SELECT 'backups_failed', 'backup', j.scope, j.tenant, NULL, count(*) FILTER (WHERE j.status = 'failed')::float8
  FROM tenant_ops.jobs j WHERE j.kind = 'backup' AND j.status IN ('succeeded', 'failed') GROUP BY j.scope, j.tenant
UNION ALL
SELECT 'backup_newest_age_seconds', 'backup', b.scope, b.tenant, NULL, extract(epoch FROM now() - max(b.created_at))::float8
  FROM tenant_ops.backups b GROUP BY b.scope, b.tenant
UNION ALL
SELECT 'schedule_lag_seconds', s.operation, NULL, NULL, s.name,
       coalesce(extract(epoch FROM (SELECT avg(r.lag) FROM tenant_ops.schedule_runs r
                                      WHERE r.schedule_id = s.id AND r.job_id IS NOT NULL
                                        AND r.started_at > now() - interval '1 day')), 0)::float8
  FROM tenant_ops.schedule s
UNION ALL
SELECT 'schedule_missed_firings', s.operation, NULL, NULL, s.name,
       coalesce((SELECT sum(r.firings) FROM tenant_ops.schedule_runs r
                  WHERE r.schedule_id = s.id AND r.outcome = 'missed'), 0)::float8
  FROM tenant_ops.schedule s
UNION ALL
SELECT 'schedule_failures', s.operation, NULL, NULL, s.name, s.failures::float8 FROM tenant_ops.schedule s
UNION ALL
SELECT 'schedule_consecutive_failures', s.operation, NULL, NULL, s.name, s.consecutive_failures::float8
  FROM tenant_ops.schedule s;
COMMENT ON VIEW tenant_ops.metrics IS
'Figures for dashboards, one row each (metric, kind, scope, tenant, schedule, value): jobs succeeded and failed and their duration percentiles and rows per second per kind; the latest integrity score per scope and tenant; backup successes, failures and the age of the newest backup per tenant; schedule lag, missed firings and failures.';
