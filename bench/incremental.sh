#!/usr/bin/env bash
# Incremental backup benchmark: after a base backup with a change capture and a day's worth of
# writes to about 1% of one tenant's rows, an incremental backup against the full backup the
# same state would otherwise need (create_backup, and the hand-written COPY | gzip of the
# tenant's rows), and the restore of the chain against the restore of that full backup, in one
# run on one private cluster (demo/dispatch.sql's generator).
#
# Usage:
#   bench/incremental.sh [--scale N]   default scale 20 (office 1: ~231k rows); --scale 5 quick
#
# What it does:
#   1. builds and installs the extension (release), a fresh cluster, the data, the scope;
#   2. base: create_backup('dispatch', '1', '{"capture": true}') (timed);
#   3. the writes (in 100-row transactions: about 1% of the office's order lines updated, 0.5%
#      of its orders deleted with their lines, as many new orders with two lines), timed on the
#      captured office and with the same statements on office 2 (not captured): the overhead;
#   4. in each of 2 rounds, after the writes: the next link of the chain (the incremental), a
#      full create_backup and the hand-written COPY | gzip -6 of the office's five tables of the
#      same state; times, sizes and their ratios;
#   5. restores: restore_backup(last link) (base + links) against restore_backup(full), both
#      checked against checksums of the office's rows; peak memory of each.
#
# Environment:
#   BENCH_INCREMENTAL_PORT=P   port of the benchmark cluster on 127.0.0.1 (default 28909)
#   BENCH_SKIP_INSTALL=1       do not build/install the extension (use what is installed)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args BENCH_INCREMENTAL_PORT 28909 "$@"
[ "$scale" = 100 ] && [ "${1:-}" != --scale ] && scale=20
OFFICE=1
ROUNDS=2
bench_started=$(date +%s)

bench_cluster bench_incremental
psql_at "$port" postgres -c "CREATE DATABASE $db"
psql_bench -c "CREATE EXTENSION pg_tenant_ops"
PGOPTIONS="-c client_min_messages=warning" psql_bench -f "$PROJECT_ROOT/demo/dispatch.sql"
log "generating the dispatch data at scale $scale"
psql_bench -c "SELECT count(*) FROM legacy.generate_dispatch($scale)" >/dev/null
psql_bench -q -c "CREATE SEQUENCE bench_ids START 900000000" -c "VACUUM (ANALYZE)"
psql_bench -At -c "SELECT tenant_ops.create_scope('dispatch', 'legacy.dispatch_offices', 'id')" >/dev/null
rows="$(psql_bench -At -c "SELECT sum(rows) FROM tenant_ops.plan('dispatch', '$OFFICE') WHERE role <> 'shared'")"
log "office $OFFICE: $rows rows"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
declare -A secs hwm anon
best() { # best LABEL SECONDS [HWM ANON]
    if [ -z "${secs[$1]:-}" ] || awk -v a="$2" -v b="${secs[$1]}" 'BEGIN { exit !(a < b) }'; then
        secs[$1]="$2"; hwm[$1]="${3:-0}"; anon[$1]="${4:-0}"
    fi
    log "$1: ${2}s"
}

# About 1% of office $1's order lines updated, 0.5% of its orders deleted with their lines,
# as many new orders with two lines each: one transaction per 100 rows, as an application does.
writes() {
    local n i
    n="$(psql_bench -At -c "SELECT greatest(round(count(*) * 0.005 / 100), 1) FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id
          JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = $1")"
    for i in $(seq "$n"); do
        psql_bench -q <<SQL
BEGIN;
UPDATE legacy.dispatch_order_items SET quantity = coalesce(quantity, 0) + 1 WHERE (order_id, line_no) IN (
  SELECT i.order_id, i.line_no FROM legacy.dispatch_order_items i JOIN legacy.dispatch_orders o ON o.id = i.order_id
    JOIN legacy.dispatch_patients p ON p.id = o.patient_id JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
   WHERE d.office_id = $1 ORDER BY random() LIMIT 200); -- transaction $i of $n
WITH o AS (SELECT o.id FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id
             JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = $1 AND o.id < 900000000
            ORDER BY random() LIMIT 100),
     i AS (DELETE FROM legacy.dispatch_order_items WHERE order_id IN (SELECT id FROM o))
DELETE FROM legacy.dispatch_orders WHERE id IN (SELECT id FROM o);
WITH p AS (SELECT p.id FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id
            WHERE d.office_id = $1 ORDER BY random() LIMIT 100),
     o AS (INSERT INTO legacy.dispatch_orders (id, patient_id, total) SELECT nextval('bench_ids'), id, 1 FROM p RETURNING id)
INSERT INTO legacy.dispatch_order_items (order_id, line_no, product_id, quantity)
SELECT o.id, l, (SELECT min(id) FROM legacy.dispatch_products), 1 FROM o, generate_series(1, 2) l;
COMMIT;
SQL
    done
}

out="$(timed_session "SELECT tenant_ops.create_backup('dispatch', :'office', '{\"capture\": true}') AS job \\gset" -v office="$OFFICE")"
IFS='|' read -r j s h m a <<<"$out"
base="$(psql_bench -At -c "SELECT result ->> 'backup_id' FROM tenant_ops.jobs WHERE id = $j")"
log "base backup $base (with capture): ${s}s"
base_s="$s"

