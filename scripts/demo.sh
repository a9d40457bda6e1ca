#!/usr/bin/env bash
# Starts the whole thing with a demo feed: a local Apache Kafka broker (installed on first use
# by scripts/install-kafka.sh, run by scripts/kafka.sh), `pricefeed run` (transform workers for
# every channel and the WebSocket edge, HTTP on 127.0.0.1:8080) and the simulator. Ctrl-C stops
# everything. Logs and Kafka's data go to .run/.
# A random token secret and publish API key are made for the demo (kept in .run/demo.env).
#
# Kafka's data starts empty each time; `scripts/demo.sh --keep` (or PRICEFEED_DEMO_KEEP=1) starts
# on the data of the last run instead (topics, offsets: clients can resume across demo restarts).
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
keep="${PRICEFEED_DEMO_KEEP:-0}"
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    *) echo "usage: scripts/demo.sh [--keep]" >&2; exit 2 ;;
  esac
done
mkdir -p "$run_dir"

if ! command -v cargo >/dev/null; then
  echo "demo: Rust (cargo) is needed to build pricefeed" >&2
  exit 1
fi
kafka_libs="$(scripts/install-kafka.sh)"
kafka_version="$(basename "$(dirname "$kafka_libs")")"
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
  for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${stop_kafka:-}" ]; then scripts/kafka.sh stop --dir "$kafka_dir" || true; fi
}
trap cleanup EXIT INT TERM

kafka_dir="$run_dir/kafka"
if [ "$keep" != 1 ] || [ ! -f "$kafka_dir/data/meta.properties" ]; then
  scripts/kafka.sh stop --dir "$kafka_dir" >/dev/null 2>&1 || true
  rm -rf "$kafka_dir"
  port_arg=(--port "$port")
else
  port_arg=()
  port="$(sed -n 's/^listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$kafka_dir/server.properties")"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: something already listens on 127.0.0.1:$port; set PRICEFEED_DEMO_BROKER_PORT" >&2
  exit 1
fi
echo "demo: starting Apache Kafka…"
stop_kafka=1
scripts/kafka.sh start --dir "$kafka_dir" ${port_arg[@]+"${port_arg[@]}"} --owner-pid $$ >/dev/null
echo "demo: Apache Kafka ${kafka_version#kafka-} (KRaft, one node) on 127.0.0.1:$port, data in $kafka_dir"
# The broker is not a child of this script: watch it, so the demo stops when it does.
kafka_pid="$(cat "$kafka_dir/broker.pid")"
(while kill -0 "$kafka_pid" 2>/dev/null; do sleep 1; done) &
pids+=($!)

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
# --demo: /demo/session hands out client tokens, so the trading UI at / works without a login.
"$bin" run --demo --http-addr "$http" >"$run_dir/pricefeed.log" 2>&1 &
pids+=($!)
# The simulator serves no HTTP here: PRICEFEED_HTTP_ADDR (if the caller set it) is pricefeed's.
env -u PRICEFEED_HTTP_ADDR "$bin" simulate --rate "$rate" --malformed-ratio 0.002 --depth 5 >"$run_dir/simulate.log" 2>&1 &
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
  logs           $run_dir/{pricefeed,simulate}.log, Kafka's in $kafka_dir/broker.log
  live rules     edit $config: the change applies without a restart (an invalid edit is rejected)
  protocol       docs/protocol.md
Ctrl-C stops everything.
INFO

# Stop when any part stops.
wait -n "${pids[@]}"
echo "demo: a process exited; see the logs in $run_dir" >&2
exit 1
