package dataplane

import (
	"net/netip"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// drawState draws services from a small key space (so that two draws
// share keys), each with some of four reals, in a drawn order.
func drawState(t *rapid.T, label string) State {
	var s State
	for i := range 6 {
		if !rapid.Bool().Draw(t, label+"-has") {
			continue
		}
		vs := VirtualService{Key: ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.AddrFrom4([4]byte{192, 0, 2, 1}), Port: uint16(80 + i)},
			Scheduler: rapid.SampledFrom([]string{"wlc", "mh"}).Draw(t, label+"-sched")}
		for j := range 4 {
			if rapid.Bool().Draw(t, label+"-real") {
				vs.Reals = append(vs.Reals, Real{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + j)}), Port: 80,
					Weight: rapid.IntRange(0, 2).Draw(t, label+"-w"), Forward: "dr"})
			}
		}
		s.Services = append(s.Services, vs)
	}
	return State{Services: rapid.Permutation(s.Services).Draw(t, label+"-order")}
}

// applyDiff performs d on s, the way a data plane does.
func applyDiff(s State, d Diff) State {
	byKey := map[ServiceKey]*VirtualService{}
	var out State
	for _, vs := range s.Services {
		vs.Reals = slices.Clone(vs.Reals)
		out.Services = append(out.Services, vs)
	}
	for _, c := range d.Services {
		switch c.Op {
		case Add:
			add := c.Want
			add.Reals = nil
			out.Services = append(out.Services, add)
		case Delete:
			out.Services = slices.DeleteFunc(out.Services, func(v VirtualService) bool { return v.Key == c.Have.Key })
		case Update:
			i := slices.IndexFunc(out.Services, func(v VirtualService) bool { return v.Key == c.Want.Key })
			reals := out.Services[i].Reals
			out.Services[i] = c.Want
			out.Services[i].Reals = reals
		}
	}
	for i := range out.Services {
		byKey[out.Services[i].Key] = &out.Services[i]
	}
	for _, c := range d.Reals {
		vs := byKey[c.Service]
		vs.Reals = slices.DeleteFunc(vs.Reals, func(r Real) bool {
			return (c.Op != Add && r.AddrPort() == c.Have.AddrPort())
		})
		if c.Op != Delete {
			vs.Reals = append(vs.Reals, c.Want)
		}
	}
	return out
}

func canonical(s State) State {
	for i := range s.Services {
		if len(s.Services[i].Reals) == 0 {
			s.Services[i].Reals = nil
		}
	}
	s.Sort()
	return s
}

// TestComputeProperty checks that, for random states A and B in any
// order, performing Compute(A, B) on A gives B, and that no change is
// listed that is not needed: B to B is empty, and a state with one
// real's weight changed is one change.
func TestComputeProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := drawState(t, "a"), drawState(t, "b")
		d := Compute(a, b)
		if got, want := canonical(applyDiff(a, d)), canonical(b); !equalStates(got, want) {
			t.Fatalf("A + Compute(A, B) != B\nA: %+v\nB: %+v\ndiff: %v\ngot: %+v", a, b, d.Lines(), got)
		}
		if d := Compute(b, b); !d.Empty() {
			t.Fatalf("Compute(B, B) = %v", d.Lines())
		}
		i := slices.IndexFunc(b.Services, func(v VirtualService) bool { return len(v.Reals) > 0 })
		if i < 0 {
			return
		}
		c := State{Services: slices.Clone(b.Services)}
		c.Services[i].Reals = slices.Clone(c.Services[i].Reals)
		c.Services[i].Reals[0].Weight++
		if d := Compute(b, c); d.Size() != 1 || d.Reals[0].Op != Update {
			t.Fatalf("one weight changed: %v", d.Lines())
		}
	})
}

func equalStates(a, b State) bool {
	return slices.EqualFunc(a.Services, b.Services, func(x, y VirtualService) bool {
		return SameAttributes(x, y) && slices.Equal(x.Reals, y.Reals)
	})
}

// BenchmarkComputeOneChange10k is Compute between two states of 10,000
// services × 4 reals that differ in one real's weight.
func BenchmarkComputeOneChange10k(b *testing.B) {
	a := State{}
	for i := range 10000 {
		vs := VirtualService{Key: ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i/50)}),
			Port: uint16(1000 + i%50)}, Scheduler: "wlc"}
		for j := range 4 {
			vs.Reals = append(vs.Reals, Real{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + j)}), Port: vs.Key.Port, Weight: 1, Forward: "dr"})
		}
		a.Services = append(a.Services, vs)
	}
	c := State{Services: slices.Clone(a.Services)}
	c.Services[5000].Reals = slices.Clone(c.Services[5000].Reals)
	c.Services[5000].Reals[2].Weight = 7
	for b.Loop() {
		if d := Compute(a, c); d.Size() != 1 {
			b.Fatalf("%d changes", d.Size())
		}
	}
}
