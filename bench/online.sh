#!/usr/bin/env bash
# Online migration benchmark: the write overhead of change capture, measured with pgbench-style
# writers on the tenant's own tables, and the catch-up's throughput, on one private cluster.
#
# Usage:
#   bench/online.sh            tenant 1 with 100k orders (300k lines), 20 s per pgbench run
#   bench/online.sh --quick    20k orders, 8 s per run
#
# What it does:
#   1. builds and installs the extension (release) into a private copy of PostgreSQL
#      (bench/lib.sh) and starts a fresh cluster with the library preloaded;
#   2. schema app: account (4 tenants), orders, order_line (ON UPDATE/DELETE CASCADE); every
#      write of the pgbench script below touches tenant 1's rows, so every one is captured (the
#      worst case: writes of other tenants only pay the trigger's tenant test);
#   3. runs pgbench (4 clients, 2 threads, prepared) with a script of one transaction: update
#      an order, update one of its lines, insert a line; three contenders, alternately, rounds
#      times:
#        plain     no capture;
#        capture   an online migration of tenant 1 paused at its catch-up: the triggers record
#                  every write, nothing applies them (the trigger's own cost);
#        catchup   the same with the catch-up running (triggers + a worker applying the changes);
#   4. prints tps and mean latency of each, and the ratio to plain; the catch-up's own figures
#      (changes applied per second while the writers run, the lag at the end and how long it
#      takes to drain it) and the cutover (locked ms, once fewer than 1000 changes wait) once
#      per round.
# Timings are figures, not tests; the script fails only when a cutover does not verify.
#
# Environment:
#   BENCH_ONLINE_PORT=P    port of the benchmark cluster on 127.0.0.1 (default 28906)
#   BENCH_SKIP_INSTALL=1   do not build/install the extension (use what is installed)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=bench-online

bench_quick_args BENCH_ONLINE_PORT 28906 "$@"
if [ "$quick" = 1 ]; then
    orders=20000; secs=8; rounds=2
else
    orders=100000; secs=20; rounds=3
fi

bench_install
dir="$(cluster_dir bench_online)"
work="$(mktemp -d)"
trap 'cluster_stop "$dir" 2>/dev/null || true; rm -rf "$work"' EXIT
cluster_create "$dir" "$port" "synchronous_commit = off" "shared_buffers = 256MB" "max_wal_size = 4GB" "jit = off"
cluster_start "$dir"
db=bench
psql_at "$port" postgres -c "CREATE DATABASE $db"
log "cluster $dir on port $port; tenant 1: $orders orders"

