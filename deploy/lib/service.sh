# Shared by the service scripts (zookeeper.sh, etcd.sh, mariadb.sh, flink.sh): time, process and
# package helpers. Source it after defining `log` and `die`; it defines functions only.

# kill -0 alone would call a zombie alive.
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

now() { date +%s.%N; }
elapsed_since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.2f", e - s }'; }
# True while fewer than $2 seconds have passed since $1.
before_deadline() { awk -v s="$1" -v t="$2" -v e="$(now)" 'BEGIN { exit !(e - s < t) }'; }

# log_tail FILE [LINES]: the end of a server's log on stderr, for a failure message.
log_tail() {
    local file="$1" lines="${2:-40}"
    [ -f "$file" ] || return 0
    echo "--- last $lines lines of $file ---" >&2
    tail -n "$lines" "$file" >&2
    echo "---" >&2
}

# terminate PID LABEL STARTED TIMEOUT: SIGTERM, then SIGKILL if PID is still alive TIMEOUT
# seconds after STARTED (a `now` value); returns once the process is gone.
terminate() {
    local pid="$1" label="$2" started="$3" timeout="$4"
    log "stopping ${label}pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" && before_deadline "$started" "$timeout"; do
        sleep 0.1
    done
    if alive "$pid"; then
        log "${label}pid $pid still alive after ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid"; do sleep 0.1; done
    fi
}

# apt_install PACKAGE...: installs Debian packages without questions, as root or with sudo -n;
# refreshes the package lists once if the first try fails.
apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "installing $* needs root (or sudo); run: apt-get install -y $*"
        sudo=(sudo -n)
    fi
    # RUNLEVEL=1: packages with a service (etcd-server) must not start it; the scripts run their own.
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
        apt-get install -y -q --no-install-recommends "$@"; then
        log "install failed; refreshing the package lists and retrying"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
            apt-get install -y -q --no-install-recommends "$@"
    fi
}
