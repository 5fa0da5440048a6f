#!/usr/bin/env bash
# gRPC service invocation, side by side in one run:
#   direct        spar-grpcload → spar-grpcapp (unary call, 1 KB answer)
#   nginx ×2      → nginx (grpc_pass) → nginx (grpc_pass) → app, h2c, keep-alive
#   spar ×2       → caller sidecar (transparent proxy: `dapr-app-id` metadata)
#                 → callee sidecar → app (--app-protocol grpc)
#   invoke ×2     Dapr `InvokeService` on the caller → callee → an HTTP app
#                 (nginx serving the same 1 KB), the SDKs' classic path
# Open loop at fixed rates (latency from the scheduled send time), ROUNDS
# rounds interleaved, median per cell; then maximum throughput (closed
# loop). One HTTP/2 connection per load-client connection.
#
# Usage: bench/grpc.sh [spar binary] [seconds per cell] [rounds] [rates]
#   defaults: target/release/spar 4 3 "1000 5000"
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-4}"
ROUNDS="${3:-3}"
RATES="${4:-1000 5000}"
DIR="${LOADGEN_DIR:-$(dirname "$BIN")}"
LOAD="$DIR/spar-grpcload"; APP="$DIR/spar-grpcapp"
CONNS="${CONNS:-32}"
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)"; exit 1; }
for b in "$LOAD" "$APP"; do [ -x "$b" ] || { echo "needs $b (cargo build --release -p spar-loadgen)"; exit 1; }; done
# shellcheck source=bench/lib.sh
. bench/lib.sh
# Below the ephemeral range (32768+), where clients' own ports could collide.
P=$((20000 + RANDOM % 8000))

"$APP" "$P" & pids+=($!)
ghop() { # name listen upstream
  nginx_conf "$1" "upstream up { server 127.0.0.1:$3; keepalive 128; }
  server { listen 127.0.0.1:$2 http2; location / { grpc_pass grpc://up; } }"
}
ghop nginx-g2 $((P+1)) $P
ghop nginx-g1 $((P+2)) $((P+1))
static_app nginx-http $((P+3))

run_sc() { # app-id base-port extra...
  local id=$1 b=$2; shift 2
  $OWN "$BIN" run --app-id "$id" --dapr-listen-addresses 127.0.0.1 --dapr-http-port "$b" --dapr-grpc-port $((b+1)) \
    --metrics-port $((b+2)) --log-level warn "$@" & pids+=($!)
}
run_sc gcallee $((P+10)) --app-port "$P" --app-protocol grpc
run_sc hcallee $((P+20)) --app-port $((P+3))
run_sc gcaller $((P+30))

declare -A CMD=(
  [direct]="127.0.0.1:$P raw --path /bench.Echo/Call"
  [nginx]="127.0.0.1:$((P+2)) raw --path /bench.Echo/Call"
  [spar]="127.0.0.1:$((P+31)) raw --path /bench.Echo/Call --app-id gcallee"
  [invoke]="127.0.0.1:$((P+31)) invoke --app-id hcallee --method body"
)
PATHS="direct nginx spar invoke"
for p in $PATHS; do
  for _ in $(seq 100); do
    # shellcheck disable=SC2086
    read -r _ _ _ _ _ _ e < <("$LOAD" ${CMD[$p]} --rate 50 --seconds 0.2 --connections 1 2>/dev/null) && [ "$e" = 0 ] && break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  "$LOAD" ${CMD[$p]} --rate 500 --seconds 1 --connections 4 >/dev/null   # warm pools
done

# shellcheck disable=SC2086
load() { local p=$1; shift; "$LOAD" ${CMD[$p]} --connections "$CONNS" "$@"; }
measure
tables "gRPC unary, 1 KB answer" "$CONNS"
