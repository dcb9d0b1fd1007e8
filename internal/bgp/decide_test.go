package bgp

import (
	"net/netip"
	"testing"

	"pgregory.net/rapid"
)

var (
	vipA = netip.MustParseAddr("203.0.113.10")
	vipB = netip.MustParseAddr("203.0.113.11")
)

func TestDecide(t *testing.T) {
	up := map[netip.Addr][]ServiceQuorum{
		vipA: {{"http", false, false}, {"https", true, false}},
		vipB: {{"dns", false, false}},
	}
	tests := []struct {
		name  string
		r     Readiness
		wantA Reason
		wantB Reason
	}{
		{"ready and no quorum", Readiness{Programmed: true, Services: up}, ReasonReady, ReasonNoQuorum},
		{"not programmed", Readiness{Services: up}, ReasonNotProgrammed, ReasonNotProgrammed},
		{"draining", Readiness{Programmed: true, Draining: true, Services: up}, ReasonDraining, ReasonDraining},
		{"stopping beats draining", Readiness{Programmed: true, Draining: true, Stopping: true, Services: up}, ReasonStopping, ReasonStopping},
		{"no service", Readiness{Programmed: true, Services: map[netip.Addr][]ServiceQuorum{vipA: {{"http", true, false}}}}, ReasonReady, ReasonNoService},
		{"health pending", Readiness{Programmed: true, Services: map[netip.Addr][]ServiceQuorum{
			vipA: {{"http", true, true}, {"dns", false, false}}, vipB: {{"http", true, true}, {"https", true, false}}}},
			ReasonHealthPending, ReasonReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide([]netip.Addr{vipA, vipB}, tt.r)
			want := []Decision{{vipA, tt.wantA == ReasonReady, tt.wantA}, {vipB, tt.wantB == ReasonReady, tt.wantB}}
			if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("Decide = %+v, want %+v", got, want)
			}
		})
	}
}

// TestDecideProperties checks, over random inputs, the promises the
// announcer makes to the routers.
func TestDecideProperties(t *testing.T) {
	vips := []netip.Addr{vipA, vipB, netip.MustParseAddr("2001:db8::10")}
	rapid.Check(t, func(t *rapid.T) {
		r := Readiness{
			Programmed: rapid.Bool().Draw(t, "programmed"),
			Draining:   rapid.Bool().Draw(t, "draining"),
			Stopping:   rapid.Bool().Draw(t, "stopping"),
			Services:   map[netip.Addr][]ServiceQuorum{},
		}
		for _, vip := range vips {
			n := rapid.IntRange(0, 3).Draw(t, "services")
			for i := range n {
				r.Services[vip] = append(r.Services[vip], ServiceQuorum{Name: string(rune('a' + i)), Quorum: rapid.Bool().Draw(t, "quorum"),
					Pending: rapid.Bool().Draw(t, "pending")})
			}
		}
		got := Decide(vips, r)
		if len(got) != len(vips) {
			t.Fatalf("%d decisions for %d VIPs", len(got), len(vips))
		}
		for i, d := range got {
			if d.VIP != vips[i] {
				t.Fatalf("decision %d is for %s, want %s", i, d.VIP, vips[i])
			}
			if d.Announce != (d.Reason == ReasonReady) {
				t.Fatalf("%s: announce %v with reason %s", d.VIP, d.Announce, d.Reason)
			}
			if d.Announce && (r.Draining || r.Stopping || !r.Programmed) {
				t.Fatalf("%s announced while draining=%v stopping=%v programmed=%v", d.VIP, r.Draining, r.Stopping, r.Programmed)
			}
			anyQuorum := false
			for _, s := range r.Services[d.VIP] {
				anyQuorum = anyQuorum || (s.Quorum && !s.Pending)
			}
			if d.Announce != (anyQuorum && r.Programmed && !r.Draining && !r.Stopping) {
				t.Fatalf("%s: announce %v, but quorum=%v programmed=%v draining=%v stopping=%v", d.VIP, d.Announce, anyQuorum, r.Programmed, r.Draining, r.Stopping)
			}
		}
	})
}
