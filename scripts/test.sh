#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, and all tests (unit, property, doc, the
# integration tests against Apache Kafka, and the browser test of the trading UI in headless
# Chromium). Installs the pinned Apache Kafka (scripts/install-kafka.sh: Java 17 and Maven),
# Chromium and playwright-core first when they are missing, and k6 for the load-test smoke run.
#
# One Apache Kafka broker serves the whole run (scripts/kafka.sh, on a free port, data in a
# temporary dir): the tests get it in PRICEFEED_TEST_BROKERS and keep apart by their own topic
# and group names. Tests that kill the broker, and those that run the demo script, start their own.
# Then, on a full run, a short fuzzing run of each fuzz target (scripts/fuzz.sh --short).
# Extra arguments go to `cargo test` (and skip the fuzzing), e.g. scripts/test.sh --test reconcile_cli.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-kafka.sh >/dev/null
scripts/install-browser.sh
loadtest/install-k6.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# Built before the broker starts, so the broker does not idle through the build.
cargo test --locked --no-run "$@" 2>&1 | grep -vE '^\s+(Compiling|Executable|Finished)' || true

log="$(mktemp)"
kafka_dir="$(mktemp -d)"
cleanup() {
  scripts/kafka.sh stop --dir "$kafka_dir" --timeout 20 || true
  rm -rf "$log" "$kafka_dir"
}
trap cleanup EXIT
PRICEFEED_TEST_BROKERS="$(scripts/kafka.sh start --dir "$kafka_dir" --owner-pid $$)"
export PRICEFEED_TEST_BROKERS
export PRICEFEED_TEST_BROKER_DIR="$kafka_dir"
echo "test: Apache Kafka for this run on $PRICEFEED_TEST_BROKERS ($kafka_dir)"
set +e
cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one summary per binary).
grep -E '^test result:' "$log" \
  | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' \
  | awk '{p += $1; f += $2} END {printf "%d passed, %d failed\n", p, f}'
if [ $# -eq 0 ]; then
  echo "fuzz: every target for 20 s (scripts/fuzz.sh --short)"
  scripts/fuzz.sh --short || status=1
fi
exit "$status"
