#!/usr/bin/env bash
# Schedules benchmark: 1,000 enabled schedules in one database; the scheduler's CPU while none
# is due, and the lag between a firing's scheduled time and the start of its run.
#
# Usage:
#   bench/schedules.sh             idle 60 s, firings over 120 s
#   bench/schedules.sh --quick     idle 20 s, firings over 40 s
#
# What it does:
#   1. builds and packages the extension (release; debug with BENCH_DEBUG=1) into a private
#      copy of the PostgreSQL installation (target/pg15-bench, never the system one), starts a
#      fresh cluster with the library preloaded, the scheduler limited to database bench;
#   2. creates 1,000 enabled schedules (purge_history, params {}), each due once a year
#      (`0 0 1 1 *`): the scheduler has 1,000 schedules to watch and none due;
#   3. idle: the scheduler's CPU time (utime + stime from /proc/PID/stat) over the idle
#      period, as a percentage of one core;
#   4. firing: 60 of the 1,000 altered to fire once a minute, each at its own second
#      (`S * * * * *`, S = 0..59): one firing a second, a worker slot free for each; after the
#      period, per firing the lag from its scheduled time to (a) the scheduler queueing its job
#      (schedule_runs.lag) and (b) the job starting in a worker (jobs.started_at); median, p95,
#      max; also the CPU of the scheduler over the firing period;
#   5. prints a summary, stops the cluster.
# The thresholds (idle CPU < 1 % of a core, lag median < 200 ms, p95 < 1 s) are printed as
# PASS/FAIL; the exit status is non-zero only when a run is lost or fails.
#
# Environment:
#   BENCH_SCHED_PORT=P    port of the benchmark cluster on 127.0.0.1 (default 28823)
#   BENCH_SKIP_INSTALL=1  do not build/install the extension (use what target/pg15-bench has)
#   BENCH_DEBUG=1         a debug build (faster to build, slower to run)
#   BENCH_KEEP_CLUSTER=1  leave the cluster running at the end
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=bench-sched

bench_quick_args BENCH_SCHED_PORT 28823 "$@"
if [ "$quick" = 1 ]; then idle_s=20; fire_s=40; else idle_s=60; fire_s=120; fi
SCHEDULES=1000
FIRING=60

bench_install

dir="$(cluster_dir bench_sched)"
cleanup() {
    if [ "${BENCH_KEEP_CLUSTER:-0}" = 1 ]; then
        log "BENCH_KEEP_CLUSTER=1: the cluster keeps running ($dir, port $port)"
    else
        cluster_stop "$dir" 2>/dev/null || true
    fi
}
trap cleanup EXIT
cluster_create "$dir" "$port" "tenant_ops.databases = 'bench'" "synchronous_commit = off"
cluster_start "$dir"
psql_db() { local db="$1"; shift; psql_at "$port" "$db" -P pager=off "$@"; }
value() { psql_db "$1" -At -c "$2"; }

psql_db postgres -c "CREATE DATABASE bench"
psql_db bench -c "CREATE EXTENSION pg_tenant_ops"
for _ in $(seq 1 300); do
    [ -n "$(value bench "SELECT scheduler_pid FROM tenant_ops.scheduler_health()")" ] && break
    sleep 0.1
done
pid="$(value bench "SELECT scheduler_pid FROM tenant_ops.scheduler_health()")"
[ -n "$pid" ] || die "no scheduler in database bench"
log "scheduler pid $pid; creating $SCHEDULES schedules"
psql_db bench -o /dev/null -c "SELECT tenant_ops.schedule_operation('s' || g, '0 0 1 1 *', 'purge_history')
                                 FROM generate_series(1, $SCHEDULES) g"
[ "$(value bench "SELECT count(*) FROM tenant_ops.schedules WHERE enabled")" = "$SCHEDULES" ] \
    || die "expected $SCHEDULES enabled schedules"

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
cpu_percent() { # ticks_before ticks_after seconds
    awk -v a="$1" -v b="$2" -v s="$3" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz / s * 100 }'
}

# --- idle ------------------------------------------------------------------------------------
sleep 2
t0=$(ticks); s0=$(date +%s.%N)
log "idle: $SCHEDULES schedules, none due, for $idle_s s"
sleep "$idle_s"
t1=$(ticks); s1=$(date +%s.%N)
idle_cpu=$(cpu_percent "$t0" "$t1" "$(echo "$s1 - $s0" | bc)")

# --- firing ----------------------------------------------------------------------------------
log "firing: $FIRING schedules once a minute, one a second, for $fire_s s"
psql_db bench -o /dev/null -c "SELECT tenant_ops.alter_schedule('s' || g, ((g - 1) % 60)::text || ' * * * * *')
                                 FROM generate_series(1, $FIRING) g"
f_start=$(value bench "SELECT clock_timestamp()")
t2=$(ticks); s2=$(date +%s.%N)
sleep "$fire_s"
t3=$(ticks); s3=$(date +%s.%N)
psql_db bench -o /dev/null -c "SELECT tenant_ops.alter_schedule('s' || g, enabled => false) FROM generate_series(1, $FIRING) g"
sleep 3
fire_cpu=$(cpu_percent "$t2" "$t3" "$(echo "$s3 - $s2" | bc)")

read -r n q50 q95 qmax s50 s95 smax bad <<<"$(value bench "
  WITH r AS (
    SELECT extract(epoch FROM r.lag) * 1000 AS queue_ms,
           extract(epoch FROM j.started_at - r.scheduled_at) * 1000 AS start_ms,
           j.status
      FROM tenant_ops.schedule_runs r JOIN tenant_ops.jobs j ON j.id = r.job_id
     WHERE r.scheduled_at >= '$f_start' AND r.trigger = 'cron')
  SELECT count(*),
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY queue_ms)::numeric, 1),
         round(percentile_cont(0.95) WITHIN GROUP (ORDER BY queue_ms)::numeric, 1),
         round(max(queue_ms)::numeric, 1),
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY start_ms)::numeric, 1),
         round(percentile_cont(0.95) WITHIN GROUP (ORDER BY start_ms)::numeric, 1),
         round(max(start_ms)::numeric, 1),
         count(*) FILTER (WHERE status <> 'succeeded')
    FROM r" | tr '|' ' ')"
other=$(value bench "SELECT count(*) FROM tenant_ops.schedule_runs WHERE scheduled_at >= '$f_start' AND trigger <> 'cron'")

verdict() { awk -v v="$1" -v lim="$2" 'BEGIN { print (v < lim) ? "PASS" : "FAIL" }'; }
echo
echo "== schedules benchmark ($SCHEDULES enabled schedules in one database; $(nproc) cores; $(uptime | sed 's/.*load average/load average/'))"
echo "idle ($idle_s s, none due):            scheduler CPU ${idle_cpu} % of a core   [< 1 %: $(verdict "$idle_cpu" 1)]"
echo "firing ($fire_s s, $FIRING schedules, 1/s): scheduler CPU ${fire_cpu} % of a core"
echo "runs on time: $n (catch-up or other: $other; not succeeded: $bad)"
echo "lag scheduled -> job queued:   median ${q50} ms, p95 ${q95} ms, max ${qmax} ms"
echo "lag scheduled -> job started:  median ${s50} ms, p95 ${s95} ms, max ${smax} ms   [median < 200 ms: $(verdict "$s50" 200), p95 < 1000 ms: $(verdict "$s95" 1000)]"
[ "$bad" = 0 ] || die "$bad runs did not succeed"
[ "$n" -gt 0 ] || die "no run fired"
