#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, and all tests (unit, property, doc, the
# integration tests that start their own throwaway Kafka broker on a free port, and the browser
# test of the trading UI in headless Chromium). Installs the pinned broker, Chromium and
# playwright-core first when they are missing, and k6 for the load-test smoke run.
# Extra arguments go to `cargo test`, e.g. scripts/test.sh --test exactly_once_kill.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-broker.sh >/dev/null
scripts/install-browser.sh
loadtest/install-k6.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one summary per binary).
grep -E '^test result:' "$log" \
  | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' \
  | awk '{p += $1; f += $2} END {printf "%d passed, %d failed\n", p, f}'
exit "$status"
