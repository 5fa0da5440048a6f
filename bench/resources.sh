#!/usr/bin/env bash
# Resource use of a sidecar pair, side by side with two nginx proxy hops:
# resident memory (VmRSS) idle — never called, and after 100 calls — and
# at the end of a fixed-rate run, and CPU
# seconds per 1,000 requests (utime + stime from /proc over the run). The
# load is app → proxy → proxy → app (nginx serving 1 KB), as bench/invoke.sh.
#
# Usage: bench/resources.sh [spar binary] [seconds] [rate]
#   defaults: target/release/spar 10 1000
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-10}"
RATE="${3:-1000}"
LOADGEN="${LOADGEN:-$(dirname "$BIN")/spar-loadgen}"
command -v nginx >/dev/null || { echo "needs nginx"; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
# Below the ephemeral range (32768+), where clients' own ports could collide.
P=$((20000 + RANDOM % 8000))
two_hops "$BIN" r 1 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# The private part: heap, stacks, relocated data (not the binary's shared,
# reclaimable code pages).
anon() { awk '/RssAnon/ {print $2}' "/proc/$1/status"; }
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
HZ=$(getconf CLK_TCK)
# Idle twice: never called (a ready sidecar lets go of start-up's code after
# 1 s, proxy/src/resident.rs), and idle again after 100 calls, with the
# request path's code and buffers in place.
sleep 2
idle_caller=$(rss "$caller"); idle_callee=$(rss "$callee")
anon_caller=$(anon "$caller"); anon_callee=$(anon "$callee")
nw="$(children hop1) $(children hop2)"; idle_nginx=0; for w in $nw; do idle_nginx=$((idle_nginx + $(rss "$w"))); done
up "$SPAR_URL" 200
"$LOADGEN" "$SPAR_URL" --rate 100 --seconds 1 --connections 4 >/dev/null
"$LOADGEN" "$NGINX_URL" --rate 100 --seconds 1 --connections 4 >/dev/null
sleep 2
used_caller=$(rss "$caller"); used_callee=$(rss "$callee")
used_nginx=0; for w in $nw; do used_nginx=$((used_nginx + $(rss "$w"))); done

measure() { # url pids... → "requests cpu_ticks peak_rss_of_first"
  local url=$1; shift
  local t0; t0=$(ticks "$@")
  local out; out=$("$LOADGEN" "$url" --rate "$RATE" --seconds "$SECS" --connections 32 >/dev/null &
    lp=$!; peak=0
    while kill -0 $lp 2>/dev/null; do r=$(rss "$1"); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.5; done
    wait $lp >/dev/null; echo "$peak")
  local t1; t1=$(ticks "$@")
  echo "$((t1 - t0)) $out"
}
read -r spar_ticks peak_caller < <(measure "$SPAR_URL" "$caller" "$callee")
peak_callee=$(rss "$callee")
lanon_caller=$(anon "$caller"); lanon_callee=$(anon "$callee")
# shellcheck disable=SC2086
read -r nginx_ticks _ < <(measure "$NGINX_URL" $nw)
req=$(awk -v r="$RATE" -v s="$SECS" 'BEGIN {print r*s}')
mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
per() { awk -v t="$1" -v hz="$HZ" -v n="$req" 'BEGIN {printf "%.3f", t/hz/(n/1000)}'; }
echo "Resources, two hops each, ${RATE} req/s for ${SECS}s, 1 KB answers:"
echo
echo "| figure | spar caller | spar callee | nginx ×2 (both workers) |"
echo "|---|---|---|---|"
echo "| idle VmRSS, never called (MB) | $(mb "$idle_caller") | $(mb "$idle_callee") | $(mb "$idle_nginx") |"
echo "| idle VmRSS after 100 calls (MB) | $(mb "$used_caller") | $(mb "$used_callee") | $(mb "$used_nginx") |"
echo "| idle RssAnon, private (MB) | $(mb "$anon_caller") | $(mb "$anon_callee") | – |"
echo "| VmRSS under load (MB) | $(mb "$peak_caller") | $(mb "$peak_callee") | – |"
echo "| RssAnon after the load (MB) | $(mb "$lanon_caller") | $(mb "$lanon_callee") | – |"
echo "| CPU s per 1,000 requests (both hops) | $(per "$spar_ticks") (pair) | | $(per "$nginx_ticks") |"
echo
echo "binary: $(stat -c %s "$BIN") bytes ($BIN)"
{
  echo "IDLE_RSS_KB=$(( idle_caller > idle_callee ? idle_caller : idle_callee ))"
  echo "USED_IDLE_RSS_KB=$(( used_caller > used_callee ? used_caller : used_callee ))"
  echo "IDLE_ANON_KB=$(( anon_caller > anon_callee ? anon_caller : anon_callee ))"
  echo "LOAD_RSS_KB=$(( peak_caller > peak_callee ? peak_caller : peak_callee ))"
  echo "CPU_PER_1000=$(per "$spar_ticks")"
  echo "NGINX_CPU_PER_1000=$(per "$nginx_ticks")"
  echo "BINARY_BYTES=$(stat -c %s "$BIN")"
} >> "${SUMMARY:-/dev/null}"
