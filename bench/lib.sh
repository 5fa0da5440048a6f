# Shared by the bench scripts (sourced): a scratch directory removed on exit
# together with every process and nginx started, nginx from one config
# line, the open-loop/max-throughput measurement rounds and their tables.
# A script defines `load PATH ARGS...` (one load-client run printing
# `p50 p90 p99 p999 max rps errors`) and sets PATHS, RATES, ROUNDS, SECS.

work=$(mktemp -d); chmod 755 "$work"  # nginx workers run as nobody
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  wait 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/body"

# Keep-alive connections are never closed after N requests (nginx's default
# 1,000 made every path reconnect during flat-out runs).
nginx_conf() { # name http-block [worker_processes]
  cat >"$work/$1.conf" <<NGINX
daemon on; pid $work/$1.pid; error_log $work/$1.err; worker_processes ${3:-auto};
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; $2 }
NGINX
  nginx -c "$work/$1.conf"
}
static_app() { # name port [workers]: nginx answering every GET with 1 KB
  nginx_conf "$1" "server { listen 127.0.0.1:$2; location / { root $work; try_files /body =404; } }" "${3:-auto}"
}
http_hop() { # name listen upstream-port [workers]: a keep-alive reverse proxy
  nginx_conf "$1" "upstream up { server 127.0.0.1:$3; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$2; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" "${4:-auto}"
}

# Every proxy under test starts in a session of its own (setsid), as nginx
# puts itself with `daemon on`. With the kernel's autogroup scheduling
# (/proc/sys/kernel/sched_autogroup_enabled, on by default in Debian) each
# session shares the cores as one group, as each container's cgroup does in
# a pod; left in this script's session, a sidecar would share one group's
# time with the load client and the other sidecar while every nginx hop had
# a group to itself (bench/README.md, R28). Started with `&` from a script
# (no job control) the child is no process-group leader, so setsid execs in
# place and $! stays the proxy's pid.
OWN=setsid

spar_up() { # binary app-id http-port resources-dir: one sidecar (gRPC on
  # port+1, metrics on port+2), returned once healthy; its pid is last in pids
  $OWN "$1" run --app-id "$2" --dapr-listen-addresses 127.0.0.1 --dapr-http-port "$3" \
    --dapr-grpc-port $(($3 + 1)) --metrics-port $(($3 + 2)) --resources-path "$4" \
    --log-level warn & pids+=($!)
  up "http://127.0.0.1:$3/v1.0/healthz" 204
}

up() { # url code: waits (bounded, 10 s) until the url answers with that code
  for _ in $(seq 1000); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = "$2" ] && return; sleep 0.01; done
  echo "no $2 from $1" >&2; return 1
}
# The worker processes of an nginx started by nginx_conf (the master only forks them).
children() { pgrep -P "$(cat "$work/$1.pid")" | tr '\n' ' '; }

# The two-hop layout resources.sh and sched.sh measure, on ports P..P+15:
# an nginx app on P; two nginx hops, P+2 → P+1 → P; a spar pair, caller
# P+13 → callee P+10 → the app. Sets caller, callee, SPAR_URL, NGINX_URL and
# returns once both paths answer.
two_hops() { # binary app-id-prefix app-workers hop-workers
  static_app app "$P" "$3"
  http_hop hop2 $((P+1)) "$P" "$4"
  http_hop hop1 $((P+2)) $((P+1)) "$4"
  $OWN "$1" run --app-id "$2callee" --app-port "$P" --dapr-listen-addresses 127.0.0.1 --dapr-http-port $((P+10)) \
    --dapr-grpc-port $((P+11)) --metrics-port $((P+12)) --log-level warn & callee=$!; pids+=("$callee")
  $OWN "$1" run --app-id "$2caller" --dapr-listen-addresses 127.0.0.1 --dapr-http-port $((P+13)) \
    --dapr-grpc-port $((P+14)) --metrics-port $((P+15)) --log-level warn & caller=$!; pids+=("$caller")
  SPAR_URL="http://127.0.0.1:$((P+13))/v1.0/invoke/$2callee/method/body"
  NGINX_URL="http://127.0.0.1:$((P+2))/body"
  up "http://127.0.0.1:$((P+10))/v1.0/healthz" 204
  up "http://127.0.0.1:$((P+13))/v1.0/healthz" 204
  up "$NGINX_URL" 200
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }

declare -A R
# Fixed rates (ROUNDS rounds, paths interleaved), then flat out.
measure() {
  local rate r p p50 p90 p99 errs rps
  for rate in $RATES; do
    for r in $(seq "$ROUNDS"); do
      for p in $PATHS; do
        read -r p50 p90 p99 _ _ _ errs < <(load "$p" --rate "$rate" --seconds "$SECS")
        R[$rate,$p,p50]+="$p50 "; R[$rate,$p,p90]+="$p90 "; R[$rate,$p,p99]+="$p99 "; R[$rate,$p,err]+="$errs "
      done
    done
  done
  for r in $(seq "$ROUNDS"); do
    for p in $PATHS; do
      read -r _ _ _ _ _ rps _ < <(load "$p" --max --seconds "$SECS")
      R[max,$p]+="$rps "
    done
  done
}

# The latency table (added = over the `direct` path) and the throughput table.
tables() { # title connections
  local rate p a b c e d50 d90 d99
  echo "$1, $2 connections, ${SECS}s per cell, median of $ROUNDS rounds (ms):"
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
  echo "Maximum throughput (closed loop, $2 connections), median of $ROUNDS rounds:"
  echo
  echo "| path | requests/s |"
  echo "|---|---|"
  for p in $PATHS; do echo "| $p | $(m "${R[max,$p]}") |"; done
}
