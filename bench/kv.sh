#!/usr/bin/env bash
# Key-value import benchmark: import_kv against the script a developer writes by hand
# (`redis-cli --scan`, one GET/HMGET per key, COPY into a staging table, INSERT ... SELECT),
# on the same Redis keys, in one run, with a private Redis and a private cluster.
#
# Usage:
#   bench/kv.sh [--scale N]      keys = N x 10,000 (default 100: 1,000,000 keys: half JSON
#                                strings `tenant:<id>`, half hashes `tenant:<id>:settings`);
#                                --scale 2 is a quick smoke run
#
# What it does:
#   1. builds and installs the extension (release), starts a fresh cluster (bench/lib.sh's
#      settings) and a redis-server without persistence on 127.0.0.1, seeds the keys with
#      `redis-cli --pipe`;
#   2. in alternating rounds (ROUNDS), each into empty tables (tenants: primary key on
#      subdomain; tenant_settings), keeping each contender's best time:
#        import_kv     tenant_ops.import_kv('bench', <mapping of both patterns>)
#        handwritten   redis-cli --scan --pattern 'tenant:*' > keys; one GET per JSON key and
#                      one HMGET per hash key through redis-cli (a round trip each, as a
#                      script calling GET per key does), paste keys and values, \copy into
#                      staging tables, INSERT ... SELECT with the JSON taken apart in SQL
#      each run checked afterwards: both tables hold every key once (count, md5 of the rows);
#   3. prints times, keys per second, the ratio, and import_kv's session backend peak memory.
#
# Environment:
#   BENCH_KV_PORT=P        port of the benchmark cluster on 127.0.0.1 (default 28903)
#   BENCH_KV_REDIS_PORT=P  port of its redis-server on 127.0.0.1 (default 28961)
#   BENCH_SKIP_INSTALL=1   do not build/install the extension (use what is installed)
#   ROUNDS=R               rounds per contender (default 2)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args BENCH_KV_PORT 28903 "$@"
ROUNDS="${ROUNDS:-2}"
rport="${BENCH_KV_REDIS_PORT:-28961}"
keys=$((scale * 10000))
tenants=$((keys / 2))
bench_started=$(date +%s)
command -v redis-server >/dev/null || die "redis-server is missing (scripts/setup.sh installs it)"

bench_cluster bench_kv
rdir="$work/redis"
mkdir -p "$rdir"
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$rdir" \
    --daemonize no >"$rdir/log" 2>&1 &
rpid=$!
trap 'kill "$rpid" 2>/dev/null || true; cluster_stop "$dir" || true; rm -rf "$work"' EXIT
rcli() { redis-cli -h 127.0.0.1 -p "$rport" "$@"; }
for _ in $(seq 100); do [ "$(rcli PING 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(rcli PING)" = PONG ] || die "redis-server on port $rport does not answer"

log "seeding $(with_commas "$keys") keys ($tenants JSON strings, $tenants hashes)"
awk -v n="$tenants" 'function cmd(a, k, i, s) { s = "*" k "\r\n"; for (i = 1; i <= k; i++) s = s "$" length(a[i]) "\r\n" a[i] "\r\n"; printf "%s", s }
BEGIN {
  for (g = 1; g <= n; g++) {
    a[1] = "SET"; a[2] = "tenant:t" g
    a[3] = "{\"name\":\"Tenant " g "\",\"email\":\"admin@t" g ".example.com\",\"plan\":\"" (g % 3 == 0 ? "pro" : "free") "\",\"createdAt\":\"2021-0" (g % 9 + 1) "-1" (g % 9) "T10:00:00Z\"}"
    cmd(a, 3)
    b[1] = "HSET"; b[2] = "tenant:t" g ":settings"; b[3] = "theme"; b[4] = (g % 2 ? "dark" : "light"); b[5] = "locale"; b[6] = (g % 5 ? "en" : "de")
    cmd(b, 6)
  }
}' | rcli --pipe >/dev/null
[ "$(rcli DBSIZE)" = "$keys" ] || die "expected $keys keys, Redis holds $(rcli DBSIZE)"

psql_at "$port" postgres -c "CREATE DATABASE $db" >/dev/null
psql_bench -q <<SQL
CREATE EXTENSION pg_tenant_ops;
CREATE TABLE tenants (subdomain text PRIMARY KEY, name text NOT NULL, email text, plan text, created_at timestamptz);
CREATE TABLE tenant_settings (subdomain text PRIMARY KEY, theme text, locale text);
CREATE TABLE stage_t (k text, v text);
CREATE TABLE stage_s (k text, theme text, locale text);
SELECT tenant_ops.create_kv_source('bench', 'redis://127.0.0.1:$rport/0') IS NOT NULL AS source_created;
SQL

