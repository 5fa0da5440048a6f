#!/usr/bin/env bash
# Distributed lock latency through spar vs the backend's own client, side
# by side in one run, one request at a time (latency, not throughput):
#   through spar: wrk -t1 -c1 against POST /v1.0-alpha1/lock/{store} and
#                 POST /v1.0-alpha1/unlock/{store} (the same resource each
#                 time: the first lock wins, the rest find it held and the
#                 unlocks find it gone — one store round trip each, the same
#                 work as a winning call)
#   direct:       redis-benchmark -c1 with the commands spar sends (SET NX PX;
#                 EVAL of the compare-and-delete script); pgbench -c1 with
#                 the statements spar sends to PostgreSQL
# Usage: bench/lock.sh [path/to/spar] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
for t in wrk redis-benchmark pgbench; do command -v $t >/dev/null || { echo "needs $t (bench/run.sh installs it)"; exit 1; }; done
PORT=$((26000 + RANDOM % 5000))
# shellcheck source=bench/lib.sh
. bench/lib.sh

mkdir -p "$work/res"
cat >"$work/res/locks.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: redis
spec:
  type: lock.redis
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
  type: lock.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: $work/locks.db
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: postgres
spec:
  type: lock.postgresql
  version: v1
  metadata:
  - name: connectionString
    value: "host=127.0.0.1 user=postgres port=5432 dbname=postgres"
  - name: tableName
    value: lockbench
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: memory
spec:
  type: lock.in-memory
  version: v1
YAML
spar_up "$BIN" lockbench "$PORT" "$work/res"

for op in lock unlock; do
  cat >"$work/$op.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"resourceId":"bench","lockOwner":"bench","expiryInSeconds":600}'
LUA
done

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
# pgbench with the statements spar runs for a lock and an unlock.
cat >"$work/pg_lock.sql" <<'SQL'
INSERT INTO lockbench (resource, owner, expires_at) VALUES ('pgbench', 'bench', now() + make_interval(secs => 600))
ON CONFLICT (resource) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at WHERE lockbench.expires_at <= now();
SQL
cat >"$work/pg_unlock.sql" <<'SQL'
DELETE FROM lockbench WHERE resource = 'pgbench-gone' AND owner = 'bench' AND expires_at > now();
SELECT owner FROM lockbench WHERE resource = 'pgbench-gone' AND expires_at > now();
SQL
pg_lat() {
  pgbench -h 127.0.0.1 -U postgres -n -c 1 -T "$SECS" -r -f "$1" postgres 2>/dev/null |
    awk '/latency average/ {printf "%.3f\n", $4}'
}
UNLOCK='local v = redis.call("GET", KEYS[1]) if v == false then return -1 end if v ~= ARGV[1] then return -2 end return redis.call("DEL", KEYS[1])'

echo "| store | op | through spar HTTP p50 / p99 (ms) | direct p50 / p99 (ms) | ratio p50 |"
echo "|---|---|---|---|---|"
for store in memory sqlite redis postgres; do
  read -r l50 l99 < <(wrk_lat -s "$work/lock.lua" "http://127.0.0.1:$PORT/v1.0-alpha1/lock/$store")
  read -r u50 u99 < <(wrk_lat -s "$work/unlock.lua" "http://127.0.0.1:$PORT/v1.0-alpha1/unlock/$store")
  if [ "$store" = redis ]; then
    read -r d50 d99 < <(rb_lat SET "lock||lockbench||rbbench" bench NX PX 600000)
    read -r e50 e99 < <(rb_lat EVAL "$UNLOCK" 1 "lock||lockbench||rbbench-gone" bench)
    echo "| redis | lock | $l50 / $l99 | $d50 / $d99 (redis-benchmark SET NX PX) | $(awk -v a="$l50" -v b="$d50" 'BEGIN{printf "%.1f×", a/b}') |"
    echo "| redis | unlock | $u50 / $u99 | $e50 / $e99 (redis-benchmark EVAL compare-and-delete) | $(awk -v a="$u50" -v b="$e50" 'BEGIN{printf "%.1f×", a/b}') |"
  elif [ "$store" = postgres ]; then
    d=$(pg_lat "$work/pg_lock.sql")
    e=$(pg_lat "$work/pg_unlock.sql")
    echo "| postgres | lock | $l50 / $l99 | $d average (pgbench, same upsert) | $(awk -v a="$l50" -v b="$d" 'BEGIN{printf "%.1f×", a/b}') |"
    echo "| postgres | unlock | $u50 / $u99 | $e average (pgbench, same DELETE + SELECT) | $(awk -v a="$u50" -v b="$e" 'BEGIN{printf "%.1f×", a/b}') |"
  else
    echo "| $store | lock | $l50 / $l99 | – | – |"
    echo "| $store | unlock | $u50 / $u99 | – | – |"
  fi
done
redis-cli DEL "lock||lockbench||bench" "lock||lockbench||rbbench" >/dev/null
psql -h 127.0.0.1 -U postgres -q -c 'DROP TABLE IF EXISTS lockbench' postgres
