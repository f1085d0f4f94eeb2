#!/usr/bin/env bash
# A local ZooKeeper for development and tests: one standalone server, or (ZK_ENSEMBLE=N) an
# ensemble of N servers on loopback.
#
# Uses Debian's `zookeeper` package (installed with apt-get when missing) and configs of its own in
# a temp dir, so nothing under /etc is changed. Every server listens on 127.0.0.1 only, with a short
# tickTime so tests can use 1-2 s session timeouts, while maxSessionTimeout stays at 60 s so
# production-like timeouts are not cut down.
#
# Files of the standalone server (all under $ZK_DIR, default ${TMPDIR:-/tmp}/console-zookeeper-$ZK_PORT):
#   zoo.cfg          the config, rewritten on every start
#   data/            dataDir: kept across stop/start so sessions can survive a short outage
#   zookeeper.pid    pid of the server this script started
#   zookeeper.log    server output, appended to on every start
# An ensemble (ZK_DIR default ${TMPDIR:-/tmp}/console-zookeeper-ensemble-$ZK_PORT) has the same
# files per member under $ZK_DIR/member-<N>/, and data/myid holds N.
#
# Environment:
#   ZK_PORT            client port (default 2181); of member 1 in an ensemble
#   ZK_DIR             where the files above live
#   ZK_HEAP            JVM max heap (default 256m), per server
#   ZK_START_TIMEOUT   seconds to wait for `imok` (default 60)
#   ZK_STOP_TIMEOUT    seconds to wait for a graceful stop before SIGKILL (default 20)
#   ZK_ENSEMBLE        number of servers (default 1: the standalone server)
#   ZK_CLIENT_PORTS    ensemble: the members' client ports, comma-separated (default ZK_PORT, ZK_PORT+1, ...)
#   ZK_QUORUM_PORTS    ensemble: the members' quorum ports (default ZK_PORT+707, +708, ...: 2888... for 2181)
#   ZK_ELECTION_PORTS  ensemble: the members' election ports (default ZK_PORT+1707, ...: 3888... for 2181)
#   ZK_MEMBER          ensemble: act on this member (1..N) only; default all of them
set -euo pipefail

readonly ZK_HOST=127.0.0.1
ZK_PORT="${ZK_PORT:-2181}"
ZK_ENSEMBLE="${ZK_ENSEMBLE:-1}"
if [ "$ZK_ENSEMBLE" = 1 ]; then
    ZK_DIR="${ZK_DIR:-${TMPDIR:-/tmp}/console-zookeeper-${ZK_PORT}}"
else
    ZK_DIR="${ZK_DIR:-${TMPDIR:-/tmp}/console-zookeeper-ensemble-${ZK_PORT}}"
fi
ZK_HEAP="${ZK_HEAP:-256m}"
ZK_START_TIMEOUT="${ZK_START_TIMEOUT:-60}"
ZK_STOP_TIMEOUT="${ZK_STOP_TIMEOUT:-20}"
ZK_MEMBER="${ZK_MEMBER:-}"
readonly ZK_BIN=/usr/share/zookeeper/bin

usage() {
    echo "usage: $0 {start|stop|status|restart|clean|kill|leader}" >&2
    echo "  start    install (if needed) and start ZooKeeper on $ZK_HOST:$ZK_PORT; no-op if it answers already" >&2
    echo "  stop     stop the server this script started (keeps the data dir)" >&2
    echo "  status   exit 0 if a server answers 'imok' on the port, 3 if none does" >&2
    echo "  restart  stop, then start (keeps the data dir: sessions survive a short outage)" >&2
    echo "  clean    stop, then delete $ZK_DIR (all data)" >&2
    echo "  kill     SIGKILL the server this script started (keeps the data dir)" >&2
    echo "  leader   ensemble: print the leader as 'N $ZK_HOST:PORT'; exit 3 if no member leads" >&2
    echo "With ZK_ENSEMBLE=N (N > 1) every command acts on N servers (or on member ZK_MEMBER only);" >&2
    echo "status then prints each member's Mode and exits 0 if all serve, 3 if none answers, 1 otherwise." >&2
}

log() { echo "zookeeper.sh: $*"; }
die() {
    echo "zookeeper.sh: error: $*" >&2
    exit 1
}
# alive, now, elapsed_since, before_deadline, log_tail, terminate, apt_install
. "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

