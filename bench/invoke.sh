#!/usr/bin/env bash
# Service invocation, side by side in one run, three paths to the same app
# (nginx serving a 1 KB body):
#   direct        load generator → app
#   nginx ×2      load generator → nginx → nginx → app (keep-alive upstreams)
#   pingora ×2    the same through two bare pingora proxies (spar-pingorahop:
#                 no filters, spar's thread settings) — spar's data plane
#                 alone, so spar's own cost shows apart from pingora's
#   pingora-core ×2  the same through two proxies written on pingora-core
#                 alone (spar-corehop: pingora's HTTP/1 sessions, no
#                 pingora-proxy engine) — what a purpose-built forwarding
#                 path on the same data plane would cost
#   spar ×2       load generator → caller sidecar → callee sidecar → app
#   spar ×2 mTLS  the same with --enable-mtls (certificates from spar sentry)
#                 and tracing sampled at 0.1 (Zipkin export to an nginx sink):
#                 the conditions of Dapr's published figures
#   spar-proxy    spar ×2 with the invocation fast path off
#                 (SPAR_HTTP_FAST_PATH=off: every call through pingora-proxy)
#   spar-mtls-proxy  spar ×2 mTLS with the fast path off
#   spar-bare     spar ×2 with the chain's optional filters off (no metrics,
#                 no tracing, no resiliency)
#   spar-full     spar ×2 with the full chain: metrics, tracing sampled at 1
#                 (Zipkin export to an nginx sink), a resiliency policy
#                 (timeout, retry, circuit breaker) on the callee app
#   spar-b        spar ×2 run from a second binary, BIN_B=path (only when
#                 set): A/B of a change side by side in one run
# ("spar" itself is the default: metrics on, no tracing, no resiliency.)
# Open-loop load at fixed rates (bench/loadgen: latency measured from the
# scheduled send time), ROUNDS rounds interleaved, median of the rounds per
# cell; then maximum throughput (closed loop, 32 connections).
#
# Usage: bench/invoke.sh [spar binary] [seconds per cell] [rounds] [rates]
#   defaults: target/release/spar 5 3 "1000 5000"
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
ROUNDS="${3:-3}"
RATES="${4:-1000 5000}"
LOADGEN="${LOADGEN:-$(dirname "$BIN")/spar-loadgen}"
for t in nginx curl; do command -v $t >/dev/null || { echo "needs $t (apt-get install $t)"; exit 1; }; done
[ -x "$LOADGEN" ] || { echo "needs $LOADGEN (cargo build --release -p spar-loadgen)"; exit 1; }
for b in spar-pingorahop spar-corehop; do
  [ -x "$(dirname "$LOADGEN")/$b" ] || { echo "needs $b (cargo build --release -p spar-loadgen)"; exit 1; }
done
# shellcheck source=bench/lib.sh
. bench/lib.sh
P=$((20000 + RANDOM % 8000))
static_app nginx-app "$P"
http_hop nginx-hop2 $((P+10)) $P
http_hop nginx-hop1 $((P+11)) $((P+10))
HOP="$(dirname "$LOADGEN")/spar-pingorahop"
$OWN "$HOP" 127.0.0.1:$((P+12)) 127.0.0.1:$P 2>/dev/null & pids+=($!)
$OWN "$HOP" 127.0.0.1:$((P+13)) 127.0.0.1:$((P+12)) 2>/dev/null & pids+=($!)
CORE="$(dirname "$LOADGEN")/spar-corehop"
$OWN "$CORE" 127.0.0.1:$((P+14)) 127.0.0.1:$P 2>/dev/null & pids+=($!)
$OWN "$CORE" 127.0.0.1:$((P+15)) 127.0.0.1:$((P+14)) 2>/dev/null & pids+=($!)

sidecars() { # tag base-port extra-args... (SIDECAR_OWN= : in this script's session)
  local tag=$1 b=$2 bin=${SIDECAR_BIN:-$BIN} own=${SIDECAR_OWN-$OWN}; shift 2
  $own "$bin" run --app-id "callee-$tag" --app-port "$P" --dapr-listen-addresses 127.0.0.1 --dapr-http-port $((b)) \
    --dapr-grpc-port $((b+1)) --metrics-port $((b+2)) --log-level warn "$@" & pids+=($!)
  $own "$bin" run --app-id "caller-$tag" --dapr-listen-addresses 127.0.0.1 --dapr-http-port $((b+3)) \
    --dapr-grpc-port $((b+4)) --metrics-port $((b+5)) --log-level warn "$@" & pids+=($!)
}
sidecars plain $((P+20))
# The Zipkin sink for the full chain: accepts every batch.
nginx_conf zipkin-sink "server { listen 127.0.0.1:$((P+50)); location / { return 202; } }"
cat >"$work/full.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: bench-full}
spec:
  tracing:
    samplingRate: "1"
    zipkin: {endpointAddress: "http://127.0.0.1:$((P+50))/api/v2/spans"}
