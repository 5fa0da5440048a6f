#!/usr/bin/env bash
# Input binding delivery, side by side in one run, per broker:
#   spar     spar-pubbench publishes with the broker's own client and is the
#            app spar POSTs each event to (POST /{binding}, body the raw
#            message): publish → broker → spar's input binding → app
#            (bindings.mqtt3: QoS 1 to the binding's topic, PUBACK to the
#            broker after the app's 2xx; bindings.rabbitmq: confirmed
#            persistent publish to the binding's durable queue on the
#            default exchange, ack after the app's 2xx)
#   native   the same process consuming with the broker's own client (as
#            bench/pubsub.sh: rumqttc QoS 1 both ways; lapin confirmed
#            persistent publish, durable queue, ack per message)
# Two loads per path: a fixed rate (open loop, latency from the moment of
# publishing to the moment the app has the message) and flat out (32
# publishes in flight, at most WINDOW published but not yet delivered:
# messages per second delivered).
#
# Usage: bench/bindings-input.sh [spar binary] [seconds per cell] [rate] [brokers]
#   defaults: target/release/spar 5 1000 "mqtt rabbitmq"
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
RATE="${3:-1000}"
BROKERS="${4:-mqtt rabbitmq}"
PB="${PUBBENCH:-$(dirname "$BIN")/spar-pubbench}"
# Below Mosquitto's default max_queued_messages of 1000 per client.
WINDOW="${WINDOW:-500}"
# Stragglers: a cell ends once nothing arrived for TAIL seconds.
TAIL="${TAIL:-3}"
[ -x "$PB" ] || { echo "needs $PB (cargo build --release -p spar-loadgen)"; exit 1; }
# The sidecar in a session of its own, as bench/lib.sh explains (OWN).
OWN=setsid
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
P=$((20000 + RANDOM % 8000))
RUN=$RANDOM

component() { # broker target
  case $1 in
    mqtt) printf 'type: bindings.mqtt3\n  version: v1\n  metadata:\n  - name: url\n    value: tcp://127.0.0.1:1883\n  - name: topic\n    value: %s\n  - name: qos\n    value: "1"\n  - name: consumerID\n    value: bench-%s\n' "$2" "$RANDOM" ;;
    # durable queue + persistent messages: the native cell's guarantees;
    # prefetch as the native consumer's (32)
    rabbitmq) printf 'type: bindings.rabbitmq\n  version: v1\n  metadata:\n  - name: host\n    value: amqp://guest:guest@127.0.0.1:5672\n  - name: queueName\n    value: %s\n  - name: durable\n    value: "true"\n  - name: deliveryMode\n    value: "2"\n  - name: prefetchCount\n    value: "32"\n' "$2" ;;
  esac
}

# spar_cell broker rate → result line
spar_cell() {
  local b=$1 rate=$2 dir="$work/$1-$2" target
  local app=$((P)) http=$((P+1))
  case $b in
    mqtt) target="bench/in/$RUN/$rate/$RANDOM" ;;
    *) target="bench-in-$RUN-$rate-$RANDOM" ;;
  esac
  mkdir -p "$dir"
  cat >"$dir/in.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: inb
spec:
  $(component "$b" "$target")
YAML
  $OWN "$BIN" run --app-id "bench-in-$RUN" --app-port $app --dapr-listen-addresses 127.0.0.1 \
    --dapr-http-port $http --dapr-grpc-port $((P+2)) --metrics-port $((P+3)) \
    --resources-path "$dir" --log-level warn & local pid=$!
  "$PB" "binding-$b" "$([ "$b" = mqtt ] && echo 127.0.0.1:1883 || echo amqp://guest:guest@127.0.0.1:5672)" \
    "$target" --listen $app --rate "$rate" --seconds "$SECS" --window "$WINDOW" --tail "$TAIL" || echo "- - - - - - -"
  kill $pid; wait $pid 2>/dev/null || true
  # The durable queue spar declared outlives it.
  [ "$b" = rabbitmq ] && command -v rabbitmqadmin >/dev/null && rabbitmqadmin delete queue name="$target" >/dev/null 2>&1
  return 0
}

native_cell() { # broker rate
  case $1 in
    rabbitmq) "$PB" rabbitmq amqp://guest:guest@127.0.0.1:5672 "bench-native-in-$RUN-$RANDOM" --rate "$2" --seconds "$SECS" --window "$WINDOW" ;;
    mqtt) "$PB" mqtt 127.0.0.1:1883 "bench/native/in/$RUN/$RANDOM" --rate "$2" --seconds "$SECS" --window "$WINDOW" ;;
  esac
}

printf '| broker | load | path | sent | delivered | msgs/s | p50 ms | p90 ms | p99 ms | max ms |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for b in $BROKERS; do
  for rate in "$RATE" 0; do
    load=$([ "$rate" = 0 ] && echo "flat out" || echo "$rate/s")
    for path in native spar; do
      if [ $path = spar ]; then r=$(spar_cell "$b" "$rate"); else r=$(native_cell "$b" "$rate"); fi
      set -- $r
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$b" "$load" "$path" "$1" "$2" "$3" "$4" "$5" "$6" "$7"
    done
  done
done
