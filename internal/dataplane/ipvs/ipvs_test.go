package ipvs

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"halb/internal/dataplane"
)

func newTestDataplane(t testing.TB, k *fakeKernel, dir string, opts ...Option) *Dataplane {
	t.Helper()
	opts = append([]Option{withKernel(func() (kernel, error) { return k, nil }), WithStateDir(dir), WithProcSys(""),
		WithSleep(func(context.Context, time.Duration) error { return nil })}, opts...)
	d, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tb is what testing.TB and *rapid.T share.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// comparable strips what the kernel does not keep.
func comparable(t tb, s dataplane.State) dataplane.State {
	t.Helper()
	n, err := normalizeState(s, &stateBuffer{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.Services {
		n.Services[i].Service, n.Services[i].MaglevSize = "", 0
		if n.Services[i].Reals == nil {
			n.Services[i].Reals = []dataplane.Real{}
		}
	}
	n.Sort()
	return n
}

func assertKernel(t tb, k *fakeKernel, want dataplane.State) {
	t.Helper()
	got, w := k.state(), comparable(t, want)
	if (len(got.Services) > 0 || len(w.Services) > 0) && !reflect.DeepEqual(got.Services, w.Services) {
		t.Fatalf("kernel has\n%s\nwant\n%s", dataplane.Render(got), dataplane.Render(w))
	}
}

var (
	vip4 = netip.MustParseAddr("192.0.2.9")
	vip6 = netip.MustParseAddr("2001:db8::9")
	rs1  = netip.MustParseAddr("198.51.100.11")
	rs2  = netip.MustParseAddr("198.51.100.12")
	rs6  = netip.MustParseAddr("2001:db8:1::11")
)

func siteState() dataplane.State {
	return dataplane.State{Services: []dataplane.VirtualService{
		{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip4, Port: 80}, Service: "http", Scheduler: "wlc",
			Reals: []dataplane.Real{{Addr: rs1, Port: 80, Weight: 1, Forward: "dr"}, {Addr: rs2, Port: 80, Weight: 2, Forward: "dr"}}},
		{Key: dataplane.ServiceKey{Family: 4, Mark: 0x10000001}, Service: "https", Scheduler: "wlc", Persistence: 300 * time.Second,
			Reals: []dataplane.Real{{Addr: rs1, Weight: 1, Forward: "dr"}, {Addr: rs2, Weight: 0, Forward: "dr"}}},
		{Key: dataplane.ServiceKey{Family: 4, Protocol: "udp", Addr: vip4, Port: 53}, Service: "dns", Scheduler: "mh",
			Flags: []string{"mh-port", "mh-fallback"}, Reals: []dataplane.Real{{Addr: rs1, Port: 5353, Weight: 1, Forward: "nat"}}},
		{Key: dataplane.ServiceKey{Family: 6, Protocol: "sctp", Addr: vip6, Port: 443}, Service: "v6", Scheduler: "sh",
			Persistence: 60 * time.Second, Netmask: 64, Reals: []dataplane.Real{{Addr: rs6, Port: 443, Weight: 3, Forward: "tun"}}},
	}}
}

func TestReconcileFromEmptyThenNothing(t *testing.T) {
	k, dir := newFakeKernel(), t.TempDir()
	d := newTestDataplane(t, k, dir)
	want := siteState()
	if err := d.Reconcile(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	assertKernel(t, k, want)
	if got := k.writes(); got != 4+6 {
		t.Errorf("%d writes from empty, want 10 (4 services, 6 reals)", got)
	}
	if err := d.Reconcile(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	if got := k.writes(); got != 10 {
		t.Errorf("the same state again made %d more writes", got-10)
	}
	// The netlink counters saw the same requests.
	if _, w := d.Messages(); w != 10 {
		t.Errorf("Messages() writes = %d, want 10", w)
	}
}

func TestRestartChangesNothing(t *testing.T) {
	k, dir := newFakeKernel(), t.TempDir()
	if err := newTestDataplane(t, k, dir).Reconcile(context.Background(), siteState()); err != nil {
		t.Fatal(err)
	}
	before := k.writes()
	d2 := newTestDataplane(t, k, dir)
	if err := d2.Reconcile(context.Background(), siteState()); err != nil {
		t.Fatal(err)
	}
	if got := k.writes() - before; got != 0 {
		t.Fatalf("a restart with the same state made %d writes: %v", got, k.ops[len(k.ops)-got:])
	}
	if r, _ := d2.Messages(); r != 1+4+1 {
		t.Errorf("restart read with %d requests, want 6 (services, 4×reals, daemons)", r)
	}
}

func TestOneServerChangeIsOneRequest(t *testing.T) {
	k, dir := newFakeKernel(), t.TempDir()
	d := newTestDataplane(t, k, dir)
	want := siteState()
	if err := d.Reconcile(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	before := k.writes()
	k.svcs[want.Services[0].Key].conns = 42 // counters that must survive
	want.Services[0].Reals[1].Weight = 0    // inhibit one server
	if err := d.Reconcile(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	if got := k.ops[len(k.ops)-1]; k.writes()-before != 1 || got != "update-real" {
		t.Fatalf("inhibiting a server made %d writes, last %q; want one update-real", k.writes()-before, got)
	}
	assertKernel(t, k, want)
	if k.svcs[want.Services[0].Key].conns != 42 {
		t.Error("the service was recreated: its counters are gone")
	}
}

func TestForeignServicesAreLeftAlone(t *testing.T) {
	k, dir := newFakeKernel(), t.TempDir()
	foreign := dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip4, Port: 8080}, Scheduler: "rr",
		Reals: []dataplane.Real{{Addr: rs1, Port: 8080, Weight: 1, Forward: "dr"}}}
	takeover := dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 4, Mark: 7}, Scheduler: "rr",
		Reals: []dataplane.Real{{Addr: rs2, Weight: 1, Forward: "dr"}}}
	seed := newTestDataplane(t, k, t.TempDir()) // another owner
	if err := seed.Reconcile(context.Background(), dataplane.State{Services: []dataplane.VirtualService{foreign, takeover}}); err != nil {
		t.Fatal(err)
	}

	d := newTestDataplane(t, k, dir)
	mine := takeover
	mine.Scheduler = "wlc"
	mine.Reals = []dataplane.Real{{Addr: rs1, Weight: 5, Forward: "dr"}}
	if err := d.Reconcile(context.Background(), dataplane.State{Services: []dataplane.VirtualService{mine}}); err != nil {
		t.Fatal(err)
	}
	assertKernel(t, k, dataplane.State{Services: []dataplane.VirtualService{foreign, mine}})

	// An empty state removes what halb owns (the taken-over mark), and
	// still not the foreign service — also after a restart.
	if err := newTestDataplane(t, k, dir).Reconcile(context.Background(), dataplane.State{}); err != nil {
		t.Fatal(err)
	}
	assertKernel(t, k, dataplane.State{Services: []dataplane.VirtualService{foreign}})
}

func TestFailedRequestIsRetriedThenReported(t *testing.T) {
	k, dir := newFakeKernel(), t.TempDir()
	var waits []time.Duration
	d := newTestDataplane(t, k, dir, WithRetry(3, 10*time.Millisecond),
		WithSleep(func(_ context.Context, w time.Duration) error { waits = append(waits, w); return nil }))
	k.fail["add-service"] = 1
	want := siteState()
	if err := d.Reconcile(context.Background(), want); err != nil {
		t.Fatalf("one failure then success: %v", err)
	}
	assertKernel(t, k, want)
	// The services in a batch, the failed one again alone, the reals in
	// a batch.
	if want := []int{4, 1, 6}; !reflect.DeepEqual(k.batches, want) {
		t.Errorf("batches of %v requests, want %v", k.batches, want)
	}
	if !reflect.DeepEqual(waits, []time.Duration{10 * time.Millisecond}) {
		t.Errorf("waits = %v, want [10ms]", waits)
	}

	// A request that keeps failing is reported; the rest is applied.
	want.Services[0].Reals[0].Weight = 9
	want.Services[2].Reals[0].Weight = 7
	k.fail["update-real 198.51.100.11:80"] = 3
	err := d.Reconcile(context.Background(), want)
	if err == nil || !strings.Contains(err.Error(), "update real 198.51.100.11:80 of tcp 192.0.2.9:80") ||
		strings.Contains(err.Error(), "5353") {
		t.Fatalf("err = %v, want the failed update reported, and only it", err)
	}
	// 3 tries of the failing request: 2 waits, doubling.
	if want := []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}; !reflect.DeepEqual(waits, want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}
	got := k.state()
	applied := 0
	for _, s := range got.Services {
		for _, r := range s.Reals {
			if r.Weight == 9 || r.Weight == 7 {
				applied++
			}
		}
	}
	if applied != 1 {
		t.Errorf("%d of the 2 weight changes applied, want exactly 1 (the one that did not fail)", applied)
	}
	// The next reconcile reads the kernel again and repairs.
	if err := d.Reconcile(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	assertKernel(t, k, want)
}

func TestOwnershipRecordSurvivesAFailedDelete(t *testing.T) {
	k, dir := newFakeKernel(), t.TempDir()
	d := newTestDataplane(t, k, dir, WithRetry(1, 0))
	if err := d.Reconcile(context.Background(), siteState()); err != nil {
		t.Fatal(err)
	}
	k.fail["remove-service"] = 1
	if err := d.Reconcile(context.Background(), dataplane.State{}); err == nil {
		t.Fatal("want the failed removal reported")
	}
	// A restart still knows the service that could not be removed.
	if err := newTestDataplane(t, k, dir).Reconcile(context.Background(), dataplane.State{}); err != nil {
		t.Fatal(err)
	}
	assertKernel(t, k, dataplane.State{})
	b, err := os.ReadFile(filepath.Join(dir, ownedFile))
	if err != nil || string(b) != `{"services":[],"sync":false}` {
		t.Fatalf("ownership record = %s, %v", b, err)
	}
}

func TestSyncDaemonsFollowState(t *testing.T) {
	k, dir := newFakeKernel(), t.TempDir()
	d := newTestDataplane(t, k, dir)
	ctx := context.Background()
	step := func(s *dataplane.SyncDaemons, want ...string) {
		t.Helper()
		if err := d.Reconcile(ctx, dataplane.State{Sync: s}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, dm := range k.daemons {
			got = append(got, dm.Role()+"@"+dm.Interface)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("daemons = %v, want %v", got, want)
		}
	}
	// Daemons someone else runs are left alone until halb is asked.
	k.daemons = []Daemon{{Interface: "eth9", SyncID: 1}}
	step(nil, "master@eth9")
	step(&dataplane.SyncDaemons{Master: true, Interface: "eth0", SyncID: 5}, "master@eth0")
	n := k.writes()
	step(&dataplane.SyncDaemons{Master: true, Interface: "eth0", SyncID: 5}, "master@eth0")
	if k.writes() != n {
		t.Fatal("an unchanged sync state restarted a daemon")
	}
	step(&dataplane.SyncDaemons{Backup: true, Interface: "eth0", SyncID: 5}, "backup@eth0")
	step(&dataplane.SyncDaemons{Master: true, Backup: true, Interface: "eth0", SyncID: 5}, "backup@eth0", "master@eth0")
	step(nil)
}

func TestSysctls(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"net/ipv4/vs/expire_nodest_conn", "net/ipv4/vs/expire_quiescent_template", "net/ipv4/vs/conntrack", "net/ipv4/ip_forward"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte("0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k := newFakeKernel()
	d := newTestDataplane(t, k, t.TempDir(), WithProcSys(root))
	st := siteState()
	st.Services = st.Services[:3] // IPv4 only, with a NAT service
	if err := d.Reconcile(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"net.ipv4.vs.expire_nodest_conn": "1", "net.ipv4.vs.expire_quiescent_template": "1",
		"net.ipv4.vs.conntrack": "1", "net.ipv4.ip_forward": "1"}
	if got := d.Sysctls(); !reflect.DeepEqual(got, want) {
		t.Errorf("Sysctls() = %v, want %v", got, want)
	}
	for name := range want {
		b, _ := os.ReadFile(filepath.Join(root, strings.ReplaceAll(name, ".", "/")))
		if string(b) != "1\n" {
			t.Errorf("%s = %q, want 1", name, b)
		}
	}
}

func TestUnknownFlagIsAnError(t *testing.T) {
	d := newTestDataplane(t, newFakeKernel(), t.TempDir())
	st := siteState()
	st.Services[0].Flags = []string{"bogus"}
	if err := d.Reconcile(context.Background(), st); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("err = %v, want the unknown flag named", err)
	}
}

// genState draws a state over a small universe, so that two draws share
// services and reals.
func genState(t *rapid.T, label string) dataplane.State {
	keys := []dataplane.ServiceKey{
		{Family: 4, Protocol: "tcp", Addr: vip4, Port: 80}, {Family: 4, Protocol: "udp", Addr: vip4, Port: 80},
		{Family: 4, Protocol: "tcp", Addr: vip4, Port: 443}, {Family: 4, Mark: 1}, {Family: 6, Mark: 1},
		{Family: 6, Protocol: "tcp", Addr: vip6, Port: 80},
	}
	var s dataplane.State
	for _, k := range keys {
		if !rapid.Bool().Draw(t, label+"-has-"+k.String()) {
			continue
		}
		vs := dataplane.VirtualService{Key: k, Scheduler: rapid.SampledFrom([]string{"wlc", "rr", "mh"}).Draw(t, label+"-sched"),
			Reals: []dataplane.Real{}}
		if vs.Scheduler == "mh" && rapid.Bool().Draw(t, label+"-flag") {
			vs.Flags = []string{"mh-port"}
		}
		if rapid.Bool().Draw(t, label+"-persist") {
			vs.Persistence = time.Duration(rapid.IntRange(1, 3).Draw(t, label+"-timeout")) * 100 * time.Second
			vs.Netmask = rapid.SampledFrom([]int{0, 24}).Draw(t, label+"-mask")
			if k.Family == 6 {
				vs.Netmask *= 4
			}
		}
		for j := range 4 {
			if !rapid.Bool().Draw(t, label+"-real") {
				continue
			}
			addr := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + j)})
			if k.Family == 6 {
				addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(10 + j)})
			}
			vs.Reals = append(vs.Reals, dataplane.Real{Addr: addr, Port: k.Port, Weight: rapid.IntRange(0, 3).Draw(t, label+"-w"),
				Forward: rapid.SampledFrom([]string{"dr", "nat", "tun"}).Draw(t, label+"-fwd")})
		}
		s.Services = append(s.Services, vs)
	}
	return s
}

// TestPropertyReconcile: for random states A and B, reconciling A then B
// leaves exactly B, with as many requests as the difference has changes;
// a restart on B then changes nothing.
func TestPropertyReconcile(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		a, b := genState(rt, "a"), genState(rt, "b")
		k, dir := newFakeKernel(), t.TempDir()
		d := newTestDataplane(t, k, dir)
		if err := d.Reconcile(context.Background(), a); err != nil {
			rt.Fatal(err)
		}
		assertKernel(rt, k, a)
		before := k.writes()
		if err := d.Reconcile(context.Background(), b); err != nil {
			rt.Fatal(err)
		}
		assertKernel(rt, k, b)
		na, _ := normalizeState(a, &stateBuffer{})
		nb, _ := normalizeState(b, &stateBuffer{})
		if got, want := k.writes()-before, dataplane.Compute(na, nb).Size(); got != want {
			rt.Fatalf("A→B made %d requests, the difference has %d changes", got, want)
		}
		before = k.writes()
		if err := newTestDataplane(t, k, dir).Reconcile(context.Background(), b); err != nil {
			rt.Fatal(err)
		}
		if k.writes() != before {
			rt.Fatalf("a restart on B made %d requests", k.writes()-before)
		}
	})
}
