#!/usr/bin/env bash
# Runs the k6 load tests against a running pricefeed stack (the demo by default:
# scripts/demo.sh), with the pinned k6 (installed into .tools/ on first use).
#
#   loadtest/run.sh [--demo] [--smoke] [fanout|connect-storm|resume-storm|all ...]
#
#   --demo    start scripts/demo.sh first (on PRICEFEED_HTTP_ADDR, default 127.0.0.1:8080) and
#             stop it at the end: the one command for a fresh clone
#   --smoke   small sizes (what CI runs); without it, the sizes below
#
# Sizes and targets come from the environment, e.g. FANOUT_VUS=500 DURATION=60s P99_MS=250:
#   fanout         FANOUT_VUS (smoke 20, full 40), DURATION (10s / 60s), P99_MS (smoke: none,
#                  full: 1000; P99_MS= turns it off)
#   connect-storm  STORM_VUS (100 / 1000), WINDOW seconds (3 / 5), HOLD seconds (3 / 5)
#   resume-storm   RESUME_VUS (20 / 50), DROP_AT (5 / 10), AWAY (2 / 3), END (10 / 20) seconds
# The full sizes are about what k6 itself can take on 2 cores (JavaScript per message, 7–10k
# messages/s); during the storms it still saturates for seconds and then times its own queue.
# Other settings: PRICEFEED_URL (default http://$PRICEFEED_HTTP_ADDR; not with --demo), CHANNELS,
# JWT_SECRET (see loadtest/k6/lib.js). Each run prints k6's end-of-test summary, with the custom metrics, and
# writes it as JSON to target/loadtest/<name>.json. Exit status: 0 when every threshold held.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
demo=0
smoke=0
tests=()
for a in "$@"; do
  case "$a" in
    --demo) demo=1 ;;
    --smoke) smoke=1 ;;
    fanout | connect-storm | resume-storm) tests+=("$a") ;;
    all) tests+=(fanout connect-storm resume-storm) ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "loadtest: unknown argument $a (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#tests[@]} -gt 0 ] || tests=(fanout connect-storm resume-storm)

k6="$(loadtest/install-k6.sh)"
http="${PRICEFEED_HTTP_ADDR:-127.0.0.1:8080}"
if [ "$demo" = 1 ]; then
  url="http://$http" # the demo's own address, whatever PRICEFEED_URL says
else
  url="${PRICEFEED_URL:-http://$http}"
fi
out="$root/target/loadtest"
mkdir -p "$out"

ready() {
  python3 - "$url/readyz" <<'PY' 2>/dev/null
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
PY
}

demo_pid=""
stop_demo() {
  [ -n "$demo_pid" ] || return 0
  kill -TERM -- "-$demo_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$demo_pid" 2>/dev/null || true
  demo_pid=""
}
trap stop_demo EXIT
trap 'stop_demo; exit 130' INT
trap 'stop_demo; exit 143' TERM

if [ "$demo" = 1 ]; then
  if ready; then
    echo "loadtest: something already answers at $url; stop it or drop --demo" >&2
    exit 1
  fi
  if [ -z "${PRICEFEED_BIN:-}" ]; then
    # Build before starting the clock on the demo's start (a first build takes minutes).
    echo "loadtest: building pricefeed (release)…"
    cargo build --release --locked --quiet
    export PRICEFEED_BIN="$root/target/release/pricefeed"
  fi
  # Its own process group, so that stopping it stops pricefeed and the simulator (the script
  # stops the broker, which has its own session, or its watchdog does once the script is gone).
  setsid scripts/demo.sh >"$out/demo.out" 2>&1 &
  demo_pid=$!
  echo "loadtest: starting the demo (log: $out/demo.out)"
fi
for _ in $(seq 1 600); do
  ready && break
  if [ "$demo" = 1 ] && ! kill -0 "$demo_pid" 2>/dev/null; then
    echo "loadtest: the demo stopped:" >&2
    tail -20 "$out/demo.out" >&2
    exit 1
  fi
  [ "$demo" = 1 ] || break
  sleep 0.2
done
if ! ready; then
  echo "loadtest: nothing ready at $url/readyz; start the stack (scripts/demo.sh) or pass --demo" >&2
  exit 1
fi

size() { if [ "$smoke" = 1 ]; then echo "$1"; else echo "$2"; fi; }
failed=()
for t in "${tests[@]}"; do
  case "$t" in
    fanout)
      envs=(-e "VUS=${FANOUT_VUS:-$(size 20 40)}" -e "DURATION=${DURATION:-$(size 10s 60s)}")
      p99="${P99_MS-$(size "" 1000)}"
      [ -z "$p99" ] || envs+=(-e "P99_MS=$p99") ;;
    connect-storm)
      envs=(-e "VUS=${STORM_VUS:-$(size 100 1000)}" -e "WINDOW=${WINDOW:-$(size 3 5)}" -e "HOLD=${HOLD:-$(size 3 5)}") ;;
    resume-storm)
      envs=(-e "VUS=${RESUME_VUS:-$(size 20 50)}" -e "DROP_AT=${DROP_AT:-$(size 5 10)}" -e "AWAY=${AWAY:-$(size 2 3)}" -e "END=${END:-$(size 10 20)}") ;;
  esac
  echo "loadtest: $t against $url (${envs[*]})"
  set +e
  "$k6" run --quiet --no-usage-report -e "PRICEFEED_URL=$url" "${envs[@]}" \
    --summary-export "$out/$t.json" "loadtest/k6/$t.js"
  status=$?
  set -e
  case "$status" in
    0) echo "loadtest: $t passed" ;;
    105) echo "loadtest: $t aborted; stopping" >&2; exit 130 ;;
    *) echo "loadtest: $t FAILED (k6 exit $status: a threshold did not hold, or k6 could not run it)" >&2
       failed+=("$t") ;;
  esac
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "loadtest: failed: ${failed[*]}" >&2
  exit 1
fi
echo "loadtest: all passed (${tests[*]})"
