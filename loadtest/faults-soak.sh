#!/usr/bin/env bash
# The worker-kill fault test, longer: three transform workers SIGKILLed in turn at least K times
# while the simulator feeds at least N raw records, then `pricefeed reconcile` over everything.
# Runs tests/exactly_once_kill.rs with its limits raised, against a broker of its own
# (scripts/kafka.sh, 127.0.0.1 only). Local only, bounded in count and time.
#
#   loadtest/faults-soak.sh [--kills K] [--records N] [--delivery idempotent|transactional|both]
#
# Defaults: 200 kills, 400,000 records, both modes (one after the other). Prints each run's
# kills, records and reconcile result; exits non-zero if any run found a difference.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
kills=200
records=400000
delivery=both
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills="$2"; shift 2 ;;
    --records) records="$2"; shift 2 ;;
    --delivery) delivery="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$delivery" in
  idempotent|transactional) filter="sigkilled_${delivery}_workers" ;;
  both) filter="sigkilled_" ;;
  *) echo "--delivery must be idempotent, transactional or both" >&2; exit 2 ;;
esac

work="$(mktemp -d)"
cleanup() {
  scripts/kafka.sh stop --dir "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
PRICEFEED_TEST_BROKERS="$(scripts/kafka.sh start --dir "$work/kafka" --owner-pid $$)"
export PRICEFEED_TEST_BROKERS PRICEFEED_KILLS="$kills" PRICEFEED_KILL_RECORDS="$records"
echo "broker $PRICEFEED_TEST_BROKERS; $kills kills, $records records, delivery: $delivery"
started=$(date +%s)
status=0
cargo test --release --locked --test exactly_once_kill "$filter" -- --nocapture --test-threads 1 \
  2>&1 | tee "$work/soak.log" | grep -E "SIGKILLs|reconcile|^test |panicked|findings|differ" || status=$?
grep -q "test result: ok" "$work/soak.log" || status=1
echo "took $(( $(date +%s) - started )) s; exit $status"
exit $status
