package metrics

import (
	"context"
	"net/netip"
	"time"

	"halb/internal/dataplane"
)

// CounterSource reads the data plane's kernel traffic counters (IPVS
// service and destination stats, nftables counters) at scrape time.
type CounterSource interface {
	Counters(ctx context.Context) ([]ServiceCounters, error)
}

// ServiceCounters are one virtual service's counters since it was created.
type ServiceCounters struct {
	Key dataplane.ServiceKey
	// Service is the configuration service it belongs to ("" if unknown).
	Service                            string
	Connections, PacketsIn, PacketsOut uint64
	BytesIn, BytesOut                  uint64
	Reals                              []RealCounters
	HasPackets                         bool // false when the source has no packet counts
}

// RealCounters are one real server's counters within a virtual service.
type RealCounters struct {
	Addr                       netip.Addr
	Port                       uint16
	ActiveConns, InactiveConns uint64
	Connections                uint64
	PacketsIn, PacketsOut      uint64
	BytesIn, BytesOut          uint64
}

// VRRPSource reads the VRRP announcer's advert counters per instance at
// scrape time.
type VRRPSource interface {
	VRRPCounters() []VRRPCounters
}

// VRRPCounters counts one instance's adverts.
type VRRPCounters struct {
	Instance        string
	AdvertsSent     uint64
	AdvertsReceived uint64
	// Rejected counts received adverts dropped, by reason ("ttl",
	// "checksum", "vip mismatch", "auth", "interval", …).
	Rejected map[string]uint64
}

// CheckSource reads each server's last health check result at scrape
// time.
type CheckSource interface {
	CheckResults() []CheckResult
}

// CheckResult is the last check of one server of a pool.
type CheckResult struct {
	Pool    string
	Server  string // address or address:port, as events name it
	Latency time.Duration
}

// NotifierSource reports each notifier's outcomes.
type NotifierSource interface {
	NotifierCounts() []NotifierCount
}

// NotifierCount is one notifier's outcomes.
type NotifierCount struct {
	Name                  string
	Sent, Failed, Dropped uint64
}

// BGPSource reports the BGP sessions and the announced VIPs.
type BGPSource interface {
	BGPState() ([]BGPSession, []BGPVIP)
}

// BGPSession is one BGP session.
type BGPSession struct {
	Peer        string
	Established bool
}

// BGPVIP is one VIP of the announce lists.
type BGPVIP struct {
	VIP       string
	Announced bool
}
