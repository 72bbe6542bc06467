#!/bin/sh
# Chromium for tests/test_report_html.py (opens report.html headless, takes a screenshot).
#
# Installs the Debian/Ubuntu package when no Chromium is on PATH, we are root and
# apt-get exists. Never fails the build: where nothing can be installed it says why,
# and the browser test skips with the same reason.
set -u

for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "setup_browser: using $(command -v "$name")"
        exit 0
    fi
done
if [ -n "${OXE_AUGMENT_CHROMIUM:-}" ]; then
    echo "setup_browser: using OXE_AUGMENT_CHROMIUM=$OXE_AUGMENT_CHROMIUM"
    exit 0
fi

skip() {
    echo "setup_browser: no Chromium ($1); the report.html browser test will skip." >&2
    exit 0
}

[ "$(id -u)" = 0 ] || skip "not root, so apt-get cannot install it; install the 'chromium' package or set OXE_AUGMENT_CHROMIUM"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get on this system; install Chromium by hand or set OXE_AUGMENT_CHROMIUM"

log="${TMPDIR:-/tmp}/oxe-augment-setup-browser.log"
echo "setup_browser: installing chromium with apt-get (log: $log)"
export DEBIAN_FRONTEND=noninteractive
# A fresh container has no package lists yet: update once if the first try finds nothing.
if ! timeout 900 apt-get install -y chromium >"$log" 2>&1; then
    { timeout 300 apt-get update && timeout 900 apt-get install -y chromium; } >>"$log" 2>&1 \
        || skip "apt-get could not install chromium (no network or no such package?); see $log"
fi
command -v chromium >/dev/null 2>&1 || skip "apt-get finished but no chromium is on PATH; see $log"
echo "setup_browser: installed $(command -v chromium)"
