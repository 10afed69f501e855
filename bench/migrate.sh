#!/usr/bin/env bash
# Migration benchmark: migrate_tenant against the SQL a DBA would write by hand for the same
# re-keying, on the demo generator (demo/dispatch.sql), in one run on one private cluster.
#
# Usage:
#   bench/migrate.sh [--scale N]     default scale 100: office 1 has 1,155,001 rows over 5
#                                    FK-linked tables, the other offices ~1.17M together;
#                                    --scale 5 is a quick smoke run
#
# What it does:
#   1. builds and installs the extension (release), starts a fresh cluster
#      (same settings for every contender), generates the data, VACUUM ANALYZE, creates the scope;
#   2. copies office 1 into five identical uuid-keyed targets (bench/target.sql):
#        hand-written   bench/migrate_handwritten.sql: one transaction, mapping tables
#                       old id -> gen_random_uuid(), INSERT ... SELECT per table
#        migrate uuid   tenant_ops.migrate_tenant(..., {"id_strategy": "uuid"}), default options
#                       (verification on); its job_log splits the time into copy and verify
#        migrate uuid, REPEATABLE READ
#                       the same in a REPEATABLE READ transaction (one snapshot: the tables
#                       whose parents' keys are staged are selected by joining them)
#        migrate uuid, no verify
#                       the same with {"verify": false}: the work the hand-written SQL does
#        migrate uuid5  and uuid5, no verify: the same with {"id_strategy": "uuid5"}
#        migrate uuid7  {"id_strategy": "uuid7"}: time-ordered keys (verification on)
#      each timed from the client (clock_timestamp() before and after, commit included), each
#      checked afterwards: per-table row counts equal the office's counts in legacy.* (plain SQL);
#      every run starts from an empty tenant_ops.id_map (only uuid7 writes it: uuid and uuid5
#      compute their keys);
#   3. migrates office 4 (~115k rows at scale 100) with uuid too, in a second database with the
#      same data (so it meets an empty tenant_ops.id_map, as office 1's run does);
#   3b. create_target: office 1 into tables each contender creates itself, in one transaction
#      (wal_level is minimal here, so none of them WAL-logs what it loads into its new tables):
#        keys first     bench/create_target_first.sql: the tables of bench/target.sql with their
#                       keys, indexes and foreign keys, then the hand-written load
#        keys after     bench/create_target_post.sql: the expert's way, as pg_restore does it:
#                       bare tables (bench/target_bare.sql), the load, then keys, indexes and
#                       foreign keys (bench/target_post.sql)
#        migrate create_target
#                       migrate_tenant(..., {"id_strategy": "uuid", "create_target": true}) into an
#                       empty schema, verified (default; also in a REPEATABLE READ
#                       transaction) and with {"verify": false}; the same
#                       with "uuid5" (name-based keys; uuid's are keyed by the database's secret)
#      each target checked like the others, and its keys, indexes and foreign keys compared
#      with those of bench/target.sql (catalog definitions, bench.definition_mismatches);
#   4. prints rows/s and the ratio to the hand-written throughput (with verification, and
#      without it), the peak memory (VmHWM of /proc/<backend>/status) of
#      the backends that migrated office 4 and office 1, how much of it is shared buffers
#      (RssShmem) and the peak private memory (RssAnon, sampled), then stops the cluster.
#
# Environment:
#   BENCH_PORT=P          port of the benchmark cluster on 127.0.0.1 (default 28818)
#   BENCH_SKIP_INSTALL=1  do not build/install the extension (use what is installed)
#   BENCH_ROUNDS=N        rounds of all contenders, taking turns (default 2); each keeps its
#                         fastest run and its highest memory figures
#   BENCH_SET=create_target  only the contenders of 3b (and the hand-written baseline of 2)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args BENCH_PORT 28818 "$@"
rounds="${BENCH_ROUNDS:-2}"
set_name="${BENCH_SET:-all}"
case "$set_name" in all|create_target) ;; *) die "BENCH_SET must be all or create_target, got '$set_name'" ;; esac
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, got '$rounds'"
BIG=1     # the 1M-row tenant at scale 100
SMALL=4   # the ~100k-row tenant at scale 100
bench_started=$(date +%s)

