#!/usr/bin/env bash
# State GET/SAVE latency through spar vs the backend's own client, side by
# side in one run, one request at a time (latency, not throughput):
#   through spar: wrk -t1 -c1 against GET /v1.0/state/{store}/{key} and
#                 POST /v1.0/state/{store}; spar-grpcload (one connection,
#                 closed loop) with gRPC GetState / SaveState
#   direct:       redis-benchmark -c1 with the same commands spar sends
#                 (HMGET data version / HSET + HINCRBY)
# Usage: bench/state.sh [path/to/spar] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
GRPCLOAD="${GRPCLOAD:-$(dirname "$BIN")/spar-grpcload}"
for t in wrk redis-benchmark pgbench; do command -v $t >/dev/null || { echo "needs $t (bench/run.sh installs it)"; exit 1; }; done
[ -x "$GRPCLOAD" ] || { echo "needs $GRPCLOAD (cargo build --release -p spar-loadgen)"; exit 1; }
PORT=$((21000 + RANDOM % 5000))
# shellcheck source=bench/lib.sh
. bench/lib.sh

mkdir -p "$work/res"
cat >"$work/res/stores.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: redis
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:6379
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: sqlite
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: $work/bench.db
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: postgres
spec:
  type: state.postgresql
  version: v1
  metadata:
  - name: connectionString
    value: "host=127.0.0.1 user=postgres port=5432 dbname=postgres"
  - name: tableName
    value: statebench
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: memory
spec:
  type: state.in-memory
  version: v1
YAML
spar_up "$BIN" statebench "$PORT" "$work/res"
# The floor of the Redis ratio: an HTTP round trip from the same client to
# a server that does nothing (nginx answering the state's JSON), plus a
# direct GET, over a direct GET — what the ratio would be if spar itself
# took no time at all.
nginx_conf floor "server { listen 127.0.0.1:$((PORT + 9)); location / { default_type application/json; return 200 '{\"name\":\"spar\",\"n\":42}'; } }" 1

cat >"$work/save.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '[{"key":"bench","value":{"name":"spar","n":42}}]'
LUA

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

echo "| store | op | through spar HTTP p50 / p99 (ms) | through spar gRPC p50 / p99 (ms) | direct p50 / p99 (ms) | ratio p50 (HTTP, gRPC) |"
echo "|---|---|---|---|---|---|"
glat() { "$GRPCLOAD" "127.0.0.1:$((PORT + 1))" "$@" --max --connections 1 --seconds "$SECS" | awk '{printf "%.3f %.3f\n", $1, $3}'; }
# pgbench with the statements spar runs for a GET and a SAVE.
cat >"$work/pg_get.sql" <<'SQL'
SELECT value, etag, expires_at FROM statebench WHERE key = 'statebench||bench' AND (expires_at IS NULL OR expires_at > 0);
SQL
cat >"$work/pg_save.sql" <<'SQL'
INSERT INTO statebench (key, value, doc, etag, expires_at) VALUES ('pgbench||bench', '\x7b7d', '{}', 1, NULL)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, doc = excluded.doc, etag = statebench.etag + 1, expires_at = excluded.expires_at;
SQL
pg_lat() {
  pgbench -h 127.0.0.1 -U postgres -n -c 1 -T "$SECS" -r -f "$1" postgres 2>/dev/null |
    awk '/latency average/ {printf "%.3f\n", $4}'
}

for store in memory sqlite redis postgres; do
  curl -s -X POST "http://127.0.0.1:$PORT/v1.0/state/$store" -d '[{"key":"bench","value":{"name":"spar","n":42}}]' >/dev/null
  read -r g50 g99 < <(wrk_lat "http://127.0.0.1:$PORT/v1.0/state/$store/bench")
  read -r s50 s99 < <(wrk_lat -s "$work/save.lua" "http://127.0.0.1:$PORT/v1.0/state/$store")
  read -r gg50 gg99 < <(glat get --store "$store" --key bench)
  read -r gs50 gs99 < <(glat save --store "$store" --key gbench --body 32)
  if [ "$store" = redis ]; then
    read -r d50 d99 < <(rb_lat HMGET "statebench||bench" data version)
    read -r e50 e99 < <(rb_lat EVAL "redis.call('HSET', KEYS[1], 'data', ARGV[1]); return redis.call('HINCRBY', KEYS[1], 'version', 1)" 1 rbbench '{"name":"spar","n":42}')
    echo "| redis | GET | $g50 / $g99 | $gg50 / $gg99 | $d50 / $d99 (redis-benchmark HMGET) | $(awk -v a="$g50" -v c="$gg50" -v b="$d50" 'BEGIN{printf "%.1f×, %.1f×", a/b, c/b}') |"
    echo "| redis | SAVE | $s50 / $s99 | $gs50 / $gs99 | $e50 / $e99 (redis-benchmark EVAL HSET+HINCRBY) | $(awk -v a="$s50" -v c="$gs50" -v b="$e50" 'BEGIN{printf "%.1f×, %.1f×", a/b, c/b}') |"
    echo "REDIS_GET_RATIO=$(awk -v a="$g50" -v c="$gg50" -v b="$d50" 'BEGIN{printf "%.2f", (a<c?a:c)/b}')" >> "${SUMMARY:-/dev/null}"
    read -r h50 _ < <(wrk_lat "http://127.0.0.1:$((PORT + 9))/v1.0/state/redis/bench")
    floor=$(awk -v h="$h50" -v b="$d50" 'BEGIN{printf "%.2f", (h+b)/b}')
    echo "REDIS_GET_FLOOR=$floor" >> "${SUMMARY:-/dev/null}"
    redis_note="Redis GET floor: an HTTP round trip to nginx from the same client (wrk, p50 $h50 ms) plus a direct GET ($d50 ms), over a direct GET: ${floor}× — the ratio if spar took no time."
  elif [ "$store" = postgres ]; then
    d=$(pg_lat "$work/pg_get.sql")
    e=$(pg_lat "$work/pg_save.sql")
    echo "| postgres | GET | $g50 / $g99 | $gg50 / $gg99 | $d average (pgbench, same SELECT) | $(awk -v a="$g50" -v c="$gg50" -v b="$d" 'BEGIN{printf "%.1f×, %.1f×", a/b, c/b}') |"
    echo "| postgres | SAVE | $s50 / $s99 | $gs50 / $gs99 | $e average (pgbench, same upsert) | $(awk -v a="$s50" -v c="$gs50" -v b="$e" 'BEGIN{printf "%.1f×, %.1f×", a/b, c/b}') |"
  else
    echo "| $store | GET | $g50 / $g99 | $gg50 / $gg99 | – | – |"
    echo "| $store | SAVE | $s50 / $s99 | $gs50 / $gs99 | – | – |"
  fi
done
echo
echo "$redis_note"
redis-cli DEL "statebench||bench" rbbench >/dev/null
psql -h 127.0.0.1 -U postgres -q -c 'DROP TABLE IF EXISTS statebench, statebench_metadata' postgres
