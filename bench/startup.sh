#!/usr/bin/env bash
# Start-up and idle-memory figures for one spar binary:
#   time from exec to the first `GET /v1.0/healthz` → 204, over N runs
#   (embedded default: SQLite state store, no YAML), and resident memory
#   (VmRSS) after the sidecar has idled for 2 s.
# Usage: bench/startup.sh [path/to/spar] [runs]
set -euo pipefail
BIN="${1:-target/release/spar}"
RUNS="${2:-20}"
PORT=$((20000 + RANDOM % 10000))
times=()
rss=()
for i in $(seq "$RUNS"); do
  data=$(mktemp -d)
  t0=$(date +%s%N)
  "$BIN" run --app-id bench --dapr-listen-addresses 127.0.0.1 \
    --dapr-http-port "$PORT" --dapr-grpc-port $((PORT + 1)) --metrics-port $((PORT + 2)) \
    --data-dir "$data" --log-level warn &
  pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1.0/healthz")" = 204 ]; do
    sleep 0.001
  done
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000 )))
  if [ "$i" -le 3 ]; then
    sleep 2
    rss+=("$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")")
  fi
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$data"
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
p50=$(echo "$sorted" | awk -v n="$RUNS" 'NR==int((n+1)/2)')
max=$(echo "$sorted" | tail -1)
min=$(echo "$sorted" | head -1)
echo "binary: $BIN ($(stat -c %s "$BIN") bytes)"
echo "start → healthz 204 over $RUNS runs: min ${min}µs, median ${p50}µs, max ${max}µs (includes curl polling)"
echo "idle VmRSS after 2 s (kB): ${rss[*]}"
if [ -n "${SUMMARY:-}" ]; then
  echo "STARTUP_MEDIAN_US=$p50" >> "$SUMMARY"
fi
