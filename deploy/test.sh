#!/usr/bin/env bash
# Runs the whole test suite: starts ZooKeeper, MariaDB, etcd and a Flink session cluster if they are
# not running (all idempotent), then `cargo test --workspace --all-targets` and
# `cargo test --workspace --doc`.
#
# Extra arguments go to both cargo commands, e.g.
#   deploy/test.sh zk_                 only tests whose name contains zk_
#   deploy/test.sh -- --nocapture      show test output
#
# Tests find the services through:
#   CONSOLE_TEST_ZK=127.0.0.1:${ZK_PORT:-2181}
#   CONSOLE_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306
#   CONSOLE_TEST_ETCD=127.0.0.1:${ETCD_PORT:-2379}
#   CONSOLE_TEST_FLINK_URL=http://127.0.0.1:${FLINK_REST_PORT:-8081}
#   CONSOLE_TEST_CHROMIUM=/usr/bin/chromium, CONSOLE_TEST_CHROMEDRIVER=/usr/bin/chromedriver
#     (the browser tests of the web console; deploy/chromium.sh installs them)
# The services are left running afterwards; stop them with deploy/zookeeper.sh stop,
# deploy/mariadb.sh stop, deploy/etcd.sh stop and deploy/flink.sh stop.
set -euo pipefail

if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
    echo "usage: $0 [extra cargo test arguments...]" >&2
    exit 0
fi

deploy_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$deploy_dir/.."

echo "test.sh: making sure ZooKeeper, MariaDB, etcd and Flink are running and Chromium is installed"
"$deploy_dir/zookeeper.sh" start
"$deploy_dir/mariadb.sh" start
"$deploy_dir/etcd.sh" start
"$deploy_dir/flink.sh" start
"$deploy_dir/chromium.sh" install

export CONSOLE_TEST_ZK="127.0.0.1:${ZK_PORT:-2181}"
export CONSOLE_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306"
export CONSOLE_TEST_ETCD="127.0.0.1:${ETCD_PORT:-2379}"
export CONSOLE_TEST_FLINK_URL="http://127.0.0.1:${FLINK_REST_PORT:-8081}"
export CONSOLE_TEST_CHROMIUM=/usr/bin/chromium
export CONSOLE_TEST_CHROMEDRIVER=/usr/bin/chromedriver
echo "test.sh: CONSOLE_TEST_ZK=$CONSOLE_TEST_ZK CONSOLE_TEST_MYSQL_URL=$CONSOLE_TEST_MYSQL_URL" \
    "CONSOLE_TEST_ETCD=$CONSOLE_TEST_ETCD" \
    "CONSOLE_TEST_FLINK_URL=$CONSOLE_TEST_FLINK_URL"

echo "test.sh: cargo test --workspace --all-targets $*"
cargo test --workspace --all-targets "$@"
# --all-targets leaves out doc tests, so they run separately.
echo "test.sh: cargo test --workspace --doc $*"
cargo test --workspace --doc "$@"
echo "test.sh: all tests passed"
