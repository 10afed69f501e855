#!/usr/bin/env bash
# Background jobs benchmark: many migrations queued at once, start latency, and the throughput
# of a background migration against the same migration inline, on one private cluster.
#
# Usage:
#   bench/background.sh            200 jobs (200 tenants over 10 target schemas) queued in one
#                                  transaction; throughput on office 1 at scale 20 (~230k rows)
#   bench/background.sh --quick    40 jobs (40 tenants over 2 schemas); throughput at scale 2
#
# What it does:
#   1. builds and installs the extension (release) into a private copy of PostgreSQL
#      (bench/lib.sh), starts a fresh cluster with the library
#      preloaded and the default caps (tenant_ops.max_workers 8, max_concurrent_migrations 2);
#   2. database `bench`: demo/dispatch.sql at scale 1 plus offices 7..N (copies of office 4),
#      one tenant per job (a tenant has one open migration at a time, whatever the target), the
#      scope dispatch and the target tables created beforehand (bench/background_setup.sql);
#   3. queues every job (tenant t into schema t01..tNN round robin, id_strategy keep; the dirty
#      office 5 with cross_tenant null and continue_on_error) in ONE transaction, notes
#      clock_timestamp() right after its COMMIT, and samples the running job workers every 50 ms
#      (backend_type 'pg_tenant_ops job migrate' in pg_stat_activity) until all have ended;
#   4. queues 20 jobs one at a time (each tenant into schema lat: commit, wait for it, next), so
#      that a slot is always free: their commit -> start latency;
#   5. checks both batches (bench/background_checks.sql): all succeeded after one attempt, one
#      job.started each, no retry, per target schema and tenant exactly the source rows (minus
#      the one orphan item of office 5); the most workers seen driving a running job at once
#      must not exceed the cap (a worker whose job has ended may still be exiting: counted apart);
#   6. database `bench_tp`: the generator at a larger scale; office 1 migrated inline and in
#      the background (uuid5, create_target, shared copy) into fresh schemas, alternately, timed
#      from just before the call to the job's finished_at; rows/s and the ratio;
#   7. prints a summary, stops the cluster.
# Start time of a job = its first 'job.started' event in tenant_ops.job_log.
# Exits non-zero only on correctness failures (a failed or lost or repeated job, wrong rows, the
# cap exceeded); the timings are figures, not tests.
#
# Environment:
#   BENCH_BG_PORT=P       port of the benchmark cluster on 127.0.0.1 (default 28824)
#   BENCH_SKIP_INSTALL=1  do not build/install the extension (use what is installed)
#   BENCH_KEEP_CLUSTER=1  leave the cluster running at the end, to look into it
#   BENCH_BG_CONF="a = b; c = d"  extra postgresql.conf lines (e.g. "log_min_messages = log")
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=bench-bg

bench_quick_args BENCH_BG_PORT 28824 "$@"

SINGLE_JOBS=20       # jobs queued one at a time (one per tenant), for the slot-free latency
TP_OFFICE=1          # the tenant of the throughput runs
if [ "$quick" = 1 ]; then
    n_schemas=2; tp_scale=2; tp_runs=1
else
    n_schemas=10; tp_scale=20; tp_runs=3
fi
n_jobs=$((20 * n_schemas))
TENANTS=$n_jobs      # offices 1..N in database bench, one job each
bench_started=$(date +%s)

# --- 1. toolchain, extension, cluster -------------------------------------------------------------
bench_install

dir="$(cluster_dir bench_bg)"
sampler_pid=""
cleanup() {
    if [ -n "$sampler_pid" ] && kill -0 "$sampler_pid" 2>/dev/null; then
        kill "$sampler_pid" 2>/dev/null || true
    fi
    if [ "${BENCH_KEEP_CLUSTER:-0}" = 1 ]; then
        log "BENCH_KEEP_CLUSTER=1: the cluster keeps running ($dir, port $port)"
    else
        cluster_stop "$dir" 2>/dev/null || true
    fi
}
trap cleanup EXIT
extra_conf=()
IFS=';' read -r -a extra_conf <<<"${BENCH_BG_CONF:-}"
cluster_create "$dir" "$port" "synchronous_commit = off" "shared_buffers = 256MB" ${extra_conf[@]+"${extra_conf[@]}"}
cluster_start "$dir"
log "cluster $dir on port $port"

psql_db() { local db="$1"; shift; psql_at "$port" "$db" -P pager=off "$@"; }
# One value (first column of the first row) of a query.
value() { psql_db "$1" -At -c "$2"; }

