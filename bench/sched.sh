#!/usr/bin/env bash
# Where a call's time goes, without hardware counters: for the spar pair and
# for two nginx hops carrying the same fixed-rate load (app → proxy → proxy →
# app, 1 KB answers, as bench/invoke.sh), per request and per process —
#   CPU         time on a core (schedstat's runtime), split user / system
#               (utime / stime ticks)
#   waited      time runnable but waiting for a core (schedstat's run delay):
#               what the shared cores cost the call, beyond its own work
#   runs        times a thread was put on a core (schedstat's timeslices):
#               wake-ups
# and, for the whole machine, the load client's CPU (/usr/bin/time) and the
# time the cores stood idle (/proc/stat), so each path's per-request budget
# (cores × run time / requests) is accounted for.
# from /proc/PID/task/*/schedstat and /proc/PID/stat around each run. Paths
# alternate over ROUNDS rounds (spar, nginx, nginx, spar, ...), medians are
# reported, and the latency the load client measured in the same run is
# beside them. A second table lists spar's threads by name with their share,
# and what each costs idle (no calls) over the same time.
#
# Usage: bench/sched.sh [spar binary] [seconds] [rate] [rounds]
#   defaults: target/release/spar 5 1000 4; rate "max" runs the load flat
#   out (closed loop), per request then being per request served
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
SECS="${2:-5}"
RATE="${3:-1000}"
ROUNDS="${4:-4}"
LOADGEN="${LOADGEN:-$(dirname "$BIN")/spar-loadgen}"
command -v nginx >/dev/null || { echo "needs nginx"; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }
[ -r /proc/self/schedstat ] || { echo "needs /proc/PID/schedstat (CONFIG_SCHED_INFO)"; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
P=$((20000 + RANDOM % 8000))
# The same worker counts as bench/invoke.sh (auto: one per core);
# NGINX_WORKERS=1 gives each nginx hop one worker, as spar has one thread per
# listener.
two_hops "$BIN" s auto "${NGINX_WORKERS:-auto}"
up "$SPAR_URL" 200
hop1=$(children hop1); hop2=$(children hop2); app=$(children app)
HZ=$(getconf CLK_TCK)

# One line per thread of the given processes:
# "pid tid comm runtime_ns delay_ns runs preempted" (preempted: involuntary
# context switches, the runs that ended because another task took the core).
snap() {
  local p t
  for p in "$@"; do
    for t in /proc/"$p"/task/*; do
      [ -r "$t/schedstat" ] || continue
      echo "$p ${t##*/} $(tr ' ' '_' <"$t/comm") $(cat "$t/schedstat" 2>/dev/null || echo '0 0 0')" \
        "$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$t/status" 2>/dev/null || echo 0)"
    done
  done
}
# user and system ticks of processes (all threads).
ticks() { local p; for p in "$@"; do awk '{print $14, $15}' "/proc/$p/stat"; done | awk '{u+=$1; s+=$2} END {print u+0, s+0}'; }
# Per-thread deltas of two snapshots summed by thread name:
# "comm cpu_us waited_us runs preempted" per unit (requests, or seconds idle).
per_thread() { # before after units
  awk -v n="$3" 'NR==FNR {r[$2]=$4; d[$2]=$5; c[$2]=$6; v[$2]=$7; next}
    {cpu[$3]+=$4-r[$2]; w[$3]+=$5-d[$2]; k[$3]+=$6-c[$2]; x[$3]+=$7-v[$2]}
    END {for (t in cpu) printf "%s %.3f %.3f %.4f %.4f\n", t, cpu[t]/n/1000, w[t]/n/1000, k[t]/n, x[t]/n}' "$1" "$2"
}
# The same over all threads of the snapshots: "cpu_us waited_us runs preempted".
delta() { # before after units
  per_thread "$@" | awk '{c+=$2; w+=$3; k+=$4; x+=$5} END {printf "%.1f %.1f %.2f %.2f\n", c, w, k, x}'
}

declare -A S t0
# One run: the load on URL, every group's schedstat and ticks around it.
run() { # path url
  local path=$1 url=$2 g t1 out cpu w k x u0 s0 u1 s1 p50 p99 rps
  declare -A groups=([caller]="$caller" [callee]="$callee" [hop1]="$hop1" [hop2]="$hop2" [app]="$app")
  for g in "${!groups[@]}"; do
    # shellcheck disable=SC2086
    snap ${groups[$g]} >"$work/$g.before"; t0[$g]="$(ticks ${groups[$g]})"
  done
  local n
  local idle0 idle1
  idle0=$(awk '/^cpu / {print $5 + $6}' /proc/stat)
  if [ "$RATE" = max ]; then
    out=$(/usr/bin/time -f 'LOADCPU %U %S' -o "$work/load.time" "$LOADGEN" "$url" --max --seconds "$SECS" --connections 32)
    n=$(awk -v r="$(echo "$out" | awk '{print $6}')" -v s="$SECS" 'BEGIN {printf "%d", r * s}')
  else
    out=$(/usr/bin/time -f 'LOADCPU %U %S' -o "$work/load.time" "$LOADGEN" "$url" --rate "$RATE" --seconds "$SECS" --connections 32)
    n=$((RATE * SECS))
  fi
  idle1=$(awk '/^cpu / {print $5 + $6}' /proc/stat)
  S[$path,idle]+="$(awk -v a="$idle0" -v b="$idle1" -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", (b-a)/hz/n*1e6}') "
  S[$path,load]+="$(awk -v n="$n" '/^LOADCPU/ {printf "%.1f", ($2+$3)/n*1e6}' "$work/load.time") "
  for g in "${!groups[@]}"; do
    # shellcheck disable=SC2086
    snap ${groups[$g]} >"$work/$g.after"; t1="$(ticks ${groups[$g]})"
    read -r cpu w k x < <(delta "$work/$g.before" "$work/$g.after" "$n")
    read -r u0 s0 <<<"${t0[$g]}"; read -r u1 s1 <<<"$t1"
    S[$path,$g,cpu]+="$cpu "; S[$path,$g,wait]+="$w "; S[$path,$g,runs]+="$k "; S[$path,$g,pre]+="$x "
    S[$path,$g,user]+="$(awk -v a="$u0" -v b="$u1" -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", (b-a)/hz/n*1e6}') "
    S[$path,$g,sys]+="$(awk -v a="$s0" -v b="$s1" -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", (b-a)/hz/n*1e6}') "
    if [ "$path" = spar ] && { [ "$g" = caller ] || [ "$g" = callee ]; }; then
      per_thread "$work/$g.before" "$work/$g.after" "$n" | sed "s/^/$g /" >>"$work/threads.load"
    fi
  done
  read -r p50 _ p99 _ _ rps _ <<<"$out"
  S[$path,p50]+="$p50 "; S[$path,p99]+="$p99 "; S[$path,rps]+="$rps "
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then run spar "$SPAR_URL"; run nginx "$NGINX_URL"
  else run nginx "$NGINX_URL"; run spar "$SPAR_URL"; fi
