#!/usr/bin/env bash
# Thread affinity of store calls: gRPC GetState, one connection, closed loop,
# after the store was first used over HTTP (so HTTP's listener thread made
# the first connection). Prints latency, calls/s, and per call: the
# sidecar's voluntary context switches (all threads, /proc/PID/task/*/status)
# and its CPU time. Compare two binaries by running it once for each,
# alternating (the host's noise moves absolute figures between runs).
#
# Usage: bench/affinity.sh [spar binary] [store: memory|redis|postgres] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
STORE="${2:-redis}"
SECS="${3:-3}"
GRPCLOAD="${GRPCLOAD:-target/release/spar-grpcload}"
[ -x "$GRPCLOAD" ] || { echo "needs $GRPCLOAD (cargo build --release -p spar-loadgen)"; exit 1; }
PORT=$((21000 + RANDOM % 5000))
TABLE="affinity_$$"
# shellcheck source=bench/lib.sh
. bench/lib.sh
drop_table() {
  cleanup
  [ "$STORE" != postgres ] || psql -h 127.0.0.1 -U postgres -qc "DROP TABLE IF EXISTS $TABLE, ${TABLE}_meta" 2>/dev/null || true
}
trap drop_table EXIT
mkdir -p "$work/res"
cat >"$work/res/stores.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: redis}
spec:
  type: state.redis
  version: v1
  metadata: [{name: redisHost, value: "127.0.0.1:6379"}, {name: keyPrefix, value: none}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: memory}
spec: {type: state.in-memory, version: v1}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: postgres}
spec:
  type: state.postgresql
  version: v1
  metadata:
  - {name: connectionString, value: "host=127.0.0.1 user=postgres port=5432 dbname=postgres"}
  - {name: tableName, value: $TABLE}
  - {name: metadataTableName, value: ${TABLE}_meta}
YAML
spar_up "$BIN" affinity "$PORT" "$work/res"
pid=${pids[-1]}
KEY="affinity-$$"
curl -sf -XPOST "http://127.0.0.1:$PORT/v1.0/state/$STORE" -d "[{\"key\":\"$KEY\",\"value\":1}]"
for _ in 1 2 3; do curl -sf "http://127.0.0.1:$PORT/v1.0/state/$STORE/$KEY" >/dev/null; done
switches() { awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}' /proc/$pid/task/*/status; }
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
s0=$(switches); t0=$(ticks)
read -r p50 p90 p99 _ _ rps _ < <("$GRPCLOAD" "127.0.0.1:$((PORT + 1))" get --store "$STORE" --key "$KEY" \
  --max --connections 1 --seconds "$SECS")
s1=$(switches); t1=$(ticks)
curl -sf -XDELETE "http://127.0.0.1:$PORT/v1.0/state/$STORE/$KEY" >/dev/null || true
hz=$(getconf CLK_TCK)
awk -v b="$BIN" -v st="$STORE" -v p50="$p50" -v p99="$p99" -v rps="$rps" -v secs="$SECS" \
  -v sw=$((s1 - s0)) -v tk=$((t1 - t0)) -v hz="$hz" 'BEGIN {
  n = rps * secs
  printf "%s %s: p50 %.3f ms, p99 %.3f ms, %d calls/s, %.1f context switches and %.3f ms CPU per call\n",
    b, st, p50, p99, rps, sw / n, tk / hz * 1000 / n }'
