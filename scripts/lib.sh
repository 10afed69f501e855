# shellcheck shell=bash
# Shared shell functions for the demo, the test runner and the benchmarks: a private PostgreSQL 15
# cluster per purpose, run as the `postgres` OS user when we are root (initdb refuses root).
# Source it; do not execute it.

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
SYSTEM_PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
# The installation the functions below use: the system's, unless `use_pg_install` points them
# at another (the tests use private copies, see `private_pg_install`).
PG_BIN="$SYSTEM_PG_BIN"
PG_CONFIG="${PG_BIN}/pg_config"

# Points the cluster and install functions at the installation of pg_config $1.
use_pg_install() {
    PG_CONFIG="$1"
    PG_BIN="$(dirname "$1")"
}
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1;34m[%s]\033[0m %s\n' "${LOG_TAG:-pg_tenant_ops}" "$*"; }
die() { printf '\033[1;31m[%s] %s\033[0m\n' "${LOG_TAG:-pg_tenant_ops}" "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as the OS user that owns our clusters.
as_pg_user() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Picks a data directory for cluster NAME: under the project's .demo/ when the cluster's OS user
# can write there, else under /tmp (a checkout in a home directory postgres cannot enter).
cluster_dir() {
    local name="$1" base="${PROJECT_ROOT}/.demo"
    mkdir -p "$base"
    if is_root; then
        chown postgres "$base" 2>/dev/null || true
        if ! runuser -u postgres -- test -w "$base" 2>/dev/null; then
            base="/tmp/pg_tenant_ops.$(id -un)"
            mkdir -p "$base" && chown postgres "$base"
        fi
    fi
    printf '%s/%s' "$base" "$name"
}

# Creates a fresh cluster in DIR listening on 127.0.0.1:PORT with the extension preloaded.
# Extra postgresql.conf lines may follow as further arguments.
cluster_create() {
    local dir="$1" port="$2"; shift 2
    cluster_stop "$dir" 2>/dev/null || true
    rm -rf "$dir"
    mkdir -p "$dir"
    is_root && chown postgres "$dir"
    chmod 700 "$dir"
    as_pg_user "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 \
        || { cat "$dir.initdb.log" >&2; die "initdb failed in $dir"; }
    {
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = ''"
        echo "shared_preload_libraries = 'pg_tenant_ops'"
        echo "max_worker_processes = 16"
        echo "fsync = off"
        echo "log_min_messages = warning"
        for line in "$@"; do echo "$line"; done
    } | as_pg_user tee -a "$dir/postgresql.conf" >/dev/null
}

cluster_start() {
    local dir="$1"
    # RUST_BACKTRACE in the server's environment would put Rust backtraces into every ERROR's
    # DETAIL; users and our expected test output must not see those.
    as_pg_user env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
        "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { tail -n 30 "$dir/server.log" >&2; die "could not start the cluster in $dir"; }
}

cluster_stop() {
    local dir="$1"
    [ -f "$dir/postmaster.pid" ] || return 0
    as_pg_user "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
}

cluster_running() { [ -f "$1/postmaster.pid" ] && as_pg_user "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }

# psql against 127.0.0.1:PORT as postgres, stopping at the first error: psql_at PORT DB [args...]
psql_at() {
    local port="$1" db="$2"; shift 2
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}

# Builds the extension and installs it into the system PostgreSQL 15 (`--release` optional;
# debug by default). Files are staged with `cargo pgrx package` and renamed into place, never
# overwritten: a running server that has the old library mapped keeps it intact.
install_extension() {
    local mode=(--debug) profile=debug
    if [ "${1:-}" = "--release" ]; then mode=(); profile=release; fi
    local stage="$PROJECT_ROOT/target/$profile/stage-pg${PG_MAJOR}"
    rm -rf "$stage"
    ( cd "$PROJECT_ROOT" && cargo pgrx package --pg-config "$PG_CONFIG" "${mode[@]}" --out-dir "$stage" ) \
        || die "cargo pgrx package failed"
    local sudo="" f dest
    # The system installation needs root; a private copy of ours does not.
    if ! is_root && [ ! -w "$("$PG_CONFIG" --pkglibdir)" ]; then sudo=sudo; fi
    while IFS= read -r -d '' f; do
        dest="/${f#"$stage"/}"
        $sudo mkdir -p "$(dirname "$dest")"
        $sudo cp "$f" "$dest.tmp.$$" && $sudo mv -f "$dest.tmp.$$" "$dest"
    done < <(find "$stage" -type f -print0)
}

# A private copy NAME of the system PostgreSQL installation, under target/: the tests install
# the extension there and run their clusters from it, so they never touch the system
# installation (and the servers others run from it). `cargo pgrx test` needs one of its own:
# it installs by writing over the library in place, which crashes any server that has the
# file mapped. PostgreSQL finds its share and library directories relative to its binaries, so
# a copied tree is a complete installation. Rebuilt when the system PostgreSQL changes.
# Prints its pg_config.
private_pg_install() {
    local name="$1"
    local root="$PROJECT_ROOT/target/pg${PG_MAJOR}-${name}"
    local marker="$root/.copied-from" version
    version="$("$SYSTEM_PG_BIN/pg_config" --version) $(stat -c %Y "$SYSTEM_PG_BIN/postgres")"
    if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$version" ]; then
        rm -rf "$root"
        mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql" "$root/usr/include"
        cp -a "/usr/lib/postgresql/${PG_MAJOR}" "$root/usr/lib/postgresql/"
        rm -rf "$root/usr/lib/postgresql/${PG_MAJOR}/lib/bitcode"
        cp -a "/usr/share/postgresql/${PG_MAJOR}" "$root/usr/share/postgresql/"
        # Headers are only read (by bindgen): shared, not copied.
        ln -s /usr/include/postgresql "$root/usr/include/postgresql"
        chmod -R u+w "$root"
        echo "$version" >"$marker"
    fi
    printf '%s' "$root/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
}

# Citus for the `citus` test tier: builds and installs it into the system PostgreSQL with
# `../shared/citus/install.sh` (or $CITUS_INSTALL; idempotent, 2-3 minutes the first time),
# then copies its files into the installation of pg_config $1 (a private copy, see
# `private_pg_install`) by rename, only those that differ: a running server keeps what it has
# mapped. Citus is a test dependency only; the extension never links to it.
install_citus() {
    local target_config="$1"
    local script="${CITUS_INSTALL:-$PROJECT_ROOT/../shared/citus/install.sh}"
    [ -f "$script" ] || die "Citus installer $script not found (set CITUS_INSTALL, or run other tiers)"
    bash "$script" || die "installing Citus failed"
    local from_lib from_share to_lib to_share f rel dest
    from_lib="$("$SYSTEM_PG_BIN/pg_config" --pkglibdir)"
    from_share="$("$SYSTEM_PG_BIN/pg_config" --sharedir)/extension"
    to_lib="$("$target_config" --pkglibdir)"
    to_share="$("$target_config" --sharedir)/extension"
    [ "$from_lib" != "$to_lib" ] || return 0
    while IFS= read -r -d '' f; do
        case "$f" in "$from_lib"/*) rel="${f#"$from_lib"/}"; dest="$to_lib/$rel" ;;
                     *) rel="${f#"$from_share"/}"; dest="$to_share/$rel" ;; esac
        cmp -s "$f" "$dest" && continue
        mkdir -p "$(dirname "$dest")"
        cp "$f" "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"
    done < <(find "$from_lib" -maxdepth 2 -path "$from_lib/citus*" -type f -print0
             find "$from_share" -maxdepth 1 \( -name 'citus*' -o -name 'columnar*' \) -type f -print0)
}
