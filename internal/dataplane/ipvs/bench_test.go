package ipvs

import (
	"context"
	"net/netip"
	"testing"

	"halb/internal/dataplane"
)

// benchState is n services × 4 reals; weight sets the first real's weight.
func benchState(n, weight int) dataplane.State {
	var st dataplane.State
	for i := range n {
		vs := dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp",
			Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i/50)}), Port: uint16(1000 + i%50)}, Scheduler: "wlc"}
		for j := range 4 {
			vs.Reals = append(vs.Reals, dataplane.Real{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + j)}),
				Port: vs.Key.Port, Weight: 1, Forward: "dr"})
		}
		st.Services = append(st.Services, vs)
	}
	st.Services[0].Reals[0].Weight = weight
	return st
}

// BenchmarkOneServerChange10k is the CPU cost of a one-server change on
// 10,000 services × 4 reals (kernel faked: the cost of computing the
// difference, plus one request).
func BenchmarkOneServerChange10k(b *testing.B) {
	k := newFakeKernel()
	d := newTestDataplane(b, k, b.TempDir())
	states := []dataplane.State{benchState(10000, 2), benchState(10000, 3)}
	if err := d.Reconcile(context.Background(), benchState(10000, 1)); err != nil {
		b.Fatal(err)
	}
	before := k.writes()
	b.ResetTimer()
	for i := range b.N {
		if err := d.Reconcile(context.Background(), states[i%2]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := k.writes() - before; got != b.N {
		b.Fatalf("%d requests for %d one-server changes", got, b.N)
	}
}
