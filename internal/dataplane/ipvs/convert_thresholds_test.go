package ipvs

import (
	"net/netip"
	"testing"

	"halb/internal/dataplane"
)

// TestRealThresholds: a real server's connection thresholds go to IPVS's
// upper and lower thresholds and come back unchanged, so that a reconcile
// sees no difference.
func TestRealThresholds(t *testing.T) {
	r := dataplane.Real{Addr: netip.MustParseAddr("198.51.100.1"), Port: 80, Weight: 1, Forward: "nat", MaxConns: 100, MinConns: 80}
	d := realToKernel(r)
	if d.UpperThreshold != 100 || d.LowerThreshold != 80 {
		t.Errorf("destination thresholds %d/%d, want 100/80", d.UpperThreshold, d.LowerThreshold)
	}
	if back := realFromKernel(d); back != r {
		t.Errorf("read back %+v, want %+v", back, r)
	}
}
