package nft

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"

	"halb/internal/dataplane"
	"halb/internal/dataplane/nft/nfttest"
	"halb/internal/maglev"
)

// bigState has n NAT services of 10 backends each.
func bigState(n int) dataplane.State {
	var st dataplane.State
	for i := range n {
		vs := dataplane.VirtualService{
			Key:     dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.AddrFrom4([4]byte{203, 0, byte(113 + i/60000), byte(i % 250)}), Port: uint16(1000 + i%60000)},
			Service: fmt.Sprintf("svc%d", i),
		}
		for j := range 10 {
			vs.Reals = append(vs.Reals, dataplane.Real{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + j)}), Port: 80, Weight: 1, Forward: "nat"})
		}
		st.Services = append(st.Services, vs)
	}
	st.Sort()
	return st
}

func fakeDataplane(t testing.TB) (*Dataplane, *nfttest.Kernel) {
	k := &nfttest.Kernel{}
	d, err := New(WithMode(LoadBalance), WithConnOptions(nftables.WithTestDial(k.Dial)))
	if err != nil {
		t.Fatal(err)
	}
	return d, k
}

// TestChangeCostsWhatChanged: on a table of 1,000 services, one backend
// failing sends the slots it held and little more, not the table.
func TestChangeCostsWhatChanged(t *testing.T) {
	d, k := fakeDataplane(t)
	st := bigState(1000) // one pool: one Maglev map
	if err := d.Reconcile(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	full, _ := k.Sent()
	// One service's view differs: it gets a map of its own.
	st.Services[500].Reals[3].Weight = 0
	if err := d.Reconcile(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	own, _ := k.Sent()
	// The same backend out of every service: the shared map changes in
	// place, the one of service 500 goes.
	for i := range st.Services {
		st.Services[i].Reals[3].Weight = 0
	}
	if err := d.Reconcile(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	pool, msgs := k.Sent()
	t.Logf("from empty: %d bytes; one service's own view: %d bytes; one backend out of the pool: %d bytes in %d messages", full, own, pool, msgs)
	if own == 0 || pool == 0 {
		t.Fatal("a change sent nothing")
	}
	if size := int64(maglev.DefaultSize(10)); own > 2*full/1000+size*64 {
		t.Errorf("one service's own view sent %d bytes: more than its share of the table and one map", own)
	}
	if pool >= own {
		t.Errorf("one backend out of the pool sent %d bytes, not less than a whole map (%d): the shared map was not changed in place", pool, own)
	}
	if err := d.Reconcile(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if same, msgs := k.Sent(); msgs != 0 {
		t.Errorf("an unchanged state sent %d bytes in %d messages", same, msgs)
	}
	if n := len(d.have.maps); n != 1 {
		t.Errorf("%d Maglev maps for services of one view, want 1", n)
	}
}

func TestBuildRejectsDR(t *testing.T) {
	st := bigState(1)
	st.Services[0].Reals[0].Forward = "dr"
	if _, err := build(st, LoadBalance, nil, nil); err == nil {
		t.Fatal("a DR real was accepted by the NAT chains (DR services go to the netdev table)")
	}
	if _, err := build(st, MarksOnly, nil, nil); err != nil {
		t.Fatalf("marks-only mode must not care about forwarding: %v", err)
	}
}

func TestSeedIsFixedAndNonZero(t *testing.T) {
	k := dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.MustParseAddr("203.0.113.10"), Port: 80}
	if Seed(k) == 0 {
		t.Fatal("seed is zero: the kernel would pick a random one")
	}
	other := k
	other.Port = 443
	if Seed(other) == Seed(k) {
		t.Errorf("services %s and %s have one seed; it must follow the key", k, other)
	}
	// Pinned: a changed seed moves every established flow on upgrade.
	if got := fmt.Sprintf("%#x", Seed(k)); got != "0xda644a77" {
		t.Errorf("seed of %s is %s, want 0xda644a77", k, got)
	}
}

func TestDRPlan(t *testing.T) {
	st := bigState(1)
	for i := range st.Services[0].Reals {
		st.Services[0].Reals[i].Forward = "dr"
	}
	dr, rest, err := drServices(st)
	if err != nil || len(dr) != 1 || len(rest) != 0 {
		t.Fatalf("drServices: %v %d %d", err, len(dr), len(rest))
	}
	oneDevice := func(netip.Addr) (drLink, error) { return drLink{"eth0", 2}, nil }
	p, err := drBuild(dr, nil, oneDevice)
	if err != nil {
		t.Fatal(err)
	}
	n := len(dr[0].Reals)
	if len(p.sets) != n || len(p.counters) != 2*n || len(p.chains) != n+3 || len(p.dr4) != 1 || !slices.Equal(p.ingress, []string{"eth0"}) {
		t.Errorf("plan of one service with %d backends: %d sets, %d counters, %d chains, %d dispatch elements, ingress %v",
			n, len(p.sets), len(p.counters), len(p.chains), len(p.dr4), p.ingress)
	}
	twoDevices := func(a netip.Addr) (drLink, error) { return drLink{fmt.Sprintf("eth%d", a.As4()[3]%2), 2}, nil }
	if _, err := drBuild(dr, nil, twoDevices); err == nil {
		t.Error("backends behind two devices were accepted")
	}
	st.Services[0].Reals[0].Forward = "nat"
	if _, _, err := drServices(st); err == nil {
		t.Error("a service mixing dr and nat was accepted")
	}
}
