#!/usr/bin/env bash
# Export benchmark: export_tenant (csv, gzip) against what a DBA does by hand for one tenant,
# on the demo generator (demo/dispatch.sql), in one run on one private cluster.
#
# Usage:
#   bench/export.sh [--scale N]      default scale 100: office 1 has 1,155,001 rows, office 4
#                                    ~115k; --scale 5 is a quick smoke run
#
# What it does:
#   1. builds and installs the extension (release), starts a fresh cluster (bench/lib.sh's
#      settings), generates the data, VACUUM ANALYZE, creates the scope dispatch;
#   2. exports office 1 as CSV, in alternating rounds, keeping each contender's best time:
#        export_tenant   tenant_ops.export_tenant('dispatch', '1', 'csv') (one snapshot, a
#                        file per table with a header, manifest, tar, gzip -6)
#        hand-written    per table, server-side COPY (SELECT the office's rows) TO 'file'
#                        (FORMAT csv, HEADER), one table after another, then tar -czf of the
#                        files (gzip's default level, as export_tenant's)
#      and prints the times, the sizes and their ratios (target: export_tenant <= 1.2x);
#   3. the other formats of export_tenant on the same office, for scale;
#   4. peak memory (VmHWM, RssAnon sampled) of the backends that exported office 4 and
#      office 1.
#
# Environment:
#   BENCH_EXPORT_PORT=P   port of the benchmark cluster on 127.0.0.1 (default 28848)
#   BENCH_SKIP_INSTALL=1  do not build/install the extension (use what is installed)
#   BENCH_DEBUG=1         build the extension in debug (a smoke run; times are not comparable)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args BENCH_EXPORT_PORT 28848 "$@"
BIG=1
SMALL=4
ROUNDS=2
bench_started=$(date +%s)

bench_cluster bench_export
psql_at "$port" postgres -c "CREATE DATABASE $db"
psql_bench -c "CREATE EXTENSION pg_tenant_ops"
psql_at "$port" postgres -c "ALTER SYSTEM SET tenant_ops.export_directory = 'bench_exports'" -c "SELECT pg_reload_conf()" >/dev/null
PGOPTIONS="-c client_min_messages=warning" psql_bench -f "$PROJECT_ROOT/demo/dispatch.sql"
log "generating the dispatch data at scale $scale"
psql_bench -c "SELECT count(*) FROM legacy.generate_dispatch($scale)" >/dev/null
psql_bench -c "VACUUM (ANALYZE)" >/dev/null
psql_bench -At -c "SELECT tenant_ops.create_scope('dispatch', 'legacy.dispatch_offices', 'id')" >/dev/null

big_rows="$(psql_bench -At -c "SELECT sum(rows) FROM tenant_ops.plan('dispatch', '$BIG') WHERE role <> 'shared'")"
small_rows="$(psql_bench -At -c "SELECT sum(rows) FROM tenant_ops.plan('dispatch', '$SMALL') WHERE role <> 'shared'")"
log "office $BIG: $big_rows rows; office $SMALL: $small_rows rows"
exports="$dir/bench_exports"

now() { date +%s.%N; }
declare -A secs hwm anon size
best() { # best LABEL SECONDS [HWM ANON]
    if [ -z "${secs[$1]:-}" ] || awk -v a="$2" -v b="${secs[$1]}" 'BEGIN { exit !(a < b) }'; then
        secs[$1]="$2"; hwm[$1]="${3:-0}"; anon[$1]="${4:-0}"
    fi
    log "$1: ${2}s"
}

hand_dir="$dir/bench_hand"
hand_export() {
    as_pg_user rm -rf "$hand_dir"
    as_pg_user mkdir -p "$hand_dir"
    psql_bench -q -c "CHECKPOINT"
    local t0 t q
    t0=$(now)
    for t in "${TABLES[@]}"; do
        q="${SELECT_OF[$t]//:office/$BIG}"
        psql_bench -q -c "COPY ($q) TO '$hand_dir/$t.csv' (FORMAT csv, HEADER)"
    done
    (cd "$hand_dir" && as_pg_user tar -czf "$hand_dir.tar.gz" ./*.csv)
    best hand_export "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')"
    size[hand_export]="$(stat -c %s "$hand_dir.tar.gz")"
}

ours_export() { # ours_export LABEL OFFICE FORMAT
    local out j s h m a file
    out="$(timed_session "SELECT tenant_ops.export_tenant('dispatch', :'office', :'format') AS job \\gset" -v office="$2" -v format="$3")"
    IFS='|' read -r j s h m a <<<"$out"
    [ "$(psql_bench -At -c "SELECT status FROM tenant_ops.jobs WHERE id = $j")" = succeeded ] || die "export job $j failed"
    best "$1" "$s" "$h" "$a"
    file="$(psql_bench -At -c "SELECT result ->> 'file' FROM tenant_ops.jobs WHERE id = $j")"
    size[$1]="$(stat -c %s "$exports/$file")"
    as_pg_user rm -f "$exports/$file"
}

for round in $(seq "$ROUNDS"); do
    log "export round $round of $ROUNDS"
    ours_export ours_csv "$BIG" csv
    hand_export
done
ours_export ours_small "$SMALL" csv
for f in ndjson json xml sql xlsx; do
    ours_export "ours_$f" "$BIG" "$f"
done

printf '\nexport benchmark, scale %s, best of %s rounds: office %s, %s rows over 5 tables\n' \
    "$scale" "$ROUNDS" "$BIG" "$(with_commas "$big_rows")"
printf '%-36s %9s %12s   %s\n' contender seconds "size (MB)" "ratio ours / hand-written"
awk -v s="${secs[ours_csv]}" -v z="${size[ours_csv]}" -v hs="${secs[hand_export]}" -v hz="${size[hand_export]}" 'BEGIN {
    printf "%-36s %9.2f %12.1f   time %.2f (target <= 1.2: %s), size %.2f\n",
           "export_tenant csv", s, z / 1048576, s / hs, (s / hs <= 1.2 ? "met" : "MISSED"), z / hz
    printf "%-36s %9.2f %12.1f\n", "hand-written COPY TO csv + tar -czf", hs, hz / 1048576 }'
for f in ndjson json xml sql xlsx; do
    awk -v n="export_tenant $f" -v s="${secs[ours_$f]}" -v z="${size[ours_$f]}" 'BEGIN { printf "%-36s %9.2f %12.1f\n", n, s, z / 1048576 }'
done
printf 'office %s (%s rows) export_tenant csv: %.2fs\n' "$SMALL" "$(with_commas "$small_rows")" "${secs[ours_small]}"
printf 'peak memory (VmHWM): export_tenant csv office %s %s MB, office %s %s MB; xlsx office %s %s MB\n' \
    "$SMALL" "$(mb "${hwm[ours_small]}")" "$BIG" "$(mb "${hwm[ours_csv]}")" "$BIG" "$(mb "${hwm[ours_xlsx]}")"
printf '  private memory (RssAnon peak, sampled): csv office %s %s MB, office %s %s MB; xlsx office %s %s MB\n' \
    "$SMALL" "$(mb "${anon[ours_small]}")" "$BIG" "$(mb "${anon[ours_csv]}")" "$BIG" "$(mb "${anon[ours_xlsx]}")"
printf 'total benchmark time %ss\n' "$(( $(date +%s) - bench_started ))"
