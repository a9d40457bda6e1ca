#!/usr/bin/env bash
# Installs what the JavaScript side of the tests (tests/browser/: the browser test, the OpenAPI
# validator, the docker/ checks) needs, when it is missing: Debian's Chromium, and tests/browser's
# npm packages, pinned by package-lock.json.
# Browsers are never downloaded by test tools; Playwright drives the system Chromium.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null; then
    echo "install-browser: installing Debian's chromium" >&2
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
  else
    echo "install-browser: install Chromium (the browser tests drive it headless)" >&2
    exit 1
  fi
fi
if ! command -v node >/dev/null; then
  echo "install-browser: Node.js 20 or later is needed for the browser tests" >&2
  exit 1
fi
# npm ls fails when a dependency of package-lock.json is missing or at another version.
if ! (cd tests/browser && npm ls --all >/dev/null 2>&1); then
  echo "install-browser: npm ci in tests/browser" >&2
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
