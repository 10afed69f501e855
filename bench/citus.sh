#!/usr/bin/env bash
# Citus benchmark: one tenant of a Citus-style schema (the tenant column in every table,
# composite keys) migrated from local tables into distributed targets on a 3-node localhost
# Citus cluster, against the same migration on a plain server; and move_tenant against
# Citus's own isolate-and-move called by hand, for two tenants of the same size.
#
# Usage:
#   bench/citus.sh [--quick]    tenant sizes 1 + 2,000 + 4,000 + 20,000 + 100,000 rows (123,001);
#                               --quick: a tenth of that
#
# What it does:
#   1. builds and installs the extension (release; BENCH_DEBUG=1: debug) and Citus
#      (../shared/citus/install.sh) into a private copy of PostgreSQL, starts a coordinator
#      and two workers (shared_preload_libraries = 'citus,pg_tenant_ops', bench/lib.sh's
#      memory settings, wal_level = logical);
#   2. database bench: Citus on every node, the schema as local tables of the coordinator
#      (tests/e2e/tests/citus/schema.sql and foreign_keys.sql) with tenants 1 and 2 big and
#      four small ones; database bench_plain on the coordinator without Citus: the same data;
#   3. times, each in a session of its own (bench/lib.sh's timed_session: seconds, VmHWM,
#      peak RssAnon):
#        plain     migrate_tenant(tenant 1) into new local tables on bench_plain
#        citus     migrate_tenant(tenant 1) with create_target + distribute on bench
#        (tenant 2 then migrated into the same distributed targets, untimed)
#        move      tenant_ops.move_tenant(tenant 1) to the other worker (block_writes:
#                  checksums, isolate, move, checksums)
#        by hand   isolate_tenant_to_new_shard(tenant 2, 'CASCADE') and
#                  citus_move_shard_placement to the other worker (block_writes)
#      every result checked: counts of the targets, the tenants' placements.
#
# Environment:
#   BENCH_CITUS_PORT=P    first of three ports on 127.0.0.1 (default 28940)
#   BENCH_SKIP_INSTALL=1  do not build/install the extension (use what is installed)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_quick_args BENCH_CITUS_PORT 28940 "$@"
size=$((quick ? 1 : 10))
bench_started=$(date +%s)
schema_dir="$PROJECT_ROOT/tests/e2e/tests/citus"

bench_install
install_citus "$PG_CONFIG" >/dev/null
work="$(mktemp -d)"
dirs=()
stop_all() { local d; for d in "${dirs[@]}"; do cluster_stop "$d" || true; done; rm -rf "$work"; }
trap stop_all EXIT
for i in 0 1 2; do
    d="$(cluster_dir "bench_citus$i")"
    dirs+=("$d")
    cluster_create "$d" $((port + i)) \
        "shared_preload_libraries = 'citus,pg_tenant_ops'" \
        "shared_buffers = 128MB" "work_mem = 64MB" "maintenance_work_mem = 512MB" \
        "max_wal_size = 8GB" "checkpoint_timeout = 30min" "synchronous_commit = off" "jit = off" \
        "wal_level = logical" "max_replication_slots = 20" "max_wal_senders = 20" \
        "citus.node_conninfo = 'sslmode=disable'" "citus.shard_count = 4"
    cluster_start "$d"
    psql_at $((port + i)) postgres -q -c "CREATE DATABASE bench" -c "\c bench" -c "CREATE EXTENSION citus"
done
coord=$port
w1=$((port + 1)); w2=$((port + 2))
psql_at "$coord" bench -q -c "SELECT citus_set_coordinator_host('127.0.0.1', $coord)" \
    -c "SELECT citus_add_node('127.0.0.1', $w1)" -c "SELECT citus_add_node('127.0.0.1', $w2)" >/dev/null
psql_at "$coord" postgres -q -c "CREATE DATABASE bench_plain"

# Tenants 1 and 2: 200*size users, 400*size campaigns, 2,000*size ads, 10,000*size clicks;
# tenants 3..6 a hundredth of that.
data() {
    cat <<SQL
INSERT INTO mt.countries VALUES ('DE', 'Germany'), ('FR', 'France'), ('NL', 'Netherlands'),
    ('US', 'United States'), ('JP', 'Japan'), ('BR', 'Brazil');
CREATE TEMP TABLE sizes AS SELECT c, CASE WHEN c <= 2 THEN $size * 100 ELSE $size END AS w FROM generate_series(1, 6) c;
INSERT INTO mt.companies SELECT c, 'Company ' || c, (ARRAY['DE', 'FR', 'NL', 'US', 'JP'])[1 + c % 5] FROM sizes;
INSERT INTO mt.users SELECT c, u, format('user%s@company%s.example', u, c) FROM sizes, generate_series(1, 2 * w) u;
INSERT INTO mt.campaigns SELECT c, k, format('campaign %s-%s', c, k), 1 + k % (2 * w), (k * 100.5)::numeric(12,2)
  FROM sizes, generate_series(1, 4 * w) k;
INSERT INTO mt."Ads ""x""" SELECT c, a, 1 + a % (4 * w), format('ad %s-%s', c, a) FROM sizes, generate_series(1, 20 * w) a;
INSERT INTO mt.clicks SELECT c, k, 1 + k % (20 * w), timestamptz '2026-01-01 00:00+00' + k * interval '1 second',
       (ARRAY['DE', 'FR', 'NL', 'US', 'JP'])[1 + k % 5]
  FROM sizes, generate_series(1, 100 * w) k;
VACUUM ANALYZE;
SQL
}
for db in bench bench_plain; do
    psql_at "$coord" "$db" -q -f "$schema_dir/schema.sql" -f "$schema_dir/foreign_keys.sql"
    data | psql_at "$coord" "$db" -q -f -
    psql_at "$coord" "$db" -q -c "CREATE EXTENSION pg_tenant_ops" -c "CREATE SCHEMA dist" \
        -c "SELECT tenant_ops.create_scope('mt', 'mt.companies', 'id', '{\"shared\": [\"mt.countries\"]}')" >/dev/null
