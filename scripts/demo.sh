#!/usr/bin/env bash
# halb's main job, shown on one machine: installs what it needs, builds
# halb, and runs the example load balancer (examples/site-lb-a.yaml) inside
# a throwaway network namespace with the dry-run data plane, then shows its
# status and the plan it would apply, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH=/usr/local/go/bin:$PATH

work=$(mktemp -d)
ns="halbdemo-$$"
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building halb"
go build -o "$work/halb" ./cmd/halb
"$work/halb" version

echo "== validating the example site"
"$work/halb" validate examples/*.yaml && echo "all examples valid"

echo "== starting lb-a in namespace $ns (eth0 is a veth whose peer stays in the namespace: nothing leaves it)"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add eth0 type veth peer name eth0-peer
ip -n "$ns" link set eth0-peer up
ip -n "$ns" addr add 192.0.2.11/24 dev eth0
ip -n "$ns" link set eth0 up
ip netns exec "$ns" "$work/halb" run --config examples/site-lb-a.yaml --dataplane none \
  --socket "$work/halb.sock" 2>"$work/halb.log" &
pid=$!
for _ in $(seq 50); do [ -S "$work/halb.sock" ] && break; sleep 0.1; done
sleep 4

echo "== halb status"
"$work/halb" status --socket "$work/halb.sock"
echo
echo "== halb events"
"$work/halb" events --socket "$work/halb.sock"
echo
echo "== the plan the data plane would apply (first 25 lines of the log)"
grep 'dry run' "$work/halb.log" | sed 's/.*msg="dry run: //; s/"$//' | head -25
echo "..."
kill -TERM "$pid"; wait "$pid" || true; pid=
echo "== stopped cleanly"
