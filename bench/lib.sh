# Shared by the benchmarks: arguments, toolchain and extension (always into a private copy of
# PostgreSQL), and for those that generate the dispatch data on a cluster of their own
# (migrate.sh, validate.sh, backup.sh, import.sh) one cluster with the same settings for every
# contender and the timed session that measures one contender.
# Source it; it sources scripts/lib.sh.
# shellcheck shell=bash

# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
LOG_TAG=bench
# shellcheck disable=SC2034  # used by the scripts that source this file
BENCH_DIR="$PROJECT_ROOT/bench"

# The calling script's header comment, up to `set -euo`.
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# bench_args PORT_VARIABLE DEFAULT_PORT ARGS...
# Sets `scale` (--scale N, default 100) and `port` (from $PORT_VARIABLE, else DEFAULT_PORT).
bench_args() {
    local port_var="$1"
    port="${!port_var:-$2}"
    shift 2
    scale=100
    while [ $# -gt 0 ]; do
        case "$1" in
            --scale)   [ $# -ge 2 ] || die "--scale needs a value"; scale="$2"; shift 2 ;;
            --scale=*) scale="${1#--scale=}"; shift ;;
            -h|--help) usage; exit 0 ;;
            *)         usage >&2; die "unknown argument: $1" ;;
        esac
    done
    [[ "$scale" =~ ^[1-9][0-9]*$ ]] || die "scale must be a positive integer, got '$scale'"
    [[ "$port" =~ ^[1-9][0-9]*$ ]] || die "$port_var must be a port number, got '$port'"
}

# bench_quick_args PORT_VARIABLE DEFAULT_PORT ARGS...
# For the benchmarks sized by --quick rather than --scale: sets `quick` (0 or 1) and `port`.
bench_quick_args() {
    local port_var="$1"
    port="${!port_var:-$2}"
    shift 2
    quick=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --quick)   quick=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *)         usage >&2; die "unknown argument: $1" ;;
        esac
    done
    [[ "$port" =~ ^[1-9][0-9]*$ ]] || die "$port_var must be a port number, got '$port'"
}

# bench_install
# Toolchain, then the extension (release; debug with BENCH_DEBUG=1; skipped with
# BENCH_SKIP_INSTALL=1) into a private copy of the PostgreSQL installation (scripts/lib.sh,
# `private_pg_install`), as the tests use: installing into the system one would write under
# servers others run. Every later cluster_create runs from that copy.
bench_install() {
    "$PROJECT_ROOT/scripts/setup.sh"
    use_pg_install "$(private_pg_install bench)"
    if [ "${BENCH_SKIP_INSTALL:-0}" = 1 ]; then
        log "BENCH_SKIP_INSTALL=1: using the extension installed in $(dirname "$PG_BIN")"
    elif [ "${BENCH_DEBUG:-0}" = 1 ]; then
        log "building and installing pg_tenant_ops (debug) into $(dirname "$PG_BIN")"
        install_extension --debug
    else
        log "building and installing pg_tenant_ops (release) into $(dirname "$PG_BIN")"
        install_extension --release
    fi
}

# bench_cluster NAME
# bench_install, then a fresh cluster in $(cluster_dir NAME) started on $port. Sets `dir`, `work` (a scratch directory) and `db`
# (bench); on exit the cluster is stopped and the scratch directory removed.
bench_cluster() {
    bench_install

    dir="$(cluster_dir "$1")"
    log "fresh cluster in $dir on 127.0.0.1:$port"
    # For a 2-core / 24 GB machine; the same for every contender. shared_buffers stays at
    # PostgreSQL's default so that VmHWM (which counts the shared pages a backend touched)
    # measures a bounded footprint rather than a large cache. No checkpoint or WAL recycling
    # inside a run (max_wal_size, checkpoint_timeout; a CHECKPOINT precedes every run).
    cluster_create "$dir" "$port" \
        "shared_buffers = 128MB" \
        "work_mem = 64MB" \
        "maintenance_work_mem = 512MB" \
        "effective_cache_size = 16GB" \
        "max_wal_size = 8GB" \
        "checkpoint_timeout = 30min" \
        "wal_level = minimal" \
        "max_wal_senders = 0" \
        "synchronous_commit = off" \
        "jit = off"
    work="$(mktemp -d)"
    trap 'cluster_stop "$dir" || true; rm -rf "$work"' EXIT
    cluster_start "$dir"
    db=bench
}