previous="$base"
hand_dir="$work/hand"
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS: writes (captured office $OFFICE, then uncaptured office 2)"
    t0=$(now); writes "$OFFICE"; best writes_captured "$(elapsed "$t0")"
    t0=$(now); writes 2; best writes_plain "$(elapsed "$t0")"
    changes="$(psql_bench -At -c "SELECT count(*) FROM tenant_ops.capture_changes")"
    out="$(timed_session "SELECT tenant_ops.create_backup('dispatch', :'office', jsonb_build_object('incremental', :prev::bigint)) AS job \\gset" -v office="$OFFICE" -v prev="$previous")"
    IFS='|' read -r j s h m a <<<"$out"
    best incremental "$s" "$h" "$a"
    previous="$(psql_bench -At -c "SELECT result ->> 'backup_id' FROM tenant_ops.jobs WHERE id = $j")"
    incr_size="$(psql_bench -At -c "SELECT size_bytes FROM tenant_ops.backups WHERE id = $previous")"
    incr_rows="$(psql_bench -At -c "SELECT rows FROM tenant_ops.backups WHERE id = $previous")"
    log "link $round: backup $previous, $changes changes, $incr_rows rows and keys, $incr_size bytes"
    out="$(timed_session "SELECT tenant_ops.create_backup('dispatch', :'office') AS job \\gset" -v office="$OFFICE")"
    IFS='|' read -r j s h m a <<<"$out"
    best full "$s" "$h" "$a"
    full="$(psql_bench -At -c "SELECT result ->> 'backup_id' FROM tenant_ops.jobs WHERE id = $j")"
    full_size="$(psql_bench -At -c "SELECT size_bytes FROM tenant_ops.backups WHERE id = $full")"
    rm -rf "$hand_dir"; mkdir -p "$hand_dir"
    psql_bench -q -c "CHECKPOINT"
    t0=$(now)
    for t in "${TABLES[@]}"; do
        q="${SELECT_OF[$t]//:office/$OFFICE}"
        psql_bench -q -c "\\copy ($q) TO STDOUT" | gzip -6 >"$hand_dir/$t.copy.gz"
    done
    best hand "$(elapsed "$t0")"
    hand_size="$(du -cb "$hand_dir"/*.gz | tail -n 1 | cut -f1)"
done
state="$(office_sums "$OFFICE")"

for round in $(seq "$ROUNDS"); do
    log "restore round $round of $ROUNDS"
    for what in chain full_restore; do
        id="$previous"; [ "$what" = full_restore ] && id="$full"
        out="$(timed_session "SELECT tenant_ops.restore_backup($id) AS job \\gset")"
        IFS='|' read -r j s h m a <<<"$out"
        [ "$(psql_bench -At -c "SELECT status FROM tenant_ops.jobs WHERE id = $j")" = succeeded ] || die "restore of $id failed"
        [ "$(office_sums "$OFFICE")" = "$state" ] || die "$what: office $OFFICE differs after the restore"
        best "$what" "$s" "$h" "$a"
    done
done

printf '\nincremental backup benchmark, scale %s, office %s (%s rows), best of %s rounds\n' \
    "$scale" "$OFFICE" "$(with_commas "$rows")" "$ROUNDS"
printf 'base with capture: %.2fs; each round: %s changes captured, the link holds %s rows and keys\n' "$base_s" "$changes" "$incr_rows"
printf '%-36s %9s %12s  %s\n' contender seconds "size (kB)" "ratio to the full create_backup"
awk -v s="${secs[incremental]}" -v z="$incr_size" -v fs="${secs[full]}" -v fz="$full_size" -v hs="${secs[hand]}" -v hz="$hand_size" 'BEGIN {
    printf "%-36s %9.2f %12.0f  time %.3f, size %.3f\n", "incremental create_backup", s, z / 1024, s / fs, z / fz
    printf "%-36s %9.2f %12.0f\n", "full create_backup", fs, fz / 1024
    printf "%-36s %9.2f %12.0f  time %.3f, size %.3f\n", "hand-written COPY | gzip -6 (full)", hs, hz / 1024, hs / fs, hz / fz }'
awk -v c="${secs[chain]}" -v f="${secs[full_restore]}" 'BEGIN {
    printf "%-36s %9.2f               ratio %.2f\n", "restore_backup(base + 2 links)", c, c / f
    printf "%-36s %9.2f\n", "restore_backup(full)", f }'
awk -v c="${secs[writes_captured]}" -v p="${secs[writes_plain]}" 'BEGIN {
    printf "writes (1%% of the office, 100-row transactions): captured %.2fs, uncaptured office %.2fs (%.2fx)\n", c, p, c / p }'
printf 'peak memory (VmHWM / RssAnon): incremental %s / %s MB, full %s / %s MB, chain restore %s / %s MB, full restore %s / %s MB\n' \
    "$(mb "${hwm[incremental]}")" "$(mb "${anon[incremental]}")" "$(mb "${hwm[full]}")" "$(mb "${anon[full]}")" \
    "$(mb "${hwm[chain]}")" "$(mb "${anon[chain]}")" "$(mb "${hwm[full_restore]}")" "$(mb "${anon[full_restore]}")"
printf 'total benchmark time %ss\n' "$(( $(date +%s) - bench_started ))"
