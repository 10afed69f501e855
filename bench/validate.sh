#!/usr/bin/env bash
# Validation benchmark: validate_integrity against the hand-written anti-join queries a DBA would
# write for the same checks, on the demo generator (demo/dispatch.sql), in one run on one private
# cluster.
#
# Usage:
#   bench/validate.sh [--scale N]    default scale 100: office 1 has 1,155,001 rows, office 4
#                                    ~115k; --scale 5 is a quick smoke run
#
# What it does:
#   1. builds and installs the extension (release), starts a fresh cluster (the benchmark
#      settings of bench/lib.sh), generates the data, VACUUM ANALYZE, creates the scope dispatch;
#   2. times, each in its own session (CHECKPOINT first, clock_timestamp() around the call), in
#      alternating rounds (BENCH_ROUNDS), keeping each contender's best time:
#        validate_integrity   tenant_ops.validate_integrity('dispatch') (all tenants, all
#                             checks), validate_integrity('dispatch', '1') and ('dispatch', '4')
#        hand-written         bench/validate_handwritten_all.sql (one anti-join per foreign key,
#                             grouped by office, and the cross-office supervisor check) and
#                             bench/validate_handwritten_office.sql (the same for office 1, 4)
#   3. asserts that both find the same problems (tenant_ops.integrity_issues against the
#      hand-written findings, line by line) and exactly the planted ones: office 5 has one
#      orphan order item (product 999999) and one doctor supervised from office 4; offices 1
#      and 4 none;
#   4. prints the times, the ratio ours / hand-written (targets: one tenant <= 1.0, all
#      tenants <= 1.25), office 4's share of the all-tenants time (target <= 20%), and the peak
#      memory (VmHWM, and the RssAnon peak sampled every 0.1 s) of the backends that validated
#      office 4 and office 1; then stops the cluster.
#
# Environment:
#   BENCH_VAL_PORT=P      port of the benchmark cluster on 127.0.0.1 (default 28821)
#   BENCH_ROUNDS=N        rounds (default 3); each contender keeps its best time
#   BENCH_SKIP_INSTALL=1  do not build/install the extension (use what is installed)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args BENCH_VAL_PORT 28821 "$@"
BIG=1     # the 1M-row tenant at scale 100
SMALL=4   # the ~100k-row tenant at scale 100
ROUNDS="${BENCH_ROUNDS:-3}"
bench_started=$(date +%s)

# --- 1. toolchain, extension, cluster -------------------------------------------------------------
bench_cluster bench_val

# --- 2. data and scope -----------------------------------------------------------------------------
psql_at "$port" postgres -c "CREATE DATABASE $db"
psql_bench -c "CREATE EXTENSION pg_tenant_ops"
PGOPTIONS="-c client_min_messages=warning" psql_bench -f "$PROJECT_ROOT/demo/dispatch.sql"
log "generating the dispatch data at scale $scale"
started=$(date +%s)
psql_bench <<SQL
CREATE SCHEMA bench_val;
CREATE TABLE bench_val.counts AS SELECT * FROM legacy.generate_dispatch($scale);
TABLE bench_val.counts;
-- The hand-written contender's findings, per run.
CREATE TABLE bench_val.hand_issues (run text, check_name text, table_name text, constraint_name text,
                                    tenant text, other_tenant text, count bigint);
VACUUM (ANALYZE) legacy.dispatch_offices, legacy.dispatch_products, legacy.dispatch_doctors,
                 legacy.dispatch_patients, legacy.dispatch_orders, legacy.dispatch_order_items;
SQL
log "generated and vacuumed in $(( $(date +%s) - started ))s"
psql_bench -At -c "SELECT tenant_ops.create_scope('dispatch', 'legacy.dispatch_offices', 'id')" >/dev/null

office_rows() { psql_bench -At -c "SELECT total_rows FROM bench_val.counts WHERE office_id = $1"; }
big_rows="$(office_rows "$BIG")"
small_rows="$(office_rows "$SMALL")"
all_rows="$(psql_bench -At -c "SELECT sum(total_rows) FROM bench_val.counts")"
log "office $BIG: $big_rows rows; office $SMALL: $small_rows rows; all offices: $all_rows rows (+ 200 products)"

