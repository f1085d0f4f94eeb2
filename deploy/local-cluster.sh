#!/usr/bin/env bash
# A local 3-node console cluster on this machine, for trying the cluster out by hand.
#
#   deploy/local-cluster.sh start [zookeeper|mysql|etcd]    (default zookeeper)
#   deploy/local-cluster.sh status
#   deploy/local-cluster.sh stop
#
# `start` builds console-server (cargo build --release, a no-op when it is fresh), makes sure the
# services run (deploy/zookeeper.sh for the zookeeper registry, deploy/etcd.sh for etcd,
# deploy/mariadb.sh always: MariaDB
# holds the shared task store), creates the `console` database if missing, and starts nodes
# node-1..node-3 on 127.0.0.1:10001-10003 with deploy/cluster-<registry>.yaml plus environment
# overrides (CONSOLE__SERVER__PORT, CONSOLE__NODE__ID, CONSOLE__NODE__DATA_DIR). Each node runs in
# its own session (setsid), so it outlives the shell that started it. `start` then waits until
# every node answers 200 on the readiness path and prints their URLs. Nodes that already run are
# left alone, so `start` is idempotent.
#
# `stop` sends SIGTERM to each node this script started (pid files), waits for them to exit and
# sends SIGKILL to any still alive after CLUSTER_STOP_TIMEOUT. Apps that the nodes started run in
# sessions of their own and keep running (that is the design: a new owner adopts them); stop them
# through the API first if they should go too. ZooKeeper, etcd and MariaDB are left running.
#
# `status` shows, per node, its pid and the HTTP status of /healthz and of the readiness path;
# it exits 0 when every node is ready, 3 when no node runs, 1 otherwise.
#
# Files (under $CLUSTER_DIR, default ${TMPDIR:-/tmp}/console-local-cluster):
#   registry             the registry type of the running cluster
#   node-N/console.pid   pid of node N
#   node-N/console.log   output of node N, appended to on every start
#   node-N/              node N's working directory
#   node-N/data/         node N's node.data_dir (the apps' logs)
#
# Environment:
#   CLUSTER_DIR            where the files above live
#   CLUSTER_BASE_PORT      port of node-1; node N listens on BASE_PORT+N-1 (default 10001)
#   CLUSTER_NODES          number of nodes (default 3)
#   CLUSTER_READY_PATH     readiness path polled by start and shown by status (default /readyz)
#   CLUSTER_START_TIMEOUT  seconds to wait, once the nodes are started, until all are ready (default 60)
#   CLUSTER_STOP_TIMEOUT   seconds to wait for the nodes to exit before SIGKILL (default 30)
#   CONSOLE_BIN            a console-server binary to use instead of building one
#   RUST_LOG               passed to the nodes (default info)
#   CONSOLE__...           passed to the nodes too, e.g. CONSOLE__REGISTRY__ZOOKEEPER__SESSION_TIMEOUT_MS=2000
set -euo pipefail

# Physical paths: node_pid recognises our nodes by the config path on their command line.
deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
repo_dir="$(cd "$deploy_dir/.." && pwd -P)"
readonly deploy_dir repo_dir

readonly HOST=127.0.0.1
CLUSTER_DIR="${CLUSTER_DIR:-${TMPDIR:-/tmp}/console-local-cluster}"
CLUSTER_BASE_PORT="${CLUSTER_BASE_PORT:-10001}"
CLUSTER_NODES="${CLUSTER_NODES:-3}"
CLUSTER_READY_PATH="${CLUSTER_READY_PATH:-/readyz}"
CLUSTER_START_TIMEOUT="${CLUSTER_START_TIMEOUT:-60}"
CLUSTER_STOP_TIMEOUT="${CLUSTER_STOP_TIMEOUT:-30}"
readonly REGISTRY_FILE="$CLUSTER_DIR/registry"
readonly DATABASE=console

