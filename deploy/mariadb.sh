#!/usr/bin/env bash
# Makes sure the machine's MariaDB answers on 127.0.0.1:3306 as root with an empty password, which is
# what the tests use (CONSOLE_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306).
#
# It does not install or configure MariaDB: the development machines come with Debian's
# mariadb-server set up that way. It only starts the server the machine's way when it is down
# (start-stop-daemon on /usr/sbin/mariadbd, which reads /etc/mysql) and stops it on request.
#
# Files: the server's own (/etc/mysql, /var/lib/mysql, /run/mysqld/mysqld.pid, error log
# /var/log/mysql/error.log); this script's start-up output goes to
# ${TMPDIR:-/tmp}/console-mariadb/mariadbd.out.
#
# Environment:
#   MARIADB_START_TIMEOUT   seconds to wait until `select 1` works (default 60)
#   MARIADB_STOP_TIMEOUT    seconds to wait for the server to exit (default 60)
#   MARIADB_MIN_CONNECTIONS `start` raises a running server's max_connections to at least this
#                           (default 500; the cluster tests run clusters side by side)
set -euo pipefail

readonly DB_HOST=127.0.0.1
readonly DB_PORT=3306
readonly MARIADBD=/usr/sbin/mariadbd
readonly RUN_DIR=/run/mysqld
readonly PID_FILE="$RUN_DIR/mysqld.pid"
readonly ERROR_LOG=/var/log/mysql/error.log
readonly OUT_DIR="${TMPDIR:-/tmp}/console-mariadb"
readonly OUT_FILE="$OUT_DIR/mariadbd.out"
MARIADB_START_TIMEOUT="${MARIADB_START_TIMEOUT:-60}"
MARIADB_STOP_TIMEOUT="${MARIADB_STOP_TIMEOUT:-60}"
MARIADB_MIN_CONNECTIONS="${MARIADB_MIN_CONNECTIONS:-500}"
[[ "$MARIADB_MIN_CONNECTIONS" =~ ^[0-9]+$ ]] ||
    { echo "mariadb.sh: error: MARIADB_MIN_CONNECTIONS must be a number, got '$MARIADB_MIN_CONNECTIONS'" >&2; exit 1; }

usage() {
    echo "usage: $0 {start|stop|status}" >&2
    echo "  start   start MariaDB if it does not answer on $DB_HOST:$DB_PORT; wait until 'select 1' works" >&2
    echo "  stop    shut MariaDB down and wait until it has exited" >&2
    echo "  status  exit 0 if root can run 'select 1' on $DB_HOST:$DB_PORT, 3 if nothing listens, 1 otherwise" >&2
}

log() { echo "mariadb.sh: $*"; }
die() {
    echo "mariadb.sh: error: $*" >&2
    exit 1
}
# alive, now, elapsed_since, before_deadline, log_tail, terminate, apt_install
. "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"

# Runs `select 1` as root over TCP; prints the client's error on failure.
select_one() {
    mariadb --connect-timeout=2 -uroot -h"$DB_HOST" -P"$DB_PORT" --batch --skip-column-names -e 'select 1' 2>&1
}

answers() { [ "$(select_one || true)" = 1 ]; }

# The cluster tests run clusters side by side, and each console node holds up to about 25
# connections (task-store pool and group-commit writers, two for the MySQL registry): raise
# max_connections to MARIADB_MIN_CONNECTIONS (default 500) when the server allows fewer. A
# running server only; it lasts until the server restarts.
make_room() {
    local current
    current="$(mariadb --connect-timeout=2 -uroot -h"$DB_HOST" -P"$DB_PORT" --batch --skip-column-names \
        -e 'select @@max_connections' 2>/dev/null || true)"
    if [[ "$current" =~ ^[0-9]+$ ]] && [ "$current" -lt "$MARIADB_MIN_CONNECTIONS" ]; then
        mariadb --connect-timeout=2 -uroot -h"$DB_HOST" -P"$DB_PORT" \
            -e "set global max_connections = $MARIADB_MIN_CONNECTIONS" ||
            die "could not raise max_connections from $current to $MARIADB_MIN_CONNECTIONS"
        log "raised max_connections from $current to $MARIADB_MIN_CONNECTIONS (MARIADB_MIN_CONNECTIONS)"
    fi
}

