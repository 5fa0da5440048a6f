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
# writes the executed functions to the list in groups (one callgrind dump
# each): what an idle sidecar runs (timers, probes, file polling), then what
# each API family adds — HTTP invocation, state, publish → delivery,
# metadata and metrics, gRPC — then start-up's, then shutdown's. A ready
# sidecar lets go of start-up's pages (proxy/src/resident.rs) and the
# kernel maps code 64 KB around each page touched, so a sidecar keeps
# resident the front of the list and the groups of the APIs it serves.
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
# Two sidecars, as in use: "order" calls "order-peer" (caller side of
# invocation on one, callee side on the other); both are traced.
cg() { # name out-file args...
  local out=$2; shift 2
  valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$out" \
    "$T/release/spar" run --app-port "$P" --dapr-listen-addresses 127.0.0.1 --log-level warn "$@" \
    >"$out.log" 2>&1 &
}
mkdir -p "$work/a" "$work/b"
cg order "$work/a/cg.out" --app-id order --dapr-http-port $((P+1)) --dapr-grpc-port $((P+2)) \
  --metrics-port $((P+3)) --resources-path "$work/res" --data-dir "$work"
vga=$!
cg order-peer "$work/b/cg.out" --app-id order-peer --dapr-http-port $((P+4)) --dapr-grpc-port $((P+5)) \
  --metrics-port $((P+6)) --data-dir "$work/b"
vgb=$!
B=http://127.0.0.1:$((P+1))
for b in $B http://127.0.0.1:$((P+4)); do
  for _ in $(seq 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' $b/v1.0/healthz)" = 204 ] && break; sleep 0.1; done
done
dump() { callgrind_control -d "$vga" >/dev/null 2>&1; callgrind_control -d "$vgb" >/dev/null 2>&1; }
sleep 2 # a ready sidecar lets go of start-up's code after 1 s
dump # part 1: start-up
sleep 4
dump # part 2: idle
# One dump per API family, so each family's code lies together: a sidecar
# that only invokes keeps only invocation's code resident.
for i in $(seq 30); do curl -s -o /dev/null $B/v1.0/invoke/order-peer/method/body; done
dump # part 3: HTTP invocation (caller and callee side)
for i in $(seq 30); do
  curl -s -o /dev/null -X POST $B/v1.0/state/statestore -H content-type:application/json -d "[{\"key\":\"k$i\",\"value\":{\"a\":$i}}]"
  curl -s -o /dev/null $B/v1.0/state/statestore/k$i
done
dump # part 4: state
for i in $(seq 30); do curl -s -o /dev/null -X POST $B/v1.0/publish/pubsub/t -H content-type:application/json -d '{"x":1}'; done
sleep 1
dump # part 5: publish → delivery
curl -s -o /dev/null $B/v1.0/metadata
curl -s -o /dev/null $B/v1.0/nope
curl -s -o /dev/null http://127.0.0.1:$((P+3))/metrics
dump # part 6: metadata, errors, metrics
G="$T/release/spar-grpcload" A=http://127.0.0.1:$((P+2))
"$G" $A save --store statestore --key g --rate 20 --seconds 1 --connections 1 >/dev/null
"$G" $A get --store statestore --key g --rate 20 --seconds 1 --connections 1 >/dev/null
"$G" $A invoke --app-id order-peer --method body --rate 20 --seconds 1 --connections 1 >/dev/null
dump # part 7: gRPC
kill -TERM $vga $vgb; wait $vga $vgb || true # part 8: shutdown
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

def parts(d):  # the requested dumps are numbered; the one at exit is not
    ps = sorted(glob.glob(d + "/cg.out.*[0-9]"), key=lambda p: int(p.rsplit(".", 1)[1]))
    ps.append(d + "/cg.out")
    assert len(ps) == 8, ps
    return ps

# Per part, the caller's functions then the peer's.
a, b = parts(sys.argv[1] + "/a"), parts(sys.argv[1] + "/b")
both = [executed(x) + executed(y) for x, y in zip(a, b)]
startup, steady, shutdown = both[0], both[1:-1], both[-1]
seen, order = set(), []
sizes = []
for group in steady + [startup, shutdown]:
    before = len(order)
    for f in group:
        if f not in seen:
            seen.add(f)
            order.append(f)
    sizes.append(len(order) - before)
open(sys.argv[2], "w").write("\n".join(order) + "\n")
print(f"{len(order)} functions -> {sys.argv[2]}; new per part: {sizes}")
PY
