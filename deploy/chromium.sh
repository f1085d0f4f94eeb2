#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the browser tests of the web console.
#
# Uses Debian's `chromium` and `chromium-driver` packages, installed with apt-get when missing
# (needs root, like the other service scripts). Nothing is started here: each browser test starts
# its own chromedriver on a free loopback port, with a fresh profile directory.
#
#   deploy/chromium.sh install   install the packages if missing; prints the versions
#   deploy/chromium.sh status    exit 0 when both binaries are there, 3 when one is missing
#
# Tests find the binaries through CONSOLE_TEST_CHROMEDRIVER and CONSOLE_TEST_CHROMIUM (set by
# deploy/test.sh to the paths below).
set -euo pipefail

readonly CHROMIUM=/usr/bin/chromium
readonly CHROMEDRIVER=/usr/bin/chromedriver

log() { echo "chromium.sh: $*"; }
die() {
    echo "chromium.sh: error: $*" >&2
    exit 1
}

present() { [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; }

versions() {
    log "$("$CHROMIUM" --headless --no-sandbox --version 2>/dev/null || echo 'chromium: version unknown')"
    log "$("$CHROMEDRIVER" --version 2>/dev/null || echo 'chromedriver: version unknown')"
}

install() {
    if present; then
        log "chromium and chromedriver are installed"
        versions
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "chromium or chromedriver is missing and installing them needs root (apt-get install chromium chromium-driver)"
    command -v apt-get >/dev/null || die "apt-get not found: install Chromium and its WebDriver (chromedriver) by hand"
    log "installing chromium and chromium-driver with apt-get"
    # A stale or missing package list makes the install fail: refresh it first.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
    present || die "apt-get finished but $CHROMIUM or $CHROMEDRIVER is missing"
    versions
}

case "${1:-}" in
    install) install ;;
    status)
        if present; then versions; else
            log "missing: $( [ -x "$CHROMIUM" ] || echo "$CHROMIUM ")$( [ -x "$CHROMEDRIVER" ] || echo "$CHROMEDRIVER")"
            exit 3
        fi
        ;;
    *)
        echo "usage: $0 {install|status}" >&2
        exit 2
        ;;
esac