# The inner script is single-quoted on purpose: it reads its own arguments.
# shellcheck disable=SC2016
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$DB_HOST" "$DB_PORT" 2>/dev/null; }

server_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid="$(cat "$PID_FILE")"
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    # A stale pid file may name a pid that another program now has.
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = mariadbd ] || return 1
    echo "$pid"
}


diagnostics() {
    local f
    for f in "$OUT_FILE" "$ERROR_LOG"; do
        if [ -s "$f" ]; then
            echo "--- last 30 lines of $f ---" >&2
            tail -n 30 "$f" >&2
        fi
    done
    echo "---" >&2
}

start() {
    local started reply
    started="$(now)"
    if answers; then
        log "already running: root can query $DB_HOST:$DB_PORT ($(elapsed_since "$started") s)"
        make_room
        return 0
    fi
    if port_open; then
        # Something listens but root cannot log in (or it is still starting): starting a second
        # server would not help. Wait a little in case it is starting, then explain.
        log "$DB_HOST:$DB_PORT is open but 'select 1' fails; waiting in case the server is still starting"
    else
        [ -x "$MARIADBD" ] ||
            die "$MARIADBD is missing: install and set up MariaDB (apt-get install -y mariadb-server," \
                "then let root log in over TCP with an empty password)"
        # /run is a tmpfs: the socket/pid directory disappears on reboot.
        install -d -o mysql -g mysql -m 0755 "$RUN_DIR"
        mkdir -p "$OUT_DIR"
        start-stop-daemon --start --oknodo --background --output "$OUT_FILE" --exec "$MARIADBD"
        log "started $MARIADBD (start-stop-daemon; output $OUT_FILE, error log $ERROR_LOG);" \
            "waiting up to ${MARIADB_START_TIMEOUT}s for 'select 1'"
    fi
    while before_deadline "$started" "$MARIADB_START_TIMEOUT"; do
        if answers; then
            log "ready: root can query $DB_HOST:$DB_PORT after $(elapsed_since "$started") s"
            make_room
            return 0
        fi
        sleep 0.2
    done
    reply="$(select_one || true)"
    diagnostics
    die "MariaDB does not answer 'select 1' as root on $DB_HOST:$DB_PORT within ${MARIADB_START_TIMEOUT}s: $reply"
}

stop() {
    local started pid reply
    started="$(now)"
    if ! port_open && ! pid="$(server_pid)"; then
        log "not running; nothing to stop"
        return 0
    fi
    pid="$(server_pid || true)"
    if ! reply="$(mariadb-admin --connect-timeout=2 -uroot -h"$DB_HOST" -P"$DB_PORT" shutdown 2>&1)"; then
        if [ -n "$pid" ]; then
            log "mariadb-admin shutdown failed ($reply); sending SIGTERM to pid $pid"
            kill -TERM "$pid" 2>/dev/null || true
        else
            die "mariadb-admin shutdown failed and no pid in $PID_FILE: $reply"
        fi
    else
        log "asked MariaDB to shut down${pid:+ (pid $pid)}"
    fi
    while { [ -n "$pid" ] && [ -d "/proc/$pid" ]; } || port_open; do
        before_deadline "$started" "$MARIADB_STOP_TIMEOUT" ||
            die "MariaDB${pid:+ (pid $pid)} still running ${MARIADB_STOP_TIMEOUT}s after shutdown; see $ERROR_LOG"
        sleep 0.2
    done
    log "stopped; $DB_HOST:$DB_PORT is closed ($(elapsed_since "$started") s)"
}

status() {
    local reply pid
    if reply="$(select_one)" && [ "$reply" = 1 ]; then
        pid="$(server_pid || true)"
        log "running${pid:+: pid $pid}; root can query $DB_HOST:$DB_PORT"
        return 0
    fi
    if port_open; then
        log "$DB_HOST:$DB_PORT is open but 'select 1' as root fails: $reply"
        return 1
    fi
    log "not running on $DB_HOST:$DB_PORT"
    return 3
}

[ $# -eq 1 ] || {
    usage
    exit 2
}
case "$1" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    -h | --help | help) usage ;;
    *)
        usage
        exit 2
        ;;
esac