YAML
mkdir -p "$work/res-full"
cat >"$work/res-full/resiliency.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: bench}
spec:
  policies:
    timeouts: {t: 5s}
    retries: {r: {policy: constant, duration: 10ms, maxRetries: 3}}
    circuitBreakers: {cb: {maxRequests: 1, timeout: 10s, trip: consecutiveFailures > 50}}
  targets:
    apps:
      callee-full: {timeout: t, retry: r, circuitBreaker: cb}
YAML
cat >"$work/t01.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: bench-t01}
spec:
  tracing:
    samplingRate: "0.1"
    zipkin: {endpointAddress: "http://127.0.0.1:$((P+50))/api/v2/spans"}
YAML
$OWN "$BIN" sentry --issuer-credentials "$work/certs" --port $((P+40)) --listen-address 127.0.0.1 --log-level warn & pids+=($!)
for _ in $(seq 100); do [ -f "$work/certs/ca.crt" ] && break; sleep 0.05; done
DAPR_TRUST_ANCHORS="$(cat "$work/certs/ca.crt")" sidecars mtls $((P+30)) --enable-mtls --sentry-address 127.0.0.1:$((P+40)) --config "$work/t01.yaml"
sidecars bare $((P+60)) --enable-metrics=false
SPAR_HTTP_FAST_PATH=off sidecars proxy $((P+80))
DAPR_TRUST_ANCHORS="$(cat "$work/certs/ca.crt")" SPAR_HTTP_FAST_PATH=off sidecars mtlsproxy $((P+90)) \
  --enable-mtls --sentry-address 127.0.0.1:$((P+40)) --config "$work/t01.yaml"
sidecars full $((P+70)) --config "$work/full.yaml" --resources-path "$work/res-full"
# B_SHARED_SESSION=1: the B pair stays in this script's session (the
# harness before R28), to show what the session alone changes.
if [ -n "${BIN_B:-}" ]; then
  if [ -n "${B_SHARED_SESSION:-}" ]; then own_b=""; else own_b=$OWN; fi
  SIDECAR_BIN="$BIN_B" SIDECAR_OWN="$own_b" sidecars b $((P+100))
fi

declare -A URL=(
  [direct]="http://127.0.0.1:$P/body"
  [nginx]="http://127.0.0.1:$((P+11))/body"
  [pingora]="http://127.0.0.1:$((P+13))/body"
  [pingora-core]="http://127.0.0.1:$((P+15))/body"
  [spar]="http://127.0.0.1:$((P+23))/v1.0/invoke/callee-plain/method/body"
  [spar-mtls]="http://127.0.0.1:$((P+33))/v1.0/invoke/callee-mtls/method/body"
  [spar-proxy]="http://127.0.0.1:$((P+83))/v1.0/invoke/callee-proxy/method/body"
  [spar-mtls-proxy]="http://127.0.0.1:$((P+93))/v1.0/invoke/callee-mtlsproxy/method/body"
  [spar-bare]="http://127.0.0.1:$((P+63))/v1.0/invoke/callee-bare/method/body"
  [spar-full]="http://127.0.0.1:$((P+73))/v1.0/invoke/callee-full/method/body"
  [spar-b]="http://127.0.0.1:$((P+103))/v1.0/invoke/callee-b/method/body"
)
PATHS="${PATHS:-direct nginx pingora pingora-core spar spar-proxy spar-mtls spar-mtls-proxy spar-bare spar-full}"
for p in $PATHS; do
  for _ in $(seq 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' "${URL[$p]}")" = 200 ] && break; sleep 0.05; done
  "$LOADGEN" "${URL[$p]}" --rate 500 --seconds 1 >/dev/null   # warm pools
done

load() { local p=$1; shift; "$LOADGEN" "${URL[$p]}" --connections 32 "$@"; }
measure
tables "Open loop, 1 KB response" 32
# Key figures for bench/run.sh's targets table.
if [ -n "${SUMMARY:-}" ]; then
  for rate in $RATES; do
    for p in $PATHS; do
      k=$(echo "$p" | tr '-' '_')
      for q in p50 p90 p99; do
        echo "INV_${rate}_${k}_${q}=$(m "${R[$rate,$p,$q]}")"
      done
    done
  done >> "$SUMMARY"
  for p in $PATHS; do echo "INV_MAX_$(echo "$p" | tr '-' '_')=$(m "${R[max,$p]}")"; done >> "$SUMMARY"
fi