# --- 1. toolchain, extension, cluster -------------------------------------------------------------
bench_cluster bench

# --- 2. data and scope -----------------------------------------------------------------------------
# Two identical databases: bench for office $BIG, bench_small for office $SMALL, so that every
# migrate_tenant run meets the state a first migration meets (an empty tenant_ops.id_map),
# whatever ran before it. The generator is deterministic: both hold the same rows.
# setup_db DB [quiet]
setup_db() {
    local db="$1" quiet="${2:-}" started
    psql_at "$port" postgres -c "CREATE DATABASE $db"
    psql_bench -c "CREATE EXTENSION pg_tenant_ops"
    PGOPTIONS="-c client_min_messages=warning" psql_bench -f "$PROJECT_ROOT/demo/dispatch.sql"
    log "$db: generating the dispatch data at scale $scale"
    started=$(date +%s)
    if [ -n "$quiet" ]; then
        psql_bench -c "SELECT * FROM legacy.generate_dispatch($scale)" >/dev/null
    else
        psql_bench -c "SELECT * FROM legacy.generate_dispatch($scale)"
    fi
    psql_bench -c "VACUUM (ANALYZE) legacy.dispatch_offices, legacy.dispatch_products, legacy.dispatch_doctors,
                       legacy.dispatch_patients, legacy.dispatch_orders, legacy.dispatch_order_items"
    log "$db: generated and vacuumed in $(( $(date +%s) - started ))s"
    PGOPTIONS="-c client_min_messages=warning" psql_bench -f "$BENCH_DIR/checks.sql"
    psql_bench -At -c "SELECT tenant_ops.create_scope('dispatch', 'legacy.dispatch_offices', 'id')" >/dev/null
}
setup_db bench
[ "$set_name" = create_target ] || setup_db bench_small quiet

# Owned rows of an office (the numerator of rows/s) and the shared products it references.
owned_rows() {
    psql_bench -At -v office="$1" <<'SQL'
SELECT sum(n) FILTER (WHERE NOT shared) || ' ' || sum(n) FILTER (WHERE shared) FROM bench.source_counts(:office);
SQL
}
read -r big_rows big_products <<<"$(owned_rows "$BIG")"
read -r small_rows _ <<<"$(owned_rows "$SMALL")"
log "office $BIG owns $big_rows rows (+ $big_products shared products); office $SMALL owns $small_rows rows"
psql_bench -At -c "SELECT format('other offices: %s rows', sum(n)) FROM legacy.dispatch_offices f,
                          bench.source_counts(f.id) c WHERE f.id <> $BIG AND NOT c.shared"

# --- 3. the contenders ------------------------------------------------------------------------------
create_target() { psql_bench -v target="$1" -f "$BENCH_DIR/target.sql"; }

check_target() {
    local office="$1" target="$2" label="$3" bad
    bad="$(psql_bench -At -v office="$office" -v target="$target" <<'SQL'
SELECT string_agg(m, '; ') FROM bench.mismatches(:office, :'target') m;
SQL
)"
    [ -z "$bad" ] || die "$label wrote a wrong target $target for office $office: $bad"
    log "$label: $target holds exactly office $office's rows"
}

migrate_body="SELECT tenant_ops.migrate_tenant('dispatch', :'office', :'target', :'opts') AS job \\gset"
# The same in a REPEATABLE READ transaction: every statement reads one snapshot, so the tables
# whose parents' keys are staged are selected by joining them instead of their tenant filter.
migrate_body_rr="BEGIN ISOLATION LEVEL REPEATABLE READ;
$migrate_body
COMMIT;"
# body ISOLATION: the contender's psql text (rc: autocommit, read committed; rr: the above).
body() { if [ "${1:-rc}" = rr ]; then printf '%s' "$migrate_body_rr"; else printf '%s' "$migrate_body"; fi; }
# migrate_opts STRATEGY VERIFY
migrate_opts() {
    printf '{"id_strategy": "%s", "shared": "copy", "strip_prefix": "dispatch_", "verify": %s}' "$1" "$2"
}

