#!/usr/bin/env bash
# Instructions per HTTP invocation, counted by valgrind's callgrind — a
# figure that does not drift with the machine's load (the same binary and
# inputs count the same), for A/B-ing a change to the request path where
# timings on 2 shared cores are too noisy to tell a few percent apart.
#
# A caller and a callee sidecar both run under callgrind in front of an
# nginx app (1 KB answer); after a warm-up the counters are zeroed, N calls
# go through at 500/s on 4 connections, and each sidecar's count is divided
# by N. An nginx reverse-proxy hop (one process, keep-alive upstream) is
# counted the same way for scale. Both sidecars' counts include their idle
# work during the run (timers, probes: a few hundred instructions per call
# at 500/s).
#
# Usage: bench/instructions.sh [spar binary] [calls]
#   defaults: target/release/spar 2000
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
N="${2:-2000}"
LOADGEN="${LOADGEN:-$(dirname "$BIN")/spar-loadgen}"
for t in valgrind callgrind_control nginx curl; do
  command -v $t >/dev/null || { echo "needs $t (apt-get install valgrind nginx curl)"; exit 1; }
done
[ -x "$LOADGEN" ] || { echo "needs $LOADGEN (cargo build --release -p spar-loadgen)"; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
P=$((20000 + RANDOM % 8000))
static_app app "$P" 1

cg() { # out-file command...: runs the command under callgrind
  local out=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$out.log" 2>&1 &
  pids+=($!)
}
wait_ok() { for _ in $(seq 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return; sleep 0.1; done; }
# Zeroes the counters of the given pids, runs N calls to URL, dumps them.
count() { # url pid...
  local url=$1; shift
  "$LOADGEN" "$url" --rate 200 --seconds 2 --connections 4 >/dev/null  # warm pools
  sleep 1
  for p in "$@"; do callgrind_control -z "$p" >/dev/null 2>&1; done
  "$LOADGEN" "$url" --rate 500 --seconds $((N / 500)) --connections 4 >/dev/null
  for p in "$@"; do callgrind_control -d "$p" >/dev/null 2>&1; done
}
per_call() { awk -v n="$N" '/^totals:/ {printf "%.0f", $2 / n}' "$1".1; }

args=(--dapr-listen-addresses 127.0.0.1 --log-level warn)
cg "$work/callee.out" "$BIN" run --app-id ins-callee --app-port "$P" --dapr-http-port $((P+1)) \
  --dapr-grpc-port $((P+2)) --metrics-port $((P+3)) "${args[@]}"
callee=$!
cg "$work/caller.out" "$BIN" run --app-id ins-caller --dapr-http-port $((P+4)) \
  --dapr-grpc-port $((P+5)) --metrics-port $((P+6)) "${args[@]}"
caller=$!
url="http://127.0.0.1:$((P+4))/v1.0/invoke/ins-callee/method/body"
wait_ok "$url"
count "$url" "$caller" "$callee"

nginx_conf hop "upstream up { server 127.0.0.1:$P; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$((P+10)); location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" 1
# nginx_conf started it as a daemon; run it in the foreground, one process,
# under callgrind instead.
kill "$(cat "$work/hop.pid")"; sleep 0.2
sed -i 's/^daemon on;/daemon off; master_process off;/' "$work/hop.conf"
cg "$work/nginx.out" nginx -c "$work/hop.conf"
hop=$!
wait_ok "http://127.0.0.1:$((P+10))/body"
count "http://127.0.0.1:$((P+10))/body" "$hop"
sleep 0.5

echo "Instructions per call (callgrind, $N calls at 500/s; $BIN):"
echo
echo "| process | instructions per call |"
echo "|---|---|"
echo "| spar caller | $(per_call "$work/caller.out") |"
echo "| spar callee | $(per_call "$work/callee.out") |"
echo "| nginx hop | $(per_call "$work/nginx.out") |"