# psql on database $db (bench unless a caller says otherwise with `local db=...`).
psql_bench() { psql_at "$port" "$db" -P pager=off "$@"; }

# timed_session BODY [PSQL_ARGS...]
# One contender in one session: CHECKPOINT, then BODY (psql text; its variables come from
# PSQL_ARGS, e.g. -v office=1) timed with clock_timestamp() around it. BODY may set :job.
# Prints "job|seconds|VmHWM kB|RssShmem kB|peak RssAnon kB". VmHWM and RssShmem are the session
# backend's at the end of the run (/proc/<pid>/status); VmHWM counts the shared buffers it
# touched too, so a sampler started from the session (\!) also records the backend's private
# memory (RssAnon) every 0.1 s.
timed_session() {
    local body="$1" samples out peak
    shift
    samples="$work/samples.$RANDOM"
    {
        cat <<'SQL'
SET client_min_messages = warning;
\set job NULL
SELECT pg_backend_pid() AS pid \gset
\setenv BENCH_PID :pid
\! while [ -r "/proc/$BENCH_PID/status" ]; do grep '^RssAnon:' "/proc/$BENCH_PID/status"; sleep 0.1; done >"$BENCH_SAMPLES" 2>/dev/null & echo $! >"$BENCH_SAMPLES.pid"
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
SQL
        printf '%s\n' "$body"
        cat <<'SQL'
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \gset
WITH st AS (SELECT pg_read_file('/proc/' || pg_backend_pid() || '/status') AS s)
SELECT concat_ws('|', coalesce(:job::text, '-'), :'secs',
                 (regexp_match(s, 'VmHWM:\s+(\d+) kB'))[1],
                 (regexp_match(s, 'RssShmem:\s+(\d+) kB'))[1])
  FROM st;
SQL
    } | BENCH_SAMPLES="$samples" psql_bench -At "$@" -f - >"$work/out" || return 1
    out="$(cat "$work/out")"
    # The sampler stops when the backend has gone, just after the session.
    for _ in $(seq 50); do
        kill -0 "$(cat "$samples.pid")" 2>/dev/null || break
        sleep 0.1
    done
    peak="$(awk '$2 > m { m = $2 } END { print m + 0 }' "$samples")"
    printf '%s|%s\n' "$out" "$peak"
}

mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
with_commas() { sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta' <<<"$1"; }

# The dispatch demo's tables, and each one's rows of an office as a DBA would select them
# (`:office` stands for the office): the hand-written side of the backup, export and
# incremental benchmarks, and what their checks compare.
declare -A SELECT_OF=(
    [dispatch_offices]="SELECT * FROM legacy.dispatch_offices WHERE id = :office"
    [dispatch_doctors]="SELECT * FROM legacy.dispatch_doctors WHERE office_id = :office"
    [dispatch_patients]="SELECT p.* FROM legacy.dispatch_patients p JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = :office"
    [dispatch_orders]="SELECT o.* FROM legacy.dispatch_orders o JOIN legacy.dispatch_patients p ON p.id = o.patient_id JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = :office"
    [dispatch_order_items]="SELECT i.* FROM legacy.dispatch_order_items i JOIN legacy.dispatch_orders o ON o.id = i.order_id JOIN legacy.dispatch_patients p ON p.id = o.patient_id JOIN legacy.dispatch_doctors d ON d.id = p.doctor_id WHERE d.office_id = :office"
)
# shellcheck disable=SC2034  # used by the scripts that source this file
TABLES=(dispatch_offices dispatch_doctors dispatch_patients dispatch_orders dispatch_order_items)

# office_sums OFFICE: per table, the office's row count and an md5 of its rows (on $db).
office_sums() {
    local t q out=""
    for t in "${TABLES[@]}"; do
        q="${SELECT_OF[$t]//:office/$1}"
        out+="$t $(psql_bench -At -c "SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM ($q) x")"$'\n'
    done
    printf '%s' "$out"
}
