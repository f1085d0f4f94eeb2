#!/usr/bin/env bash
# Records the Flink REST answers that the unit tests of `answers.rs` parse, from a real cluster:
#   deploy/flink.sh start && console-server/src/executor/flink/testdata/record.sh
# Writes one <name>.json per answer next to this script, and fails if an answer's HTTP status is
# not the one the client expects (so re-recording against a new Flink shows what changed).
# It starts and ends its own jobs (random ids); other jobs on the cluster are left alone.
#
# Environment: FLINK_URL (default http://127.0.0.1:8081).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../../../.." && pwd)"
url="${FLINK_URL:-http://127.0.0.1:8081}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

die() {
    echo "record.sh: error: $*" >&2
    exit 1
}
new_id() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$1" "$2"; }

# call NAME EXPECTED_STATUS METHOD PATH [curl args...]: saves the answer as NAME.json.
call() {
    local name="$1" expected="$2" method="$3" path="$4" status
    shift 4
    status="$(curl -s -o "$here/$name.json" -w '%{http_code}' -X "$method" "$@" "$url$path")"
    [ "$status" = "$expected" ] || die "$method $path answered $status, expected $expected (see $here/$name.json)"
    echo "record.sh: $name.json  ($method $path -> $status)"
}
post_json() { call "$1" "$2" POST "$3" -H 'Content-Type: application/json' -d "$4"; }
# A call whose answer is only needed for its side effect.
quiet() { curl -sf -o /dev/null -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "$url$2"; }

wait_for() {
    local what="$1" check="$2" deadline=$((SECONDS + 60))
    until eval "$check"; do
        [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
        sleep 0.1
    done
}
all_tasks_running() {
    curl -sf "$url/jobs/$1" >"$work/job.json" &&
        [ "$(field "$work/job.json" "d['status-counts']['RUNNING'] == sum(d['status-counts'].values())")" = True ]
}
job_state_is() { curl -sf "$url/jobs/$1" >"$work/job.json" && [ "$(field "$work/job.json" "d['state']")" = "$2" ]; }
savepoint_done() {
    curl -sf "$url/jobs/$1/savepoints/$2" >"$work/status.json" &&
        [ "$(field "$work/status.json" "d['status']['id']")" = COMPLETED ]
}

jar="$("$repo/deploy/flink.sh" example-jar)"
call overview 200 GET /overview
call jars_upload 200 POST /jars/upload -F "jarfile=@$jar"
jar_id="$(basename "$(field "$here/jars_upload.json" "d['filename']")")"
call jars 200 GET /jars

# A: run, refused again, savepoint while running, stop with savepoint, then stop/cancel once ended.
a="$(new_id)"
run_a="{\"jobId\":\"$a\",\"programArgsList\":[\"--output\",\"$work/a.txt\"],\"parallelism\":1}"
post_json jars_run 200 "/jars/$jar_id/run" "$run_a"
post_json jars_run_duplicate 400 "/jars/$jar_id/run" "$run_a"
post_json jars_run_unknown_jar 500 /jars/nonexistent.jar/run '{}'
post_json jars_run_main_failed 400 "/jars/$jar_id/run" '{"programArgsList":["--bogus","1"]}'
wait_for "the tasks of job $a" "all_tasks_running $a"
call job_running 200 GET "/jobs/$a"
call checkpoints_not_restored 200 GET "/jobs/$a/checkpoints"
t1="$(new_id)"
post_json savepoint_trigger 202 "/jobs/$a/savepoints" "{\"triggerId\":\"$t1\",\"cancel-job\":false}"
call savepoint_status_in_progress 200 GET "/jobs/$a/savepoints/$t1"
wait_for "savepoint $t1" "savepoint_done $a $t1"
call savepoint_status_completed 200 GET "/jobs/$a/savepoints/$t1"
call savepoint_status_unknown_trigger 404 GET "/jobs/$a/savepoints/$(new_id)"
t2="$(new_id)"
post_json stop 202 "/jobs/$a/stop" "{\"triggerId\":\"$t2\",\"drain\":false}"
wait_for "stop $t2" "savepoint_done $a $t2"
call stop_status_completed 200 GET "/jobs/$a/savepoints/$t2"
location="$(field "$here/stop_status_completed.json" "d['operation']['location']")"
wait_for "job $a to finish" "job_state_is $a FINISHED"
t3="$(new_id)"
quiet POST "/jobs/$a/stop" "{\"triggerId\":\"$t3\",\"drain\":false}"
wait_for "stop $t3 of a finished job" "savepoint_done $a $t3"
call savepoint_status_job_not_found 200 GET "/jobs/$a/savepoints/$t3"
call cancel_finished 409 PATCH "/jobs/$a?mode=cancel"

# B: restored from A's savepoint, then cancelled.
b="$(new_id)"
quiet POST "/jars/$jar_id/run" "{\"jobId\":\"$b\",\"programArgsList\":[\"--output\",\"$work/a.txt\"],\"savepointPath\":\"$location\"}"
wait_for "the tasks of job $b" "all_tasks_running $b"
call checkpoints_restored 200 GET "/jobs/$b/checkpoints"
call cancel 202 PATCH "/jobs/$b?mode=cancel"
wait_for "job $b to be cancelled" "job_state_is $b CANCELED"
call cancel_canceled 202 PATCH "/jobs/$b?mode=cancel"
call exceptions_none 200 GET "/jobs/$b/exceptions"

# C: stopped before its tasks run.
c="$(new_id)"
t4="$(new_id)"
quiet POST "/jars/$jar_id/run" "{\"jobId\":\"$c\"}"
quiet POST "/jobs/$c/stop" "{\"triggerId\":\"$t4\",\"drain\":false}"
wait_for "stop $t4" "savepoint_done $c $t4"
call savepoint_status_tasks_not_running 200 GET "/jobs/$c/savepoints/$t4"
grep -q 'Not all required tasks are currently running' "$here/savepoint_status_tasks_not_running.json" ||
    echo "record.sh: warning: the tasks of job $c ran before the stop; savepoint_status_tasks_not_running.json shows something else" >&2
quiet PATCH "/jobs/$c?mode=cancel"

# D: fails (its output directory does not exist) and is not restarted.
d="$(new_id)"
quiet POST "/jars/$jar_id/run" "{\"jobId\":\"$d\",\"programArgsList\":[\"--output\",\"/nonexistent/dir/out.txt\"],\"flinkConfiguration\":{\"restart-strategy.type\":\"none\"}}"
wait_for "job $d to fail" "job_state_is $d FAILED"
call job_failed 200 GET "/jobs/$d"
call exceptions_failed 200 GET "/jobs/$d/exceptions"
call jobs_overview 200 GET /jobs/overview

# Unknown ids and paths.
u="$(new_id)"
call job_not_found 404 GET "/jobs/$u"
call cancel_not_found 404 PATCH "/jobs/$u?mode=cancel"
call checkpoints_not_found 404 GET "/jobs/$u/checkpoints"
call not_a_route 404 GET "/jobs/$u/no-such-thing"
echo "record.sh: done; jobs $a $b $c $d are ended"