# Seconds of a job's phases from tenant_ops.job_log: prepare (queued -> stage copy), copy
# (-> last copy step), verify (-> last table.verified; includes the self-reference fixup
# between the two), and the job status.
job_phases() {
    psql_bench -At -F ' ' -v job="$1" <<'SQL'
SELECT round(extract(epoch FROM stage_at - queued_at)::numeric, 3),
       round(extract(epoch FROM last_step - stage_at)::numeric, 3),
       round(extract(epoch FROM coalesce(last_verified, last_step) - last_step)::numeric, 3),
       (SELECT status FROM tenant_ops.jobs WHERE id = :job),
       (SELECT count(*) FILTER (WHERE NOT coalesce((details ->> 'verified')::boolean, false))
          FROM tenant_ops.job_tables WHERE job_id = :job)
  FROM (SELECT min(at) FILTER (WHERE event = 'job.queued') AS queued_at,
               min(at) FILTER (WHERE event = 'stage') AS stage_at,
               max(at) FILTER (WHERE event = 'step') AS last_step,
               max(at) FILTER (WHERE event = 'table.verified') AS last_verified
          FROM tenant_ops.job_log WHERE job_id = :job) l;
SQL
}

# Seconds per table: copy (its batches) and verify (its table.verified event; the first one,
# products, also carries the self-reference fixup of every table).
job_tables_report() {
    psql_bench -v job="$1" <<'SQL'
SELECT l.table_name AS "table", max(t.rows_done) AS rows,
       round(sum(l.dt) FILTER (WHERE l.event = 'step'), 2) AS copy_s,
       count(*) FILTER (WHERE l.event = 'step') AS batches,
       round(sum(l.dt) FILTER (WHERE l.event = 'table.verified'), 2) AS verify_s
  FROM (SELECT event, table_name, extract(epoch FROM at - lag(at) OVER (ORDER BY id))::numeric AS dt
          FROM tenant_ops.job_log WHERE job_id = :job) l
  JOIN tenant_ops.job_tables t ON t.job_id = :job AND t.source = l.table_name
 WHERE l.event IN ('step', 'table.verified')
 GROUP BY l.table_name, t.step ORDER BY t.step;
SQL
}

declare -A secs hwm shmem peak_anon verify_s copy_s prepare_s

# keep_best LABEL SECS HWM SHMEM ANON [PREPARE COPY VERIFY]
# Over the rounds a contender keeps its fastest run (with that run's phases) and its highest
# memory figures: time is what the machine allowed at best, memory what the work needed at most.
keep_best() {
    local label="$1"
    if [ -z "${secs[$label]:-}" ] || awk -v a="$2" -v b="${secs[$label]}" 'BEGIN { exit !(a < b) }'; then
        secs[$label]="$2"
        prepare_s[$label]="${6:-0}"; copy_s[$label]="${7:-0}"; verify_s[$label]="${8:-0}"
    fi
    if [ -z "${hwm[$label]:-}" ] || [ "$3" -gt "${hwm[$label]}" ]; then hwm[$label]="$3"; fi
    if [ -z "${shmem[$label]:-}" ] || [ "$4" -gt "${shmem[$label]}" ]; then shmem[$label]="$4"; fi
    if [ -z "${peak_anon[$label]:-}" ] || [ "$5" -gt "${peak_anon[$label]}" ]; then peak_anon[$label]="$5"; fi
}

# run_hand ROUND
run_hand() {
    local target="t_hand_$1" out s h sh a
    create_target "$target"
    log "hand-written, round $1: office $BIG -> $target"
    out="$(timed_session "\\i '$BENCH_DIR/migrate_handwritten.sql'" -v office="$BIG" -v target="$target")" \
        || die "the hand-written SQL failed: see the error above"
    IFS='|' read -r _ s h sh a <<<"$out"
    log "hand-written: ${s}s"
    check_target "$BIG" "$target" "the hand-written SQL"
    keep_best hand "$s" "$h" "$sh" "$a"
}

