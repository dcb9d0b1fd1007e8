// Package nfttest fakes the kernel's nf_tables netlink interface for
// tests and benchmarks of the nftables data plane: an empty ruleset that
// acknowledges every change and counts the bytes it was sent.
package nfttest

import (
	"sync"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
)

// Kernel is a fake nf_tables: dumps come back empty, changes are
// acknowledged and not kept.
type Kernel struct {
	mu       sync.Mutex
	bytes    int64
	messages int64
	acks     int
}

// Dial is the function to pass to nftables.WithTestDial.
func (k *Kernel) Dial(req []netlink.Message) ([]netlink.Message, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if req == nil { // a further receive: the next acknowledgement
		if k.acks == 0 {
			return nil, nil
		}
		k.acks--
		return []netlink.Message{ack()}, nil
	}
	for _, m := range req {
		k.bytes += int64(16 + (len(m.Data)+3)&^3)
		k.messages++
		switch {
		case m.Header.Flags&netlink.Dump != 0:
			return []netlink.Message{{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi}, Data: make([]byte, 4)}}, nil
		case m.Header.Flags&netlink.Acknowledge != 0:
			k.acks++
		}
	}
	if k.acks == 0 {
		return nil, nil
	}
	k.acks--
	return []netlink.Message{ack()}, nil
}

var _ nltest.Func = (*Kernel)(nil).Dial

func ack() netlink.Message {
	return netlink.Message{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)}
}

// Sent returns the bytes and messages sent so far, and resets the counts.
func (k *Kernel) Sent() (bytes, messages int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	bytes, messages = k.bytes, k.messages
	k.bytes, k.messages = 0, 0
	return bytes, messages
}
