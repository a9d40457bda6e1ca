#!/usr/bin/env bash
# Starts the whole thing with a demo feed: the pinned local Kafka broker (installed on first
# use), `pricefeed run` (transform workers for every channel and the WebSocket edge, HTTP on
# 127.0.0.1:8080) and the simulator. Ctrl-C stops everything. Logs go to .run/.
# A random token secret and publish API key are made for the demo (kept in .run/demo.env).
#
# Settings (environment): PRICEFEED_DEMO_BROKER_PORT (9092), PRICEFEED_HTTP_ADDR
# (127.0.0.1:8080), PRICEFEED_DEMO_RATE (records/s, 200), PRICEFEED_CONFIG (channels.toml),
# PRICEFEED_DEMO_RUN_DIR (.run), PRICEFEED_BIN (a pricefeed binary to use instead of building
# one; the browser test runs this script with the binary cargo test built).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port="${PRICEFEED_DEMO_BROKER_PORT:-9092}"
http="${PRICEFEED_HTTP_ADDR:-127.0.0.1:8080}"
rate="${PRICEFEED_DEMO_RATE:-200}"
config="${PRICEFEED_CONFIG:-channels.toml}"
run_dir="${PRICEFEED_DEMO_RUN_DIR:-$root/.run}"
mkdir -p "$run_dir"

if ! command -v cargo >/dev/null; then
  echo "demo: Rust (cargo) is needed to build pricefeed" >&2
  exit 1
fi
tansu="$(scripts/install-broker.sh)"
if [ -n "${PRICEFEED_BIN:-}" ]; then
  bin="$PRICEFEED_BIN"
else
  echo "demo: building pricefeed (release)…"
  cargo build --release --locked --quiet
  bin="$root/target/release/pricefeed"
fi
"$bin" check-config "$config"

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "demo: stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: something already listens on 127.0.0.1:$port; set PRICEFEED_DEMO_BROKER_PORT" >&2
  exit 1
fi
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ >"$run_dir/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q ready "$run_dir/broker.log" 2>/dev/null && break
  sleep 0.2
done
grep -q ready "$run_dir/broker.log" || { echo "demo: the broker did not start:" >&2; tail "$run_dir/broker.log" >&2; exit 1; }
echo "demo: Kafka broker (Tansu, in memory) on 127.0.0.1:$port"

# Demo credentials: a random HS256 secret for client tokens and an API key for HTTP publish.
if [ ! -f "$run_dir/demo.env" ]; then
  python3 - >"$run_dir/demo.env" <<'PY'
import secrets
print(f"export PRICEFEED_JWT_SECRET={secrets.token_hex(32)}")
print(f"export PRICEFEED_API_KEYS=demo:{secrets.token_hex(16)}")
PY
fi
# shellcheck disable=SC1091
. "$run_dir/demo.env"
export PRICEFEED_BROKERS="127.0.0.1:$port"
export PRICEFEED_CONFIG="$config"
# Tansu takes about half the session timeout to form a group: keep it short for the demo.
export PRICEFEED_KAFKA_OPTIONS="${PRICEFEED_KAFKA_OPTIONS:-consumer.session.timeout.ms=6000,consumer.heartbeat.interval.ms=1000}"
# --demo: /demo/session hands out client tokens, so the trading UI at / works without a login.
"$bin" run --demo --http-addr "$http" >"$run_dir/pricefeed.log" 2>&1 &
pids+=($!)
# The simulator serves no HTTP here: PRICEFEED_HTTP_ADDR (if the caller set it) is pricefeed's.
env -u PRICEFEED_HTTP_ADDR "$bin" simulate --rate "$rate" --malformed-ratio 0.002 >"$run_dir/simulate.log" 2>&1 &
pids+=($!)

echo "demo: waiting for the transform workers and the edge to be ready…"
for _ in $(seq 1 150); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$http/readyz', timeout=1)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
sleep 2
echo
echo "== EURUSD on vip and retail, over WebSocket (snapshot, then live; seq = Kafka offset) =="
"$bin" watch --url "ws://$http/ws" --topics vip,retail --symbols EURUSD --count 6 || true
vip_token="$("$bin" token --sub demo-vip --channels vip --ttl 86400)"
retail_token="$("$bin" token --sub demo-retail --channels retail --ttl 86400)"
cat <<INFO

pricefeed is running with a demo feed of $rate prices/s.
  trading UI     http://$http/             (vip and retail side by side; client library /client.js)
  live prices    $bin watch --topics vip,retail          (any WebSocket client: ws://$http/ws)
  vip token      $vip_token
  retail token   $retail_token
                 (more: $bin token --sub NAME --channels vip,retail; secret in $run_dir/demo.env)
  stats          http://$http/stats   metrics http://$http/metrics   (also /healthz, /readyz)
  Kafka topics   $bin tail prices.retail --follow;  dead letters: $bin tail prices.dead-letter
  logs           $run_dir/{broker,pricefeed,simulate}.log
  live rules     edit $config: the change applies without a restart (an invalid edit is rejected)
  protocol       docs/protocol.md
Ctrl-C stops everything.
INFO

# Stop when any part stops.
wait -n "${pids[@]}"
echo "demo: a process exited; see the logs in $run_dir" >&2
exit 1
