#!/usr/bin/env bash
# Chromium for the browser tests. Playwright's own browser download cannot work
# without internet, so the tests drive Debian's /usr/bin/chromium. Under CI the
# package is installed with apt; elsewhere a missing Chromium makes the browser
# tests skip with a reason.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "${CI:-}" != "" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
else
  echo "note: /usr/bin/chromium not found; the browser tests will be skipped (apt-get install chromium)"
fi