# run_ours LABEL ROUND OFFICE TARGET STRATEGY DATABASE VERIFY [ISOLATION]
# Every run starts from an empty tenant_ops.id_map (TRUNCATE, as the superuser of this
# private cluster): a run that found the mappings of an earlier one would write none.
run_ours() {
    local label="$1" round="$2" office="$3" target="$4_$2" strategy="$5" db="$6" verify="$7" iso="${8:-rc}"
    local out phases status unverified j s h sh a pr co ve
    create_target "$target"
    psql_bench -q -c "TRUNCATE tenant_ops.id_map"
    log "migrate_tenant $strategy (verify $verify), round $round: office $office -> $db.$target"
    out="$(timed_session "$(body "$iso")" -v office="$office" -v target="$target" \
                            -v opts="$(migrate_opts "$strategy" "$verify")")" \
        || die "migrate_tenant ($strategy, office $office -> $target) failed: see the error above"
    IFS='|' read -r j s h sh a <<<"$out"
    phases="$(job_phases "$j")"
    read -r pr co ve status unverified <<<"$phases"
    [ "$status" = succeeded ] || die "migrate_tenant job $j ended '$status'"
    if [ "$verify" = true ]; then
        [ "$unverified" = 0 ] || die "migrate_tenant job $j: $unverified tables not verified"
    fi
    log "migrate_tenant $strategy: job $j, ${s}s (prepare ${pr}s, copy ${co}s, verify ${ve}s)"
    job_tables_report "$j"
    check_target "$office" "$target" "migrate_tenant $strategy (job $j)"
    keep_best "$label" "$s" "$h" "$sh" "$a" "$pr" "$co" "$ve"
}

# The create_target reference: the keys, indexes and foreign keys of bench/target.sql.
create_target t_reference >/dev/null
check_definitions() {
    local target="$1" label="$2" bad
    bad="$(psql_bench -At -v target="$target" <<'SQL'
SELECT string_agg(m, E'\n') FROM bench.definition_mismatches(:'target', 't_reference') m;
SQL
)"
    [ -z "$bad" ] || die "$label: the keys, indexes or foreign keys of $target differ from bench/target.sql:
$bad"
    log "$label: $target has exactly the keys, indexes and foreign keys of bench/target.sql"
}

# run_script LABEL ROUND SCRIPT: a hand-written create_target contender (it creates its tables).
run_script() {
    local label="$1" target="t_$1_$2" script="$3" out s h sh a
    log "$label ($script), round $2: office $BIG -> $target"
    out="$(timed_session "\\i '$BENCH_DIR/$script'" -v office="$BIG" -v target="$target")" \
        || die "$script failed: see the error above"
    IFS='|' read -r _ s h sh a <<<"$out"
    log "$label: ${s}s"
    check_target "$BIG" "$target" "$script"
    check_definitions "$target" "$script"
    keep_best "$label" "$s" "$h" "$sh" "$a"
}