psql_bench -v orders="$orders" <<'SQL'
CREATE EXTENSION pg_tenant_ops;
CREATE SCHEMA app;
CREATE TABLE app.account (account_id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.orders (order_id bigint PRIMARY KEY,
                         account_id int NOT NULL REFERENCES app.account ON DELETE CASCADE,
                         note text, total numeric NOT NULL);
CREATE INDEX ON app.orders (account_id);
CREATE TABLE app.order_line (order_id bigint NOT NULL REFERENCES app.orders ON UPDATE CASCADE ON DELETE CASCADE,
                             line_no int NOT NULL, qty int NOT NULL, PRIMARY KEY (order_id, line_no));
INSERT INTO app.account VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four');
INSERT INTO app.orders SELECT g, CASE WHEN g <= :orders THEN 1 ELSE 2 + g % 3 END, 'n' || g, g % 97
  FROM generate_series(1, :orders * 2) g;
INSERT INTO app.order_line SELECT o.order_id, l, l FROM app.orders o, generate_series(1, 3) l;
VACUUM ANALYZE;
SELECT tenant_ops.create_scope('shop', 'app.account', 'account_id');
SQL

cat >"$work/write.sql" <<SQL
\set id random(1, $orders)
\set line random(4, 2000000000)
BEGIN;
UPDATE app.orders SET total = total + 1 WHERE order_id = :id;
UPDATE app.order_line SET qty = qty + 1 WHERE order_id = :id AND line_no = 1;
INSERT INTO app.order_line VALUES (:id, :line, 1) ON CONFLICT DO NOTHING;
END;
SQL

# pgbench_run NAME: "tps latency_ms"
pgbench_run() {
    local out
    out=$("$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -c 4 -j 2 -M prepared -T "$secs" -f "$work/write.sql" "$db" 2>&1) \
        || { echo "$out" >&2; die "pgbench failed ($1)"; }
    local tps lat
    tps=$(awk '/^tps = / {printf "%.0f", $3}' <<<"$out")
    lat=$(awk '/^latency average = / {printf "%.2f", $4}' <<<"$out")
    echo "$tps $lat"
}

scalar() { psql_bench -At -c "$1"; }

# Starts an online migration of tenant 1 into a fresh schema and waits for its catch-up.
start_online() {
    scalar "DROP SCHEMA IF EXISTS dst CASCADE; CREATE SCHEMA dst" >/dev/null
    job=$(scalar "SELECT tenant_ops.migrate_tenant('shop', '1', 'dst', '{\"mode\": \"online\", \"create_target\": true}', true)")
    for _ in $(seq 1 600); do
        [ "$(scalar "SELECT stage FROM tenant_ops.jobs WHERE id = $job")" = catchup ] && return 0
        sleep 0.2
    done
    die "job $job did not reach its catch-up: $(scalar "SELECT status || ' ' || coalesce(error, '') FROM tenant_ops.jobs WHERE id = $job")"
}

declare -A tps lat
for r in $(seq 1 "$rounds"); do
    scalar "CHECKPOINT" >/dev/null
    read -r t l < <(pgbench_run plain); tps[plain,$r]=$t; lat[plain,$r]=$l
    log "round $r plain: $t tps, $l ms"

    start_online
    scalar "SELECT tenant_ops.pause_job($job)" >/dev/null
    for _ in $(seq 1 100); do
        [ "$(scalar "SELECT status FROM tenant_ops.jobs WHERE id = $job")" = paused ] && [ -z "$(scalar "SELECT worker_pid FROM tenant_ops.jobs WHERE id = $job")" ] && break
        sleep 0.1
    done
    scalar "CHECKPOINT" >/dev/null
    read -r t l < <(pgbench_run capture); tps[capture,$r]=$t; lat[capture,$r]=$l
    pending=$(scalar "SELECT count(*) FROM tenant_ops.capture_changes")
    log "round $r capture (paused catch-up): $t tps, $l ms; $pending changes recorded"

    applied0=$(scalar "SELECT applied FROM tenant_ops.captures WHERE job_id = $job")
    scalar "SELECT tenant_ops.resume_job($job)" >/dev/null
    started=$(date +%s.%N)
    read -r t l < <(pgbench_run catchup); tps[catchup,$r]=$t; lat[catchup,$r]=$l
    ended=$(date +%s.%N)
    applied1=$(scalar "SELECT applied FROM tenant_ops.captures WHERE job_id = $job")
    lag=$(scalar "SELECT count(*) FROM tenant_ops.capture_changes")
    rate=$(awk -v a="$applied0" -v b="$applied1" -v s="$started" -v e="$ended" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
    log "round $r catchup: $t tps, $l ms; $((applied1 - applied0)) changes applied ($rate/s), lag at the end $lag"
    # Cut over once the catch-up is nearly level (the cutover drains the rest under its locks).
    caught_up=$(date +%s.%N)
    for _ in $(seq 1 600); do
        [ "$(scalar "SELECT count(*) < 1000 FROM tenant_ops.capture_changes")" = t ] && break
        sleep 0.1
    done
    level=$(awk -v s="$caught_up" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    log "round $r: the catch-up drained its lag ($lag) in ${level}s with the writers stopped"
    cut=$(scalar "SELECT (tenant_ops.cutover_migration($job, '{\"lock_timeout\": \"10s\"}'))->>'locked_ms'") \
        || die "cutover of job $job failed"
    log "round $r cutover: locked $cut ms"
    scalar "SELECT tenant_ops.wait_for_job($job, '60s')" >/dev/null
    # Back to no capture for the next round: the fence goes with a rollback.
    scalar "SELECT tenant_ops.rollback_migration($job)" >/dev/null
done

echo
echo "pgbench: 4 clients, ${secs}s per run, every write on tenant 1's rows ($orders orders)"
printf '%-9s %8s %10s %8s\n' contender tps "lat ms" "vs plain"
for r in $(seq 1 "$rounds"); do
    for c in plain capture catchup; do
        printf '%-9s %8s %10s %8s\n' "$c#$r" "${tps[$c,$r]}" "${lat[$c,$r]}" \
            "$(awk -v a="${tps[$c,$r]}" -v b="${tps[plain,$r]}" 'BEGIN { printf "%.2f", a / b }')"
    done
done
