#!/usr/bin/env bash
# Configuration GET latency through spar vs the backend's own client, side
# by side in one run, one request at a time (latency, not throughput):
#   through spar: wrk -t1 -c1 against GET /v1.0/configuration/{store}?key=K;
#                 spar-grpcload (one connection, closed loop) with gRPC
#                 GetConfiguration
#   direct:       redis-benchmark -c1 MGET K (what spar sends) and pgbench
#                 with spar's SELECT; SQLite has no client to compare with
# and change → delivery on Redis (spar-configbench): a change every 5 ms
# written with a Redis client, received through spar's gRPC stream vs the
# backend's own client (keyspace SUBSCRIBE + GET).
# Usage: bench/configuration.sh [path/to/spar] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
GRPCLOAD="${GRPCLOAD:-$(dirname "$BIN")/spar-grpcload}"
CONFIGBENCH="${CONFIGBENCH:-$(dirname "$BIN")/spar-configbench}"
for t in wrk redis-benchmark pgbench psql redis-cli; do command -v $t >/dev/null || { echo "needs $t (bench/run.sh installs it)"; exit 1; }; done
for b in "$GRPCLOAD" "$CONFIGBENCH"; do [ -x "$b" ] || { echo "needs $b (cargo build --release -p spar-loadgen)"; exit 1; }; done
PORT=$((26000 + RANDOM % 5000))
# shellcheck source=bench/lib.sh
. bench/lib.sh

KEY=configbench
export PGOPTIONS='-c client_min_messages=warning'
psql -h 127.0.0.1 -U postgres -q postgres <<SQL
DROP TABLE IF EXISTS configbench;
CREATE TABLE configbench (KEY VARCHAR NOT NULL, VALUE VARCHAR NOT NULL, VERSION VARCHAR NOT NULL, METADATA JSON);
INSERT INTO configbench VALUES ('$KEY', 'hello', '1', '{}');
SQL
redis-cli SET "$KEY" "hello||1" >/dev/null

mkdir -p "$work/res"
cat >"$work/res/stores.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: redis
spec:
  type: configuration.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:6379
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: postgres
spec:
  type: configuration.postgresql
  version: v1
  metadata:
  - name: connectionString
    value: "host=127.0.0.1 user=postgres port=5432 dbname=postgres"
  - name: table
    value: configbench
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: sqlite
spec:
  type: configuration.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: $work/config.db
YAML
spar_up "$BIN" configbench "$PORT" "$work/res"
stores="redis postgres"
# The SQLite store made its table at start; a value goes in as a user's
# `sqlite3` would put it.
if command -v sqlite3 >/dev/null; then
  sqlite3 "$work/config.db" "INSERT OR REPLACE INTO configuration (key, value, version) VALUES ('$KEY', 'hello', '1')"
  stores="sqlite $stores"
fi

# p50 and p99 in ms from wrk --latency output.
wrk_lat() {
  wrk -t1 -c1 -d"${SECS}s" --latency "$@" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    $1=="50%" {p50=ms($2)} $1=="99%" {p99=ms($2)} END {printf "%.3f %.3f\n", p50, p99}'
}
# p50 and p99 in ms from redis-benchmark's CSV (Redis 7).
rb_lat() {
  redis-benchmark -c 1 -n 20000 --csv "$@" | awk -F, 'NR==2 {gsub(/"/,""); printf "%.3f %.3f\n", $(NF-3), $(NF-1)}'
}
glat() { "$GRPCLOAD" "127.0.0.1:$((PORT + 1))" "$@" --max --connections 1 --seconds "$SECS" | awk '{printf "%.3f %.3f %d\n", $1, $3, $7}'; }
cat >"$work/pg_get.sql" <<'SQL'
SELECT key::text, value::text, version::text, metadata::text FROM configbench WHERE key = ANY('{configbench}');
SQL

echo "| store | op | through spar HTTP p50 / p99 (ms) | through spar gRPC p50 / p99 (ms) | direct p50 / p99 (ms) | ratio p50 (HTTP, gRPC) |"
echo "|---|---|---|---|---|---|"
for store in $stores; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1.0/configuration/$store?key=$KEY")
  [ "$code" = 200 ] || { echo "GET configuration/$store answered $code" >&2; exit 1; }
  read -r h50 h99 < <(wrk_lat "http://127.0.0.1:$PORT/v1.0/configuration/$store?key=$KEY")
  read -r g50 g99 gerr < <(glat config-get --store "$store" --key "$KEY")
  [ "$gerr" = 0 ] || { echo "gRPC GetConfiguration on $store: $gerr errors" >&2; exit 1; }
  case $store in
    redis)
      read -r d50 d99 < <(rb_lat MGET "$KEY")
      echo "| redis | GET | $h50 / $h99 | $g50 / $g99 | $d50 / $d99 (redis-benchmark MGET) | $(awk -v a="$h50" -v c="$g50" -v b="$d50" 'BEGIN{printf "%.1f×, %.1f×", a/b, c/b}') |" ;;
    postgres)
      d=$(pgbench -h 127.0.0.1 -U postgres -n -c 1 -T "$SECS" -r -f "$work/pg_get.sql" postgres 2>/dev/null | awk '/latency average/ {printf "%.3f\n", $4}')
      echo "| postgres | GET | $h50 / $h99 | $g50 / $g99 | $d average (pgbench, same SELECT) | $(awk -v a="$h50" -v c="$g50" -v b="$d" 'BEGIN{printf "%.1f×, %.1f×", a/b, c/b}') |" ;;
    *)
      echo "| $store | GET | $h50 / $h99 | $g50 / $g99 | – | – |" ;;
  esac
done

# Change → delivery: 200 changes per path (fewer with a short run).
count=$((SECS * 200))
echo
echo "| Redis change → delivery | changes | delivered | p50 ms | p90 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|---|"
read -r n d p50 p90 p99 mx < <("$CONFIGBENCH" direct redis://127.0.0.1:6379 --count "$count")
echo "| direct (keyspace SUBSCRIBE + GET) | $n | $d | $p50 | $p90 | $p99 | $mx |"
read -r n d p50 p90 p99 mx < <("$CONFIGBENCH" spar "127.0.0.1:$((PORT + 1))" redis redis://127.0.0.1:6379 --count "$count")
echo "| through spar (gRPC SubscribeConfiguration) | $n | $d | $p50 | $p90 | $p99 | $mx |"
[ "$d" -gt 0 ] || { echo "no change reached the spar stream" >&2; exit 1; }

redis-cli DEL "$KEY" >/dev/null
psql -h 127.0.0.1 -U postgres -q -c 'DROP TABLE IF EXISTS configbench' postgres
