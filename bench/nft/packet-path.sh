#!/usr/bin/env bash
# Packet path benchmark: new TCP connections per second and request
# latency (connect, one request line, reply, close) from a client
# namespace to four backends, side by side:
#   direct   client → backends, routed by a plain LB namespace (no balancing: the limit)
#   halb     client → VIP, balanced by `halb run --dataplane nftables` (Maglev + DNAT)
#   jhash    client → VIP, balanced by one hand-written rule: DNAT to
#            jhash(saddr . sport . daddr . dport) mod 4 of a map of the backends
#   haproxy  client → HAProxy in TCP mode in the plain LB namespace (userspace proxy)
# Each path has an LB namespace of its own (so no path's rules see
# another's packets) and destinations of its own (VIP, LB and backend
# addresses), so that TIME_WAIT sockets and conntrack entries left by one
# run do not meet the next. The paths take turns, RUNS rounds, every
# other round in reverse order, halb and jhash always next to each other:
# on a shared machine the load moves between runs, so besides the ratio
# of the medians the median of the rounds' halb / jhash ratios is printed,
# with the load before and after.
# Usage (root): bench/nft/packet-path.sh [SECONDS] [CONCURRENCY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
secs=${1:-5}; conc=${2:-8}; runs=${3:-5}
for tool in ip haproxy nft; do command -v $tool >/dev/null || { echo "needs $tool (scripts/install-deps.sh)" >&2; exit 1; }; done