declare -A secs job hwm shmem peak_anon

# record LABEL OUT: keeps the best time of LABEL and the measurements of that run.
record() {
    local label="$1" j s h m p
    IFS='|' read -r j s h m p <<<"$2"
    if [ -z "${secs[$label]:-}" ] || awk -v a="$s" -v b="${secs[$label]}" 'BEGIN { exit !(a < b) }'; then
        secs[$label]="$s"; job[$label]="$j"; hwm[$label]="$h"; shmem[$label]="$m"; peak_anon[$label]="$p"
    fi
    log "$label: ${s}s (VmHWM $h kB, RssShmem $m kB, peak RssAnon $p kB)"
}

# run_ours LABEL OFFICE ('' for all tenants)
run_ours() {
    local label="$1" office="$2" body out status
    if [ -z "$office" ]; then
        body="SELECT tenant_ops.validate_integrity('dispatch') AS job \\gset"
    else
        body="SELECT tenant_ops.validate_integrity('dispatch', :'office') AS job \\gset"
    fi
    out="$(timed_session "$body" -v office="${office:-0}" -v run=-)" \
        || die "validate_integrity (office ${office:-all}) failed: see the error above"
    record "$label" "$out"
    status="$(psql_bench -At -c "SELECT status FROM tenant_ops.jobs WHERE id = ${out%%|*}")"
    [ "$status" = succeeded ] || die "validate_integrity job ${out%%|*} ended '$status'"
}

# run_hand LABEL OFFICE ('' for all tenants); its findings go under run LABEL
run_hand() {
    local label="$1" office="$2" file out
    if [ -z "$office" ]; then file=validate_handwritten_all.sql; else file=validate_handwritten_office.sql; fi
    psql_bench -c "DELETE FROM bench_val.hand_issues WHERE run = '$label'"
    out="$(timed_session "\\i '$BENCH_DIR/$file'" -v office="${office:-0}" -v run="$label")" \
        || die "the hand-written SQL ($file) failed: see the error above"
    record "$label" "$out"
}

for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    run_ours ours_all ""
    run_hand hand_all ""
    run_ours ours_big "$BIG"
    run_hand hand_big "$BIG"
    run_ours ours_small "$SMALL"
    run_hand hand_small "$SMALL"
done

# --- 4. the findings --------------------------------------------------------------------------------
# One line per finding: check table constraint tenant->other_tenant count.
findings_ours() {
    psql_bench -At -v job="$1" <<'SQL'
SELECT format('%s %s %s %s->%s %s', check_name, table_name, constraint_name,
              coalesce(tenant, '-'), coalesce(other_tenant, '-'), count)
  FROM tenant_ops.integrity_issues WHERE job_id = :job ORDER BY 1;
SQL
}
findings_hand() {
    psql_bench -At -v run="$1" <<'SQL'
SELECT format('%s %s %s %s->%s %s', check_name, table_name, constraint_name,
              coalesce(tenant, '-'), coalesce(other_tenant, '-'), count)
  FROM bench_val.hand_issues WHERE run = :'run' ORDER BY 1;
SQL
}
expected_all="foreign_keys legacy.dispatch_order_items dispatch_order_items_product_id_fkey 5->- 1
isolation legacy.dispatch_doctors dispatch_doctors_supervisor_id_fkey 5->4 1"

# compare WHAT OURS HAND EXPECTED
compare() {
    local what="$1" ours="$2" hand="$3" expected="$4"
    if [ "$ours" != "$hand" ]; then
        printf 'validate_integrity:\n%s\nhand-written:\n%s\n' "${ours:-(nothing)}" "${hand:-(nothing)}" >&2
        die "$what: validate_integrity and the hand-written SQL disagree"
    fi
    if [ "$ours" != "$expected" ]; then
        printf 'both found:\n%s\nexpected:\n%s\n' "${ours:-(nothing)}" "${expected:-(nothing)}" >&2
        die "$what: the findings are not the planted defects"
    fi
    log "$what: both found ${ours:+$'\n'}${ours:-nothing}"
}
compare "all tenants" "$(findings_ours "${job[ours_all]}")" "$(findings_hand hand_all)" "$expected_all"
compare "office $BIG" "$(findings_ours "${job[ours_big]}")" "$(findings_hand hand_big)" ""
compare "office $SMALL" "$(findings_ours "${job[ours_small]}")" "$(findings_hand hand_small)" ""
psql_bench -c "SELECT id, tenant, result -> 'by_check' AS by_check, result -> 'bad_rows' AS bad_rows,
                      result -> 'rows_checked' AS rows_checked, result -> 'score' AS score
                 FROM tenant_ops.jobs WHERE id IN (${job[ours_all]}, ${job[ours_big]}, ${job[ours_small]}) ORDER BY id"

