#!/usr/bin/env bash
# A local Flink 2.3 session cluster (one JobManager, one TaskManager) for development and tests,
# and the example job jar that the tests submit to it.
#
# Flink comes from PyPI: the wheels `apache-flink` (bin/, conf/) and `apache-flink-libraries` (lib/,
# plugins/) unpacked into one folder form a full distribution (their `pyflink/` directory). It is
# installed once into $FLINK_CACHE. The cluster listens on 127.0.0.1 only and keeps its config,
# logs, savepoints and uploads in a run dir of its own, so a second cluster on another port (a test
# that kills its JobManager) runs beside the shared one.
#
# Files (all under $FLINK_RUN_DIR, default ${TMPDIR:-/tmp}/console-flink-$FLINK_REST_PORT):
#   conf/                 config.yaml and log4j-console.properties, rewritten on every start
#   jobmanager.pid        pid of the JobManager JVM this script started (likewise taskmanager.pid)
#   jobmanager.log        its output (the log), appended to on every start (likewise taskmanager.log,
#                         which also holds what jobs print to stdout)
#   savepoints/           the default savepoint directory; kept across stop/start
#   checkpoints/          checkpoints of running jobs
#   uploads/              web.upload.dir (uploaded jars; a restarted JobManager forgets them anyway)
#   tmp/                  io.tmp.dirs
#
# Environment:
#   FLINK_REST_PORT       REST port (default 8081)
#   FLINK_RPC_PORT        JobManager RPC port (default: REST port + 1)
#   FLINK_RUN_DIR         where the files above live
#   FLINK_CACHE           where Flink and the example jar are installed (default ~/.cache/console-flink)
#   FLINK_TASK_SLOTS      task slots of the TaskManager (default 4)
#   FLINK_START_TIMEOUT   seconds to wait for the REST API and a registered TaskManager (default 120)
#   FLINK_STOP_TIMEOUT    seconds to wait for a graceful stop before SIGKILL (default 30)
set -euo pipefail

readonly FLINK_VERSION=2.3.0
readonly FLINK_HOST=127.0.0.1
FLINK_REST_PORT="${FLINK_REST_PORT:-8081}"
FLINK_RPC_PORT="${FLINK_RPC_PORT:-$((FLINK_REST_PORT + 1))}"
FLINK_RUN_DIR="${FLINK_RUN_DIR:-${TMPDIR:-/tmp}/console-flink-${FLINK_REST_PORT}}"
FLINK_CACHE="${FLINK_CACHE:-${HOME:-/root}/.cache/console-flink}"
FLINK_TASK_SLOTS="${FLINK_TASK_SLOTS:-4}"
FLINK_START_TIMEOUT="${FLINK_START_TIMEOUT:-120}"
FLINK_STOP_TIMEOUT="${FLINK_STOP_TIMEOUT:-30}"
readonly INSTALL_DIR="$FLINK_CACHE/flink-$FLINK_VERSION"
readonly DIST="$INSTALL_DIR/pyflink"
readonly CONF_DIR="$FLINK_RUN_DIR/conf"
readonly REST_URL="http://$FLINK_HOST:$FLINK_REST_PORT"
EXAMPLE_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/flink-example"
readonly EXAMPLE_SRC
readonly EXAMPLE_MAIN_CLASS=console.example.CounterJob

usage() {
    echo "usage: $0 {start|stop|status|restart|clean|example-jar}" >&2
    echo "  start        install Flink $FLINK_VERSION (if needed) and start a session cluster on $REST_URL;" >&2
    echo "               starts only what is missing; waits until a TaskManager has registered its slots" >&2
    echo "  stop         stop the JobManager and TaskManager this script started (keeps savepoints)" >&2
    echo "  status       exit 0 if the REST API answers with a TaskManager registered, 3 if nothing listens, 1 otherwise" >&2
    echo "  restart      stop, then start (jobs and uploaded jars are gone afterwards; savepoints stay)" >&2
    echo "  clean        stop, then delete $FLINK_RUN_DIR (savepoints included)" >&2
    echo "  example-jar  build the example job (once per source version) and print the jar's absolute path" >&2
}

log() { echo "flink.sh: $*"; }
die() {
    echo "flink.sh: error: $*" >&2
    exit 1
}
# alive, now, elapsed_since, before_deadline, log_tail, terminate, apt_install
. "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"

