#!/bin/sh
# Captures adverts sent by keepalived (VRRP-only mode, auth_type AH) in a
# throwaway network namespace, as pcap files for the AH codec's
# known-answer tests.
# Usage (root): internal/vrrp/ah/testdata/capture.sh [OUTDIR]
set -eu
out=${1:-$(dirname "$0")}
ns=halbah$$
work=$(mktemp -d)
cleanup() {
	ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT
# keepalived signals stray processes when it starts; the capture carries on.
trap "" TERM
x() { ip netns exec "$ns" "$@"; }

# capture NAME < keepalived.conf: three adverts of a fresh keepalived in a
# fresh namespace, written to OUTDIR/NAME.pcap.
capture() {
	cat >"$work/$1.conf"
	ip netns add "$ns"
	x ip link add eth0 type veth peer name eth1
	x ip link set lo up
	x ip link set eth1 up
	x ip addr add 192.0.2.1/24 dev eth0
	x ip link set eth0 up
	x ip neigh add 192.0.2.2 lladdr 02:00:00:00:00:02 dev eth0
	x timeout 10 tcpdump -i eth1 -nn -U -c 3 -w "$out/$1.pcap" ip proto 51 2>/dev/null &
	tp=$!
	sleep 1
	setsid ip netns exec "$ns" keepalived -n -l -D --vrrp -f "$work/$1.conf" \
		-p "$work/$1.pid" -r "$work/$1.vrrp.pid" >"$work/$1.log" 2>&1 &
	wait "$tp" || true
	ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
	ip netns del "$ns"
}

capture keepalived-ah-multicast <<'C'
vrrp_instance ah {
  state MASTER
  interface eth0
  virtual_router_id 61
  priority 150
  advert_int 1
  version 2
  authentication {
    auth_type AH
    auth_pass secret12
  }
  virtual_ipaddress {
    192.0.2.100/24
    192.0.2.101/24
  }
}
C
capture keepalived-ah-unicast <<'C'
vrrp_instance ahu {
  state MASTER
  interface eth0
  virtual_router_id 62
  priority 120
  advert_int 1
  version 2
  unicast_src_ip 192.0.2.1
  unicast_peer {
    192.0.2.2
  }
  authentication {
    auth_type AH
    auth_pass short
  }
  virtual_ipaddress {
    192.0.2.102/24
  }
}
C
