package nft

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/nftables"

	"halb/internal/dataplane"
	"halb/internal/dataplane/nft/nfttest"
)

// largeNATState is n NAT services of 10 backends each; weight0 sets one
// backend's weight.
func largeNATState(n, weight0 int) dataplane.State {
	var st dataplane.State
	for i := range n {
		vs := dataplane.VirtualService{Service: fmt.Sprintf("svc%d", i), Scheduler: "mh",
			Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 250)}), Port: uint16(1000 + i/250)}}
		for j := range 10 {
			vs.Reals = append(vs.Reals, dataplane.Real{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + j)}), Port: 8080, Weight: 1, Forward: "nat"})
		}
		st.Services = append(st.Services, vs)
	}
	st.Services[n/2].Reals[5].Weight = weight0
	return st
}

// BenchmarkOneBackendChange10k is the userspace cost of taking one
// backend out of (and back into) one of 10,000 NAT services, against a
// fake kernel.
func BenchmarkOneBackendChange10k(b *testing.B) {
	k := &nfttest.Kernel{}
	d, err := New(WithMode(LoadBalance), WithConnOptions(nftables.WithTestDial(k.Dial)))
	if err != nil {
		b.Fatal(err)
	}
	states := []dataplane.State{largeNATState(10000, 0), largeNATState(10000, 1)}
	if err := d.Reconcile(context.Background(), states[1]); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		if err := d.Reconcile(context.Background(), states[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPoolWeightChange10k is the userspace cost of one server's
// weight changed in one of 500 pools of 10,000 NAT services × 4 backends
// (the 20 services of the pool change), against a fake kernel: told
// which services changed (as the engine tells), or not.
func BenchmarkPoolWeightChange10k(b *testing.B) {
	for _, told := range []bool{true, false} {
		b.Run(fmt.Sprintf("told=%t", told), func(b *testing.B) {
			k := &nfttest.Kernel{}
			d, err := New(WithMode(LoadBalance), WithConnOptions(nftables.WithTestDial(k.Dial)))
			if err != nil {
				b.Fatal(err)
			}
			states := []dataplane.State{poolState(10000, 500), poolState(10000, 500)}
			var pool0 []int
			for i := range states[1].Services {
				if i%500 == 0 {
					states[1].Services[i].Reals[0].Weight = 2
					pool0 = append(pool0, i)
				}
			}
			if err := d.Reconcile(context.Background(), states[0]); err != nil {
				b.Fatal(err)
			}
			gen := uint64(1)
			for b.Loop() {
				st := states[gen%2]
				if told {
					st.Delta = &dataplane.Delta{From: gen, Gen: gen + 1, Services: pool0}
				}
				if err := d.Reconcile(context.Background(), st); err != nil {
					b.Fatal(err)
				}
				gen++
			}
		})
	}
}
