#!/usr/bin/env bash
# Import benchmark: import_data against COPY FROM and pgloader, one file of N rows as CSV and
# then as NDJSON, into one table with a primary key, in one run on one private cluster.
#
# Usage:
#   bench/import.sh [--scale N]      rows = N x 10,000 (default 100: 1,000,000 rows);
#                                    --scale 5 is a quick smoke run
#
# What it does:
#   1. builds and installs the extension (release), starts a fresh cluster (bench/lib.sh's
#      settings), generates the rows (id, name, email, born, score, active, note) and writes
#      them with COPY into the import directory as people.csv (CSV, header) and people.ndjson
#      (row_to_json, one object per line);
#   2. loads each file into an empty copy of the table (primary key on id), in alternating
#      rounds (ROUNDS), keeping each contender's best time:
#        copy            COPY target FROM 'people.csv' (server-side, the physical limit);
#                        for NDJSON: COPY of the lines into a temporary jsonb table, then
#                        INSERT ... SELECT jsonb_populate_record (what COPY can do with NDJSON)
#        import          tenant_ops.import_data('target', file)   (no rules)
#        import+rules    the same with rules: email (email, required), name (max_length,
#                        pattern), id (unique within the file)
#        pgloader        pgloader (Debian package) with a LOAD CSV command (CSV only: pgloader
#                        reads no JSON)
#      and, for SQL, the output of `pg_dump --data-only --inserts` (one INSERT per row):
#        psql            psql -1 -f people.sql (the statements run, in one transaction)
#        import          tenant_ops.import_data('target', 'people.sql', 'sql') (parsed, not run)
#      each run checked afterwards: the target holds every row once (count, md5 of the rows);
#      and a `unique` rule against a table that holds rows already: the target holding as
#      many other rows (other ids and emails), the file loaded with email unique:
#        held_antijoin   COPY into a temporary table, then INSERT ... WHERE NOT EXISTS (the
#                        rows whose email the table holds: one hash anti-join)
#        held_import     tenant_ops.import_data('target', file, 'csv', email unique), which
#                        looks each batch's emails up in a copy of the table's (no index
#                        leads with email)
#   3. prints the times, rows per second, ratios, and the session backend's peak memory.
#
# Environment:
#   BENCH_IMPORT_PORT=P   port of the benchmark cluster on 127.0.0.1 (default 28847)
#   BENCH_SKIP_INSTALL=1  do not build/install the extension (use what is installed)
#   ROUNDS=R              rounds per contender (default 3)
#   ONLY="csv_copy csv_import"  only these contenders (and only the files they read are made):
#                         `ONLY="csv_copy csv_import" bench/import.sh --scale 2200` is the
#                         2 GB memory run
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args BENCH_IMPORT_PORT 28847 "$@"
ROUNDS="${ROUNDS:-3}"
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
wants() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1"* ]]; } # any contender starting so
rows=$((scale * 10000))
bench_started=$(date +%s)

bench_cluster bench_import
command -v pgloader >/dev/null || die "pgloader is missing (scripts/setup.sh installs it)"
psql_at "$port" postgres -c "CREATE DATABASE $db" >/dev/null
psql_bench -q -c "CREATE EXTENSION pg_tenant_ops"
imp="$(psql_bench -At -c "SELECT current_setting('data_directory')")/pg_tenant_ops_imports"
# The directory is made by the first import that looks into it.
psql_bench -q -c "SELECT tenant_ops.import_data('pg_class', 'none.csv')" 2>/dev/null || true

log "generating $rows rows"
psql_bench -q <<SQL
CREATE TABLE src (id int PRIMARY KEY, name text NOT NULL, email text, born date, score numeric(8,2),
                  active boolean, note text);
INSERT INTO src SELECT g, 'name ' || g, 'user' || g || '@example.com', date '1950-01-01' + g % 20000,
                       (g % 100000) / 100.0, g % 3 = 0, md5(g::text)
  FROM generate_series(1, $rows) g;
