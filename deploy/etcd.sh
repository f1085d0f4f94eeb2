#!/usr/bin/env bash
# A local, single-member etcd for development and tests.
#
# Uses Debian's `etcd-server` and `etcd-client` packages (3.4; installed with apt-get when missing,
# without starting the packaged service) and runs `etcd` with flags of its own, so nothing under
# /etc is changed. The member listens on 127.0.0.1 only.
#
# Files (all under $ETCD_DIR, default ${TMPDIR:-/tmp}/console-etcd-$ETCD_PORT):
#   data/       the data dir: kept across stop/start (leases survive a short outage), removed by clean
#   etcd.pid    pid of the server this script started; stop stops only that one
#   etcd.log    server output, appended to on every start
#
# Environment:
#   ETCD_PORT            client port (default 2379)
#   ETCD_PEER_PORT       peer port (default ETCD_PORT + 1)
#   ETCD_DIR             where the files above live
#   ETCD_START_TIMEOUT   seconds to wait until it answers (default 60)
#   ETCD_STOP_TIMEOUT    seconds to wait for a graceful stop before SIGKILL (default 20)
set -euo pipefail

readonly ETCD_HOST=127.0.0.1
ETCD_PORT="${ETCD_PORT:-2379}"
case "$ETCD_PORT" in
    '' | *[!0-9]*)
        echo "etcd.sh: error: ETCD_PORT must be a port number, got '$ETCD_PORT'" >&2
        exit 1
        ;;
esac
ETCD_PEER_PORT="${ETCD_PEER_PORT:-$((ETCD_PORT + 1))}"
ETCD_DIR="${ETCD_DIR:-${TMPDIR:-/tmp}/console-etcd-${ETCD_PORT}}"
ETCD_START_TIMEOUT="${ETCD_START_TIMEOUT:-60}"
ETCD_STOP_TIMEOUT="${ETCD_STOP_TIMEOUT:-20}"
readonly ETCD_DATA="$ETCD_DIR/data"
readonly ETCD_PID_FILE="$ETCD_DIR/etcd.pid"
readonly ETCD_LOG="$ETCD_DIR/etcd.log"

usage() {
    echo "usage: $0 {start|stop|status|restart|clean}" >&2
    echo "  start    install (if needed) and start etcd on $ETCD_HOST:$ETCD_PORT; no-op if it answers already" >&2
    echo "  stop     stop the server this script started (keeps the data dir)" >&2
    echo "  status   exit 0 if an etcd answers healthy on the port, 3 if nothing listens, 1 otherwise" >&2
    echo "  restart  stop, then start (keeps the data dir: leases survive a short outage)" >&2
    echo "  clean    stop, then delete $ETCD_DIR (all data)" >&2
}

log() { echo "etcd.sh: $*"; }
die() {
    echo "etcd.sh: error: $*" >&2
    exit 1
}
# alive, now, elapsed_since, before_deadline, log_tail, terminate, apt_install
. "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"

case "$ETCD_PEER_PORT" in
    '' | *[!0-9]*) die "ETCD_PEER_PORT must be a port number, got '$ETCD_PEER_PORT'" ;;
