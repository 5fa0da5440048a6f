#!/usr/bin/env bash
# Output binding latency through spar vs the backend's own client, side by
# side in one run, one request at a time (latency, not throughput):
#   bindings.http  POST /v1.0/bindings/web {"operation":"get"} to nginx
#                  serving 1 KB  vs  wrk straight to that nginx
#   bindings.redis create (SET of the call's data)  vs  redis-benchmark SET
#   bindings.postgresql exec of one INSERT … ON CONFLICT with bound params
#                  vs  pgbench -c1 running the same statement
# Usage: bench/bindings.sh [path/to/spar] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
for t in wrk redis-benchmark pgbench nginx; do command -v $t >/dev/null || { echo "needs $t (bench/run.sh installs it)"; exit 1; }; done
PORT=$((26000 + RANDOM % 5000))
APP=$((PORT + 10))
# shellcheck source=bench/lib.sh
. bench/lib.sh

static_app bindapp "$APP" 1
up "http://127.0.0.1:$APP/" 200
psql -h 127.0.0.1 -U postgres -q -c 'CREATE TABLE IF NOT EXISTS bindbench (id int PRIMARY KEY, v text)' postgres

mkdir -p "$work/res"
cat >"$work/res/bindings.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: web
spec:
  type: bindings.http
  version: v1
  metadata:
  - name: url
    value: http://127.0.0.1:$APP/
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: cache
spec:
  type: bindings.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:6379
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pg
spec:
  type: bindings.postgresql
  version: v1
  metadata:
  - name: connectionString
    value: "host=127.0.0.1 user=postgres port=5432 dbname=postgres"
YAML
spar_up "$BIN" bindbench "$PORT" "$work/res"

body() { # file json
  cat >"$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$2'
LUA
}
body web '{"operation":"get"}'
body cache '{"operation":"create","data":"bench value","metadata":{"key":"bindbench"}}'
body pg '{"operation":"exec","metadata":{"sql":"INSERT INTO bindbench (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v","params":"[1,\\"bench\\"]"}}'

# p50 and p99 in ms from wrk --latency output.
wrk_lat() {
  wrk -t1 -c1 -d"${SECS}s" --latency "$@" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    $1=="50%" {p50=ms($2)} $1=="99%" {p99=ms($2)} END {printf "%.3f %.3f\n", p50, p99}'
}
rb_lat() {
  redis-benchmark -c 1 -n 20000 --csv "$@" | awk -F, 'NR==2 {gsub(/"/,""); printf "%.3f %.3f\n", $(NF-3), $(NF-1)}'
}
cat >"$work/pg.sql" <<'SQL'
INSERT INTO bindbench (id, v) VALUES (2, 'bench') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;
SQL
pg_lat() {
  pgbench -h 127.0.0.1 -U postgres -n -c 1 -T "$SECS" -r -f "$1" postgres 2>/dev/null |
    awk '/latency average/ {printf "%.3f\n", $4}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f×", a/b}'; }

echo "| binding | op | through spar HTTP p50 / p99 (ms) | direct p50 / p99 (ms) | ratio p50 |"
echo "|---|---|---|---|---|"
read -r s50 s99 < <(wrk_lat -s "$work/web.lua" "http://127.0.0.1:$PORT/v1.0/bindings/web")
read -r d50 d99 < <(wrk_lat "http://127.0.0.1:$APP/")
echo "| http | get (1 KB) | $s50 / $s99 | $d50 / $d99 (wrk to nginx) | $(ratio "$s50" "$d50") |"
read -r s50 s99 < <(wrk_lat -s "$work/cache.lua" "http://127.0.0.1:$PORT/v1.0/bindings/cache")
read -r d50 d99 < <(rb_lat SET bindbench-rb '"bench value"')
echo "| redis | create | $s50 / $s99 | $d50 / $d99 (redis-benchmark SET) | $(ratio "$s50" "$d50") |"
read -r s50 s99 < <(wrk_lat -s "$work/pg.lua" "http://127.0.0.1:$PORT/v1.0/bindings/pg")
d=$(pg_lat "$work/pg.sql")
echo "| postgresql | exec | $s50 / $s99 | $d average (pgbench, same upsert) | $(ratio "$s50" "$d") |"
redis-cli DEL bindbench bindbench-rb >/dev/null
psql -h 127.0.0.1 -U postgres -q -c 'DROP TABLE IF EXISTS bindbench' postgres
