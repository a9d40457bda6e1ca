#!/usr/bin/env bash
# Runs the local Apache Kafka broker: one JVM that is both the broker and the KRaft controller,
# on 127.0.0.1 only. The demo, scripts/test.sh, the tests that need a broker of their own and the
# benchmarks all start it this way.
#
#   scripts/kafka.sh start --dir DIR [--port PORT] [--heap SIZE] [--owner-pid PID]
#                          [--ephemeral] [--timeout SECONDS] [--set KEY=VALUE]...
#       DIR without a broker's data: writes DIR/server.properties (PORT, default a free port; the
#       controller gets a free port of its own; --set adds or overrides broker settings), formats
#       DIR/data, starts. DIR with a broker's data (e.g. after a SIGKILL): starts it again as it
#       was, same ports, same data; --port must then match or be left out.
#       Waits until the broker serves (its "Kafka Server started" line and the port accepting
#       connections; never a fixed sleep), then prints its bootstrap address, 127.0.0.1:PORT, on
#       stdout and returns; the broker runs on in the background. On failure prints the broker's
#       own log and exits 1. --owner-pid: the broker is stopped when that process is gone (so a
#       test process that dies never leaves a broker behind); with --ephemeral DIR is removed
#       then too. --heap: JVM heap (default 512m).
#   scripts/kafka.sh stop --dir DIR [--timeout SECONDS]
#       Stops it cleanly (SIGTERM: controlled shutdown, logs flushed), SIGKILL after the timeout
#       (default 30 s). Does nothing when no broker of DIR runs.
#
# Files in DIR: server.properties, data/ (the log dirs and the KRaft metadata), broker.log (the
# broker's output over all its starts: warnings, errors and its start/stop lines; PRICEFEED_KAFKA_LOG_LEVEL=INFO for
# more), broker.pid, tmp/ (the JVM's temp dir: compression codecs unpack native code there).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
fail() { echo "kafka: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Running (a zombie, killed but not yet reaped by its new parent, is not).
alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
}

# The pid of DIR's broker when it runs: the pid file is trusted only while that process is a
# Kafka started on DIR's properties (after a reboot or a SIGKILLed demo the pid may be reused).
pid_of() {
  local pid
  pid="$(cat "$1/broker.pid" 2>/dev/null || true)"
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $1/server.properties"; then
    echo "$pid"
  fi
}

prop() { sed -n "s/^$1=//p" "$2" | tail -1; }

show_log() {
  echo "kafka: the broker's log ($1/broker.log), last 60 lines:" >&2
  tail -n 60 "$1/broker.log" >&2 2>/dev/null || echo "(no log)" >&2
}

cmd="${1:-}"
[ -n "$cmd" ] || usage
shift
dir="" port="" heap="512m" owner="" ephemeral=0 timeout="" sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --heap) heap="$2"; shift 2 ;;
    --owner-pid) owner="$2"; shift 2 ;;
    --ephemeral) ephemeral=1; shift ;;
    --timeout) timeout="$2"; shift 2 ;;
    --set) sets+=("$2"); shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$dir" ] || usage
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

stop() {
  local pid
  pid="$(pid_of "$dir")"
  if ! alive "$pid"; then
    rm -f "$dir/broker.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + ${timeout:-30}))
  while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if alive "$pid"; then
    echo "kafka: the broker (pid $pid) did not stop within ${timeout:-30} s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/broker.pid"
}

# Stops broker $2 once process $1 is gone; ends by itself when the broker does. With
# --ephemeral the directory is removed after the broker stopped for that reason.
watchdog() {
  setsid bash -c '
    while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
    kill -0 "$2" 2>/dev/null || exit 0
    kill -TERM "$2" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$2" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$2" 2>/dev/null
    if [ "$3" = 1 ]; then sleep 0.2; rm -rf "$4"; fi' \
    watchdog "$1" "$2" "$ephemeral" "$dir" </dev/null >/dev/null 2>&1 &
}

