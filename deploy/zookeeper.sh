#!/usr/bin/env bash
# A local, single-node ZooKeeper for development and tests.
#
# Uses Debian's `zookeeper` package (installed with apt-get when missing) and a config of its own in a
# temp dir, so nothing under /etc is changed. The server listens on 127.0.0.1 only, with a short
# tickTime so tests can use 1-2 s session timeouts, while maxSessionTimeout stays at 60 s so
# production-like timeouts are not cut down.
#
# Files (all under $ZK_DIR, default ${TMPDIR:-/tmp}/console-zookeeper-$ZK_PORT):
#   zoo.cfg          the config, rewritten on every start
#   data/            dataDir: kept across stop/start so sessions can survive a short outage
#   zookeeper.pid    pid of the server this script started
#   zookeeper.log    server output, appended to on every start
#
# Environment:
#   ZK_PORT            client port (default 2181)
#   ZK_DIR             where the files above live
#   ZK_HEAP            JVM max heap (default 256m)
#   ZK_START_TIMEOUT   seconds to wait for `imok` (default 60)
#   ZK_STOP_TIMEOUT    seconds to wait for a graceful stop before SIGKILL (default 20)
set -euo pipefail

readonly ZK_HOST=127.0.0.1
ZK_PORT="${ZK_PORT:-2181}"
ZK_DIR="${ZK_DIR:-${TMPDIR:-/tmp}/console-zookeeper-${ZK_PORT}}"
ZK_HEAP="${ZK_HEAP:-256m}"
ZK_START_TIMEOUT="${ZK_START_TIMEOUT:-60}"
ZK_STOP_TIMEOUT="${ZK_STOP_TIMEOUT:-20}"
readonly ZK_BIN=/usr/share/zookeeper/bin
readonly ZK_CFG="$ZK_DIR/zoo.cfg"
readonly ZK_DATA="$ZK_DIR/data"
readonly ZK_PID_FILE="$ZK_DIR/zookeeper.pid"
readonly ZK_LOG="$ZK_DIR/zookeeper.log"

usage() {
    echo "usage: $0 {start|stop|status|restart|clean}" >&2
    echo "  start    install (if needed) and start ZooKeeper on $ZK_HOST:$ZK_PORT; no-op if it answers already" >&2
    echo "  stop     stop the server this script started (keeps the data dir)" >&2
    echo "  status   exit 0 if a server answers 'imok' on the port, 3 if none does" >&2
    echo "  restart  stop, then start (keeps the data dir: sessions survive a short outage)" >&2
    echo "  clean    stop, then delete $ZK_DIR (all data)" >&2
}

log() { echo "zookeeper.sh: $*"; }
die() {
    echo "zookeeper.sh: error: $*" >&2
    exit 1
}
# alive, now, elapsed_since, before_deadline, log_tail, terminate, apt_install
. "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"

case "$ZK_PORT" in
    '' | *[!0-9]*) die "ZK_PORT must be a port number, got '$ZK_PORT'" ;;
