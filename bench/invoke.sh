#!/usr/bin/env bash
# Added latency of service invocation through two sidecars, side by side in
# one run: wrk -t1 -c1 (one request at a time) against
#   direct:   the app (nginx returning a 1 KB body)
#   via spar: caller sidecar → callee sidecar (h2c) → app
# Usage: bench/invoke.sh [path/to/spar] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)"; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
P=$((22000 + RANDOM % 5000))
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/body"
cat >"$work/nginx.conf" <<NGINX
daemon on; pid $work/nginx.pid; error_log $work/error.log; worker_processes 1;
events { worker_connections 1024; }
http { access_log off;
  server { listen 127.0.0.1:$P; location / { root $work; try_files /body =404; } } }
NGINX
nginx -c "$work/nginx.conf"
"$BIN" run --app-id callee --app-port "$P" --dapr-listen-addresses 127.0.0.1 --dapr-http-port $((P+1)) \
  --dapr-grpc-port $((P+2)) --metrics-port $((P+3)) --log-level warn & pids+=($!)
"$BIN" run --app-id caller --dapr-listen-addresses 127.0.0.1 --dapr-http-port $((P+4)) \
  --dapr-grpc-port $((P+5)) --metrics-port $((P+6)) --log-level warn & pids+=($!)
url="http://127.0.0.1:$((P+4))/v1.0/invoke/callee/method/body"
for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] && break; sleep 0.1; done

lat() {
  wrk -t1 -c1 -d"${SECS}s" --latency "$1" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    $1=="50%" {p50=ms($2)} $1=="90%" {p90=ms($2)} $1=="99%" {p99=ms($2)} /Requests\/sec/ {rps=$2}
    END {printf "%.3f %.3f %.3f %.0f\n", p50, p90, p99, rps}'
}
read -r d50 d90 d99 drps < <(lat "http://127.0.0.1:$P/body")
read -r s50 s90 s99 srps < <(lat "$url")
echo "| path | p50 (ms) | p90 (ms) | p99 (ms) | req/s at -c1 |"
echo "|---|---|---|---|---|"
echo "| direct app | $d50 | $d90 | $d99 | $drps |"
echo "| app → spar → spar → app | $s50 | $s90 | $s99 | $srps |"
awk -v a="$s50" -v b="$d50" -v c="$s90" -v d="$d90" -v e="$s99" -v f="$d99" \
  'BEGIN {printf "| added by two sidecars | +%.3f | +%.3f | +%.3f | |\n", a-b, c-d, e-f}'
