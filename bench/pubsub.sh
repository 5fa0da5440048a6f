#!/usr/bin/env bash
# Pub/sub publish-to-delivery, side by side in one run, per broker:
#   spar     spar-pubbench publishes over spar's HTTP API and is the
#            subscribing app spar delivers CloudEvents to (declarative
#            subscription): publish → broker → spar → app
#   native   the same process with the broker's own client (Redis: XADD,
#            XREADGROUP + XACK in a consumer group; NATS JetStream: publish
#            awaiting the ack, durable pull consumer acking each message;
#            RabbitMQ (lapin): confirmed persistent publish, durable queue,
#            ack per message; MQTT (rumqttc): QoS 1 both ways)
# Two loads per path: a fixed rate (open loop, latency from the moment of
# publishing to the moment the app has the message) and flat out (32
# publishes in flight: messages per second delivered).
#
# Usage: bench/pubsub.sh [spar binary] [seconds per cell] [rate] [brokers]
#   defaults: target/release/spar 5 1000 "memory redis jetstream rabbitmq mqtt"
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
RATE="${3:-1000}"
BROKERS="${4:-memory redis jetstream rabbitmq mqtt}"
PB="${PUBBENCH:-$(dirname "$BIN")/spar-pubbench}"
# Flat out: at most this many messages published but not yet delivered
# (below Mosquitto's default max_queued_messages of 1000 per client).
WINDOW="${WINDOW:-500}"
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

component() { # broker
  case $1 in
    memory) printf 'type: pubsub.in-memory\n  version: v1\n  metadata: []\n' ;;
    redis) printf 'type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n' ;;
    jetstream) printf 'type: pubsub.jetstream\n  version: v1\n  metadata:\n  - name: natsURL\n    value: nats://127.0.0.1:4222\n' ;;
    # durable + persistent: the same guarantees as the native cell
    rabbitmq) printf 'type: pubsub.rabbitmq\n  version: v1\n  metadata:\n  - name: connectionString\n    value: amqp://guest:guest@127.0.0.1:5672\n  - name: durable\n    value: "true"\n  - name: deliveryMode\n    value: "2"\n' ;;
    mqtt) printf 'type: pubsub.mqtt3\n  version: v1\n  metadata:\n  - name: url\n    value: tcp://127.0.0.1:1883\n  - name: consumerID\n    value: bench-%s\n  - name: cleanSession\n    value: "true"\n' "$RANDOM" ;;
  esac
}

# spar_cell broker rate → result line
spar_cell() {
  local b=$1 rate=$2 topic="bench-$RUN-$1-$2-$RANDOM" dir="$work/$1-$2"
  local app=$((P)) http=$((P+1))
  mkdir -p "$dir"
  cat >"$dir/ps.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: ps
spec:
  $(component "$b")
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: bench
spec:
  pubsubname: ps
  topic: $topic
  routes:
    default: /in
YAML
  $OWN "$BIN" run --app-id "bench-$RUN" --app-port $app --dapr-listen-addresses 127.0.0.1 \
    --dapr-http-port $http --dapr-grpc-port $((P+2)) --metrics-port $((P+3)) \
    --resources-path "$dir" --log-level warn & local pid=$!
  "$PB" spar "http://127.0.0.1:$http" ps "$topic" --listen $app --rate "$rate" --seconds "$SECS" --window "$WINDOW"
  kill $pid; wait $pid 2>/dev/null || true
  [ "$b" = redis ] && redis-cli --scan --pattern "$topic*" | xargs -r redis-cli del >/dev/null
  [ "$b" = jetstream ] && command -v nats >/dev/null && nats stream rm -f "$topic" >/dev/null 2>&1
  return 0
}

native_cell() { # broker rate
  case $1 in
    redis) "$PB" redis redis://127.0.0.1:6379 "bench-native-$RUN-$RANDOM" --rate "$2" --seconds "$SECS" --window "$WINDOW" ;;
    jetstream) "$PB" jetstream nats://127.0.0.1:4222 "bench.native.$RUN.$RANDOM" --rate "$2" --seconds "$SECS" --window "$WINDOW" ;;
    rabbitmq) "$PB" rabbitmq amqp://guest:guest@127.0.0.1:5672 "bench-native-$RUN-$RANDOM" --rate "$2" --seconds "$SECS" --window "$WINDOW" ;;
    mqtt) "$PB" mqtt 127.0.0.1:1883 "bench/native/$RUN/$RANDOM" --rate "$2" --seconds "$SECS" --window "$WINDOW" ;;
    *) echo "- - - - - - -" ;;
  esac
}

printf '| broker | load | path | sent | delivered | msgs/s | p50 ms | p90 ms | p99 ms | max ms |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for b in $BROKERS; do
  for rate in "$RATE" 0; do
    load=$([ "$rate" = 0 ] && echo "flat out" || echo "$rate/s")
    for path in native spar; do
      if [ $path = spar ]; then r=$(spar_cell "$b" "$rate"); else r=$(native_cell "$b" "$rate"); fi
      [ "$r" = "- - - - - - -" ] && continue
      set -- $r
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$b" "$load" "$path" "$1" "$2" "$3" "$4" "$5" "$6" "$7"
    done
  done
done