for port_var in FLINK_REST_PORT FLINK_RPC_PORT FLINK_TASK_SLOTS; do
    [[ "${!port_var}" =~ ^[1-9][0-9]*$ ]] || die "$port_var must be a positive number, got '${!port_var}'"
done
for timeout_var in FLINK_START_TIMEOUT FLINK_STOP_TIMEOUT; do
    [[ "${!timeout_var}" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$timeout_var must be a number of seconds, got '${!timeout_var}'"
done


# shellcheck disable=SC2016
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$FLINK_HOST" "$1" 2>/dev/null; }

# GET /overview: the cluster summary, e.g. {"taskmanagers":1,"slots-total":4,"slots-available":4,
# "jobs-running":0,...,"flink-version":"2.3.0",...}. Fails if the REST API does not answer.
overview() { curl -sf --max-time 3 "$REST_URL/overview"; }
overview_field() { grep -o "\"$1\":[0-9]*" <<<"$2" | head -n 1 | cut -d: -f2; }
# The REST API answers and at least one TaskManager has registered slots.
answers() {
    local reply total
    reply="$(overview)" || return 1
    total="$(overview_field slots-total "$reply")"
    [ -n "$total" ] && [ "$total" -gt 0 ]
}

# kill -0 alone would call a zombie alive: the JVM is our child while `start` waits for it.

# Prints the pid in $FLINK_RUN_DIR/$1.pid if that process is still the component started with our
# config dir: the JVM (`--configDir $CONF_DIR`), or for its first seconds the start script that
# execs it (a stale file, or a pid reused by another process, counts as not running).
our_pid() {
    local component="$1" pid
    [ -f "$FLINK_RUN_DIR/$component.pid" ] || return 1
    pid="$(cat "$FLINK_RUN_DIR/$component.pid")"
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    alive "$pid" || return 1
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--configDir $CONF_DIR"; then
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIST/bin/$component.sh start-foreground" &&
            grep -qzxF -- "FLINK_CONF_DIR=$CONF_DIR" "/proc/$pid/environ" 2>/dev/null || return 1
    fi
    echo "$pid"
}

# The end of both components' logs on stderr.
flink_log_tail() {
    log_tail "$FLINK_RUN_DIR/jobmanager.log" 30
    log_tail "$FLINK_RUN_DIR/taskmanager.log" 30
}

# Downloads both wheels and unpacks them into $INSTALL_DIR, unless a complete install is there.
# Idempotent and safe to run concurrently (a lock on the cache; the install appears atomically).
install_if_missing() {
    [ -f "$INSTALL_DIR/.complete" ] && return 0
    command -v java >/dev/null || die "java is missing: Flink $FLINK_VERSION needs a JDK 11, 17 or 21 (apt-get install -y openjdk-17-jdk-headless)"
    command -v pip >/dev/null || command -v pip3 >/dev/null || die "pip is missing: it downloads Flink from PyPI"
    command -v unzip >/dev/null || die "unzip is missing: it unpacks the wheels (apt-get install -y unzip)"
    mkdir -p "$FLINK_CACHE"
    exec 8>"$FLINK_CACHE/.install.lock"
    flock -w 900 8 || die "another deploy/flink.sh holds $FLINK_CACHE/.install.lock"
    if [ ! -f "$INSTALL_DIR/.complete" ]; then
        local started staging pip
        started="$(now)"
        pip="$(command -v pip || command -v pip3)"
        staging="$(mktemp -d "$FLINK_CACHE/.install.XXXXXX")"
        log "installing Flink $FLINK_VERSION from PyPI into $INSTALL_DIR (about 330 MB)"
        # apache-flink has only platform wheels; its bin/ and conf/ are the same in each, so one is
        # chosen explicitly whatever the local Python is.
        "$pip" download -q --no-deps --only-binary=:all: --dest "$staging/wheels" \
            --implementation cp --python-version 3.11 --platform manylinux2014_x86_64 \
            "apache-flink==$FLINK_VERSION" "apache-flink-libraries==$FLINK_VERSION" ||
            die "pip download of apache-flink==$FLINK_VERSION and apache-flink-libraries==$FLINK_VERSION failed"
        for wheel in "$staging"/wheels/*.whl; do
            unzip -q -o "$wheel" 'pyflink/*' -d "$staging/unpacked" || die "cannot unpack $wheel"
        done
        [ -x "$staging/unpacked/pyflink/bin/jobmanager.sh" ] && [ -f "$staging/unpacked/pyflink/lib/flink-dist-$FLINK_VERSION.jar" ] ||
            die "the unpacked wheels are not a Flink distribution (no bin/jobmanager.sh or lib/flink-dist-$FLINK_VERSION.jar)"
        rm -rf "$INSTALL_DIR"
        mv "$staging/unpacked" "$INSTALL_DIR"
        rm -rf "$staging"
        touch "$INSTALL_DIR/.complete"
        log "installed Flink $FLINK_VERSION in $(elapsed_since "$started") s: $DIST"
    fi
    exec 8>&-
}

# The --add-opens/--add-exports list of the distribution's own config: without it every job
# submission fails on Java 17 with InaccessibleObjectException.
java_opts_all() {
    local opts
    opts="$(grep -A 3 '^    opts:' "$DIST/conf/config.yaml" | grep -o -- '--add-.*' | head -n 1)"
    [ -n "$opts" ] || die "no env.java.opts.all in $DIST/conf/config.yaml"
    echo "$opts"
}

write_config() {
    mkdir -p "$CONF_DIR" "$FLINK_RUN_DIR"/{savepoints,checkpoints,uploads,tmp,flink-pids}
    cat >"$CONF_DIR/config.yaml" <<EOF
# Written by deploy/flink.sh; rewritten on every start.
env:
  java:
    opts:
      all: $(java_opts_all)
jobmanager:
  bind-host: $FLINK_HOST
  rpc:
    address: $FLINK_HOST
    port: $FLINK_RPC_PORT
  memory:
    process:
      size: 1024m
  execution:
    failover-strategy: region
taskmanager:
  bind-host: $FLINK_HOST
  host: $FLINK_HOST
  numberOfTaskSlots: $FLINK_TASK_SLOTS
  memory:
    process:
      size: 1536m
parallelism:
  default: 1
rest:
  address: $FLINK_HOST
  bind-address: $FLINK_HOST
  port: $FLINK_REST_PORT
web:
  refresh-interval: 500
  upload:
    dir: $FLINK_RUN_DIR/uploads
execution:
  checkpointing:
    savepoint-dir: file://$FLINK_RUN_DIR/savepoints
    dir: file://$FLINK_RUN_DIR/checkpoints
io:
  tmp:
    dirs: $FLINK_RUN_DIR/tmp
# The TaskManager starts beside the JobManager and retries until the ResourceManager is up: every
# 500 ms instead of every 10 s (also after a JobManager restart).
cluster:
  registration:
    error-delay: 500
# A TaskManager learns that its JobManager was killed only when the JobManager's heartbeats stop
# for heartbeat.timeout; then it frees the lost jobs' slots and registers with the restarted one.
# 15 s instead of 50 s (the interval must stay well below it): long enough for a loaded machine.
heartbeat:
  interval: 3000
  timeout: 15000
EOF
    # The log goes to stdout only, which start appends to <component>.log.
    cat >"$CONF_DIR/log4j-console.properties" <<'EOF'
# Written by deploy/flink.sh: everything to the console, which start sends to <component>.log.
monitorInterval=30
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = ConsoleAppender
logger.pekko.name = org.apache.pekko
logger.pekko.level = INFO
logger.netty.name = org.jboss.netty.channel.DefaultChannelPipeline
logger.netty.level = OFF
appender.console.name = ConsoleAppender
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
EOF
}

# The pids this invocation launched, by component: while `start` waits, these are judged by the
# pid alone (our own children), not by `our_pid`'s command-line check, which is for pid files of
# other invocations.
declare -A LAUNCHED=()

# Starts one component (jobmanager|taskmanager) in its own session, so it outlives the shell that
# started it. `<component>.sh start-foreground` execs the JVM, so $! is the JVM's pid.
launch() {
    local component="$1" pid log="$FLINK_RUN_DIR/$1.log"
    echo "=== $(date -Is) deploy/flink.sh start: $DIST/bin/$component.sh start-foreground (conf $CONF_DIR) ===" >>"$log"
    # fd 9 (the start lock) is closed so the JVM does not hold it.
    FLINK_CONF_DIR="$CONF_DIR" FLINK_LOG_DIR="$FLINK_RUN_DIR" FLINK_PID_DIR="$FLINK_RUN_DIR/flink-pids" \
        setsid "$DIST/bin/$component.sh" start-foreground >>"$log" 2>&1 </dev/null 9>&- &
    pid=$!
    LAUNCHED[$component]="$pid"
    echo "$pid" >"$FLINK_RUN_DIR/$component.pid"
    log "started $component, pid $pid (log $log)"
}

start() {
    local started jm_pid tm_pid reply
    started="$(now)"
    jm_pid="$(our_pid jobmanager || true)"
    tm_pid="$(our_pid taskmanager || true)"
    if [ -n "$jm_pid" ] && [ -n "$tm_pid" ] && answers; then
        log "already running: $REST_URL answers with a TaskManager registered; nothing to do ($(elapsed_since "$started") s)"
        return 0
    fi
    if [ -z "$jm_pid" ] && { port_open "$FLINK_REST_PORT" || port_open "$FLINK_RPC_PORT"; }; then
        if answers; then
            die "a Flink cluster answers on $REST_URL but was not started by this script with $CONF_DIR; set FLINK_REST_PORT to use another port"
        fi
        die "$FLINK_HOST:$FLINK_REST_PORT or $FLINK_HOST:$FLINK_RPC_PORT is in use by something else; set FLINK_REST_PORT (and FLINK_RPC_PORT)"
    fi
    install_if_missing
    if [ -z "$jm_pid" ] || [ -z "$tm_pid" ]; then
        write_config
    fi
    # A TaskManager that outlived its JobManager (killed by a test) registers with the new one.
    [ -n "$jm_pid" ] || launch jobmanager
    [ -n "$tm_pid" ] || launch taskmanager
    jm_pid="$(our_pid jobmanager)" || die "the JobManager exited at once; see $FLINK_RUN_DIR/jobmanager.log"
    tm_pid="$(our_pid taskmanager)" || die "the TaskManager exited at once; see $FLINK_RUN_DIR/taskmanager.log"
    log "waiting up to ${FLINK_START_TIMEOUT}s for $REST_URL and a registered TaskManager"
    while before_deadline "$started" "$FLINK_START_TIMEOUT"; do
        if reply="$(overview)" && answers; then
            log "ready: $REST_URL after $(elapsed_since "$started") s ($(overview_field taskmanagers "$reply") TaskManager," \
                "$(overview_field slots-available "$reply") of $(overview_field slots-total "$reply") slots free)"
            return 0
        fi
        for component in jobmanager taskmanager; do
            local launched="${LAUNCHED[$component]:-}" status=0
            if [ -n "$launched" ]; then
                alive "$launched" && continue
                wait "$launched" || status=$?
                flink_log_tail
                die "the $component (pid $launched) exited with status $status before the cluster was ready; see $FLINK_RUN_DIR/$component.log"
            fi
            if ! our_pid "$component" >/dev/null; then
                flink_log_tail
                die "the $component exited before the cluster was ready; see $FLINK_RUN_DIR/$component.log"
            fi
        done
        sleep 0.2
    done
    flink_log_tail
    die "Flink did not answer on $REST_URL with a registered TaskManager within ${FLINK_START_TIMEOUT}s; it is left running, see $FLINK_RUN_DIR"
}

stop_component() {
    local component="$1" started="$2" pid
    pid="$(our_pid "$component")" || {
        rm -f "$FLINK_RUN_DIR/$component.pid"
        return 0
    }
    terminate "$pid" "$component " "$started" "$FLINK_STOP_TIMEOUT"
    rm -f "$FLINK_RUN_DIR/$component.pid"
}

stop() {
    local started
    started="$(now)"
    if ! our_pid jobmanager >/dev/null && ! our_pid taskmanager >/dev/null; then
        rm -f "$FLINK_RUN_DIR/jobmanager.pid" "$FLINK_RUN_DIR/taskmanager.pid"
        if overview >/dev/null; then
            die "a Flink cluster answers on $REST_URL but was not started by this script with $CONF_DIR; not stopping it"
        fi
        log "not running (nothing started by this script with $CONF_DIR); nothing to stop"
        return 0
    fi
    # The TaskManager first, so it does not spend the JobManager's shutdown reconnecting.
    stop_component taskmanager "$started"
    stop_component jobmanager "$started"
    while port_open "$FLINK_REST_PORT" || port_open "$FLINK_RPC_PORT"; do
        before_deadline "$started" "$(awk -v t="$FLINK_STOP_TIMEOUT" 'BEGIN { print t + 10 }')" ||
            die "the JVMs are gone but $FLINK_HOST:$FLINK_REST_PORT or :$FLINK_RPC_PORT still accepts connections"
        sleep 0.1
    done
    log "stopped; $REST_URL is closed ($(elapsed_since "$started") s; savepoints kept in $FLINK_RUN_DIR/savepoints)"
}

status() {
    local reply jm_pid tm_pid
    jm_pid="$(our_pid jobmanager || true)"
    tm_pid="$(our_pid taskmanager || true)"
    if reply="$(overview)"; then
        if [ -n "$jm_pid" ]; then
            log "running: JobManager pid $jm_pid, TaskManager pid ${tm_pid:-none} on $REST_URL (run dir $FLINK_RUN_DIR)"
        else
            log "running on $REST_URL, but not started by this script with $CONF_DIR"
        fi
        log "  $reply"
        answers && return 0
        log "no TaskManager has registered slots yet"
        return 1
    fi
    if [ -n "$jm_pid" ] || [ -n "$tm_pid" ]; then
        log "JobManager pid ${jm_pid:-none}, TaskManager pid ${tm_pid:-none}, but $REST_URL does not answer (starting, or stuck: see $FLINK_RUN_DIR)"
        return 1
    fi
    log "not running on $REST_URL"
    return 3
}

clean() {
    stop
    rm -rf "$FLINK_RUN_DIR"
    log "removed $FLINK_RUN_DIR"
}

# Builds the example job against the distribution's lib/ unless a jar for the same sources, Flink
# version and javac exists, and prints its absolute path (the only thing on stdout).
example_jar() {
    local hash jar staging
    install_if_missing >&2
    command -v javac >/dev/null && command -v jar >/dev/null ||
        die "javac and jar are missing: the example job needs a JDK (apt-get install -y openjdk-17-jdk-headless)"
    [ -d "$EXAMPLE_SRC/src/main/java" ] || die "the example job's sources are missing: $EXAMPLE_SRC/src/main/java"
    hash="$({
        echo "flink $FLINK_VERSION main $EXAMPLE_MAIN_CLASS"
        javac -version 2>&1
        cd "$EXAMPLE_SRC" && find src -type f -print0 | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16)"
    jar="$FLINK_CACHE/example/console-flink-example-$hash.jar"
    if [ ! -f "$jar" ]; then
        mkdir -p "$FLINK_CACHE/example"
        staging="$(mktemp -d "$FLINK_CACHE/example/.build.XXXXXX")"
        find "$EXAMPLE_SRC/src/main/java" -name '*.java' -print0 | xargs -0 \
            javac --release 11 -Xlint:all,-serial,-options -cp "$DIST/lib/*" -d "$staging/classes" >&2 ||
            die "javac failed on $EXAMPLE_SRC"
        jar --create --file "$staging/example.jar" --main-class "$EXAMPLE_MAIN_CLASS" \
            -C "$staging/classes" . >&2 || die "jar failed"
        mv "$staging/example.jar" "$jar"
        rm -rf "$staging"
        echo "flink.sh: built $jar" >&2
    fi
    echo "$jar"
}

[ $# -eq 1 ] || {
    usage
    exit 2
}

case "$1" in
    example-jar)
        example_jar
        exit 0
        ;;
    -h | --help | help)
        usage
        exit 0
        ;;
esac

command -v curl >/dev/null || die "curl is missing: it asks the REST API whether Flink is ready (apt-get install -y curl)"
mkdir -p "$FLINK_RUN_DIR"
# One start/stop at a time per cluster: two test runs starting at once must not launch two clusters.
exec 9>"$FLINK_RUN_DIR/.lock"
flock -w "$(awk -v a="$FLINK_START_TIMEOUT" -v b="$FLINK_STOP_TIMEOUT" 'BEGIN { print a + b + 910 }')" 9 ||
    die "another deploy/flink.sh holds $FLINK_RUN_DIR/.lock"

case "$1" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart)
        stop
        start
        ;;
    clean) clean ;;
    *)
        usage
        exit 2
        ;;
esac
