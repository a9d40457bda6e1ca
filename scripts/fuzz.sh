#!/usr/bin/env bash
# Fuzzes the three input surfaces with cargo-fuzz (libFuzzer): the raw-record pipeline, the
# WebSocket client frame reader and protocol parser, and the channels.toml loader
# (fuzz/fuzz_targets/, checks in src/fuzzing.rs). Installs cargo-fuzz into .tools/ when missing.
#
#   scripts/fuzz.sh --short                 each target for 20 s (what CI runs)
#   scripts/fuzz.sh [--runs N] [TARGET…]    each target for N inputs (default 10,000,000)
#
# New inputs go to a scratch directory (the corpus in the repo stays as it is); a crash is saved
# under fuzz/artifacts/<target>/ and ends the script with a non-zero status: add it to
# fuzz/corpus/<target>/ with the fix, and tests/fuzz_corpus.rs replays it in every test run.
# Rust here is stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz's flags through, and no sanitizer is used
# (the code under test has no unsafe of its own), so a finding is a panic or a failed check.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs=10000000
seconds=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --short) seconds=20; shift ;;
    --runs) runs="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(raw_record client_frame channels_toml)

tool="$root/.tools/cargo-fuzz"
if [ ! -x "$tool/bin/cargo-fuzz" ]; then
  echo "installing cargo-fuzz into $tool…"
  cargo install cargo-fuzz --version 0.13.2 --locked --quiet --root "$tool"
fi
export RUSTC_BOOTSTRAP=1
fuzz() { (cd fuzz && "$tool/bin/cargo-fuzz" "$@"); }
echo "building the fuzz targets…"
mkdir -p "$root/target"
fuzz build --sanitizer none >"$root/target/fuzz-build.log" 2>&1 || {
  cat "$root/target/fuzz-build.log" >&2
  exit 1
}
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  if [ -n "$seconds" ]; then limit=(-max_total_time="$seconds"); else limit=(-runs="$runs"); fi
  started=$(date +%s)
  if fuzz run --sanitizer none "$t" "$scratch/$t" "corpus/$t" -- "${limit[@]}" -print_final_stats=1 \
      >"$scratch/$t.log" 2>&1; then
    execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$scratch/$t.log" | grep -Eo '[0-9]+$' || echo "?")
    echo "$t: ok, $execs inputs in $(( $(date +%s) - started )) s, no crash"
  else
    status=1
    echo "$t: FAILED after $(( $(date +%s) - started )) s:"
    grep -E "panicked|ERROR|Test unit written|artifact_prefix" "$scratch/$t.log" | head -20
  fi
done
exit $status
