#!/usr/bin/env bash
# How long a new edge takes to be ready against a long channel history. Fills a fresh local
# Apache Kafka: one symbol (AAPL) priced once, then N prices of the other symbols, through one
# transform worker, on a channel topic of one partition (so it holds N + 1 records); then starts
# an edge RUNS times and times each start until /readyz answers 200, and checks from its log that
# it knew every symbol (AAPL included) when it got ready. Local only (127.0.0.1), bounded in count
# and time.
#
#   loadtest/edge_start.sh [N] [RUNS]              (defaults: 5000000, 3)
#   EDGE_BIN=/path/to/pricefeed loadtest/edge_start.sh …   (time another build's edge on the same
#                                                          data, e.g. one built from an older commit)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${1:-5000000}"
runs="${2:-3}"
cargo build --release --locked --quiet
bin="$root/target/release/pricefeed"
edge_bin="${EDGE_BIN:-$bin}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/kafka.sh stop --dir "$work/kafka" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { # port series
  curl -s "http://127.0.0.1:$1/metrics" | awk -v s="$2" '$1 == s { print $2 }'
}

# One partition and the vip channel (every symbol) of the shipped channels.toml.
python3 - "$root/channels.toml" "$work/channels.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
text = text[: text.index("[channels.pro]")]
text = re.sub(r"(?m)^partitions = \d+", "partitions = 1", text)
open(sys.argv[2], "w").write(text)
PY
export PRICEFEED_CONFIG="$work/channels.toml"
PRICEFEED_BROKERS="$(scripts/kafka.sh start --dir "$work/kafka" --owner-pid $$)"
export PRICEFEED_BROKERS PRICEFEED_JWT_SECRET="edge-start-benchmark-secret-0123456789"

others="EURUSD,GBPUSD,USDJPY,AUDUSD,XAUUSD,BTCUSD,ES"
echo "filling: AAPL once, then $n prices of $others…"
"$bin" simulate --rate 1000000 --count 1 --symbols AAPL --seed 3 2>"$work/simulate.log"
"$bin" simulate --rate 1000000 --count "$n" --symbols "$others" --seed 11 2>>"$work/simulate.log"

http="$(port)"
"$bin" transform --http-addr "127.0.0.1:$http" 2>"$work/transform.log" &
transform=$!
pids+=("$transform")
want=$((n + 1))
deadline=$((SECONDS + 1200))
started=$SECONDS
until [ "$(metric "$http" pricefeed_raw_records_total)" = "$want" ]; do
  [ $SECONDS -lt $deadline ] || { echo "the transform did not finish within 1200 s" >&2; exit 1; }
  sleep 1
done
echo "transformed $want raw records in $((SECONDS - started)) s"
sleep 3 # one more checkpoint: the latest prices of the last records
kill -TERM "$transform"
wait "$transform" || true

for run in $(seq 1 "$runs"); do
  eport="$(port)"
  log="$work/edge-$run.log"
  t0=$(date +%s.%N)
  "$edge_bin" edge --http-addr "127.0.0.1:$eport" 2>"$log" &
  edge=$!
  pids+=("$edge")
  deadline=$((SECONDS + 300))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$eport/readyz")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { echo "run $run: not ready within 300 s" >&2; tail -5 "$log" >&2; exit 1; }
    sleep 0.05
  done
  t1=$(date +%s.%N)
  read_in="$(metric "$eport" 'pricefeed_edge_records_in_total{channel="vip"}')"
  rss="$(awk '/VmRSS/ { print $2 }' "/proc/$edge/status")"
  kill -TERM "$edge"
  wait "$edge" || true
  latest="$(grep -o 'read the latest prices.*' "$log" | head -1 || true)"
  python3 - "$t0" "$t1" "$run" "${read_in:-0}" "$rss" "$latest" <<'PY'
import sys
t0, t1, run, read_in, rss, latest = sys.argv[1:]
print(f"run {run}: ready in {float(t1) - float(t0):.2f} s; channel records read at start: "
      f"{float(read_in):,.0f}; RSS {int(rss) / 1024:.0f} MiB; {latest or 'no latest-price topic read'}")
PY
done
