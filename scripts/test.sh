#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, and all tests (unit, property, and the
# integration tests that start their own throwaway Kafka broker on a free port).
# Extra arguments go to `cargo test`, e.g. scripts/test.sh --test exactly_once_kill.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-broker.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked "$@"