esac
for timeout_var in ZK_START_TIMEOUT ZK_STOP_TIMEOUT; do
    [[ "${!timeout_var}" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$timeout_var must be a number of seconds, got '${!timeout_var}'"
done

# Sends a four-letter command and prints the reply; fails if nothing listens on the port.
# (The inner script is single-quoted on purpose: it reads its own arguments.)
four_letter() {
    # shellcheck disable=SC2016
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "%s" "$3" >&3 && cat <&3' \
        _ "$ZK_HOST" "$ZK_PORT" "$1" 2>/dev/null
}

answers_imok() { [ "$(four_letter ruok || true)" = imok ]; }

# `ruok` only says the process is up; `srvr` reports a Mode once the server serves requests.
serving() { [[ "$(four_letter srvr || true)" == *"Mode: "* ]]; }

# shellcheck disable=SC2016
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$ZK_HOST" "$ZK_PORT" 2>/dev/null; }

# Prints the pid from the pid file if that process is still the ZooKeeper started with our config
# (a stale file, or a pid reused by another process, counts as not running).
our_pid() {
    local pid
    [ -f "$ZK_PID_FILE" ] || return 1
    pid="$(cat "$ZK_PID_FILE")"
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$ZK_CFG" || return 1
    echo "$pid"
}

# kill -0 alone would call a zombie alive: the server is our child while `start` waits for it.



install_if_missing() {
    [ -x "$ZK_BIN/zkServer.sh" ] && return 0
    log "$ZK_BIN/zkServer.sh is missing: installing Debian's zookeeper package"
    apt_install zookeeper
    [ -x "$ZK_BIN/zkServer.sh" ] || die "installed zookeeper but $ZK_BIN/zkServer.sh is still missing"
}

write_config() {
    mkdir -p "$ZK_DATA"
    # tickTime 200 ms: session timeouts must lie in [minSessionTimeout, maxSessionTimeout], and
    # expiry is checked once per tick, so a short tick makes 1-2 s test sessions expire on time.
    cat >"$ZK_CFG" <<EOF
# Written by deploy/zookeeper.sh; rewritten on every start.
tickTime=200
initLimit=10
syncLimit=5
dataDir=$ZK_DATA
clientPort=$ZK_PORT
clientPortAddress=$ZK_HOST
minSessionTimeout=400
maxSessionTimeout=60000
maxClientCnxns=0
# Every start writes a snapshot; keep the data dir small across many test restarts.
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
admin.enableServer=false
4lw.commands.whitelist=ruok,mntr,srvr,stat,cons
EOF
}

# The Debian package ships no SLF4J binding on the server's class path, so the server would log
# nothing; slf4j-simple (a dependency of the package) sends the log to stderr, i.e. to $ZK_LOG.
# zkEnv.sh sets CLASSPATH unconditionally; a second -cp in JVMFLAGS comes later and wins.
server_jvmflags() {
    local cp=/etc/zookeeper/conf:/usr/share/java/zookeeper.jar
    if [ -f /usr/share/java/slf4j-simple.jar ]; then
        cp="$cp:/usr/share/java/slf4j-simple.jar"
    fi
    # zkServer.sh expands JVMFLAGS unquoted: no spaces inside one flag. The quotes around T are
    # SimpleDateFormat's literal-text quotes and reach java as they are.
    echo "-Xmx$ZK_HEAP -cp $cp -Dorg.slf4j.simpleLogger.showDateTime=true" \
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS"
}

start() {
    local started pid
    started="$(now)"
    if answers_imok; then
        log "already running: $ZK_HOST:$ZK_PORT answers imok; nothing to do ($(elapsed_since "$started") s)"
        return 0
    fi
    if pid="$(our_pid)"; then
        log "server started earlier (pid $pid) does not answer yet; waiting for it"
    else
        if port_open; then
            die "$ZK_HOST:$ZK_PORT is in use by something that does not answer 'ruok' with 'imok'" \
                "(another service, or a ZooKeeper without ruok in its 4lw whitelist); set ZK_PORT to use another port"
        fi
        install_if_missing
        write_config
        {
            echo
            echo "=== $(date -Is) deploy/zookeeper.sh start: $ZK_BIN/zkServer.sh start-foreground $ZK_CFG ==="
        } >>"$ZK_LOG"
        # setsid: the server gets its own session, so it outlives the shell (and process group) that
        # started it, e.g. a test run that is interrupted. zkServer.sh execs java, so $! is the JVM.
        # fd 9 (the start lock) is closed so the server does not hold it.
        JMXDISABLE=true SERVER_JVMFLAGS="$(server_jvmflags)" \
            setsid "$ZK_BIN/zkServer.sh" start-foreground "$ZK_CFG" >>"$ZK_LOG" 2>&1 </dev/null 9>&- &
        pid=$!
        echo "$pid" >"$ZK_PID_FILE"
        log "started pid $pid (config $ZK_CFG, log $ZK_LOG); waiting up to ${ZK_START_TIMEOUT}s for imok"
    fi
    while before_deadline "$started" "$ZK_START_TIMEOUT"; do
        if answers_imok && serving; then
            log "ready: $ZK_HOST:$ZK_PORT answers imok after $(elapsed_since "$started") s"
            return 0
        fi
        if ! alive "$pid"; then
            rm -f "$ZK_PID_FILE"
            log_tail "$ZK_LOG"
            die "ZooKeeper (pid $pid) exited before answering on $ZK_HOST:$ZK_PORT; see $ZK_LOG"
        fi
        sleep 0.1
    done
    log_tail "$ZK_LOG"
    die "ZooKeeper (pid $pid) did not answer imok on $ZK_HOST:$ZK_PORT within ${ZK_START_TIMEOUT}s; it is left running, see $ZK_LOG"
}

stop() {
    local pid started
    started="$(now)"
    if ! pid="$(our_pid)"; then
        rm -f "$ZK_PID_FILE"
        if answers_imok; then
            die "a ZooKeeper answers on $ZK_HOST:$ZK_PORT but was not started by this script (no live pid in $ZK_PID_FILE); not stopping it"
        fi
        log "not running (no server started by this script); nothing to stop"
        return 0
    fi
    terminate "$pid" "" "$started" "$ZK_STOP_TIMEOUT"
    rm -f "$ZK_PID_FILE"
    # The port is normally closed once the JVM is gone; wait for it anyway so that a start right
    # after stop never races with the old listener.
    while port_open; do
        before_deadline "$started" "$(awk -v t="$ZK_STOP_TIMEOUT" 'BEGIN { print t + 10 }')" ||
            die "pid $pid is gone but $ZK_HOST:$ZK_PORT still accepts connections"
        sleep 0.1
    done
    log "stopped; $ZK_HOST:$ZK_PORT is closed ($(elapsed_since "$started") s; data kept in $ZK_DATA)"
}

status() {
    local pid
    if answers_imok; then
        if pid="$(our_pid)"; then
            log "running: pid $pid on $ZK_HOST:$ZK_PORT (config $ZK_CFG, log $ZK_LOG)"
        else
            log "running on $ZK_HOST:$ZK_PORT, but not started by this script"
        fi
        { four_letter srvr || true; } | grep -E '^(Zookeeper version|Mode|Node count|Connections)' | sed 's/^/  /' || true
        return 0
    fi
    if pid="$(our_pid)"; then
        log "pid $pid is alive but $ZK_HOST:$ZK_PORT does not answer imok (starting, or stuck: see $ZK_LOG)"
    else
        log "not running on $ZK_HOST:$ZK_PORT"
    fi
    return 3
}

clean() {
    stop
    rm -rf "$ZK_DIR"
    log "removed $ZK_DIR"
}

[ $# -eq 1 ] || {
    usage
    exit 2
}

mkdir -p "$ZK_DIR"
# One start/stop at a time per port: two test runs starting at once must not launch two servers.
exec 9>"$ZK_DIR/.lock"
flock -w "$(awk -v a="$ZK_START_TIMEOUT" -v b="$ZK_STOP_TIMEOUT" 'BEGIN { print a + b + 10 }')" 9 || die "another deploy/zookeeper.sh holds $ZK_DIR/.lock"

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
