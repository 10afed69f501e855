#!/usr/bin/env bash
# Runs every test tier of pg_tenant_ops, installing what it needs first:
#   1. unit    — `cargo pgrx test`: plain #[test]s and #[pg_test]s inside a throwaway cluster;
#   2. regress — pg_regress suites in tests/pg_regress against a cluster of our own;
#   3. e2e     — tests/e2e drives a real cluster from outside (the sample databases);
#   4. citus   — tests/e2e's `citus` runner drives a Citus cluster (a coordinator and two
#                workers) from outside; installs Citus first (../shared/citus/install.sh).
# Usage: scripts/test.sh [unit|regress|e2e|citus ...]   (default: all four)
#        E2E_FILTER=backup scripts/test.sh e2e     (only the e2e tests whose name contains it)
#        CITUS_FILTER=move scripts/test.sh citus   (the same for the citus tier)
#        CITUS_PORTS=28930-28939                   (the ports the Citus nodes take, the default)
# Exits non-zero when any test fails; the last line counts tests over all tiers.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG="test"
cd "$PROJECT_ROOT"

tiers=("$@")
[ "${#tiers[@]}" -gt 0 ] || tiers=(unit regress e2e citus)
want() { local t; for t in "${tiers[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }

"$PROJECT_ROOT/scripts/setup.sh"
# Our clusters run as the postgres OS user, who must be able to read what cargo builds.
if is_root; then chmod o+rx "$PROJECT_ROOT" 2>/dev/null || true; fi

passed=0; failed=0; failed_tiers=()
count() { passed=$((passed + $1)); failed=$((failed + $2)); [ "$2" -eq 0 ] || failed_tiers+=("$3"); }
outdir="$(mktemp -d /tmp/pg_tenant_ops_test.XXXXXX)"
chmod 755 "$outdir"

# Every tier runs against private copies of the PostgreSQL installation (lib.sh,
# `private_pg_install`), never the system one that other servers run from: "tests" for the
# regress and e2e clusters, "unit" for `cargo pgrx test`. The extension is installed into
# "tests" (by rename) before any tier, and a sentinel cluster with it preloaded runs across all
# of them: a tier that disturbed a running server (by writing into the library it has mapped,
# say) fails the run.
use_pg_install "$(private_pg_install tests)"
log "installing the extension into a private copy of PostgreSQL ${PG_MAJOR} ($(dirname "$PG_BIN"))"
install_extension --debug >"$outdir/install.log" 2>&1 || { tail -n 40 "$outdir/install.log"; die "install failed"; }
sentinel="$(cluster_dir sentinel)"
sentinel_port="${SENTINEL_PORT:-28819}"
cluster_create "$sentinel" "$sentinel_port"
cluster_start "$sentinel"
trap 'cluster_stop "$sentinel" || true' EXIT
psql_at "$sentinel_port" postgres -c "CREATE EXTENSION pg_tenant_ops" >/dev/null
sentinel_pid() { head -n 1 "$sentinel/postmaster.pid" 2>/dev/null; }
# The scheduler has the library mapped once it has written its heartbeat.
for _ in $(seq 1 50); do
    psql_at "$sentinel_port" postgres -Atc "SELECT pid FROM tenant_ops.scheduler_state WHERE pid IS NOT NULL" | grep -q . && break
    sleep 0.2
done
sentinel_before="$(sentinel_pid) $(psql_at "$sentinel_port" postgres -Atc "SELECT pid FROM tenant_ops.scheduler_state")"

# --- 1. unit -----------------------------------------------------------------------------------
if want unit; then
    log "tier 1: cargo pgrx test"
    pgdata="$outdir/unit-pgdata"
    runas=()
    if is_root; then
        # pgrx creates the data directory as the --runas user, below a directory it can write.
        mkdir -p "$pgdata" && chown postgres "$pgdata"
        runas=(--runas postgres --pgdata "$pgdata")
    fi
    # `cargo pgrx test` installs into the PostgreSQL its config names, writing over the library
    # in place: point it at a copy of its own (its own PGRX_HOME and target directory, since the
    # bindings are generated against that copy's pg_config).
    private_pg_config="$(private_pg_install unit)"
    pgrx_home="$PROJECT_ROOT/target/pgrx-home"
    mkdir -p "$pgrx_home"
    printf '[configs]\npg%s = "%s"\n' "$PG_MAJOR" "$private_pg_config" >"$pgrx_home/config.toml"
    set +e
    env -u RUST_BACKTRACE PGRX_HOME="$pgrx_home" CARGO_TARGET_DIR="$PROJECT_ROOT/target/unit" \
        cargo pgrx test pg15 "${runas[@]}" 2>&1 | tee "$outdir/unit.log"
    rc=${PIPESTATUS[0]}
    set -e
    p=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$outdir/unit.log" | awk '{s+=$4} END {print s+0}')
    f=$(grep -Eo '[0-9]+ failed' "$outdir/unit.log" | awk '{s+=$1} END {print s+0}')
    [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=1
    count "$p" "$f" unit
fi

# --- 2. regress ----------------------------------------------------------------------------------
if want regress; then
    log "tier 2: pg_regress"
    port="${REGRESS_PORT:-28817}"
    dir="$(cluster_dir regress)"
    cluster_create "$dir" "$port"
    cluster_start "$dir"
    trap 'cluster_stop "$dir" || true; cluster_stop "$sentinel" || true' EXIT
    pg_regress="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress"
    tests=$(for f in tests/pg_regress/sql/*.sql; do basename "$f" .sql; done | sort)
    rm -rf tests/pg_regress/results tests/pg_regress/regression.*
    set +e
    # shellcheck disable=SC2086
    PGOPTIONS="-c client_min_messages=warning" "$pg_regress" --host=127.0.0.1 --port="$port" --user=postgres \
        --dbname=pg_tenant_ops_regress --inputdir=tests/pg_regress --outputdir=tests/pg_regress $tests 2>&1 | tee "$outdir/regress.log"
    rc=${PIPESTATUS[0]}
    set -e
    total=$(echo "$tests" | wc -l)
    f=$(grep -cE '(FAILED|failed \(ignored\)|diff command failed)' "$outdir/regress.log" || true)
    [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=$total
    count $((total - f)) "$f" regress
    if [ "$f" -gt 0 ] && [ -f tests/pg_regress/regression.diffs ]; then head -n 200 tests/pg_regress/regression.diffs; fi
    cluster_stop "$dir"
    trap 'cluster_stop "$sentinel" || true' EXIT
fi

# --- 3. e2e --------------------------------------------------------------------------------------
if want e2e; then
    log "tier 3: end-to-end"
    set +e
    env -u RUST_BACKTRACE E2E_PG_BIN="$PG_BIN" cargo test --manifest-path tests/e2e/Cargo.toml --test e2e ${E2E_FILTER:+-- "$E2E_FILTER"} 2>&1 | tee "$outdir/e2e.log"
    rc=${PIPESTATUS[0]}
    set -e
    line=$(grep -E '^e2e: [0-9]+ passed, [0-9]+ failed' "$outdir/e2e.log" | tail -n 1 || true)
    p=$(echo "$line" | awk '{print $2+0}'); f=$(echo "$line" | awk '{print $4+0}')
    [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=1
    count "$p" "$f" e2e
fi

# --- 4. citus ------------------------------------------------------------------------------------
if want citus; then
    log "tier 4: Citus (a coordinator and two workers)"
    install_citus "$PG_CONFIG" >"$outdir/citus-install.log" 2>&1 || { tail -n 40 "$outdir/citus-install.log"; die "installing Citus failed"; }
    set +e
    env -u RUST_BACKTRACE E2E_PG_BIN="$PG_BIN" E2E_CITUS_PORTS="${CITUS_PORTS:-28930-28939}" \
        cargo test --manifest-path tests/e2e/Cargo.toml --test citus ${CITUS_FILTER:+-- "$CITUS_FILTER"} 2>&1 | tee "$outdir/citus.log"
    rc=${PIPESTATUS[0]}
    set -e
    line=$(grep -E '^citus: [0-9]+ passed, [0-9]+ failed' "$outdir/citus.log" | tail -n 1 || true)
    p=$(echo "$line" | awk '{print $2+0}'); f=$(echo "$line" | awk '{print $4+0}')
    [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=1
    count "$p" "$f" citus
fi

# --- the sentinel ----------------------------------------------------------------------------
# Same postmaster, same scheduler process (a crash of any backend restarts them all), and it
# still answers.
sentinel_after="$(sentinel_pid) $(psql_at "$sentinel_port" postgres -Atc "SELECT pid FROM tenant_ops.scheduler_state" 2>/dev/null || echo gone)"
if cluster_running "$sentinel" && [ "$sentinel_after" = "$sentinel_before" ]; then
    count 1 0 sentinel
else
    log "the sentinel cluster was disturbed: postmaster and scheduler pids ${sentinel_before} before, ${sentinel_after} after"
    tail -n 20 "$sentinel/server.log" || true
    count 0 1 sentinel
fi
cluster_stop "$sentinel"
trap - EXIT

rm -rf "$outdir"
if [ "${#failed_tiers[@]}" -gt 0 ]; then
    log "failing tiers: ${failed_tiers[*]}"
fi
echo "all tiers: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