declare -A build_s
# run_create_target LABEL ROUND VERIFY [STRATEGY [ISOLATION]]: migrate_tenant with create_target
# into an empty schema (id_strategy uuid unless given, read committed unless rr).
run_create_target() {
    local label="$1" target="t_$1_$2" verify="$3" strategy="${4:-uuid}" iso="${5:-rc}" out j s h sh a pr co ve status unverified b
    psql_bench -q -c "CREATE SCHEMA $target" -c "TRUNCATE tenant_ops.id_map"
    log "migrate_tenant create_target $strategy (verify $verify), round $2: office $BIG -> $target"
    out="$(timed_session "$(body "$iso")" -v office="$BIG" -v target="$target" \
              -v opts="$(migrate_opts "$strategy" "$verify" | sed 's/}$/, "create_target": true}/')")" \
        || die "migrate_tenant with create_target failed: see the error above"
    IFS='|' read -r j s h sh a <<<"$out"
    read -r pr co ve status unverified <<<"$(job_phases "$j")"
    [ "$status" = succeeded ] || die "migrate_tenant job $j ended '$status'"
    b="$(psql_bench -At -c "SELECT round(coalesce(sum((details->>'seconds')::numeric), 0), 3)
                              FROM tenant_ops.job_log WHERE job_id = $j AND event = 'constraint.built'")"
    log "migrate_tenant create_target: job $j, ${s}s (prepare ${pr}s, copy ${co}s, keys/indexes/FKs ${b}s)"
    psql_bench -c "SELECT table_name AS \"table\", round((details->>'seconds')::numeric, 2) AS seconds, message AS statement
                     FROM tenant_ops.job_log WHERE job_id = $j AND event = 'constraint.built' ORDER BY id"
    check_target "$BIG" "$target" "migrate_tenant create_target (job $j)"
    check_definitions "$target" "migrate_tenant create_target (job $j)"
    if [ -z "${secs[$label]:-}" ] || awk -v a="$s" -v b="${secs[$label]}" 'BEGIN { exit !(a < b) }'; then
        build_s[$label]="$b"
    fi
    keep_best "$label" "$s" "$h" "$sh" "$a" "$pr" "$co" "$ve"
}

# The contenders take turns, round after round, so that a slow spell of the machine (or its
# disk) does not always fall on the same one.
for round in $(seq "$rounds"); do
    run_hand "$round"
    run_script first "$round" create_target_first.sql
    run_script post "$round" create_target_post.sql
    run_create_target ct "$round" true
    run_create_target ct_rr "$round" true uuid rr
    run_create_target ct_nv "$round" false
    run_create_target ct5 "$round" true uuid5
    run_create_target ct5_nv "$round" false uuid5
    [ "$set_name" = all ] || continue
    run_ours uuid "$round" "$BIG" t_uuid uuid bench true
    run_ours uuid_rr "$round" "$BIG" t_uuid_rr uuid bench true rr
    run_ours uuid_nv "$round" "$BIG" t_uuid_nv uuid bench false
    run_ours uuid5 "$round" "$BIG" t_uuid5 uuid5 bench true
    run_ours uuid5_nv "$round" "$BIG" t_uuid5_nv uuid5 bench false
    run_ours uuid7 "$round" "$BIG" t_uuid7 uuid7 bench true
    run_ours small "$round" "$SMALL" t_uuid uuid bench_small true
done

# --- 4. summary ---------------------------------------------------------------------------------------
summary_create_target() {
    printf '\ncreate_target, scale %s, fastest of %s rounds: office %s, %s rows; every contender creates its tables in its transaction\n' \
        "$scale" "$rounds" "$BIG" "$(with_commas "$big_rows")"
    printf '%-34s %9s %10s %10s %10s %8s %8s\n' contender seconds rows/s "vs first" "vs after" "VmHWM MB" "RssAnon"
    local l name
    for l in first post ct ct_rr ct_nv ct5 ct5_nv; do
        case "$l" in
            first)  name="hand-written, keys first" ;;
            post)   name="hand-written, keys after (expert)" ;;
            ct)     name="migrate create_target uuid" ;;
            ct_rr)  name="  the same, REPEATABLE READ" ;;
            ct_nv)  name="  the same, no verify" ;;
            ct5)    name="migrate create_target uuid5" ;;
            ct5_nv) name="  the same, no verify" ;;
        esac
        awk -v name="$name" -v r="$big_rows" -v s="${secs[$l]}" -v f="${secs[first]}" -v p="${secs[post]}" \
            -v h="$(mb "${hwm[$l]}")" -v a="$(mb "${peak_anon[$l]}")" \
            'BEGIN { printf "%-34s %9.2f %10.0f %10.2f %10.2f %8s %8s\n", name, s, r / s, f / s, p / s, h, a }'
    done
    for l in ct ct_rr ct_nv ct5 ct5_nv; do
        awk -v l="$l" -v b="${build_s[$l]}" -v p="${prepare_s[$l]}" -v c="${copy_s[$l]}" -v v="${verify_s[$l]}" \
            'BEGIN { printf "%-7s prepare %.2fs, copy %.2fs, keys/indexes/FKs %.2fs, fixup and verification %.2fs\n", l, p, c, b, (v > b ? v - b : 0) }'
    done
}

