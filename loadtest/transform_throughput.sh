#!/usr/bin/env bash
# End-to-end transform throughput through a real broker: pre-fill the raw topic with N simulated
# records, start one transform worker, and time how long it takes to consume all of them and
# write every channel record. Local only (127.0.0.1), bounded in count and time.
#
#   loadtest/transform_throughput.sh [N]        (default N = 200000)
#   PRICEFEED_BIN=/path/to/pricefeed loadtest/transform_throughput.sh …   (time another build's
#                                                   transform, e.g. one built from an older commit)
#
# Prints records/s. The broker is the local single-node Apache Kafka (scripts/kafka.sh) on the same
# machine: it shares the cores with the worker and the producer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${1:-200000}"
cargo build --release --locked --quiet
bin="${PRICEFEED_BIN:-$root/target/release/pricefeed}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/kafka.sh stop --dir "$work/kafka" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

http="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
PRICEFEED_BROKERS="$(scripts/kafka.sh start --dir "$work/kafka" --owner-pid $$)"
export PRICEFEED_BROKERS

echo "filling the raw topic with $n records…"
"$bin" simulate --rate 1000000 --count "$n" --seed 11 2>"$work/simulate.log"

echo "transforming…"
"$bin" transform --http-addr "127.0.0.1:$http" 2>"$work/transform.log" &
pids+=($!)
python3 - "$http" "$n" <<'PY'
import re, sys, time, urllib.request
port, n = sys.argv[1], int(sys.argv[2])
def processed():
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    m = re.search(r"^pricefeed_raw_records_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0
deadline = time.time() + 600
while processed() == 0 and time.time() < deadline:
    time.sleep(0.01)
start, first = time.time(), processed()
while processed() < n and time.time() < deadline:
    time.sleep(0.05)
elapsed = time.time() - start
done = processed() - first
print(f"{done} raw records (x3 channels) in {elapsed:.2f} s: {done / elapsed:,.0f} raw records/s")
if processed() < n:
    sys.exit("did not finish within 600 s")
PY
