#!/usr/bin/env bash
# Debian's Chromium for textlab's browser test (the HTML report, headless).
#
#   scripts/browser-local.sh install   apt-get install chromium (needs root and Debian's registry)
#
# Exit code 3 means "no browser can be installed here": tests/test_report.py then skips and says why.
set -u
cannot() { echo "browser-local: $*" >&2; exit 3; }
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  echo "browser-local: chromium is installed"; exit 0
fi
[ "$(id -u)" = 0 ] || cannot "installing chromium needs root"
command -v apt-get >/dev/null || cannot "no apt-get to install chromium"
export DEBIAN_FRONTEND=noninteractive
{ apt-get update -qq && apt-get install -y -qq chromium; } >"${TMPDIR:-/tmp}/browser-local-apt.log" 2>&1 \
  || cannot "apt-get install chromium failed (see ${TMPDIR:-/tmp}/browser-local-apt.log)"
echo "browser-local: chromium installed"
