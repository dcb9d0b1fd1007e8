package nft

import (
	"net/netip"
	"testing"

	"halb/internal/dataplane"
)

// TestThresholdReal finds the real server whose connection thresholds
// this data plane cannot honour, and none when no server has any (or
// none of the services looked at).
func TestThresholdReal(t *testing.T) {
	plain := dataplane.Real{Addr: netip.MustParseAddr("198.51.100.1"), Port: 80, Weight: 1, Forward: "nat"}
	limited := plain
	limited.Addr, limited.MaxConns = netip.MustParseAddr("198.51.100.2"), 10
	st := dataplane.State{Services: []dataplane.VirtualService{{Reals: []dataplane.Real{plain}}}}
	if r, ok := thresholdReal(st, nil); ok {
		t.Errorf("found %v in a state without thresholds", r)
	}
	st.Services = append(st.Services, dataplane.VirtualService{Reals: []dataplane.Real{plain, limited}})
	if r, ok := thresholdReal(st, nil); !ok || r != limited {
		t.Errorf("found %v (%v), want %v", r, ok, limited)
	}
	if r, ok := thresholdReal(st, []int{1}); !ok || r != limited {
		t.Errorf("in the changed service: found %v (%v), want %v", r, ok, limited)
	}
	if r, ok := thresholdReal(st, []int{0}); ok {
		t.Errorf("found %v outside the changed services", r)
	}
}
