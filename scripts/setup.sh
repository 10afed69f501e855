#!/usr/bin/env bash
# Installs everything pg_tenant_ops needs to build, test and run its demo on a fresh Debian
# machine: PostgreSQL 15 server headers, libclang (bindgen), sudo, pg_cron, redis-server (the
# key-value source tests), and cargo-pgrx 0.18.1 initialised against the system PostgreSQL 15.
# Idempotent and quick when all is present.
# Works as root and as a normal user with sudo.
set -euo pipefail

PG_MAJOR=15
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
PGRX_VERSION=0.18.1

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

# --- Debian packages -------------------------------------------------------------------------
packages=("postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" "postgresql-${PG_MAJOR}-cron"
          libclang-dev clang sudo pkg-config libssl-dev
          age   # age: the interop test decrypts encrypted backups with the standard tool
          pgloader   # bench/import.sh compares import_data with it
          redis-server redis-tools)  # the key-value tests and bench/kv.sh start their own Redis
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "Debian packages present"
fi

# The Debian package may have created and started a default cluster; we never use it and it
# would only hold a port, so leave it alone but do not depend on it. The same for redis-server:
# the tests and benchmarks start their own servers on ports of their own.

# --- Rust toolchain --------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "cargo not found: install Rust (rustup) first" >&2
        exit 1
    fi
fi

# --- cargo-pgrx ------------------------------------------------------------------------------
if cargo pgrx --version 2>/dev/null | grep -q "cargo-pgrx ${PGRX_VERSION}\b"; then
    log "cargo-pgrx ${PGRX_VERSION} present"
else
    log "installing cargo-pgrx ${PGRX_VERSION} (takes a few minutes)"
    cargo install --locked "cargo-pgrx@${PGRX_VERSION}"
fi

# --- cargo pgrx init against the system PostgreSQL -------------------------------------------
pgrx_config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if [ -f "$pgrx_config" ] && grep -q "pg${PG_MAJOR} = \"${PG_CONFIG}\"" "$pgrx_config"; then
    log "cargo pgrx already initialised for pg${PG_MAJOR}"
else
    log "cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
    cargo pgrx init --pg${PG_MAJOR} "$PG_CONFIG"
fi

# `cargo pgrx install` writes into the system PostgreSQL's lib and share directories. As root
# that just works; as a normal user we let our scripts call it with --sudo.
log "ready"
