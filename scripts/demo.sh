#!/usr/bin/env bash
# The pg_tenant_ops demo: builds and installs the extension, starts a private PostgreSQL 15
# cluster, generates a legacy multi-tenant "dispatch" schema (demo/dispatch.sql), defines a
# tenant scope over it, shows one office's plan, migrates an office into a new UUID-keyed
# schema, checks every office, then backs up an office, deletes part of it and restores it.
# The cluster is left running so you can explore it. Safe to run again and again: each run starts from scratch.
#
# Usage:
#   scripts/demo.sh [--scale N]     run the demo (default scale 1, or $DEMO_SCALE)
#   scripts/demo.sh --stop          stop the demo cluster
#
# Environment:
#   DEMO_SCALE=N          data scale (office 1 has N * 1000 patients, ~N * 11.5k rows)
#   DEMO_PORT=P           port of the demo cluster on 127.0.0.1 (default 28816)
# Developer switches:
#   DEMO_SKIP_INSTALL=1   do not build/install the extension (use what is installed)
#   DEMO_NO_EXTENSION=1   test the data generator alone: no preload, no CREATE EXTENSION, no
#                         scope/plan steps (implies DEMO_SKIP_INSTALL=1)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG=demo

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

section() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

scale="${DEMO_SCALE:-1}"
port="${DEMO_PORT:-28816}"
stop=0
while [ $# -gt 0 ]; do
    case "$1" in
        --scale)   [ $# -ge 2 ] || die "--scale needs a value"; scale="$2"; shift 2 ;;
        --scale=*) scale="${1#--scale=}"; shift ;;
        --stop)    stop=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *)         usage >&2; die "unknown argument: $1" ;;
    esac
done

dir="$(cluster_dir demo)"

if [ "$stop" -eq 1 ]; then
    if cluster_running "$dir"; then
        cluster_stop "$dir"
        log "demo cluster stopped ($dir)"
    else
        log "demo cluster is not running"
    fi
    exit 0
fi

[[ "$scale" =~ ^[1-9][0-9]*$ ]] || die "scale must be a positive integer, got '$scale'"
[[ "$port" =~ ^[1-9][0-9]*$ ]] || die "DEMO_PORT must be a port number, got '$port'"

no_extension="${DEMO_NO_EXTENSION:-0}"
skip_install="${DEMO_SKIP_INSTALL:-0}"
[ "$no_extension" = 1 ] && skip_install=1

psql_demo() { psql_at "$port" demo -P pager=off "$@"; }

# --- 1. toolchain ------------------------------------------------------------------------------
section "Toolchain"
"$PROJECT_ROOT/scripts/setup.sh"

# --- 2. build and install the extension ----------------------------------------------------------
if [ "$skip_install" = 1 ]; then
    log "skipping the build and install of the extension (DEMO_SKIP_INSTALL/DEMO_NO_EXTENSION)"
else
    section "Building and installing pg_tenant_ops (release)"
    install_extension --release
fi

# --- 3. a fresh cluster --------------------------------------------------------------------------
section "Starting a fresh PostgreSQL ${PG_MAJOR} cluster on 127.0.0.1:${port}"
extra_conf=()
if [ "$no_extension" = 1 ]; then
    log "DEMO_NO_EXTENSION=1: the extension is not preloaded nor created"
    extra_conf+=("shared_preload_libraries = ''")
fi
cluster_create "$dir" "$port" ${extra_conf[@]+"${extra_conf[@]}"}
cluster_start "$dir"
log "data directory: $dir"

# --- 4. database, extension, legacy data ---------------------------------------------------------
section "Database 'demo' with a legacy dispatch schema at scale ${scale}"
psql_at "$port" postgres -c "CREATE DATABASE demo"
if [ "$no_extension" != 1 ]; then
    psql_demo -c "CREATE EXTENSION pg_tenant_ops"
fi
PGOPTIONS="-c client_min_messages=warning" psql_demo -f "$PROJECT_ROOT/demo/dispatch.sql"
started=$(date +%s)
psql_demo -c "SELECT * FROM legacy.generate_dispatch(${scale})"
log "generated in $(( $(date +%s) - started ))s"

# --- 5. the tenant scope and a plan per office ---------------------------------------------------
if [ "$no_extension" = 1 ]; then
    log "DEMO_NO_EXTENSION=1: skipping the scope and the plans"
else
    section "Scope 'dispatch': tenants are the rows of legacy.dispatch_offices"
    psql_demo -c "SELECT tenant_ops.create_scope('dispatch', 'legacy.dispatch_offices', 'id', '{}')"
    section "Plan for office 1: which rows belong to it, table by table, parents first"
    # The ownership path, shortened to fit a terminal (the full one: tenant_ops.plan()).
    psql_demo -c "SELECT step, table_name, role, rows,
                         CASE WHEN length(path) > 60 THEN left(path, 59) || '…' ELSE path END AS path
                    FROM tenant_ops.plan('dispatch', '1') ORDER BY step"
    section "Every office: rows per office"
    psql_demo -c "SELECT o.id AS office, o.name, sum(p.rows) FILTER (WHERE p.role <> 'shared') AS own_rows,
                         sum(p.rows) FILTER (WHERE p.role = 'shared') AS shared_rows_referenced
                    FROM legacy.dispatch_offices o, LATERAL tenant_ops.plan('dispatch', o.id::text) p
                   GROUP BY o.id, o.name ORDER BY o.id"
fi

# --- 6. a real migration into the new UUID-keyed schema ------------------------------------------
if [ "$no_extension" != 1 ]; then
    section "Migrating office 2 (Harbour) into the new schema 'app' (demo/app_schema.sql)"
    PGOPTIONS="-c client_min_messages=warning" psql_demo -q -f "$PROJECT_ROOT/demo/app_schema.sql"
    psql_demo -v office=2 -f "$PROJECT_ROOT/demo/migrate_office.sql"

    # --- 7. integrity: every office checked, the migration verified ----------------------------
    section "Checking every office (demo/check.sql): the dirty office's planted defects, nothing else"
    migration="$(psql_demo -At -c "SELECT max(id) FROM tenant_ops.jobs WHERE kind = 'migrate' AND tenant = '2'")"
    psql_demo -v migration="$migration" -f "$PROJECT_ROOT/demo/check.sql"
fi

# --- 8. back up, lose, restore --------------------------------------------------------------
if [ "$no_extension" != 1 ]; then
    section "Backing up office 3, deleting its orders, restoring it (demo/backup_office.sql)"
    psql_demo -v office=3 -f "$PROJECT_ROOT/demo/backup_office.sql"
fi

# --- 9. how to go on -----------------------------------------------------------------------------
section "The demo cluster is running"
echo "Connect:  psql -h 127.0.0.1 -p ${port} -U postgres demo"
echo "Stop:     scripts/demo.sh --stop"