start() {
  local libs props pid
  libs="$("$root/scripts/install-kafka.sh")"
  props="$dir/server.properties"
  if alive "$(pid_of "$dir")"; then
    fail "a broker already runs in $dir (pid $(pid_of "$dir")); scripts/kafka.sh stop --dir $dir"
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    rm -rf "$dir/data" "$dir/server.properties"
    port="${port:-$(free_port)}"
    if listening "$port"; then
      fail "something already listens on 127.0.0.1:$port"
    fi
    local cport
    cport="$(free_port)"
    while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
    cat >"$props" <<PROPS
# A single-node Apache Kafka for development and tests: broker and KRaft controller in one JVM.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
# One node: the internal topics cannot have more replicas (the defaults assume three brokers
# and make groups and transactions wait forever).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# A group forms as soon as its first member joins.
group.initial.rebalance.delay.ms=0
# pricefeed creates its topics itself, as on a cluster where auto-creation is off.
auto.create.topics.enable=false
# Two cores: fewer threads than the defaults (3 network, 8 io, 10 background).
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.dedupe.buffer.size=4194304
server.max.startup.time.ms=60000
PROPS
    local kv
    for kv in ${sets[@]+"${sets[@]}"}; do echo "$kv" >>"$props"; done
    local cluster_id
    # 16 random bytes, URL-safe base64 without padding, not starting with '-' (what
    # `kafka-storage.sh random-uuid` prints; without a second JVM start).
    cluster_id="$(python3 -c 'import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break')"
    if ! java -cp "$libs/*" -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.properties" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >"$dir/format.log" 2>&1; then
      cat "$dir/format.log" >&2
      fail "formatting $dir/data failed"
    fi
  else
    local configured
    configured="$(prop listeners "$props" | sed -n 's/.*PLAINTEXT:\/\/127.0.0.1:\([0-9]*\).*/\1/p')"
    if [ -n "$port" ] && [ "$port" != "$configured" ]; then
      fail "$dir holds a broker on port $configured, not $port"
    fi
    port="$configured"
    [ ${#sets[@]} -eq 0 ] || fail "--set only applies when a data dir is formatted; edit $props"
  fi
  if listening "$port"; then
    fail "something already listens on 127.0.0.1:$port"
  fi

  mkdir -p "$dir/tmp"
  log_from=1
  [ ! -f "$dir/broker.log" ] || log_from=$(($(wc -l <"$dir/broker.log") + 1))
  echo "=== scripts/kafka.sh start $(date -u +%Y-%m-%dT%H:%M:%SZ) ===" >>"$dir/broker.log"
  # Drain nothing: the JVM writes to a file, never to a pipe that could fill up.
  setsid java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Djava.io.tmpdir="$dir/tmp" -Dkafka.logs.dir="$dir" \
    -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$props" </dev/null >>"$dir/broker.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/broker.pid"
  # Interrupted or failed before it serves: the broker goes too (it has its own session, so a
  # Ctrl-C does not reach it).
  trap "kill -KILL $pid 2>/dev/null || true" EXIT
  trap 'exit 130' INT TERM
  if [ -n "$owner" ]; then
    watchdog "$owner" "$pid"
  fi

  local deadline=$((SECONDS + ${timeout:-90}))
  until tail -n +"$log_from" "$dir/broker.log" 2>/dev/null | grep -q "Kafka Server started" \
      && listening "$port"; do
    if ! alive "$pid"; then
      show_log "$dir"
      fail "the broker exited while starting"
    fi
    if [ $SECONDS -ge $deadline ]; then
      show_log "$dir"
      kill -KILL "$pid" 2>/dev/null || true
      fail "the broker did not start within ${timeout:-90} s"
    fi
    sleep 0.1
  done

  trap - EXIT INT TERM
  echo "127.0.0.1:$port"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
