#!/usr/bin/env bash
# Installs the pinned Apache Kafka broker into .tools/kafka-<version>/libs when it is missing.
#
# The broker is resolved from Maven Central with the machine's Maven, from the pin in
# scripts/kafka/pom.xml (kafka_2.13 plus the logging jars the release tarball adds). Once
# installed nothing is fetched again (offline). Needs Java 17+ (to run it) and Maven; on Debian
# they are installed with apt-get when missing.
# Prints the libs directory on stdout; everything else goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$root/scripts/kafka/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
dest="$root/.tools/kafka-$version"
libs="$dest/libs"

fail() { echo "install-kafka: $*" >&2; exit 1; }

# On Debian, Java and Maven are installed when missing (as root, or with sudo).
apt_install() {
  command -v apt-get >/dev/null || return 1
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-kafka: installing Debian's $* (missing)" >&2
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}
command -v java >/dev/null || apt_install openjdk-17-jre-headless || true

# Java first: an installed broker is of no use without it.
command -v java >/dev/null || fail "Java 17 or newer is needed to run Apache Kafka $version; java is not on PATH (Debian: apt-get install openjdk-17-jre-headless)"
java_version="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -1)"
java_major="${java_version%%.*}"
if ! [[ "$java_major" =~ ^[0-9]+$ ]] || [ "$java_major" -lt 17 ]; then
  fail "Java 17 or newer is needed to run Apache Kafka $version; found java ${java_version:-of unknown version} at $(command -v java)"
fi

# Installed: the marker (the pin's checksum) is written last, so a half-finished copy is never
# taken for a whole one, and a changed pin (other logging jars, say) is installed again.
pin="$(sha256sum "$pom" | cut -d' ' -f1)"
if [ "$(cat "$dest/.installed" 2>/dev/null)" = "$pin" ]; then
  echo "$libs"
  exit 0
fi
# One install at a time (tests may start brokers side by side on a fresh clone).
mkdir -p "$root/.tools"
exec 9>"$root/.tools/.install-kafka.lock"
flock 9
if [ "$(cat "$dest/.installed" 2>/dev/null)" = "$pin" ]; then
  echo "$libs"
  exit 0
fi

command -v mvn >/dev/null || apt_install maven || true
command -v mvn >/dev/null || fail "Maven (mvn) is needed to fetch Apache Kafka $version from Maven Central (Debian: apt-get install maven)"

echo "install-kafka: resolving Apache Kafka $version from Maven Central (scripts/kafka/pom.xml)" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# -U: a failed earlier attempt leaves *.lastUpdated markers in ~/.m2 that would stop a retry.
if ! mvn -B -U -f "$pom" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
  if grep -qiE 'Could not transfer|UnknownHost|Connection refused|connect timed out|Network is unreachable|No route to host' "$tmp/mvn.log"; then
    echo "install-kafka: Maven Central cannot be reached; Maven said:" >&2
  else
    echo "install-kafka: Maven failed; its output:" >&2
  fi
  # Maven's own error lines, without its generic advice.
  grep -E '^\[ERROR\] .*[^ ]' "$tmp/mvn.log" \
    | grep -vE 'Re-run Maven|full stack trace|For more information|\[Help 1\] http' \
    | head -10 >&2 || tail -20 "$tmp/mvn.log" >&2
  exit 1
fi
ls "$tmp/libs"/kafka_2.13-"$version".jar >/dev/null 2>&1 || fail "Maven finished but kafka_2.13-$version.jar is missing from $tmp/libs"

rm -rf "$dest"
mkdir -p "$dest"
mv "$tmp/libs" "$libs"
cp "$pom" "$dest/pom.xml"
echo "$pin" >"$dest/.installed"
echo "install-kafka: installed Apache Kafka $version ($(ls "$libs" | wc -l) jars, $(du -sh "$libs" | cut -f1)) in $libs" >&2
echo "$libs"