MAPPING='[{"pattern": "tenant:{subdomain}", "table": "tenants",
  "columns": {"subdomain": "{subdomain}", "name": "$.name", "email": "$.email", "plan": "$.plan", "created_at": "$.createdAt"}},
 {"pattern": "tenant:{subdomain}:settings", "table": "tenant_settings",
  "columns": {"subdomain": "{subdomain}", "theme": "field:theme", "locale": "field:locale"}}]'

declare -A secs anon
best() { # best LABEL SECONDS [ANON]
    if [ -z "${secs[$1]:-}" ] || awk -v a="$2" -v b="${secs[$1]}" 'BEGIN { exit !(a < b) }'; then
        secs[$1]="$2"; anon[$1]="${3:-0}"
    fi
    log "$1: ${2}s"
}
digest() {
    psql_bench -At -c "SELECT (SELECT count(*) || ' ' || md5(string_agg(t::text, '|' ORDER BY subdomain)) FROM tenants t)
                          || ' / ' || (SELECT count(*) || ' ' || md5(string_agg(s::text, '|' ORDER BY subdomain)) FROM tenant_settings s)"
}
reset() { psql_bench -q -c "TRUNCATE tenants, tenant_settings, stage_t, stage_s" -c "VACUUM tenants, tenant_settings"; }
want=""
check() {
    local got
    got="$(digest)"
    case "$got" in "$tenants "*" / $tenants "*) ;; *) die "$1: not every key arrived ($got)";; esac
    if [ -z "$want" ]; then want="$got"; fi
    [ "$got" = "$want" ] || die "$1: the tables differ from the first run's ($got vs $want)"
}

import_kv_run() {
    local out j s h m a status
    reset
    out="$(timed_session "SELECT tenant_ops.import_kv('bench', '$MAPPING', '{\"batch_size\": 10000}') AS job \\gset")"
    IFS='|' read -r j s h m a <<<"$out"
    status="$(psql_bench -At -c "SELECT status FROM tenant_ops.jobs WHERE id = $j")"
    [ "$status" = succeeded ] || die "import_kv: job $j ended '$status'"
    check import_kv
    best import_kv "$s" "$a"
}

handwritten_run() {
    local t0 t1 k="$work/keys"
    reset
    psql_bench -q -c "CHECKPOINT"
    t0=$(date +%s.%N)
    rcli --scan --pattern 'tenant:*' >"$k.all"
    grep -v ':settings$' "$k.all" >"$k.t" || true
    grep ':settings$' "$k.all" >"$k.s" || true
    sed 's/^/GET /' "$k.t" | rcli --raw >"$k.tv"
    sed 's/^/HMGET /; s/$/ theme locale/' "$k.s" | rcli --raw | paste - - >"$k.sv"
    paste "$k.t" "$k.tv" | psql_bench -q -c "\\copy stage_t (k, v) FROM STDIN"
    paste "$k.s" "$k.sv" | psql_bench -q -c "\\copy stage_s (k, theme, locale) FROM STDIN"
    psql_bench -q <<'SQL'
INSERT INTO tenants SELECT split_part(k, ':', 2), j->>'name', j->>'email', j->>'plan', (j->>'createdAt')::timestamptz
  FROM (SELECT k, v::jsonb AS j FROM stage_t) s;
INSERT INTO tenant_settings SELECT split_part(k, ':', 2), theme, locale FROM stage_s;
SQL
    t1=$(date +%s.%N)
    check handwritten
    best handwritten "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
}

for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    import_kv_run
    handwritten_run
done

rate() { awk -v r="$keys" -v s="$1" 'BEGIN { printf "%.0f", r / s }'; }
printf '\n%s keys, best of %s rounds (machine: %s cores, load %s at the end)\n' \
    "$(with_commas "$keys")" "$ROUNDS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %9s %10s %12s %16s\n' contender seconds keys/s "vs script" "RssAnon MB"
for c in import_kv handwritten; do
    printf '%-14s %9s %10s %12s %16s\n' "$c" "${secs[$c]}" "$(rate "${secs[$c]}")" \
        "$(awk -v a="${secs[handwritten]}" -v b="${secs[$c]}" 'BEGIN { printf "%.2fx", a / b }')" \
        "$([ "$c" = import_kv ] && mb "${anon[$c]}" || echo -)"
done
printf '(vs script: the script'"'"'s time / this time, above 1 is faster; RssAnon: peak private memory of the session backend)\n'
log "done in $(( $(date +%s) - bench_started ))s"