is_port "$ZK_PORT" || die "ZK_PORT must be a port number, got '$ZK_PORT'"
for timeout_var in ZK_START_TIMEOUT ZK_STOP_TIMEOUT; do
    [[ "${!timeout_var}" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$timeout_var must be a number of seconds, got '${!timeout_var}'"
done
[[ "$ZK_ENSEMBLE" =~ ^[1-9][0-9]*$ ]] || die "ZK_ENSEMBLE must be a number of servers (1 or more), got '$ZK_ENSEMBLE'"

# ports_of VAR OFFSET: the ensemble's ports from the comma-separated list in VAR, or, when VAR is
# unset, ZK_PORT+OFFSET, ZK_PORT+OFFSET+1, ...; one per member.
ports_of() {
    local var="$1" offset="$2" list port i
    local -a ports=()
    list="${!var:-}"
    if [ -z "$list" ]; then
        for ((i = 0; i < ZK_ENSEMBLE; i++)); do ports+=("$((ZK_PORT + offset + i))"); done
    else
        IFS=',' read -r -a ports <<<"$list"
    fi
    [ "${#ports[@]}" -eq "$ZK_ENSEMBLE" ] || die "$var must list $ZK_ENSEMBLE ports (one per member), got '$list'"
    for port in "${ports[@]}"; do
        is_port "$port" || die "$var: '$port' is not a port number"
    done
    echo "${ports[*]}"
}

if [ "$ZK_ENSEMBLE" -gt 1 ]; then
    # (Assigned first: a failing substitution inside `read <<<` would not stop the script.)
    ports="$(ports_of ZK_CLIENT_PORTS 0)"
    read -r -a CLIENT_PORTS <<<"$ports"
    ports="$(ports_of ZK_QUORUM_PORTS 707)"
    read -r -a QUORUM_PORTS <<<"$ports"
    ports="$(ports_of ZK_ELECTION_PORTS 1707)"
    read -r -a ELECTION_PORTS <<<"$ports"
    readonly CLIENT_PORTS QUORUM_PORTS ELECTION_PORTS
    if [ -n "$ZK_MEMBER" ]; then
        [[ "$ZK_MEMBER" =~ ^[0-9]+$ ]] && [ "$ZK_MEMBER" -ge 1 ] && [ "$ZK_MEMBER" -le "$ZK_ENSEMBLE" ] ||
            die "ZK_MEMBER must be a member number from 1 to $ZK_ENSEMBLE, got '$ZK_MEMBER'"
        SELECTED=("$ZK_MEMBER")
    else
        mapfile -t SELECTED < <(seq 1 "$ZK_ENSEMBLE")
    fi
else
    [ -z "$ZK_MEMBER" ] || die "ZK_MEMBER needs an ensemble (ZK_ENSEMBLE > 1)"
    SELECTED=("")
fi
readonly SELECTED

# The server the functions below act on: `select_server` (standalone) or `select_server N`
# (ensemble member N) sets these.
SERVER='' PORT='' DIR='' CFG='' DATA='' PID_FILE='' LOG='' LABEL=''
select_server() {
    SERVER="${1:-}"
    if [ -z "$SERVER" ]; then
        PORT="$ZK_PORT" DIR="$ZK_DIR" LABEL=''
    else
        PORT="${CLIENT_PORTS[SERVER - 1]}" DIR="$ZK_DIR/member-$SERVER" LABEL="member $SERVER: "
    fi
    CFG="$DIR/zoo.cfg" DATA="$DIR/data" PID_FILE="$DIR/zookeeper.pid" LOG="$DIR/zookeeper.log"
}

# Sends a four-letter command and prints the reply; fails if nothing listens on the port.
# (The inner script is single-quoted on purpose: it reads its own arguments.)
four_letter() {
    # shellcheck disable=SC2016
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "%s" "$3" >&3 && cat <&3' \
        _ "$ZK_HOST" "$PORT" "$1" 2>/dev/null
}

answers_imok() { [ "$(four_letter ruok || true)" = imok ]; }

# `ruok` only says the process is up; `srvr` reports a Mode once the server serves requests.
serving() { [[ "$(four_letter srvr || true)" == *"Mode: "* ]]; }

# The Mode `srvr` reports (standalone, leader, follower), or nothing.
mode() { { four_letter srvr || true; } | sed -n 's/^Mode: //p'; }

# shellcheck disable=SC2016
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$ZK_HOST" "$PORT" 2>/dev/null; }

# Prints the pid from the pid file if that process is still the ZooKeeper started with our config
# (a stale file, or a pid reused by another process, counts as not running).
our_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid="$(cat "$PID_FILE")"
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$CFG" || return 1
    echo "$pid"
}

install_if_missing() {
    [ -x "$ZK_BIN/zkServer.sh" ] && return 0
    log "$ZK_BIN/zkServer.sh is missing: installing Debian's zookeeper package"
    apt_install zookeeper
    [ -x "$ZK_BIN/zkServer.sh" ] || die "installed zookeeper but $ZK_BIN/zkServer.sh is still missing"
}

write_config() {
    local i
    mkdir -p "$DATA"
    # tickTime 200 ms: session timeouts must lie in [minSessionTimeout, maxSessionTimeout], and
    # expiry is checked once per tick, so a short tick makes 1-2 s test sessions expire on time.
    cat >"$CFG" <<EOF
# Written by deploy/zookeeper.sh; rewritten on every start.
tickTime=200
initLimit=10
syncLimit=5
dataDir=$DATA
clientPort=$PORT
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
    [ -n "$SERVER" ] || return 0
    # An ensemble member: its number in data/myid, every member (quorum and election port) here.
    echo "$SERVER" >"$DATA/myid"
    {
        echo "# The ensemble: server.N=host:quorum port:election port"
        for ((i = 1; i <= ZK_ENSEMBLE; i++)); do
            echo "server.$i=$ZK_HOST:${QUORUM_PORTS[i - 1]}:${ELECTION_PORTS[i - 1]}"
        done
    } >>"$CFG"
}

# The Debian package ships no SLF4J binding on the server's class path, so the server would log
# nothing; slf4j-simple (a dependency of the package) sends the log to stderr, i.e. to the log file.
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

# Starts the selected server unless a process of ours runs already, without waiting for it;
# sets LAUNCHED to its pid.
LAUNCHED=''
launch() {
    local pid
    if pid="$(our_pid)"; then
        log "${LABEL}server started earlier (pid $pid) does not answer yet; waiting for it"
        LAUNCHED="$pid"
        return 0
    fi
    if port_open; then
        die "${LABEL}$ZK_HOST:$PORT is in use by something that does not answer 'ruok' with 'imok'" \
            "(another service, or a ZooKeeper without ruok in its 4lw whitelist); set ZK_PORT to use another port"
    fi
    install_if_missing
    write_config
    {
        echo
        echo "=== $(date -Is) deploy/zookeeper.sh start: $ZK_BIN/zkServer.sh start-foreground $CFG ==="
    } >>"$LOG"
    # setsid: the server gets its own session, so it outlives the shell (and process group) that
    # started it, e.g. a test run that is interrupted. zkServer.sh execs java, so $! is the JVM.
    # fd 9 (the start lock) is closed so the server does not hold it.
    JMXDISABLE=true SERVER_JVMFLAGS="$(server_jvmflags)" \
        setsid "$ZK_BIN/zkServer.sh" start-foreground "$CFG" >>"$LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "${LABEL}started pid $pid (config $CFG, log $LOG); waiting up to ${ZK_START_TIMEOUT}s for imok"
    LAUNCHED="$pid"
}

# wait_serving STARTED PID: waits until the selected server answers imok and serves.
wait_serving() {
    local started="$1" pid="$2"
    while before_deadline "$started" "$ZK_START_TIMEOUT"; do
        if answers_imok && serving; then
            log "${LABEL}ready: $ZK_HOST:$PORT answers imok after $(elapsed_since "$started") s"
            return 0
        fi
        if ! alive "$pid"; then
            rm -f "$PID_FILE"
            log_tail "$LOG"
            die "${LABEL}ZooKeeper (pid $pid) exited before answering on $ZK_HOST:$PORT; see $LOG"
        fi
        sleep 0.1
    done
    log_tail "$LOG"
    die "${LABEL}ZooKeeper (pid $pid) did not answer imok on $ZK_HOST:$PORT within ${ZK_START_TIMEOUT}s; it is left running, see $LOG"
}

# Starts every selected server that does not answer yet, then waits for each: the members of an
# ensemble serve only once a quorum of them runs, so all are launched before any is waited for.
# A member's port held by another ZooKeeper fails the start before anything is launched.
start() {
    local started server i
    local -a missing=() pids=()
    started="$(now)"
    for server in "${SELECTED[@]}"; do
        select_server "$server"
        if ! answers_imok; then
            missing+=("$server")
        elif [ -n "$SERVER" ] && ! our_pid >/dev/null; then
            die "${LABEL}a ZooKeeper that is not this ensemble's member $SERVER answers on $ZK_HOST:$PORT;" \
                "set ZK_PORT or ZK_CLIENT_PORTS to use other ports"
        else
            log "${LABEL}already running: $ZK_HOST:$PORT answers imok; nothing to do ($(elapsed_since "$started") s)"
        fi
    done
    for server in "${missing[@]}"; do
        select_server "$server"
        launch
        pids+=("$LAUNCHED")
    done
    for i in "${!missing[@]}"; do
        select_server "${missing[i]}"
        wait_serving "$started" "${pids[i]}"
    done
}

# Stops the selected server: SIGTERM (SIGKILL after ZK_STOP_TIMEOUT), or SIGKILL at once with
# `stop_server kill`; waits until its port is closed.
stop_server() {
    local how="${1:-term}" pid started
    started="$(now)"
    if ! pid="$(our_pid)"; then
        rm -f "$PID_FILE"
        if answers_imok; then
            die "${LABEL}a ZooKeeper answers on $ZK_HOST:$PORT but was not started by this script (no live pid in $PID_FILE); not stopping it"
        fi
        log "${LABEL}not running (no server started by this script); nothing to stop"
        return 0
    fi
    if [ "$how" = kill ]; then
        log "${LABEL}killing pid $pid (SIGKILL)"
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid"; do sleep 0.05; done
    else
        terminate "$pid" "$LABEL" "$started" "$ZK_STOP_TIMEOUT"
    fi
    rm -f "$PID_FILE"
    # The port is normally closed once the JVM is gone; wait for it anyway so that a start right
    # after stop never races with the old listener.
    while port_open; do
        before_deadline "$started" "$(awk -v t="$ZK_STOP_TIMEOUT" 'BEGIN { print t + 10 }')" ||
            die "${LABEL}pid $pid is gone but $ZK_HOST:$PORT still accepts connections"
        sleep 0.1
    done
    log "${LABEL}stopped; $ZK_HOST:$PORT is closed ($(elapsed_since "$started") s; data kept in $DATA)"
}

stop() {
    local server
    for server in "${SELECTED[@]}"; do
        select_server "$server"
        stop_server "$@"
    done
}

# Reports the selected server; exit status 0 if it answers imok, 3 if not.
status_server() {
    local pid
    if answers_imok; then
        if pid="$(our_pid)"; then
            log "${LABEL}running: pid $pid on $ZK_HOST:$PORT (config $CFG, log $LOG)"
        else
            log "${LABEL}running on $ZK_HOST:$PORT, but not started by this script"
        fi
        { four_letter srvr || true; } | grep -E '^(Zookeeper version|Mode|Node count|Connections)' | sed 's/^/  /' || true
        [ -z "$SERVER" ] || serving || return 1
        return 0
    fi
    if pid="$(our_pid)"; then
        log "${LABEL}pid $pid is alive but $ZK_HOST:$PORT does not answer imok (starting, or stuck: see $LOG)"
    else
        log "${LABEL}not running on $ZK_HOST:$PORT"
    fi
    return 3
}

# Standalone: the server's status. Ensemble: every selected member's; 0 if all serve, 3 if none
# answers, 1 otherwise.
status() {
    local server code serving_count=0 silent_count=0
    for server in "${SELECTED[@]}"; do
        select_server "$server"
        code=0
        status_server || code=$?
        [ "$code" -eq 0 ] && serving_count=$((serving_count + 1))
        [ "$code" -eq 3 ] && silent_count=$((silent_count + 1))
    done
    [ "$serving_count" -eq "${#SELECTED[@]}" ] && return 0
    [ "$silent_count" -eq "${#SELECTED[@]}" ] && return 3
    return 1
}

# Prints `N host:port` of the member whose `srvr` says `Mode: leader`.
leader() {
    local server
    [ -n "${SELECTED[0]}" ] || die "leader needs an ensemble (ZK_ENSEMBLE > 1)"
    for server in "${SELECTED[@]}"; do
        select_server "$server"
        if [ "$(mode)" = leader ]; then
            echo "$SERVER $ZK_HOST:$PORT"
            return 0
        fi
    done
    log "no member leads (no quorum, or an election is under way)" >&2
    return 3
}

clean() {
    stop
    if [ -n "$ZK_MEMBER" ]; then
        select_server "$ZK_MEMBER"
        rm -rf "$DIR"
        log "${LABEL}removed $DIR"
    else
        rm -rf "$ZK_DIR"
        log "removed $ZK_DIR"
    fi
}

[ $# -eq 1 ] || {
    usage
    exit 2
}

mkdir -p "$ZK_DIR"
for server in "${SELECTED[@]}"; do
    select_server "$server"
    mkdir -p "$DIR"
done
# One start/stop at a time per directory: two test runs starting at once must not launch two servers.
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
    kill) stop kill ;;
    leader) leader ;;
    -h | --help | help) usage ;;
    *)
        usage
        exit 2
        ;;
esac