done
rows=$(psql_at "$coord" bench -At -c "SELECT (SELECT count(*) FROM mt.users WHERE company_id = 1) + (SELECT count(*) FROM mt.campaigns WHERE company_id = 1)
                                          + (SELECT count(*) FROM mt.\"Ads \"\"x\"\"\" WHERE company_id = 1) + (SELECT count(*) FROM mt.clicks WHERE company_id = 1) + 1")
log "tenant 1: $rows rows over 5 tables"

run() {  # run NAME DB BODY: prints NAME|job|seconds|VmHWM|RssShmem|peak RssAnon
    local name="$1"
    port=$coord db="$2" timed_session "$3" | sed "s/^/$name|/"
}
results=()
results+=("$(run plain bench_plain "SELECT tenant_ops.migrate_tenant('mt', '1', 'dist', '{\"create_target\": true, \"shared\": \"copy\"}') AS job \gset")")
results+=("$(run citus bench "SELECT tenant_ops.migrate_tenant('mt', '1', 'dist', '{\"create_target\": true, \"distribute\": true, \"shared\": \"copy\"}') AS job \gset")")
psql_at "$coord" bench -q -c "SET client_min_messages = warning" -c "SELECT tenant_ops.migrate_tenant('mt', '2', 'dist', '{\"shared\": \"copy\"}')" \
    -c "SELECT tenant_ops.create_scope('dist', 'dist.companies', 'id', '{\"shared\": [\"dist.countries\"]}')" >/dev/null
for db in bench bench_plain; do
    got=$(psql_at "$coord" "$db" -At -c "SELECT (SELECT count(*) FROM dist.users WHERE company_id = 1) + (SELECT count(*) FROM dist.campaigns WHERE company_id = 1)
                 + (SELECT count(*) FROM dist.\"Ads \"\"x\"\"\" WHERE company_id = 1) + (SELECT count(*) FROM dist.clicks WHERE company_id = 1) + 1")
    [ "$got" = "$rows" ] || die "$db: dist holds $got rows of tenant 1, expected $rows"
done

node_of() {  # node_of TENANT: the port of the worker holding the tenant's companies shard
    psql_at "$coord" bench -At -c "SELECT nodeport FROM pg_dist_shard_placement
        WHERE shardid = get_shard_id_for_distribution_column('dist.companies', $1)"
}
other() { if [ "$1" = "$w1" ]; then echo "$w2"; else echo "$w1"; fi; }
to1=$(other "$(node_of 1)"); from2=$(node_of 2); to2=$(other "$from2")
results+=("$(run move bench "SELECT tenant_ops.move_tenant('dist', '1', '127.0.0.1:$to1') AS job \gset")")
results+=("$(run by_hand bench "SELECT isolate_tenant_to_new_shard('dist.companies', 2, 'CASCADE', shard_transfer_mode => 'block_writes') AS shard \gset
SELECT 1 AS moved FROM citus_move_shard_placement(:shard, '127.0.0.1', $from2, '127.0.0.1', $to2, shard_transfer_mode => 'block_writes') \gset")")
[ "$(node_of 1)" = "$to1" ] || die "tenant 1 is not on $to1"
[ "$(node_of 2)" = "$to2" ] || die "tenant 2 is not on $to2"

echo
printf '%-9s %10s %12s %10s %12s\n' contender seconds rows/s "VmHWM MB" "RssAnon MB"
declare -A secs
for r in "${results[@]}"; do
    IFS='|' read -r name _job s hwm _shm peak <<<"$r"
    secs[$name]=$s
    printf '%-9s %10.2f %12s %10s %12s\n' "$name" "$s" "$(with_commas "$(awk -v n="$rows" -v s="$s" 'BEGIN { printf "%.0f", n / s }')")" "$(mb "$hwm")" "$(mb "$peak")"
done
echo
awk -v a="${secs[citus]}" -v b="${secs[plain]}" 'BEGIN { printf "migrate_tenant into distributed targets / into a plain server: %.2fx\n", a / b }'
awk -v a="${secs[move]}" -v b="${secs[by_hand]}" 'BEGIN { printf "move_tenant / isolate + move by hand:                         %.2fx\n", a / b }'
log "done in $(($(date +%s) - bench_started)) s"