# Waits until the scheduler of database $1 is up (the launcher notices CREATE EXTENSION within
# seconds).
wait_for_scheduler() {
    local db="$1"
    for _ in $(seq 1 300); do
        [ -n "$(value "$db" "SELECT scheduler_pid FROM tenant_ops.scheduler_health()")" ] && return 0
        sleep 0.1
    done
    die "no scheduler in database $db after 30 s"
}

# Creates database $1 with the extension and the generator filled at scale $2.
make_database() {
    local db="$1" scale="$2"
    psql_db postgres -c "CREATE DATABASE $db"
    psql_db "$db" -c "CREATE EXTENSION pg_tenant_ops"
    PGOPTIONS="-c client_min_messages=warning" psql_db "$db" -f "$PROJECT_ROOT/demo/dispatch.sql"
    psql_db "$db" -o /dev/null -c "SELECT * FROM legacy.generate_dispatch($scale)"
}

cap_workers=$(value postgres "SHOW tenant_ops.max_workers")
cap_migrations=$(value postgres "SHOW tenant_ops.max_concurrent_migrations")
cap=$(( cap_workers < cap_migrations ? cap_workers : cap_migrations ))
log "caps: tenant_ops.max_workers $cap_workers, tenant_ops.max_concurrent_migrations $cap_migrations (one database: at most $cap migrations at once)"

# --- 2. tenants, the scope, target schemas ----------------------------------------------------------
log "database bench: generator at scale 1, offices 7..$TENANTS, $n_schemas target schemas"
make_database bench 1
psql_db bench -o /dev/null -v n_schemas="$n_schemas" -v n_tenants="$TENANTS" -f "$BENCH_DIR/background_setup.sql"
[ "$(value bench "SELECT count(*) FROM legacy.dispatch_offices")" = "$TENANTS" ] \
    || die "expected $TENANTS offices in database bench"
wait_for_scheduler bench

# Options per tenant: the dirty office 5 has an orphan item and a cross-office supervisor.
tenant_options="CASE WHEN t = 5 THEN '{\"cross_tenant\": \"null\", \"continue_on_error\": true}'
                     ELSE '{}' END::jsonb"

# --- 3. all jobs queued at once ---------------------------------------------------------------------
log "queuing $n_jobs jobs ($TENANTS tenants over $n_schemas schemas) in one transaction"
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d bench \
    -c "CALL bench.sample('queue', 0.05, 900)" &
sampler_pid=$!
psql_db bench -o /dev/null <<SQL
BEGIN;
INSERT INTO bench.jobs (job_id, batch, tenant, target)
SELECT tenant_ops.migrate_tenant('dispatch', t::text, format('t%s', lpad(s::text, 2, '0')), $tenant_options, true),
       'queue', t, format('t%s', lpad(s::text, 2, '0'))