# --- 5. summary ---------------------------------------------------------------------------------------
summary() {
    printf '\nvalidation benchmark, scale %s (all offices %s rows; office %s %s rows; best of %s rounds)\n' \
        "$scale" "$(with_commas "$all_rows")" "$BIG" "$(with_commas "$big_rows")" "$ROUNDS"
    printf '%-36s %8s   %s\n' contender seconds "ratio (ours / hand-written)"
    local scope name ours hand
    # Targets (issue 11): one tenant <= 1.0x its hand-written anti-joins; all tenants <= 1.25x.
    local target
    for scope in all big small; do
        case "$scope" in
            all) name="all tenants:"; target=1.25 ;;
            big) name="office $BIG:"; target=1.0 ;;
            small) name="office $SMALL:"; target=1.0 ;;
        esac
        ours="${secs[ours_$scope]}"; hand="${secs[hand_$scope]}"
        awk -v n="$name" -v s="$ours" 'BEGIN { printf "%-13s %-22s %8.2f\n", n, "validate_integrity", s }'
        awk -v n="$name" -v s="$hand" -v o="$ours" -v t="$target" \
            'BEGIN { r = o / s; printf "%-13s %-22s %8.2f   %.2f (target <= %s: %s)\n",
                     n, "hand-written", s, r, t, (r <= t ? "met" : "MISSED") }'
    done
    awk -v o="$SMALL" -v s="${secs[ours_small]}" -v a="${secs[ours_all]}" \
        'BEGIN { r = s / a; printf "%-13s %-22s %8.2f   %.0f%% of all tenants (target <= 20%%: %s)\n",
                 "office " o ":", "validate_integrity", s, 100 * r, (r <= 0.2 ? "met" : "MISSED") }'
    printf 'findings agree: yes (office 5: 1 orphan order item (product 999999), 1 cross-office supervisor (office 4); office %s: none; no table without a primary key, so no duplicate check)\n' "$BIG"
    printf 'peak memory (VmHWM): office %s (%s rows) %s MB; office %s (%s rows) %s MB  [all tenants %s MB; hand-written: office %s %s MB, all %s MB]\n' \
        "$SMALL" "$(with_commas "$small_rows")" "$(mb "${hwm[ours_small]}")" \
        "$BIG" "$(with_commas "$big_rows")" "$(mb "${hwm[ours_big]}")" "$(mb "${hwm[ours_all]}")" \
        "$BIG" "$(mb "${hwm[hand_big]}")" "$(mb "${hwm[hand_all]}")"
    printf '  VmHWM includes the shared buffers the backend touched (RssShmem at the end: %s MB; %s MB  [%s MB; %s MB, %s MB]);\n' \
        "$(mb "${shmem[ours_small]}")" "$(mb "${shmem[ours_big]}")" "$(mb "${shmem[ours_all]}")" \
        "$(mb "${shmem[hand_big]}")" "$(mb "${shmem[hand_all]}")"
    printf '  private memory (RssAnon, peak sampled every 0.1 s): office %s %s MB; office %s %s MB  [%s MB; %s MB, %s MB]\n' \
        "$SMALL" "$(mb "${peak_anon[ours_small]}")" "$BIG" "$(mb "${peak_anon[ours_big]}")" \
        "$(mb "${peak_anon[ours_all]}")" "$(mb "${peak_anon[hand_big]}")" "$(mb "${peak_anon[hand_all]}")"
    printf 'total benchmark time %ss\n' "$(( $(date +%s) - bench_started ))"
}
summary