CREATE TABLE target (LIKE src INCLUDING ALL);
COPY src TO '$imp/people.csv' WITH (FORMAT csv, HEADER);
VACUUM ANALYZE;
SQL
if wants ndjson_; then
    psql_bench -q -c "COPY (SELECT row_to_json(s) FROM src s) TO '$imp/people.ndjson' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')"
fi
if wants sql_; then
    # pg_dump's INSERTs of src, as into target.
    "$PG_BIN/pg_dump" -h 127.0.0.1 -p "$port" -U postgres -d "$db" --data-only --inserts -t public.src \
        | sed 's/^INSERT INTO public\.src /INSERT INTO public.target /' >"$work/people.sql"
    cp "$work/people.sql" "$imp/people.sql"
fi
want="$(psql_bench -At -c "SELECT count(*) || ' ' || sum(hashtextextended(s::text, 0)::numeric) FROM src s")"
csv_bytes="$(stat -c %s "$imp/people.csv")"
ndjson_bytes="$(stat -c %s "$imp/people.ndjson" 2>/dev/null || echo 0)"
log "people.csv: $(with_commas "$csv_bytes") bytes; people.ndjson: $(with_commas "$ndjson_bytes") bytes"

RULES='{"rules": {"email": {"email": true, "required": true}, "name": {"max_length": 100, "pattern": "^name [0-9]+$"}, "id": {"unique": true}}}'

declare -A secs hwm anon
best() { # best LABEL SECONDS [HWM ANON]
    if [ -z "${secs[$1]:-}" ] || awk -v a="$2" -v b="${secs[$1]}" 'BEGIN { exit !(a < b) }'; then
        secs[$1]="$2"; hwm[$1]="${3:-0}"; anon[$1]="${4:-0}"
    fi
    log "$1: ${2}s"
}
check() {
    local got
    got="$(psql_bench -At -c "SELECT count(*) || ' ' || sum(hashtextextended(t::text, 0)::numeric) FROM target t")"
    [ "$got" = "$want" ] || die "$1: the target differs from the source ($got vs $want)"
}
reset() { psql_bench -q -c "TRUNCATE target" -c "VACUUM target"; }

session() { # session LABEL BODY
    local out j s h m a status
    want "$1" || return 0
    reset
    out="$(timed_session "$2")"
    IFS='|' read -r j s h m a <<<"$out"
    if [ "$j" != "-" ]; then
        status="$(psql_bench -At -c "SELECT status FROM tenant_ops.jobs WHERE id = $j")"
        [ "$status" = succeeded ] || die "$1: job $j ended '$status'"
    fi
    check "$1"
    best "$1" "$s" "$h" "$a"
}

pgloader_run() {
    local load="$work/people.load" t0 t1
    want csv_pgloader || return 0
    reset
    cat >"$load" <<LOAD
LOAD CSV
     FROM '$imp/people.csv' (id, name, email, born, score, active, note)
     INTO postgresql://postgres@127.0.0.1:$port/$db?tablename=target
     WITH skip header = 1, fields terminated by ',', fields optionally enclosed by '"',
          fields escaped by double-quote;
LOAD
    psql_bench -q -c "CHECKPOINT"
    t0=$(date +%s.%N)
    pgloader --quiet "$load" >"$work/pgloader.log" 2>&1 || { tail -n 30 "$work/pgloader.log"; die "pgloader failed"; }
    t1=$(date +%s.%N)
    check pgloader
    best csv_pgloader "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
}

psql_run() {
    local t0 t1
    want sql_psql || return 0
    reset
    psql_bench -q -c "CHECKPOINT"
    t0=$(date +%s.%N)
    psql_bench -q -1 -v ON_ERROR_STOP=1 -f "$work/people.sql" >/dev/null
    t1=$(date +%s.%N)
    check psql
    best sql_psql "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
}

