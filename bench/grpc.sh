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
work=$(mktemp -d); chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  wait 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
P=$((30000 + RANDOM % 5000))
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/body"

"$APP" "$P" & pids+=($!)
nginx_conf() { # name body
  cat >"$work/$1.conf" <<NGINX
daemon on; pid $work/$1.pid; error_log $work/$1.err; worker_processes auto;
events { worker_connections 4096; }
http { access_log off; $2 }
NGINX
  nginx -c "$work/$1.conf"
}
ghop() { # name listen upstream
  nginx_conf "$1" "upstream up { server 127.0.0.1:$3; keepalive 128; }
  server { listen 127.0.0.1:$2 http2; location / { grpc_pass grpc://up; } }"
}
ghop nginx-g2 $((P+1)) $P
ghop nginx-g1 $((P+2)) $((P+1))
nginx_conf nginx-http "server { listen 127.0.0.1:$((P+3)); location / { root $work; try_files /body =404; } }"

run_sc() { # app-id base-port extra...
  local id=$1 b=$2; shift 2
  "$BIN" run --app-id "$id" --dapr-listen-addresses 127.0.0.1 --dapr-http-port "$b" --dapr-grpc-port $((b+1)) \
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

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A R
for rate in $RATES; do
  for r in $(seq "$ROUNDS"); do
    for p in $PATHS; do
      # shellcheck disable=SC2086
      read -r p50 p90 p99 _ _ _ errs < <("$LOAD" ${CMD[$p]} --rate "$rate" --seconds "$SECS" --connections "$CONNS")
      R[$rate,$p,p50]+="$p50 "; R[$rate,$p,p90]+="$p90 "; R[$rate,$p,p99]+="$p99 "; R[$rate,$p,err]+="$errs "
    done
  done
done
for r in $(seq "$ROUNDS"); do
  for p in $PATHS; do
    # shellcheck disable=SC2086
    read -r _ _ _ _ _ rps _ < <("$LOAD" ${CMD[$p]} --max --seconds "$SECS" --connections "$CONNS")
    R[max,$p]+="$rps "
  done
done
m() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
echo "gRPC unary, 1 KB answer, $CONNS connections, ${SECS}s per cell, median of $ROUNDS rounds (ms):"
echo
echo "| rate | path | p50 | p90 | p99 | added p50 | added p90 | added p99 | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
  d50=$(m "${R[$rate,direct,p50]}"); d90=$(m "${R[$rate,direct,p90]}"); d99=$(m "${R[$rate,direct,p99]}")
  for p in $PATHS; do
    a=$(m "${R[$rate,$p,p50]}"); b=$(m "${R[$rate,$p,p90]}"); c=$(m "${R[$rate,$p,p99]}")
    e=$(echo "${R[$rate,$p,err]}" | tr ' ' '\n' | awk '{s+=$1} END {print s+0}')
    awk -v r="$rate" -v p="$p" -v a="$a" -v b="$b" -v c="$c" -v x="$d50" -v y="$d90" -v z="$d99" -v e="$e" \
      'BEGIN {printf "| %s/s | %s | %.3f | %.3f | %.3f | %+.3f | %+.3f | %+.3f | %s |\n", r, p, a, b, c, a-x, b-y, c-z, e}'
  done
done
echo
echo "Maximum throughput (closed loop, $CONNS connections), median of $ROUNDS rounds:"
echo
echo "| path | requests/s |"
echo "|---|---|"
for p in $PATHS; do echo "| $p | $(m "${R[max,$p]}") |"; done