summary() {
    local hand="${secs[hand]}"
    printf '\nmigration benchmark, scale %s, fastest of %s rounds: office %s, %s rows over 5 tables (+ %s shared products copied by every contender)\n' \
        "$scale" "$rounds" "$BIG" "$(with_commas "$big_rows")" "$big_products"
    printf '%-22s %10s %9s %10s   %s\n' contender rows seconds rows/s "ratio vs hand-written"
    awk -v r="$big_rows" -v s="$hand" \
        'BEGIN { printf "%-22s %10d %9.2f %10.0f   %s\n", "hand-written", r, s, r / s, "1.00" }'
    local l
    for l in uuid uuid5; do
        awk -v name="migrate $l" -v r="$big_rows" -v s="${secs[$l]}" -v h="$hand" -v v="${verify_s[$l]}" \
            'BEGIN { printf "%-22s %10d %9.2f %10.0f   %.2f (verification %.2fs of it)\n",
                     name, r, s, r / s, h / s, v }'
        [ "$l" = uuid ] && awk -v name="migrate uuid, REPEATABLE READ" -v r="$big_rows" -v s="${secs[uuid_rr]}" -v h="$hand" -v v="${verify_s[uuid_rr]}" \
            'BEGIN { printf "%-22s %10d %9.2f %10.0f   %.2f (verification %.2fs of it; one snapshot)\n",
                     name, r, s, r / s, h / s, v }'
        awk -v name="migrate $l, no verify" -v r="$big_rows" -v s="${secs[${l}_nv]}" -v h="$hand" \
            'BEGIN { printf "%-22s %10d %9.2f %10.0f   %.2f (the same work as the hand-written SQL)\n",
                     name, r, s, r / s, h / s }'
    done
    awk -v name="migrate uuid7" -v r="$big_rows" -v s="${secs[uuid7]}" -v h="$hand" -v v="${verify_s[uuid7]}" \
        'BEGIN { printf "%-22s %10d %9.2f %10.0f   %.2f (verification %.2fs of it)\n",
                 name, r, s, r / s, h / s, v }'
    awk -v o="$SMALL" -v rc="$(with_commas "$small_rows")" -v r="$small_rows" -v s="${secs[small]}" \
        -v p="${prepare_s[small]}" -v c="${copy_s[small]}" -v v="${verify_s[small]}" \
        'BEGIN { printf "office %s (%s rows), migrate uuid: %.2fs, %.0f rows/s (prepare %.2fs, copy %.2fs, verify %.2fs)\n",
                 o, rc, s, r / s, p, c, v }'
    printf 'peak memory (VmHWM, highest of the rounds): office %s (%s rows) %s MB; office %s (%s rows) %s MB  [hand-written, office %s: %s MB]\n' \
        "$SMALL" "$(with_commas "$small_rows")" "$(mb "${hwm[small]}")" \
        "$BIG" "$(with_commas "$big_rows")" "$(mb "${hwm[uuid]}")" "$BIG" "$(mb "${hwm[hand]}")"
    printf '  VmHWM includes the shared buffers the backend touched (RssShmem at the end: %s MB; %s MB  [%s MB]);\n' \
        "$(mb "${shmem[small]}")" "$(mb "${shmem[uuid]}")" "$(mb "${shmem[hand]}")"
    printf '  private memory (RssAnon, peak sampled every 0.1 s): office %s %s MB; office %s %s MB  [%s MB]; uuid5 office %s %s MB\n' \
        "$SMALL" "$(mb "${peak_anon[small]}")" "$BIG" "$(mb "${peak_anon[uuid]}")" "$(mb "${peak_anon[hand]}")" \
        "$BIG" "$(mb "${peak_anon[uuid5]}")"
}
if [ "$set_name" = all ]; then summary; fi
summary_create_target
printf 'total benchmark time %ss\n' "$(( $(date +%s) - bench_started ))"
