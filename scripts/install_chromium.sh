#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the browser test of the HTML report (tests/bench/_browser.py).
# Best effort: it never fails the caller. Without chromium that test is skipped, and this script says why.
set -euo pipefail

skip() {
  echo "chromium not installed ($1); the browser test of the HTML report will be skipped" >&2
  exit 0
}

if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  skip "not running as root, so apt-get cannot install it"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  skip "apt-get not found"
fi
echo "installing chromium with apt-get (about a minute)..." >&2
if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq; then
  skip "apt-get update failed"
fi
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; then
  skip "apt-get install chromium failed"
fi
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  skip "apt-get reported success but no chromium binary was found"
fi
exit 0
