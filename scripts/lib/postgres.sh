# shellcheck shell=bash
# A throwaway PostgreSQL server for tests and benchmarks: its own cluster in a directory, reachable
# only through a Unix socket in that directory (no TCP), fsync on. It never touches the cluster or
# service the Debian package may have set up. Source this file, then:
#
#   kakunin_pg_start "$tmp/pg"        # exports KAKUNIN_TEST_PG (libpq conninfo, superuser)
#   psql "$KAKUNIN_TEST_PG" -c 'select 1'
#   kakunin_pg_stop "$tmp/pg"
#
# kakunin_pg_start DIR
#   Creates DIR (if needed), runs initdb into DIR/data with superuser "postgres" and trust
#   authentication on the socket (the socket directory is DIR itself, private to the server's
#   user), starts the server with pg_ctl and waits until it accepts connections. As root, the
#   server runs as the OS user "postgres" (created by the postgresql package) or, if that does not
#   exist, as a dedicated user "kakunin-pg" created with useradd; DIR is handed to that user.
#   Exports KAKUNIN_TEST_PG="host=DIR port=PORT user=postgres dbname=postgres" and
#   KAKUNIN_TEST_PG_DIR=DIR. Idempotent: an already running server in DIR is reused.
#   Returns non-zero with a message on stderr when PostgreSQL is not installed or fails to start
#   (the tail of DIR/server.log is printed).
#
# kakunin_pg_stop DIR [MODE]
#   Stops the server in DIR if it runs: MODE fast (default: clean shutdown, sessions ended) or
#   immediate (no checkpoint, like a crash: the next start recovers from the WAL). The directory
#   is left for the caller.
#
# kakunin_pg_bindir
#   Prints the directory of initdb/pg_ctl/postgres ($KAKUNIN_PG_BINDIR overrides; else the
#   newest /usr/lib/postgresql/*/bin, else the one pg_config reports).

KAKUNIN_PG_PORT="${KAKUNIN_PG_PORT:-5432}"

kakunin_pg_bindir() {
    if [[ -n "${KAKUNIN_PG_BINDIR:-}" ]]; then
        printf '%s\n' "$KAKUNIN_PG_BINDIR"
        return 0
    fi
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && best="$d"
    done
    if [[ -z "$best" ]] && command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null)"
        [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && best="$d"
    fi
    if [[ -z "$best" ]]; then
        echo "kakunin_pg_bindir: PostgreSQL server binaries (initdb, pg_ctl) not found;" \
            "install the Debian package postgresql (scripts/test does)" >&2
        return 1
    fi
    printf '%s\n' "$best"
}

# The OS user the server runs as: the caller unless root (PostgreSQL refuses to run as root).
_kakunin_pg_user() {
    if [[ $(id -u) -ne 0 ]]; then
        id -un
        return 0
    fi
    if id postgres >/dev/null 2>&1; then
        echo postgres
        return 0
    fi
    if ! id kakunin-pg >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            kakunin-pg >/dev/null 2>&1 || id kakunin-pg >/dev/null 2>&1 || {
            echo "kakunin_pg_start: cannot create the OS user kakunin-pg to run PostgreSQL" >&2
            return 1
        }
    fi
    echo kakunin-pg
}

# _kakunin_pg_as USER CMD...: runs CMD as USER (directly when that is the caller).
_kakunin_pg_as() {
    local user="$1"
    shift
    if [[ "$user" == "$(id -un)" ]]; then
        "$@"
    else
        runuser -u "$user" -- "$@"
    fi
}

kakunin_pg_start() {
    if [[ $# -ne 1 || -z "$1" ]]; then
        echo "usage: kakunin_pg_start DIR" >&2
        return 2
    fi
    local bindir user dir="$1"
    bindir="$(kakunin_pg_bindir)" || return 1
    user="$(_kakunin_pg_user)" || return 1
    mkdir -p "$dir" || return 1
    dir="$(cd "$dir" && pwd)" || return 1
    if ((${#dir} > 90)); then
        echo "kakunin_pg_start: $dir is too long for a Unix socket path" >&2
        return 1
    fi
    if [[ $(id -u) -eq 0 ]]; then
        chown "$user" "$dir" || return 1
        chmod 0700 "$dir" || return 1
        if ! runuser -u "$user" -- test -w "$dir"; then
            echo "kakunin_pg_start: the OS user $user cannot reach $dir (a parent directory is" \
                "not searchable); use a directory under /tmp made with mode 0755 parents" >&2
            return 1
        fi
    fi
    local data="$dir/data" log="$dir/server.log"
    if [[ ! -f "$data/PG_VERSION" ]]; then
        local out
        if ! out="$(_kakunin_pg_as "$user" "$bindir/initdb" -D "$data" -U postgres \
            --auth=trust --encoding=UTF8 --locale=C.UTF-8 2>&1)"; then
            echo "kakunin_pg_start: initdb failed: $out" >&2
            return 1
        fi
        # Unix socket in DIR only; fsync stays on (the durability tests rely on it).
        cat >>"$data/postgresql.conf" <<EOF

# kakunin_pg_start
listen_addresses = ''
port = $KAKUNIN_PG_PORT
unix_socket_directories = '$dir'
unix_socket_permissions = 0700
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 32MB
max_connections = 60
logging_collector = off
log_min_messages = warning
EOF
    fi
    if ! _kakunin_pg_as "$user" "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        if ! _kakunin_pg_as "$user" "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start \
            >/dev/null 2>&1; then
            echo "kakunin_pg_start: the server in $data did not start; $log says:" >&2
            tail -n 20 "$log" >&2 2>/dev/null
            return 1
        fi
    fi
    local i
    for ((i = 0; i < 100; i++)); do
        if "$bindir/pg_isready" -q -h "$dir" -p "$KAKUNIN_PG_PORT" -U postgres -d postgres; then
            export KAKUNIN_TEST_PG="host=$dir port=$KAKUNIN_PG_PORT user=postgres dbname=postgres"
            export KAKUNIN_TEST_PG_DIR="$dir"
            return 0
        fi
        sleep 0.1
    done
    echo "kakunin_pg_start: the server in $data does not accept connections; $log says:" >&2
    tail -n 20 "$log" >&2 2>/dev/null
    return 1
}

kakunin_pg_stop() {
    if [[ $# -lt 1 || $# -gt 2 || -z "$1" ]]; then
        echo "usage: kakunin_pg_stop DIR [fast|immediate]" >&2
        return 2
    fi
    local bindir user dir="$1" mode="${2:-fast}"
    if [[ "$mode" != fast && "$mode" != immediate ]]; then
        echo "kakunin_pg_stop: MODE must be fast or immediate" >&2
        return 2
    fi
    [[ -f "$dir/data/PG_VERSION" ]] || return 0
    bindir="$(kakunin_pg_bindir)" || return 1
    user="$(stat -c %U "$dir/data")" || return 1
    if _kakunin_pg_as "$user" "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        _kakunin_pg_as "$user" "$bindir/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null ||
            return 1
    fi
    return 0
}
