#!/usr/bin/env bash
# Backup benchmark: create_backup and restore_backup against what a DBA does by hand for one
# tenant, on the demo generator (demo/dispatch.sql), in one run on one private cluster.
#
# Usage:
#   bench/backup.sh [--scale N]      default scale 100: office 1 has 1,155,001 rows, office 4
#                                    ~115k; --scale 5 is a quick smoke run
#
# What it does:
#   1. builds and installs the extension (release), starts a fresh cluster (bench/lib.sh's
#      settings), generates the data, VACUUM ANALYZE, creates the scope dispatch;
#   2. backs up office 1, in alternating rounds, keeping each contender's best time:
#        create_backup   tenant_ops.create_backup('dispatch', '1')
#        hand-written    per table, psql -c "\copy (SELECT the office's rows) TO STDOUT" | gzip -6
#                        (gzip's default level, as create_backup's), one table after another
#      and prints the times, the sizes and their ratios;
#   3. restores office 1 (its rows deleted first by each contender):
#        restore_backup  tenant_ops.restore_backup(id) (mode replace: deletes the office's rows,
#                        loads the backup, verifies the restored rows against it)
#        hand-written    the same DELETEs children first, then gunzip | \copy FROM per table,
#                        into the same tables with the same indexes and foreign keys
#      both checked afterwards against checksums of the office's rows taken at the start;
#   4. pg_dump -Fc of the same five tables (every office: for scale);
#   5. peak memory (VmHWM, RssAnon sampled) of the backends that backed up office 4 and
#      office 1, and restored office 1.
#
# Environment:
#   BENCH_BACKUP_PORT=P   port of the benchmark cluster on 127.0.0.1 (default 28822)
#   BENCH_SKIP_INSTALL=1  do not build/install the extension (use what is installed)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args BENCH_BACKUP_PORT 28822 "$@"
BIG=1
SMALL=4
ROUNDS=2
bench_started=$(date +%s)

bench_cluster bench_backup
psql_at "$port" postgres -c "CREATE DATABASE $db"
psql_bench -c "CREATE EXTENSION pg_tenant_ops"
PGOPTIONS="-c client_min_messages=warning" psql_bench -f "$PROJECT_ROOT/demo/dispatch.sql"
log "generating the dispatch data at scale $scale"
psql_bench -c "SELECT count(*) FROM legacy.generate_dispatch($scale)" >/dev/null
psql_bench -c "VACUUM (ANALYZE)" >/dev/null
psql_bench -At -c "SELECT tenant_ops.create_scope('dispatch', 'legacy.dispatch_offices', 'id')" >/dev/null

before="$(office_sums "$BIG")"
big_rows="$(psql_bench -At -c "SELECT sum(rows) FROM tenant_ops.plan('dispatch', '$BIG') WHERE role <> 'shared'")"
small_rows="$(psql_bench -At -c "SELECT sum(rows) FROM tenant_ops.plan('dispatch', '$SMALL') WHERE role <> 'shared'")"
log "office $BIG: $big_rows rows; office $SMALL: $small_rows rows"

delete_office() {
    psql_bench -q <<SQL
DELETE FROM legacy.dispatch_order_items i USING legacy.dispatch_orders o, legacy.dispatch_patients p, legacy.dispatch_doctors d
 WHERE o.id = i.order_id AND p.id = o.patient_id AND d.id = p.doctor_id AND d.office_id = $1;
DELETE FROM legacy.dispatch_orders o USING legacy.dispatch_patients p, legacy.dispatch_doctors d
 WHERE p.id = o.patient_id AND d.id = p.doctor_id AND d.office_id = $1;
DELETE FROM legacy.dispatch_patients p USING legacy.dispatch_doctors d WHERE d.id = p.doctor_id AND d.office_id = $1;
UPDATE legacy.dispatch_doctors SET supervisor_id = NULL WHERE office_id = $1;
DELETE FROM legacy.dispatch_doctors WHERE office_id = $1;
DELETE FROM legacy.dispatch_offices WHERE id = $1;
SQL
}

now() { date +%s.%N; }
declare -A secs hwm anon
best() { # best LABEL SECONDS [HWM ANON]
    if [ -z "${secs[$1]:-}" ] || awk -v a="$2" -v b="${secs[$1]}" 'BEGIN { exit !(a < b) }'; then
        secs[$1]="$2"; hwm[$1]="${3:-0}"; anon[$1]="${4:-0}"
    fi
    log "$1: ${2}s"
}

hand_dir="$work/hand"
hand_backup() {
    rm -rf "$hand_dir"; mkdir -p "$hand_dir"
    psql_bench -q -c "CHECKPOINT"
    local t0 t q
    t0=$(now)
    for t in "${TABLES[@]}"; do
        q="${SELECT_OF[$t]//:office/$BIG}"
        psql_bench -q -c "\\copy ($q) TO STDOUT" | gzip -6 >"$hand_dir/$t.copy.gz"
    done
    best hand_backup "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')"
}

