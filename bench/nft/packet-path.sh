#!/usr/bin/env bash
# Packet path benchmark: new TCP connections per second and request
# latency (connect, one request line, reply, close) from a client
# namespace to three backends, side by side:
#   direct   client → backends, routed by the LB namespace (no balancing: the limit)
#   halb     client → VIP, balanced by `halb run --dataplane nftables` (Maglev + DNAT)
#   haproxy  client → HAProxy in TCP mode in the LB namespace (userspace proxy)
# Each is run RUNS times, interleaved; the medians are printed last.
# Usage (root): bench/nft/packet-path.sh [SECONDS] [CONCURRENCY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
secs=${1:-5}; conc=${2:-8}; runs=${3:-3}
for tool in ip haproxy nft; do command -v $tool >/dev/null || { echo "needs $tool (scripts/install-deps.sh)" >&2; exit 1; }; done

work=$(mktemp -d)
p="hbench$$-"
cleanup() {
  for ns in cli lb be1 be2 be3; do
    for pid in $(ip netns pids "$p$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  wait 2>/dev/null || true
  for ns in cli lb be1 be2 be3; do ip netns del "$p$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

CGO_ENABLED=0 go build -o "$work/halb" ./cmd/halb
CGO_ENABLED=0 go build -o "$work/tcpbench" ./bench/nft/tcpbench
nsx() { local ns=$1; shift; ip netns exec "$p$ns" "$@"; }

for ns in cli lb be1 be2 be3; do ip netns add "$p$ns"; nsx $ns ip link set lo up; done
ip link add "v$$c" type veth peer name "v$$l"
ip link set "v$$c" netns "${p}cli" name eth0
ip link set "v$$l" netns "${p}lb" name eth0
nsx cli ip addr add 203.0.113.100/24 dev eth0; nsx cli ip link set eth0 up
nsx cli ip route add 198.51.100.0/24 via 203.0.113.1
nsx lb ip addr add 203.0.113.1/24 dev eth0; nsx lb ip addr add 203.0.113.10/24 dev eth0; nsx lb ip link set eth0 up
nsx lb ip link add br0 type bridge; nsx lb ip addr add 198.51.100.1/24 dev br0; nsx lb ip link set br0 up
for i in 1 2 3; do
  ip link add "v$$b$i" type veth peer name "v$$p$i"
  ip link set "v$$b$i" netns "${p}be$i" name eth0
  ip link set "v$$p$i" netns "${p}lb" name "p$i"
  nsx lb ip link set "p$i" master br0 up
  nsx be$i ip addr add 198.51.100.2$i/24 dev eth0; nsx be$i ip link set eth0 up
  nsx be$i ip route add default via 198.51.100.1
  nsx be$i "$work/tcpbench" serve 198.51.100.2$i:80 &
done
nsx lb sysctl -qw net.ipv4.ip_forward=1
nsx cli sysctl -qw net.ipv4.tcp_tw_reuse=1
nsx cli sysctl -qw net.ipv4.ip_local_port_range="10000 65000"

cat > "$work/halb.yaml" <<YAML
node: bench
state_dir: $work
services:
  - {name: web, protocol: tcp, vips: [203.0.113.10], ports: [80], mark: none, forward: nat, pool: web}
pools:
  web:
    servers: [{address: 198.51.100.21}, {address: 198.51.100.22}, {address: 198.51.100.23}]
dataplane: nftables
api: {socket: $work/halb.sock}
YAML
nsx lb "$work/halb" run --config "$work/halb.yaml" --dataplane nftables 2>"$work/halb.log" &
cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 8000
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend f
  bind 203.0.113.1:8080
  default_backend b
backend b
  balance roundrobin
  server s1 198.51.100.21:80
  server s2 198.51.100.22:80
  server s3 198.51.100.23:80
CFG
nsx lb haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
for _ in $(seq 50); do nsx lb nft list table inet halb >/dev/null 2>&1 && break; sleep 0.1; done
nsx lb nft list chain inet halb balance >/dev/null || { echo "halb did not install its table:"; cat "$work/halb.log"; exit 1; }
for _ in $(seq 50); do nsx lb ss -ltn | grep -q 203.0.113.1:8080 && break; sleep 0.1; done
nsx lb ss -ltn | grep -q 203.0.113.1:8080 || { echo "haproxy did not start:"; cat "$work/haproxy.log"; exit 1; }

echo "# $runs × ${secs}s runs, $conc concurrent clients, $(nproc) cores; each op = connect + request + reply + close"
for r in $(seq "$runs"); do
  nsx cli "$work/tcpbench" run -label direct -c "$conc" -d "${secs}s" 198.51.100.21:80 198.51.100.22:80 198.51.100.23:80
  nsx cli "$work/tcpbench" run -label halb -c "$conc" -d "${secs}s" 203.0.113.10:80
  nsx cli "$work/tcpbench" run -label haproxy -c "$conc" -d "${secs}s" 203.0.113.1:8080
done | tee "$work/results"
echo "# medians"
awk '{rate[$1]=rate[$1]" "$3; p50[$1]=p50[$1]" "$5; p99[$1]=p99[$1]" "$8}
  function med(s,  a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
  END { d = med(rate["direct"]); dp99 = med(p99["direct"])
    for (k in rate) order[k] = 1
    n = split("direct halb haproxy", names, " ")
    for (i = 1; i <= n; i++) { k = names[i]
      printf "%-8s conn/s %8.0f (%5.1f%% of direct)  p50 %7.1f µs  p99 %7.1f µs (%+.1f µs vs direct)\n", k, med(rate[k]), 100 * med(rate[k]) / d, med(p50[k]), med(p99[k]), med(p99[k]) - dp99 } }' "$work/results"
