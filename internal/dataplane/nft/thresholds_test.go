package nft

import (
	"net/netip"
	"testing"

	"halb/internal/dataplane"
)

// TestThresholdReal finds the real server whose connection thresholds
// this data plane cannot honour, and none when no server has any.
func TestThresholdReal(t *testing.T) {
	plain := dataplane.Real{Addr: netip.MustParseAddr("198.51.100.1"), Port: 80, Weight: 1, Forward: "nat"}
	limited := plain
	limited.Addr, limited.MaxConns = netip.MustParseAddr("198.51.100.2"), 10
	st := dataplane.State{Services: []dataplane.VirtualService{{Reals: []dataplane.Real{plain}}}}
	if r, ok := thresholdReal(st); ok {
		t.Errorf("found %v in a state without thresholds", r)
	}
	st.Services = append(st.Services, dataplane.VirtualService{Reals: []dataplane.Real{plain, limited}})
	if r, ok := thresholdReal(st); !ok || r != limited {
		t.Errorf("found %v (%v), want %v", r, ok, limited)
	}
}