ours_backup() { # ours_backup LABEL OFFICE
    local out j s h m a
    out="$(timed_session "SELECT tenant_ops.create_backup('dispatch', :'office') AS job \\gset" -v office="$2")"
    IFS='|' read -r j s h m a <<<"$out"
    best "$1" "$s" "$h" "$a"
    backup_id="$(psql_bench -At -c "SELECT result ->> 'backup_id' FROM tenant_ops.jobs WHERE id = $j")"
    eval "backup_of_$1=$backup_id"
}

for round in $(seq "$ROUNDS"); do
    log "backup round $round of $ROUNDS"
    ours_backup ours_backup "$BIG"
    hand_backup
done
ours_backup ours_small "$SMALL"
ours_size="$(psql_bench -At -c "SELECT size_bytes FROM tenant_ops.backups WHERE id = $backup_of_ours_backup")"
hand_size="$(du -cb "$hand_dir"/*.gz | tail -n 1 | cut -f1)"

# --- restores -----------------------------------------------------------------------------------
check_restored() {
    local got
    got="$(office_sums "$BIG")"
    [ "$got" = "$before" ] || { printf 'before:\n%s\nafter:\n%s\n' "$before" "$got" >&2; die "$1: office $BIG differs after the restore"; }
}
for round in $(seq "$ROUNDS"); do
    log "restore round $round of $ROUNDS"
    out="$(timed_session "SELECT tenant_ops.restore_backup($backup_of_ours_backup) AS job \\gset")"
    IFS='|' read -r j s h m a <<<"$out"
    status="$(psql_bench -At -c "SELECT status FROM tenant_ops.jobs WHERE id = $j")"
    [ "$status" = succeeded ] || die "restore_backup job $j ended '$status'"
    best ours_restore "$s" "$h" "$a"
    check_restored restore_backup

    psql_bench -q -c "CHECKPOINT"
    t0=$(now)
    delete_office "$BIG"
    for t in "${TABLES[@]}"; do
        gunzip -c "$hand_dir/$t.copy.gz" | psql_bench -q -c "\\copy legacy.$t FROM STDIN"
    done
    best hand_restore "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')"
    check_restored hand-written
done

# --- pg_dump, for scale --------------------------------------------------------------------------
t0=$(now)
"$PG_BIN/pg_dump" -h 127.0.0.1 -p "$port" -U postgres -Fc $(printf -- '-t legacy.%s ' "${TABLES[@]}") "$db" >"$work/dump.fc"
dump_s="$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')"
dump_size="$(stat -c %s "$work/dump.fc")"

printf '\nbackup benchmark, scale %s, best of %s rounds: office %s, %s rows over 5 tables\n' \
    "$scale" "$ROUNDS" "$BIG" "$(with_commas "$big_rows")"
printf '%-32s %9s %12s   %s\n' contender seconds "size (MB)" "ratio ours / hand-written"
awk -v s="${secs[ours_backup]}" -v z="$ours_size" -v hs="${secs[hand_backup]}" -v hz="$hand_size" 'BEGIN {
    printf "%-32s %9.2f %12.1f   time %.2f (target <= 1.2: %s), size %.2f (target <= 1.1: %s)\n",
           "create_backup", s, z / 1048576, s / hs, (s / hs <= 1.2 ? "met" : "MISSED"), z / hz, (z / hz <= 1.1 ? "met" : "MISSED")
    printf "%-32s %9.2f %12.1f\n", "hand-written COPY | gzip -6", hs, hz / 1048576 }'
awk -v s="${secs[ours_restore]}" -v hs="${secs[hand_restore]}" 'BEGIN {
    printf "%-32s %9.2f %12s   time %.2f (target <= 1.5: %s)\n", "restore_backup (replace)", s, "", s / hs, (s / hs <= 1.5 ? "met" : "MISSED")
    printf "%-32s %9.2f\n", "hand-written DELETE + gunzip|COPY", hs }'
awk -v s="$dump_s" -v z="$dump_size" 'BEGIN { printf "%-32s %9.2f %12.1f   (every office)\n", "pg_dump -Fc of the 5 tables", s, z / 1048576 }'
printf 'office %s (%s rows) create_backup: %.2fs\n' "$SMALL" "$(with_commas "$small_rows")" "${secs[ours_small]}"
printf 'peak memory (VmHWM): create_backup office %s %s MB, office %s %s MB; restore_backup office %s %s MB\n' \
    "$SMALL" "$(mb "${hwm[ours_small]}")" "$BIG" "$(mb "${hwm[ours_backup]}")" "$BIG" "$(mb "${hwm[ours_restore]}")"
printf '  private memory (RssAnon peak, sampled): create_backup office %s %s MB, office %s %s MB; restore_backup %s MB\n' \
    "$SMALL" "$(mb "${anon[ours_small]}")" "$BIG" "$(mb "${anon[ours_backup]}")" "$(mb "${anon[ours_restore]}")"
printf 'total benchmark time %ss\n' "$(( $(date +%s) - bench_started ))"
