#!/usr/bin/env bash
# Soak: the demo's load (200 raw prices/s through a transform into three channels, 100 WebSocket
# clients) on Apache Kafka for 30 minutes, one row per minute: raw record → client latency
# p50/p99/max and the CPU and memory of the broker, the transform and the edge. Local only
# (127.0.0.1), bounded in time. Results: docs/benchmarks.md ("Soak").
#
#   loadtest/soak.sh [--minutes 30] [--clients 100] [--rate 200]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-kafka.sh >/dev/null
exec cargo bench --locked --bench soak -- "$@"