done
# Idle: the sidecars' threads over the same time with no calls, per second.
snap "$caller" >"$work/idle-caller.before"; snap "$callee" >"$work/idle-callee.before"; sleep "$SECS"
snap "$caller" >"$work/idle-caller.after"; snap "$callee" >"$work/idle-callee.after"

if [ "$RATE" = max ]; then load="flat out (closed loop)"; else load="$RATE req/s"; fi
echo "Per request at $load, 32 connections (${SECS}s runs, paths alternating, median of $ROUNDS runs; µs):"
echo
echo "| path | p50 / p99 ms, req/s | process | CPU | user | system | waited for a core | runs | of which preempted |"
echo "|---|---|---|---|---|---|---|---|---|"
for path in spar nginx; do
  if [ $path = spar ]; then gs="caller callee app"; else gs="hop1 hop2 app"; fi
  tc=0; tw=0; tk=0; tx=0
  for g in $gs; do
    c=$(m "${S[$path,$g,cpu]}"); w=$(m "${S[$path,$g,wait]}"); k=$(m "${S[$path,$g,runs]}")
    u=$(m "${S[$path,$g,user]}"); s=$(m "${S[$path,$g,sys]}"); x=$(m "${S[$path,$g,pre]}")
    label=$g; case $g in hop1) label="nginx hop 1";; hop2) label="nginx hop 2";; caller) label="spar caller";; callee) label="spar callee";; app) label="app (nginx)";; esac
    echo "| $path | $(m "${S[$path,p50]}") / $(m "${S[$path,p99]}"), $(m "${S[$path,rps]}") | $label | $c | $u | $s | $w | $k | $x |"
    if [ "$g" != app ]; then
      tc=$(awk -v a="$tc" -v b="$c" 'BEGIN {print a+b}'); tw=$(awk -v a="$tw" -v b="$w" 'BEGIN {print a+b}')
      tk=$(awk -v a="$tk" -v b="$k" 'BEGIN {print a+b}'); tx=$(awk -v a="$tx" -v b="$x" 'BEGIN {print a+b}')
    fi
  done
  echo "| $path | | **both hops** | **$tc** | | | **$tw** | **$tk** | **$tx** |"
  echo "| $path | | load client | $(m "${S[$path,load]}") | | | | | |"
  echo "| $path | | cores idle | $(m "${S[$path,idle]}") | | | | | |"
  {
    echo "SCHED_${RATE}_${path^^}_CPU=$tc"; echo "SCHED_${RATE}_${path^^}_WAIT=$tw"; echo "SCHED_${RATE}_${path^^}_RUNS=$tk"
  } >>"${SUMMARY:-/dev/null}"
done
echo
echo "spar's threads by name, those that ran (under load: µs and runs per request, median of the spar runs; idle: µs and runs per second with no calls):"
echo
echo "| sidecar | thread | CPU per request | waited per request | runs per request | idle CPU per s | idle runs per s |"
echo "|---|---|---|---|---|---|---|"
for g in caller callee; do
  per_thread "$work/idle-$g.before" "$work/idle-$g.after" "$SECS" | sed "s/^/$g /"
done >"$work/threads.idle"
# Median over the runs per sidecar and thread name, next to its idle cost.
awk 'NR==FNR {k=$1" "$2; ic[k]=$3; ir[k]=$5; next}
  {k=$1" "$2; c[k]=c[k]" "$3; w[k]=w[k]" "$4; r[k]=r[k]" "$5}
  function med(s,  a, n, i, j, t) { n=split(s, a, " "); for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (a[j]+0<a[i]+0) {t=a[i];a[i]=a[j];a[j]=t}
    return (n%2) ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2 }
  END {for (k in c) {split(k, x, " "); if (med(c[k]) + med(r[k]) + ic[k] + ir[k] == 0) continue; printf "| %s | %s | %.2f | %.2f | %.3f | %.1f | %.1f |\n", x[1], x[2], med(c[k]), med(w[k]), med(r[k]), ic[k], ir[k]}}' \
  "$work/threads.idle" "$work/threads.load" | sort
