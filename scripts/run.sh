#!/usr/bin/env bash
# Build and run the spar sidecar: ./scripts/run.sh [spar run flags] [-- app command…]
#
# The build needs cmake (pingora's zlib-ng) and protoc (gRPC code generation);
# on a fresh Debian machine they are installed from Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "run.sh: installing build tools: ${missing[*]}"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

exec cargo run --release -q -p spar -- run "$@"
