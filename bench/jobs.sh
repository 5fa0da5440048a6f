#!/usr/bin/env bash
# The Jobs API and `spar scheduler` (issue 23): a one-node scheduler (temp
# data dir), a sidecar with --scheduler-host-address, and spar-jobbench as
# both the app (POST /job/{name}) and the load:
#   schedule rate: far-future one-shot jobs flat out, 32 in flight, through
#                  the sidecar's HTTP API, and straight to the scheduler's
#                  gRPC ScheduleJob (the memory round's 100,000 writes)
#   lateness:      1,000 one-shot jobs due per second for SECS seconds
#                  (dueTime RFC 3339), arrival at the app − due time
#   memory:        a fresh node's RSS before and after storing 100,000 jobs
#                  (dueTime 24h, no data), and restarted with them (loaded
#                  from disk, none of the writes' transient memory)
# Usage: bench/jobs.sh [path/to/spar] [seconds]   (LOG=info: the sidecar's log;
# JOBBENCH=path: another spar-jobbench)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
JB="${JOBBENCH:-target/release/spar-jobbench}"
[ -x "$JB" ] || cargo build --release -q -p spar-loadgen --bin spar-jobbench
PORT=$((26000 + RANDOM % 5000))
# shellcheck source=bench/lib.sh
. bench/lib.sh

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
port_up() { # port: waits (bounded, 10 s) until something listens
  for _ in $(seq 1000); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.01; done
  echo "nothing listening on $1" >&2; return 1
}
scheduler() { # port data-dir: one node; its pid in $sched
  $OWN "$BIN" scheduler --port "$1" --listen-address 127.0.0.1 --data-dir "$2" --log-level warn & sched=$!; pids+=("$sched")
  port_up "$1"
}

# Lateness and the HTTP schedule rate: node on PORT, sidecar on PORT+10.., app on PORT+5.
scheduler "$PORT" "$work/sched"
$OWN "$BIN" run --app-id jobbench --app-port $((PORT + 5)) --dapr-listen-addresses 127.0.0.1 \
  --dapr-http-port $((PORT + 10)) --dapr-grpc-port $((PORT + 11)) --metrics-port $((PORT + 12)) \
  --scheduler-host-address "127.0.0.1:$PORT" --log-level "${LOG:-warn}" & pids+=($!)
read -r l50 l90 l99 lmax lost dups took < <("$JB" late "127.0.0.1:$((PORT + 10))" --listen $((PORT + 5)) --rate 1000 --seconds "$SECS")
read -r hn hrate herr < <("$JB" http "127.0.0.1:$((PORT + 10))" --seconds "$SECS")

# Memory and the gRPC schedule rate: a fresh node on PORT+20.
scheduler $((PORT + 20)) "$work/mem"
sleep 1
before=$(rss "$sched")
read -r gn grate gerr < <("$JB" grpc "127.0.0.1:$((PORT + 20))" --count 100000)
sleep 1
after=$(rss "$sched")
kill "$sched"; wait "$sched" 2>/dev/null || true
scheduler $((PORT + 20)) "$work/mem"
sleep 2
reloaded=$(rss "$sched")

echo "Schedule rate, one-shot jobs due in 24 h, no data, 32 in flight:"
echo
echo "| path | jobs | jobs/s | errors |"
echo "|---|---|---|---|"
echo "| sidecar HTTP \`POST /v1.0-alpha1/jobs/{name}\` (${SECS}s) | $hn | $hrate | $herr |"
echo "| scheduler gRPC \`ScheduleJob\` | $gn | $grate | $gerr |"
echo
echo "Trigger lateness, $((SECS * 1000)) jobs due at 1,000/s (scheduled beforehand in $took s), arrival at the app − due time (ms):"
echo
echo "| p50 | p90 | p99 | max | lost | duplicates |"
echo "|---|---|---|---|---|---|"
echo "| $l50 | $l90 | $l99 | $lmax | $lost | $dups |"
echo
echo "Scheduler memory, 100,000 stored jobs (dueTime 24h, no data):"
echo
echo "| RSS empty (KiB) | after the writes (KiB) | restarted with them (KiB) | bytes per job (restarted) |"
echo "|---|---|---|---|"
echo "| $before | $after | $reloaded | $(((reloaded - before) * 1024 / 100000)) |"