work=$(mktemp -d)
p="hbench$$-"
nss="cli lb0 lb1 lb2 be1 be2 be3 be4"
cleanup() {
  for ns in $nss; do
    for pid in $(ip netns pids "$p$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  wait 2>/dev/null || true
  for ns in $nss; do ip netns del "$p$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

CGO_ENABLED=0 go build -o "$work/halb" ./cmd/halb
CGO_ENABLED=0 go build -o "$work/tcpbench" ./bench/nft/tcpbench
nsx() { local ns=$1; shift; ip netns exec "$p$ns" "$@"; }

for ns in $nss; do ip netns add "$p$ns"; nsx $ns ip link set lo up; done
# LB namespace i (0 plain, 1 halb, 2 jhash) has the /26s at 64·i of
# 203.0.113.0/24 (client side: LB .1, client .2, VIP .10) and of
# 198.51.100.0/24 (backend side: LB .1, backend k .10+k).
cli() { echo "203.0.113.$((64 * $1 + $2))"; }
be() { echo "198.51.100.$((64 * $1 + $2))"; }
for i in 0 1 2; do
  ip link add "v$$c$i" type veth peer name "v$$l$i"
  ip link set "v$$c$i" netns "${p}cli" name "c$i"
  ip link set "v$$l$i" netns "${p}lb$i" name eth0
  nsx cli ip addr add "$(cli $i 2)/26" dev "c$i"; nsx cli ip link set "c$i" up
  nsx cli ip route add "$(be $i 0)/26" via "$(cli $i 1)"
  nsx lb$i ip addr add "$(cli $i 1)/26" dev eth0; nsx lb$i ip addr add "$(cli $i 10)/26" dev eth0; nsx lb$i ip link set eth0 up
  nsx lb$i ip link add br0 type bridge; nsx lb$i ip addr add "$(be $i 1)/26" dev br0; nsx lb$i ip link set br0 up
  nsx lb$i sysctl -qw net.ipv4.ip_forward=1
  for k in 1 2 3 4; do
    ip link add "v$$b$i$k" type veth peer name "v$$p$i$k"
    ip link set "v$$b$i$k" netns "${p}be$k" name "e$i"
    ip link set "v$$p$i$k" netns "${p}lb$i" name "p$k"
    nsx lb$i ip link set "p$k" master br0 up
    nsx be$k ip addr add "$(be $i $((10 + k)))/26" dev "e$i"; nsx be$k ip link set "e$i" up
    nsx be$k ip route add "$(cli $i 0)/26" via "$(be $i 1)"
  done
done
for k in 1 2 3 4; do nsx be$k "$work/tcpbench" serve 0.0.0.0:80 & done
nsx cli sysctl -qw net.ipv4.tcp_tw_reuse=1
nsx cli sysctl -qw net.ipv4.ip_local_port_range="10000 65000"

cat > "$work/halb.yaml" <<YAML
node: bench
state_dir: $work
services:
  - {name: web, protocol: tcp, vips: [$(cli 1 10)], ports: [80], mark: none, forward: nat, pool: web}
pools:
  web:
    servers: [{address: $(be 1 11)}, {address: $(be 1 12)}, {address: $(be 1 13)}, {address: $(be 1 14)}]
dataplane: nftables
api: {socket: $work/halb.sock}
YAML
nsx lb1 "$work/halb" run --config "$work/halb.yaml" --dataplane nftables 2>"$work/halb.log" &

# The hand-written equivalent: the same flow hash, a map of the same
# number of backends, DNAT; like halb, no SNAT (the backends route their
# replies through the LB).
nsx lb2 nft -f - <<NFT
table ip hand {
  chain balance {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr $(cli 2 10) tcp dport 80 dnat ip to jhash ip saddr . tcp sport . ip daddr . tcp dport mod 4 seed 0x1 map { 0 : $(be 2 11) . 80, 1 : $(be 2 12) . 80, 2 : $(be 2 13) . 80, 3 : $(be 2 14) . 80 }
  }
}
NFT

cat > "$work/haproxy.cfg" <<CFG
global
  maxconn 8000
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend f
  bind $(cli 0 1):8080
  default_backend b
backend b
  balance roundrobin
  server s1 $(be 0 11):80
  server s2 $(be 0 12):80
  server s3 $(be 0 13):80
  server s4 $(be 0 14):80
CFG
nsx lb0 haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
for _ in $(seq 50); do nsx lb1 nft list chain inet halb balance >/dev/null 2>&1 && break; sleep 0.1; done
nsx lb1 nft list chain inet halb balance >/dev/null || { echo "halb did not install its table:"; cat "$work/halb.log"; exit 1; }
for _ in $(seq 50); do nsx lb0 ss -ltn | grep -q "$(cli 0 1):8080" && break; sleep 0.1; done
nsx lb0 ss -ltn | grep -q "$(cli 0 1):8080" || { echo "haproxy did not start:"; cat "$work/haproxy.log"; exit 1; }

run() {
  case $1 in
  direct) nsx cli "$work/tcpbench" run -label direct -c "$conc" -d "${secs}s" "$(be 0 11):80" "$(be 0 12):80" "$(be 0 13):80" "$(be 0 14):80" ;;
  halb) nsx cli "$work/tcpbench" run -label halb -c "$conc" -d "${secs}s" "$(cli 1 10):80" ;;
  jhash) nsx cli "$work/tcpbench" run -label jhash -c "$conc" -d "${secs}s" "$(cli 2 10):80" ;;
  haproxy) nsx cli "$work/tcpbench" run -label haproxy -c "$conc" -d "${secs}s" "$(cli 0 1):8080" ;;
  esac
}
echo "# $runs rounds × ${secs}s per path, $conc concurrent clients, $(nproc) cores; each op = connect + request + reply + close"
echo "# load before: $(uptime)"
for r in $(seq 0 $((runs - 1))); do
  paths="direct halb jhash haproxy"
  [ $((r % 2)) = 1 ] && paths="haproxy jhash halb direct"
  for path in $paths; do run $path; done
done | tee "$work/results"
echo "# load after: $(uptime)"
echo "# medians"
awk '{rate[$1]=rate[$1]" "$3; p50[$1]=p50[$1]" "$5; p99[$1]=p99[$1]" "$8}
  $1 == "halb" { h = $3 } $1 == "jhash" { j = $3 } (h && j) { ratio = ratio " " 100 * h / j; h = j = 0 }
  function med(s,  a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
  END { d = med(rate["direct"]); dp99 = med(p99["direct"])
    n = split("direct halb jhash haproxy", names, " ")
    for (i = 1; i <= n; i++) { k = names[i]
      printf "%-8s conn/s %8.0f (%5.1f%% of direct)  p50 %7.1f µs  p99 %7.1f µs (%+.1f µs vs direct)\n", k, med(rate[k]), 100 * med(rate[k]) / d, med(p50[k]), med(p99[k]), med(p99[k]) - dp99 }
    printf "halb / jhash: %.1f%% (medians), %.1f%% (median of the rounds'"'"' ratios)   haproxy / jhash: %.1f%%\n", 100 * med(rate["halb"]) / med(rate["jhash"]), med(ratio), 100 * med(rate["haproxy"]) / med(rate["jhash"]) }' "$work/results"
