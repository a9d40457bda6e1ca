#!/usr/bin/env bash
# pricefeed's edge side by side with a Socket.IO room broadcast (the seeds' stack) and a plain
# `ws` broadcast, in one run: the same load client, the same offered rates, the same machine.
# Installs what is missing (the pinned Apache Kafka, the npm packages in loadtest/compare), then runs
# `cargo bench --bench side_by_side` and prints a table of delivered frames/s, latency and RSS
# per connection with the ratios (docs/benchmarks.md holds the run of record).
#
#   loadtest/side-by-side.sh [--clients 1000] [--idle 10000] [--rates 50,200,1000,3000]
#                            [--seconds 6] [--only pricefeed,socketio,ws]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v node >/dev/null || { echo "side-by-side: Node.js (node, npm) is needed" >&2; exit 1; }
scripts/install-kafka.sh >/dev/null
if ! (cd loadtest/compare && npm ls --silent >/dev/null 2>&1); then
  echo "side-by-side: installing socket.io and ws (loadtest/compare/package-lock.json)" >&2
  (cd loadtest/compare && npm ci --no-audit --no-fund --silent)
fi
exec cargo bench --locked --bench side_by_side -- "$@"