usage() {
    echo "usage: $0 {start|stop|status} [zookeeper|mysql|etcd]" >&2
    echo "  start [REGISTRY]  build console-server if needed, start the services and $CLUSTER_NODES nodes" >&2
    echo "                    on $HOST:$CLUSTER_BASE_PORT..; wait until all are ready (registry: zookeeper)" >&2
    echo "  stop              SIGTERM the nodes this script started and wait until they have exited" >&2
    echo "  status            show which nodes answer /healthz and $CLUSTER_READY_PATH" >&2
    echo "files: $CLUSTER_DIR" >&2
}

log() { echo "local-cluster.sh: $*"; }
die() {
    echo "local-cluster.sh: error: $*" >&2
    exit 1
}

for number_var in CLUSTER_BASE_PORT CLUSTER_NODES; do
    [[ "${!number_var}" =~ ^[1-9][0-9]*$ ]] || die "$number_var must be a positive integer, got '${!number_var}'"
done
for timeout_var in CLUSTER_START_TIMEOUT CLUSTER_STOP_TIMEOUT; do
    [[ "${!timeout_var}" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$timeout_var must be a number of seconds, got '${!timeout_var}'"
done
[ $((CLUSTER_BASE_PORT + CLUSTER_NODES - 1)) -le 65535 ] || die "ports $CLUSTER_BASE_PORT.. do not fit below 65536"
[[ "$CLUSTER_READY_PATH" == /* ]] || die "CLUSTER_READY_PATH must start with '/', got '$CLUSTER_READY_PATH'"

node_id() { echo "node-$1"; }
node_port() { echo $((CLUSTER_BASE_PORT + $1 - 1)); }
node_dir() { echo "$CLUSTER_DIR/node-$1"; }
node_url() { echo "http://$HOST:$(node_port "$1")"; }

now() { date +%s.%N; }
elapsed_since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.2f", e - s }'; }
# True while fewer than $2 seconds have passed since $1.
before_deadline() { awk -v s="$1" -v t="$2" -v e="$(now)" 'BEGIN { exit !(e - s < t) }'; }

# kill -0 alone would call a zombie alive.
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

# Prints the HTTP status of GET $2 on node $1, or 000 when nothing answers.
http_status() {
    curl -s -o /dev/null -w '%{http_code}' --connect-timeout 1 --max-time 2 "$(node_url "$1")$2" || true
}

# shellcheck disable=SC2016 # the inner script reads its own arguments
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$HOST" "$1" 2>/dev/null; }

# Prints node $1's pid if the pid file names a live console-server started with one of our cluster
# configs (a stale file, or a pid reused by another process, counts as not running).
node_pid() {
    local pid_file pid
    pid_file="$(node_dir "$1")/console.pid"
    [ -f "$pid_file" ] || return 1
    pid="$(cat "$pid_file")"
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $deploy_dir/cluster-" || return 1
    echo "$pid"
}

running_registry() { cat "$REGISTRY_FILE" 2>/dev/null || true; }

any_node_running() {
    local n
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        node_pid "$n" >/dev/null && return 0
    done
    return 1
}

# The output of node $1's latest start (the log is appended to on every start).
log_tail() {
    local file
    file="$(node_dir "$1")/console.log"
    if [ -f "$file" ]; then
        echo "--- last lines of $file since its latest start ---" >&2
        awk '/^=== / { n = 0 } { line[++n] = $0 } END { for (i = (n > 30 ? n - 29 : 1); i <= n; i++) print line[i] }' "$file" >&2
        echo "---" >&2
    fi
}

console_bin() {
    if [ -n "${CONSOLE_BIN:-}" ]; then
        [ -x "$CONSOLE_BIN" ] || die "CONSOLE_BIN=$CONSOLE_BIN is not an executable file"
        echo "$CONSOLE_BIN"
        return 0
    fi
    log "building console-server (cargo build --release -p console-server; quick when up to date)" >&2
    (cd "$repo_dir" && cargo build --release -p console-server >&2) || die "cargo build --release -p console-server failed"
    local bin="${CARGO_TARGET_DIR:-$repo_dir/target}/release/console-server"
    [ -x "$bin" ] || die "the build succeeded but $bin is missing"
    echo "$bin"
}

start_services() {
    local registry="$1" reply
    case "$registry" in
        zookeeper) "$deploy_dir/zookeeper.sh" start ;;
        etcd) "$deploy_dir/etcd.sh" start ;;
    esac
    # MariaDB holds the task store for both registries (and the registry itself for mysql).
    "$deploy_dir/mariadb.sh" start
    reply="$(mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE IF NOT EXISTS $DATABASE" 2>&1)" ||
        die "cannot create the '$DATABASE' database: $reply"
    log "database '$DATABASE' exists on $HOST:3306"
}

# Starts node $1 with binary $2 and config $3 unless it already runs.
start_node() {
    local n="$1" bin="$2" config="$3" dir pid port
    dir="$(node_dir "$n")"
    port="$(node_port "$n")"
    if pid="$(node_pid "$n")"; then
        log "$(node_id "$n") already running (pid $pid) on $(node_url "$n")"
        return 0
    fi
    mkdir -p "$dir/data"
    {
        echo
        echo "=== $(date -Is) deploy/local-cluster.sh start: $bin --config $config ($(node_id "$n"), port $port) ==="
    } >>"$dir/console.log"
    # setsid: the node gets its own session and outlives this shell. The working directory is the
    # node's own, so any relative path in the config stays inside it. fd 9 (the lock) is closed.
    # NO_COLOR: the log is a file, not a terminal.
    (
        cd "$dir"
        NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
            CONSOLE__SERVER__PORT="$port" \
            CONSOLE__NODE__ID="$(node_id "$n")" \
            CONSOLE__NODE__DATA_DIR="$dir/data" \
            exec setsid "$bin" --config "$config" >>"$dir/console.log" 2>&1 </dev/null 9>&-
    ) &
    pid=$!
    echo "$pid" >"$dir/console.pid"
    log "started $(node_id "$n") (pid $pid) on $(node_url "$n"); log $dir/console.log"
}

start() {
    local registry="$1" started waiting_since bin config n pid pending code previous
    started="$(now)"
    config="$deploy_dir/cluster-$registry.yaml"
    [ -f "$config" ] || die "$config is missing"
    previous="$(running_registry)"
    if any_node_running && [ -n "$previous" ] && [ "$previous" != "$registry" ]; then
        die "the running cluster uses the $previous registry; run '$0 stop' before starting it with $registry"
    fi
    bin="$(console_bin)"
    start_services "$registry"
    # Check every port first, so that a conflict leaves no half-started cluster behind.
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        if ! node_pid "$n" >/dev/null && port_open "$(node_port "$n")"; then
            die "$HOST:$(node_port "$n") is in use by a process this script did not start; stop it or set CLUSTER_BASE_PORT"
        fi
    done
    echo "$registry" >"$REGISTRY_FILE"
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        start_node "$n" "$bin" "$config"
    done
    # The deadline starts now: a first build may take minutes.
    waiting_since="$(now)"
    log "waiting up to ${CLUSTER_START_TIMEOUT}s until every node answers 200 on $CLUSTER_READY_PATH"
    while true; do
        pending=()
        for ((n = 1; n <= CLUSTER_NODES; n++)); do
            if ! pid="$(node_pid "$n")"; then
                log_tail "$n"
                die "$(node_id "$n") exited before it was ready; see $(node_dir "$n")/console.log" \
                    "('$0 stop' stops the nodes still running)"
            fi
            code="$(http_status "$n" "$CLUSTER_READY_PATH")"
            [ "$code" = 200 ] || pending+=("$(node_id "$n") ($code)")
        done
        [ ${#pending[@]} -eq 0 ] && break
        if ! before_deadline "$waiting_since" "$CLUSTER_START_TIMEOUT"; then
            die "not ready within ${CLUSTER_START_TIMEOUT}s: ${pending[*]} (HTTP status of $CLUSTER_READY_PATH;" \
                "000: no answer); the nodes are left running, see $CLUSTER_DIR/node-*/console.log"
        fi
        sleep 0.2
    done
    log "ready: $CLUSTER_NODES nodes, $registry registry, after $(elapsed_since "$waiting_since") s" \
        "($(elapsed_since "$started") s in all)"
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        echo "  $(node_id "$n")  $(node_url "$n")"
    done
}

stop() {
    local started n pid pids=() ids=() i left
    started="$(now)"
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        if pid="$(node_pid "$n")"; then
            log "stopping $(node_id "$n") (pid $pid, SIGTERM)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            ids+=("$(node_id "$n")")
        else
            rm -f "$(node_dir "$n")/console.pid"
        fi
    done
    if [ ${#pids[@]} -eq 0 ]; then
        rm -f "$REGISTRY_FILE"
        log "no node started by this script is running; nothing to stop"
        return 0
    fi
    # All at once, so the apps do not move from node to node as the cluster shrinks.
    while true; do
        left=()
        for i in "${!pids[@]}"; do
            alive "${pids[$i]}" && left+=("$i")
        done
        [ ${#left[@]} -eq 0 ] && break
        if ! before_deadline "$started" "$CLUSTER_STOP_TIMEOUT"; then
            for i in "${left[@]}"; do
                log "${ids[$i]} (pid ${pids[$i]}) still alive after ${CLUSTER_STOP_TIMEOUT}s; sending SIGKILL"
                kill -KILL "${pids[$i]}" 2>/dev/null || true
            done
            for i in "${left[@]}"; do
                while alive "${pids[$i]}"; do sleep 0.1; done
            done
            break
        fi
        sleep 0.1
    done
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        rm -f "$(node_dir "$n")/console.pid"
    done
    rm -f "$REGISTRY_FILE"
    log "stopped ${ids[*]} after $(elapsed_since "$started") s (logs kept in $CLUSTER_DIR; apps keep running)"
}

status() {
    local n pid health ready running=0 ready_count=0 registry
    registry="$(running_registry)"
    log "cluster dir $CLUSTER_DIR${registry:+, $registry registry}"
    printf '  %-8s %-24s %-8s %-8s %s\n' node url pid healthz "$CLUSTER_READY_PATH"
    for ((n = 1; n <= CLUSTER_NODES; n++)); do
        pid="$(node_pid "$n" || echo -)"
        health="$(http_status "$n" /healthz)"
        ready="$(http_status "$n" "$CLUSTER_READY_PATH")"
        [ "$pid" != - ] && running=$((running + 1))
        [ "$ready" = 200 ] && ready_count=$((ready_count + 1))
        printf '  %-8s %-24s %-8s %-8s %s\n' "$(node_id "$n")" "$(node_url "$n")" "$pid" "$health" "$ready"
    done
    echo "  (HTTP status; 000: no answer. pid '-': not started by this script)"
    if [ "$ready_count" -eq "$CLUSTER_NODES" ]; then
        log "all $CLUSTER_NODES nodes ready"
        return 0
    fi
    if [ "$running" -eq 0 ] && [ "$ready_count" -eq 0 ]; then
        log "not running"
        return 3
    fi
    log "$ready_count of $CLUSTER_NODES nodes ready"
    return 1
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    usage
    exit 2
fi
command="$1"
# The registry argument only matters to start; stop and status accept it for symmetry and act on
# the cluster in $CLUSTER_DIR, whichever registry it uses.
registry="${2:-zookeeper}"
case "$registry" in
    zookeeper | mysql | etcd) ;;
    *)
        usage
        exit 2
        ;;
esac
case "$command" in
    start | stop | status) ;;
    -h | --help | help)
        usage
        exit 0
        ;;
    *)
        usage
        exit 2
        ;;
esac

mkdir -p "$CLUSTER_DIR"
# One start/stop at a time: two starts at once must not launch two nodes on one port.
exec 9>"$CLUSTER_DIR/.lock"
flock -w "$(awk -v a="$CLUSTER_START_TIMEOUT" -v b="$CLUSTER_STOP_TIMEOUT" 'BEGIN { print a + b + 600 }')" 9 ||
    die "another deploy/local-cluster.sh holds $CLUSTER_DIR/.lock"

case "$command" in
    start) start "$registry" ;;
    stop) stop ;;
    status) status ;;
esac