esac
for timeout_var in ETCD_START_TIMEOUT ETCD_STOP_TIMEOUT; do
    [[ "${!timeout_var}" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$timeout_var must be a number of seconds, got '${!timeout_var}'"
done

healthy() {
    command -v etcdctl >/dev/null &&
        ETCDCTL_API=3 timeout 5 etcdctl --endpoints="$ETCD_HOST:$ETCD_PORT" --dial-timeout=2s \
            --command-timeout=2s endpoint health >/dev/null 2>&1
}

# shellcheck disable=SC2016 # the inner script reads its own arguments
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$ETCD_HOST" "$1" 2>/dev/null; }

# Prints the pid from the pid file if that process is still the etcd started with our data dir (a
# stale file, or a pid reused by another process, counts as not running).
our_pid() {
    local pid
    [ -f "$ETCD_PID_FILE" ] || return 1
    pid="$(cat "$ETCD_PID_FILE")"
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--data-dir $ETCD_DATA" || return 1
    echo "$pid"
}




install_if_missing() {
    command -v etcd >/dev/null && command -v etcdctl >/dev/null && return 0
    log "etcd or etcdctl is missing: installing Debian's etcd-server and etcd-client packages"
    # apt_install sets RUNLEVEL=1: invoke-rc.d then starts no service, so the package's own etcd
    # (on 2379, data in /var/lib/etcd) is not started beside ours.
    apt_install etcd-server etcd-client
    command -v etcd >/dev/null && command -v etcdctl >/dev/null ||
        die "installed etcd-server and etcd-client but etcd or etcdctl is still missing"
}

start() {
    local started pid
    started="$(now)"
    if healthy; then
        log "already running: $ETCD_HOST:$ETCD_PORT answers healthy; nothing to do ($(elapsed_since "$started") s)"
        return 0
    fi
    if pid="$(our_pid)"; then
        log "server started earlier (pid $pid) is not healthy yet; waiting for it"
    else
        for port in "$ETCD_PORT" "$ETCD_PEER_PORT"; do
            if port_open "$port"; then
                die "$ETCD_HOST:$port is in use by something that is not a healthy etcd; set ETCD_PORT (and ETCD_PEER_PORT) to use other ports"
            fi
        done
        install_if_missing
        mkdir -p "$ETCD_DATA"
        chmod 700 "$ETCD_DATA"
        local peer="http://$ETCD_HOST:$ETCD_PEER_PORT" client="http://$ETCD_HOST:$ETCD_PORT"
        local args=(--name console-etcd --data-dir "$ETCD_DATA"
            --listen-client-urls "$client" --advertise-client-urls "$client"
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
            --initial-cluster "console-etcd=$peer" --initial-cluster-state new
            --logger zap --log-outputs stderr)
        {
            echo
            echo "=== $(date -Is) deploy/etcd.sh start: etcd ${args[*]} ==="
        } >>"$ETCD_LOG"
        # setsid: the server gets its own session, so it outlives the shell that started it.
        # fd 9 (the start lock) is closed so the server does not hold it.
        setsid etcd "${args[@]}" >>"$ETCD_LOG" 2>&1 </dev/null 9>&- &
        pid=$!
        echo "$pid" >"$ETCD_PID_FILE"
        log "started pid $pid (data $ETCD_DATA, log $ETCD_LOG); waiting up to ${ETCD_START_TIMEOUT}s until it is healthy"
    fi
    while before_deadline "$started" "$ETCD_START_TIMEOUT"; do
        if healthy; then
            log "ready: $ETCD_HOST:$ETCD_PORT is healthy after $(elapsed_since "$started") s"
            return 0
        fi
        if ! alive "$pid"; then
            rm -f "$ETCD_PID_FILE"
            log_tail "$ETCD_LOG"
            die "etcd (pid $pid) exited before it was healthy on $ETCD_HOST:$ETCD_PORT; see $ETCD_LOG"
        fi
        sleep 0.1
    done
    log_tail "$ETCD_LOG"
    die "etcd (pid $pid) was not healthy on $ETCD_HOST:$ETCD_PORT within ${ETCD_START_TIMEOUT}s; it is left running, see $ETCD_LOG"
}

stop() {
    local pid started
    started="$(now)"
    if ! pid="$(our_pid)"; then
        rm -f "$ETCD_PID_FILE"
        if port_open "$ETCD_PORT"; then
            die "something listens on $ETCD_HOST:$ETCD_PORT but was not started by this script (no live pid in $ETCD_PID_FILE); not stopping it"
        fi
        log "not running (no server started by this script); nothing to stop"
        return 0
    fi
    terminate "$pid" "" "$started" "$ETCD_STOP_TIMEOUT"
    rm -f "$ETCD_PID_FILE"
    while port_open "$ETCD_PORT"; do
        before_deadline "$started" "$(awk -v t="$ETCD_STOP_TIMEOUT" 'BEGIN { print t + 10 }')" ||
            die "pid $pid is gone but $ETCD_HOST:$ETCD_PORT still accepts connections"
        sleep 0.1
    done
    log "stopped; $ETCD_HOST:$ETCD_PORT is closed ($(elapsed_since "$started") s; data kept in $ETCD_DATA)"
}

status() {
    local pid
    if healthy; then
        if pid="$(our_pid)"; then
            log "running: pid $pid on $ETCD_HOST:$ETCD_PORT (data $ETCD_DATA, log $ETCD_LOG)"
        else
            log "running on $ETCD_HOST:$ETCD_PORT, but not started by this script"
        fi
        return 0
    fi
    if ! port_open "$ETCD_PORT"; then
        log "not running on $ETCD_HOST:$ETCD_PORT"
        return 3
    fi
    if pid="$(our_pid)"; then
        log "pid $pid listens on $ETCD_HOST:$ETCD_PORT but is not healthy (starting, or stuck: see $ETCD_LOG)"
    else
        log "something listens on $ETCD_HOST:$ETCD_PORT but is not a healthy etcd"
    fi
    return 1
}

clean() {
    stop
    rm -rf "$ETCD_DIR"
    log "removed $ETCD_DIR"
}

[ $# -eq 1 ] || {
    usage
    exit 2
}

mkdir -p "$ETCD_DIR"
# One start/stop at a time per port: two test runs starting at once must not launch two servers.
exec 9>"$ETCD_DIR/.lock"
flock -w "$(awk -v a="$ETCD_START_TIMEOUT" -v b="$ETCD_STOP_TIMEOUT" 'BEGIN { print a + b + 10 }')" 9 || die "another deploy/etcd.sh holds $ETCD_DIR/.lock"

case "$1" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart)
        stop
        start
        ;;
    clean) clean ;;
    -h | --help | help) usage ;;
    *)
        usage
        exit 2
        ;;
esac
