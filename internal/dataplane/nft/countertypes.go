package nft

import (
	"net/netip"

	"halb/internal/dataplane"
)

// ServiceCounters are one balanced virtual service's counters since it was
// programmed: the sums of its backends'.
type ServiceCounters struct {
	Key dataplane.ServiceKey
	// Service is the configuration service it belongs to.
	Service                            string
	Connections, PacketsIn, PacketsOut uint64
	BytesIn, BytesOut                  uint64
	Reals                              []RealCounters
}

// RealCounters are one backend's counters within a virtual service.
// Direct routing sees only the packets in.
type RealCounters struct {
	Addr                  netip.Addr
	Port                  uint16
	Connections           uint64
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
}
