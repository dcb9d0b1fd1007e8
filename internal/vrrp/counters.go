package vrrp

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"halb/internal/vrrp/packet"
)

// Reasons a received advert is dropped, as the rejected counters name them.
const (
	RejectLength        = "length"
	RejectVersion       = "version"
	RejectChecksum      = "checksum"
	RejectTTL           = "ttl"
	RejectAddressCount  = "address count"
	RejectInterval      = "interval"
	RejectAuth          = "auth"
	RejectICV           = "icv"    // under AH: another password, or an SPI that is not the source
	RejectReplay        = "replay" // under AH: numbered no higher than the last sent or heard
	RejectUnknownSource = "unknown source"
	RejectAddressList   = "address list"
	RejectOverflow      = "overflow" // dropped unread, the socket's buffer full: for each instance on it
	RejectOther         = "other"
)

var rejectReasons = [...]string{RejectLength, RejectVersion, RejectChecksum, RejectTTL, RejectAddressCount,
	RejectInterval, RejectAuth, RejectICV, RejectReplay, RejectUnknownSource, RejectAddressList, RejectOverflow, RejectOther}

// decodeReason names the reason of a Decode error.
func decodeReason(err error) string {
	switch {
	case errors.Is(err, packet.ErrLength):
		return RejectLength
	case errors.Is(err, packet.ErrVersion):
		return RejectVersion
	case errors.Is(err, packet.ErrChecksum):
		return RejectChecksum
	case errors.Is(err, packet.ErrTTL):
		return RejectTTL
	case errors.Is(err, packet.ErrCount):
		return RejectAddressCount
	case errors.Is(err, packet.ErrField):
		return RejectInterval // the only field Decode checks
	}
	return RejectOther
}

// counters counts one instance's adverts. The runner writes them, a
// scrape reads them.
type counters struct {
	sent, received atomic.Uint64
	rejected       [len(rejectReasons)]atomic.Uint64
}

func (c *counters) reject(reason string) { c.rejectN(reason, 1) }

func (c *counters) rejectN(reason string, n uint64) {
	i := slices.Index(rejectReasons[:], reason)
	if i < 0 {
		i = len(rejectReasons) - 1
	}
	c.rejected[i].Add(n)
}

// counterSet holds the counters of a node's instances by name; they
// survive reloads that restart an instance.
type counterSet struct {
	mu sync.Mutex
	m  map[string]*counters
}

// of returns the counters of instance name, making them if need be.
func (s *counterSet) of(name string) *counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*counters{}
	}
	c := s.m[name]
	if c == nil {
		c = &counters{}
		s.m[name] = c
	}
	return c
}

// keep forgets the counters of instances not in names.
func (s *counterSet) keep(names map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.m {
		if !names[name] {
			delete(s.m, name)
		}
	}
}

// InstanceCounters count one instance's adverts.
type InstanceCounters struct {
	Instance        string
	AdvertsSent     uint64
	AdvertsReceived uint64
	// Rejected counts received adverts dropped, by reason (the Reject
	// constants).
	Rejected map[string]uint64
}

// VRRPCounters returns each instance's advert counters, sorted by
// instance: adverts sent, adverts received and accepted, and adverts
// received and dropped by reason (only reasons seen).
func (n *Node) VRRPCounters() []InstanceCounters {
	n.counters.mu.Lock()
	defer n.counters.mu.Unlock()
	out := make([]InstanceCounters, 0, len(n.counters.m))
	for name, c := range n.counters.m {
		vc := InstanceCounters{Instance: name, AdvertsSent: c.sent.Load(), AdvertsReceived: c.received.Load(),
			Rejected: map[string]uint64{}}
		for i, reason := range rejectReasons {
			if v := c.rejected[i].Load(); v > 0 {
				vc.Rejected[reason] = v
			}
		}
		out = append(out, vc)
	}
	slices.SortFunc(out, func(a, b InstanceCounters) int { return cmp.Compare(a.Instance, b.Instance) })
	return out
}
