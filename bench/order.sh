#!/usr/bin/env bash
# Regenerates proxy/link-order.txt: the functions a sidecar runs, which
# release builds link next to each other (proxy/build.rs) so start-up and
# the request paths keep a few MB of code resident instead of most of it.
#
# It builds spar as `cargo build --release` does (the release profile keeps
# the symbol table; symbol names carry a hash of the profile, so the list
# must come from this very profile), runs it under valgrind's
# callgrind (instruction-level: every function executed, not a sample)
# through start-up and each API it serves — HTTP and gRPC invocation via the
# internal listener, state, publish → delivery, metadata, metrics — and
# writes the executed functions to the list in four groups (one callgrind
# dump each): what an idle sidecar runs (timers, probes, file polling), then
# what the API paths add, then start-up's, then shutdown's. A ready sidecar
# lets go of start-up's pages (proxy/src/resident.rs) and the kernel maps
# code 64 KB around each page touched, so an idle sidecar keeps only the
# front of the list resident, a busy one the first two groups.
# Rerun after dependency upgrades (symbol hashes change; a stale list costs
# memory, never correctness), then `cargo build --release` relinks with the
# new list. Needs valgrind, nginx, curl, python3.
#
# Usage: bench/order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
for t in valgrind nginx curl python3; do command -v $t >/dev/null || { echo "needs $t (apt-get install $t)"; exit 1; }; done
# Linking with the old list changes no name, only where code lies.
cargo build --release -q -p spar -p spar-loadgen
T=${CARGO_TARGET_DIR:-$ROOT/target}
# shellcheck source=bench/lib.sh
. bench/lib.sh
P=$((20000 + RANDOM % 8000))
static_app app "$P" 1
mkdir -p "$work/res"
# The embedded default's components (SQLite state, in-memory pub/sub), and a
# subscription so publish → delivery runs too.
cat >"$work/res/components.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec:
  type: state.sqlite
  version: v1
  metadata: [{name: connectionString, value: "$work/state.db"}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec: {type: pubsub.in-memory, version: v1}
YAML
cat >"$work/res/sub.yaml" <<YAML
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: s}
spec: {pubsubname: pubsub, topic: t, routes: {default: /body}}
YAML
valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$work/cg.out" \
  "$T/release/spar" run --app-id order --app-port "$P" --dapr-listen-addresses 127.0.0.1 \
  --dapr-http-port $((P+1)) --dapr-grpc-port $((P+2)) --metrics-port $((P+3)) \
  --resources-path "$work/res" --data-dir "$work" --log-level warn >"$work/vg.log" 2>&1 &
vg=$!
B=http://127.0.0.1:$((P+1))
for _ in $(seq 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' $B/v1.0/healthz)" = 204 ] && break; sleep 0.1; done
sleep 2 # a ready sidecar lets go of start-up's code after 1 s
callgrind_control -d "$vg" >/dev/null 2>&1 # part 1: start-up
sleep 4
callgrind_control -d "$vg" >/dev/null 2>&1 # part 2: idle
for i in $(seq 30); do
  curl -s -o /dev/null $B/v1.0/invoke/order/method/body
  curl -s -o /dev/null -X POST $B/v1.0/state/statestore -H content-type:application/json -d "[{\"key\":\"k$i\",\"value\":{\"a\":$i}}]"
  curl -s -o /dev/null $B/v1.0/state/statestore/k$i
  curl -s -o /dev/null -X POST $B/v1.0/publish/pubsub/t -H content-type:application/json -d '{"x":1}'
done
curl -s -o /dev/null $B/v1.0/metadata
curl -s -o /dev/null $B/v1.0/nope
curl -s -o /dev/null http://127.0.0.1:$((P+3))/metrics
G="$T/release/spar-grpcload" A=http://127.0.0.1:$((P+2))
"$G" $A save --store statestore --key g --rate 20 --seconds 1 --connections 1 >/dev/null
"$G" $A get --store statestore --key g --rate 20 --seconds 1 --connections 1 >/dev/null
"$G" $A invoke --app-id order --method body --rate 20 --seconds 1 --connections 1 >/dev/null
callgrind_control -d "$vg" >/dev/null 2>&1 # part 3: the API paths
kill -TERM $vg; wait $vg || true # part 4: shutdown
python3 - "$work" "$ROOT/proxy/link-order.txt" <<'PY'
import glob, re, sys

def executed(path):  # functions of the spar binary that ran, in file order
    obs, names, out, ob = {}, {}, [], None
    for line in open(path, errors="replace"):
        m = re.match(r"(c?ob|c?fn)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
        if not m:
            continue
        kind, key, name = m.groups()
        if kind in ("ob", "cob"):  # callee objects share the name table
            obs[key] = name or obs.get(key)
            if kind == "ob":
                ob = obs[key]
            continue
        if name:
            names[key] = name
        if kind == "fn" and ob and ob.endswith("/spar"):
            out.append(names[key])
    return out

# The two requested dumps are numbered; the one at exit is not.
parts = sorted(glob.glob(sys.argv[1] + "/cg.out.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
parts.append(sys.argv[1] + "/cg.out")
assert len(parts) == 4, parts
startup, idle, api, shutdown = (executed(p) for p in parts)
seen, order = set(), []
for f in idle + api + startup + shutdown:
    if f not in seen:
        seen.add(f)
        order.append(f)
open(sys.argv[2], "w").write("\n".join(order) + "\n")
print(f"{len(order)} functions ({len(set(idle))} idle, {len(set(api) - set(idle))} more on the API paths) -> {sys.argv[2]}")
PY