FROM generate_series(1, $TENANTS) t, LATERAL (SELECT (t - 1) % $n_schemas + 1 AS s) x;
INSERT INTO bench.batches (name, first_job, last_job, n_jobs)
SELECT 'queue', min(job_id), max(job_id), count(*) FROM bench.jobs WHERE batch = 'queue';
COMMIT;
UPDATE bench.batches SET committed_at = clock_timestamp() WHERE name = 'queue';
SQL
queued_at=$(date +%s.%N)
log "queued; waiting for them (sampling the workers every 50 ms)"
wait "$sampler_pid" || { sampler_pid=""; die "the sampler failed (jobs not finished in time?)"; }
sampler_pid=""
queue_secs=$(awk -v a="$queued_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
log "all $n_jobs jobs ended after ${queue_secs}s"

# --- 4. jobs queued one at a time (a slot is always free) ---------------------------------------------
log "queuing $SINGLE_JOBS jobs one at a time (commit, wait for the job, next)"
{
    for t in $(seq 1 "$SINGLE_JOBS"); do
        cat <<SQL
SELECT pg_sleep(0.2);
BEGIN;
SELECT tenant_ops.migrate_tenant('dispatch', '$t', 'lat',
                                 (SELECT $tenant_options FROM (SELECT $t AS t) x), true) AS job \gset
INSERT INTO bench.jobs (job_id, batch, tenant, target) VALUES (:job, 'single', $t, 'lat');
COMMIT;
UPDATE bench.jobs SET committed_at = clock_timestamp() WHERE job_id = :job;
SELECT tenant_ops.wait_for_job(:job, '5 minutes');
SQL
    done
} | psql_db bench -o /dev/null

# --- 5. correctness -----------------------------------------------------------------------------------
problems=()
check_batch() {
    local batch="$1" n="$2" out
    out=$(psql_db bench -At -v batch="$batch" -v n_jobs="$n" -f "$BENCH_DIR/background_checks.sql")
    if [ -n "$out" ]; then
        while IFS= read -r line; do problems+=("$line"); done <<<"$out"
    fi
}
check_batch queue "$n_jobs"
check_batch single "$SINGLE_JOBS"

IFS='|' read -r max_workers max_busy max_running n_samples <<<"$(value bench \
    "SELECT max(workers), max(busy_workers), max(running_jobs), count(*) FROM bench.samples WHERE batch = 'queue'")"
if [ "$max_busy" -gt "$cap" ]; then
    problems+=("the sampler saw $max_busy job workers driving a running job at once (cap $cap); samples over the cap:")
    over=$(value bench "SELECT format('%s: workers %s %s, busy %s, jobs running %s', at, workers, worker_pids, busy_workers, running_ids)
                          FROM bench.samples WHERE batch = 'queue' AND busy_workers > $cap ORDER BY at LIMIT 10")
    while IFS= read -r line; do problems+=("  $line"); done <<<"$over"
fi
if [ "$max_running" -gt "$cap" ]; then
    problems+=("the sampler saw $max_running jobs of the batch in status 'running' at once (cap $cap)")
fi
n_succeeded=$(value bench "SELECT count(*) FROM bench.jobs b JOIN tenant_ops.jobs j ON j.id = b.job_id
                            WHERE b.batch = 'queue' AND j.status = 'succeeded'")
n_waiting=$(value bench "SELECT count(DISTINCT job_id) FROM tenant_ops.job_log WHERE event = 'job.waiting'")

# --- 6. latencies ---------------------------------------------------------------------------------------
# Milliseconds from the queuing commit to the job's first job.started event: median|p95|max.
latency() {
    value bench "
WITH l AS (
    SELECT extract(epoch FROM (SELECT min(g.at) FROM tenant_ops.job_log g
                                WHERE g.job_id = b.job_id AND g.event = 'job.started')
                              - coalesce(b.committed_at, q.committed_at)) * 1000 AS ms
    FROM bench.jobs b LEFT JOIN bench.batches q ON q.name = b.batch
    WHERE b.batch = '$1')
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(max(ms)::numeric, 1) FROM l"
}
IFS='|' read -r free_med free_p95 free_max <<<"$(latency single)"
IFS='|' read -r q_med q_p95 q_max <<<"$(latency queue)"
# In the queue: how long a freed slot stayed idle before the next job started (the time from
# the latest end of a job of the batch to each start, for the starts after the first $cap).
IFS='|' read -r idle_med idle_p95 <<<"$(value bench "
WITH j AS (
    SELECT t.id, t.finished_at,
           (SELECT min(g.at) FROM tenant_ops.job_log g WHERE g.job_id = t.id AND g.event = 'job.started') AS started
    FROM bench.jobs b JOIN tenant_ops.jobs t ON t.id = b.job_id WHERE b.batch = 'queue'
), gaps AS (
    SELECT extract(epoch FROM j.started - (SELECT max(e.finished_at) FROM j e WHERE e.finished_at <= j.started)) * 1000 AS ms
    FROM j WHERE j.started > (SELECT min(e.finished_at) FROM j e)
)
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM gaps")"
IFS='|' read -r run_med run_p95 <<<"$(value bench "
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1)
FROM (SELECT extract(epoch FROM t.finished_at - t.started_at) * 1000 AS ms
        FROM bench.jobs b JOIN tenant_ops.jobs t ON t.id = b.job_id WHERE b.batch = 'queue') x")"

# --- 7. throughput: background against inline -------------------------------------------------------
log "database bench_tp: generator at scale $tp_scale; office $TP_OFFICE inline and background, $tp_runs run(s) each"
make_database bench_tp "$tp_scale"
psql_db bench_tp -q -c "VACUUM ANALYZE" \
    -c "SELECT tenant_ops.create_scope('dispatch', 'legacy.dispatch_offices', 'id', '{}')" -o /dev/null
psql_db bench_tp -q -c "CREATE TABLE bench_runs (mode text, run int, job_id bigint, t0 timestamptz)"
wait_for_scheduler bench_tp
tp_options='{"id_strategy": "uuid5", "create_target": true, "shared": "copy"}'
for r in $(seq 1 "$tp_runs"); do
    PGOPTIONS="-c client_min_messages=warning" psql_db bench_tp -o /dev/null <<SQL
CREATE SCHEMA inline_$r;
SELECT clock_timestamp() AS t0 \gset
SELECT tenant_ops.migrate_tenant('dispatch', '$TP_OFFICE', 'inline_$r', '$tp_options') AS job \gset
INSERT INTO bench_runs VALUES ('inline', $r, :job, :'t0');
CREATE SCHEMA background_$r;
SELECT clock_timestamp() AS t0 \gset
SELECT tenant_ops.migrate_tenant('dispatch', '$TP_OFFICE', 'background_$r', '$tp_options', true) AS job \gset
INSERT INTO bench_runs VALUES ('background', $r, :job, :'t0');
SELECT tenant_ops.wait_for_job(:job, '30 minutes');
SQL
done
tp_sql="WITH runs AS (
    SELECT r.mode, r.run, j.status, j.attempts,
           extract(epoch FROM j.finished_at - r.t0) AS secs,
           (SELECT sum(rows_done) FROM tenant_ops.job_report(r.job_id)) AS rows,
           (SELECT bool_and(verified) FROM tenant_ops.job_report(r.job_id) WHERE role <> 'shared') AS verified
    FROM bench_runs r JOIN tenant_ops.jobs j ON j.id = r.job_id)"
tp_problems=$(value bench_tp "$tp_sql
SELECT format('throughput run %s %s: status %s, %s attempts, verified %s', mode, run, status, attempts, verified)
  FROM runs WHERE status <> 'succeeded' OR attempts <> 1 OR verified IS NOT TRUE
UNION ALL
SELECT format('throughput runs wrote different row counts: %s', string_agg(DISTINCT rows::text, ', '))
  FROM runs HAVING count(DISTINCT rows) > 1")
if [ -n "$tp_problems" ]; then
    while IFS= read -r line; do problems+=("$line"); done <<<"$tp_problems"
fi
tp_detail=$(value bench_tp "$tp_sql
SELECT format('  %-10s run %s: %s rows in %s s = %s rows/s', mode, run, rows, round(secs::numeric, 2),
              round(rows / secs)) FROM runs ORDER BY run, mode DESC")
IFS='|' read -r tp_rows tp_inline tp_background tp_ratio <<<"$(value bench_tp "$tp_sql,
med AS (SELECT mode, max(rows) AS rows, percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) AS secs FROM runs GROUP BY mode)
SELECT i.rows, round(i.rows / i.secs), round(b.rows / b.secs), round((i.secs / b.secs)::numeric, 2)
FROM med i, med b WHERE i.mode = 'inline' AND b.mode = 'background'")"

# --- 8. summary ------------------------------------------------------------------------------------------
elapsed=$(( $(date +%s) - bench_started ))
echo
echo "== background jobs benchmark$([ "$quick" = 1 ] && echo " (--quick)"), $(nproc) CPU(s), ${elapsed}s, load average at the end $(cut -d' ' -f1-3 /proc/loadavg) =="
echo "jobs: $n_jobs queued in one transaction, $n_succeeded succeeded, max concurrent workers driving a job $max_busy (cap $cap; $n_samples samples, max jobs 'running' $max_running; processes incl. ones exiting after their job $max_workers)"
echo "  the queue drained in ${queue_secs}s; one job ran median ${run_med} ms, p95 ${run_p95} ms; a freed slot stayed idle median ${idle_med} ms, p95 ${idle_p95} ms; jobs that logged job.waiting: ${n_waiting}"
echo "start latency, slot free ($SINGLE_JOBS jobs one at a time): median ${free_med} ms, p95 ${free_p95} ms, max ${free_max} ms (target median < 100 ms)"
echo "wait in a queue of $n_jobs (cap $cap): median ${q_med} ms, p95 ${q_p95} ms, max ${q_max} ms"
echo "throughput (office $TP_OFFICE at scale $tp_scale, $tp_rows rows, uuid5, median of $tp_runs): inline ${tp_inline} rows/s, background ${tp_background} rows/s, ratio ${tp_ratio} (target >= 0.9)"
echo "$tp_detail"
if [ "${#problems[@]}" -gt 0 ]; then
    echo
    echo "CORRECTNESS FAILURES (${#problems[@]}):"
    printf '  %s\n' "${problems[@]}"
    exit 1
fi
echo "correctness: all checks passed"