# held_session LABEL BODY: BODY into a target that holds as many other rows, checked: the file's
# rows once, the other rows untouched.
held_session() {
    local out j s h m a status got
    want "$1" || return 0
    psql_bench -q -c "TRUNCATE target" \
        -c "INSERT INTO target SELECT id + $rows, name, 'held.' || email, born, score, active, note FROM src" \
        -c "VACUUM ANALYZE target"
    out="$(timed_session "$2")"
    IFS='|' read -r j s h m a <<<"$out"
    if [ "$j" != "-" ]; then
        status="$(psql_bench -At -c "SELECT status FROM tenant_ops.jobs WHERE id = $j")"
        [ "$status" = succeeded ] || die "$1: job $j ended '$status'"
    fi
    got="$(psql_bench -At -c "SELECT count(*) || ' ' || sum(hashtextextended(t::text, 0)::numeric) FROM target t WHERE id <= $rows")"
    [ "$got" = "$want" ] || die "$1: the file's rows in the target differ from the source ($got vs $want)"
    got="$(psql_bench -At -c "SELECT count(*) FROM target WHERE id > $rows AND email LIKE 'held.%'")"
    [ "$got" = "$rows" ] || die "$1: the target holds $got of its $rows other rows"
    best "$1" "$s" "$h" "$a"
}

for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    session csv_copy "COPY target FROM '$imp/people.csv' WITH (FORMAT csv, HEADER);"
    session csv_import "SELECT tenant_ops.import_data('target', 'people.csv', 'csv') AS job \\gset"
    session csv_import_rules "SELECT tenant_ops.import_data('target', 'people.csv', 'csv', '$RULES') AS job \\gset"
    pgloader_run
    session ndjson_copy "CREATE TEMP TABLE lines (line jsonb);
COPY lines FROM '$imp/people.ndjson' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02');
INSERT INTO target SELECT (jsonb_populate_record(NULL::target, line)).* FROM lines;"
    session ndjson_import "SELECT tenant_ops.import_data('target', 'people.ndjson', 'ndjson') AS job \\gset"
    session ndjson_import_rules "SELECT tenant_ops.import_data('target', 'people.ndjson', 'ndjson', '$RULES') AS job \\gset"
    psql_run
    session sql_import "SELECT tenant_ops.import_data('target', 'people.sql', 'sql') AS job \\gset"
    held_session held_antijoin "CREATE TEMP TABLE incoming (LIKE target);
COPY incoming FROM '$imp/people.csv' WITH (FORMAT csv, HEADER);
INSERT INTO target SELECT * FROM incoming i WHERE NOT EXISTS (SELECT FROM target t WHERE t.email = i.email);"
    held_session held_import "SELECT tenant_ops.import_data('target', 'people.csv', 'csv', '{\"rules\": {\"email\": {\"unique\": true}}}') AS job \\gset"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
rate() { awk -v r="$rows" -v s="$1" 'BEGIN { printf "%.0f", r / s }'; }
printf '\n%s rows, best of %s rounds (machine: %s cores, load %s at the end)\n' \
    "$(with_commas "$rows")" "$ROUNDS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %9s %12s %14s %14s %12s\n' contender seconds rows/s "vs COPY" "vs pgloader" "RssAnon MB"
for k in csv_copy csv_import csv_import_rules csv_pgloader ndjson_copy ndjson_import ndjson_import_rules sql_psql sql_import \
         held_antijoin held_import; do
    [ -n "${secs[$k]:-}" ] || continue
    base="${k%%_*}_copy"
    [ "${k%%_*}" = sql ] && base=sql_psql
    [ "${k%%_*}" = held ] && base=held_antijoin
    vs_pg="-"
    [ "${k%%_*}" = csv ] && [ -n "${secs[csv_pgloader]:-}" ] && vs_pg="$(ratio "${secs[csv_pgloader]}" "${secs[$k]}")x"
    vs_base="-"
    [ -n "${secs[$base]:-}" ] && vs_base="$(ratio "${secs[$base]}" "${secs[$k]}")x"
    printf '%-22s %9s %12s %14s %14s %12s\n' "$k" "${secs[$k]}" "$(rate "${secs[$k]}")" \
        "$vs_base" "$vs_pg" "$(mb "${anon[$k]}")"
done
printf '(vs COPY and vs pgloader: their time / this time, above 1 is faster than them; for sql the base is psql -1 -f,\n for held_ the hand-written anti-join)\n'
log "done in $(( $(date +%s) - bench_started ))s"
