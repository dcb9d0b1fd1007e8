package nft

import (
	"context"
	"fmt"
	"maps"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"halb/internal/api"
	"halb/internal/dataplane"
	"halb/internal/metrics"
)

func TestPlanCounters(t *testing.T) {
	vip, b1, b2 := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("198.51.100.21"), netip.MustParseAddr("198.51.100.22")
	st := dataplane.State{
		Services: []dataplane.VirtualService{
			{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip, Port: 80}, Service: "web",
				Reals: []dataplane.Real{{Addr: b1, Port: 8080, Weight: 1}, {Addr: b2, Weight: 1}}},
			// Same VIP, protocol and backend address and port as web's
			// first backend: neither is counted.
			{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip, Port: 81}, Service: "alt",
				Reals: []dataplane.Real{{Addr: b1, Port: 8080, Weight: 1}}},
			{Key: dataplane.ServiceKey{Family: 4, Mark: 7}, Service: "range", Reals: []dataplane.Real{{Addr: b1, Weight: 1}}},
			{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip, Port: 443}, Service: "empty"},
		},
		MarkRules: []dataplane.MarkRule{{Mark: 7, VIP: vip, Protocol: "udp", PortLo: 5000, PortHi: 5010}},
	}
	p, skipped := planCounters(st)
	if len(p.elems) != 2 || len(p.svcs) != 4 {
		t.Fatalf("%d elements for 4 backends (two sharing a key), %d services counted; want 2, 4", len(p.elems), len(p.svcs))
	}
	if len(skipped) != 2 || !strings.Contains(skipped[0], "203.0.113.10:80") || !strings.Contains(skipped[1], "203.0.113.10:81") {
		t.Errorf("skipped %q, want the backend of 203.0.113.10:80 and :81", skipped)
	}
	want := map[string][2]uint16{"198.51.100.22:0": {80, 80}, "198.51.100.21:0": {5000, 5010}}
	for _, e := range p.elems {
		ap := netip.AddrPortFrom(e.addr, e.port).String()
		r, ok := want[ap]
		if !ok {
			t.Errorf("unexpected element for %s", ap)
			continue
		}
		end := e.keyEnd
		if r[0] == r[1] && end != nil {
			t.Errorf("%s: key %x-%x, want one key (no range: a hash set's element)", ap, e.key, e.keyEnd)
		}
		if end == nil {
			end = e.key
		}
		if e.key[0] != 203 || e.key[len(e.key)-4] != byte(r[0]>>8) || e.key[len(e.key)-3] != byte(r[0]) ||
			end[len(end)-4] != byte(r[1]>>8) || end[len(end)-3] != byte(r[1]) {
			t.Errorf("%s: key %x-%x, want ports %d-%d", ap, e.key, e.keyEnd, r[0], r[1])
		}
	}
	if !p.ranged {
		t.Error("a plan with a port range is not ranged")
	}
	again, _ := planCounters(st)
	if !samePlan(p, again) || !p.derivedFrom(st, nil) {
		t.Error("the plan of the same state differs")
	}
	st.Services[0].Reals[0].Weight = 0
	if !p.derivedFrom(st, nil) {
		t.Error("a weight change makes a new plan")
	}
	st.Services[0].Reals[0].Port = 8081
	if p.derivedFrom(st, nil) {
		t.Error("a backend's new port keeps the plan")
	}
}

// realCounters finds one backend's counters in a read.
func realCounters(t testing.TB, cs []ServiceCounters, vs string, addr string) (RealCounters, bool) {
	t.Helper()
	for _, s := range cs {
		if s.Key.String() != vs {
			continue
		}
		for _, r := range s.Reals {
			if r.Addr.String() == addr {
				return r, true
			}
		}
	}
	return RealCounters{}, false
}

func readCounters(t testing.TB, d *Dataplane) []ServiceCounters {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := d.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// metricsCounters gives d's counters to a metrics registry, as the daemon
// does.
type metricsCounters struct{ d *Dataplane }

func (c metricsCounters) Counters(ctx context.Context) ([]metrics.ServiceCounters, error) {
	cs, err := c.d.Counters(ctx)
	var out []metrics.ServiceCounters
	for _, s := range cs {
		ms := metrics.ServiceCounters{Key: s.Key, Service: s.Service, Connections: s.Connections, HasPackets: true,
			PacketsIn: s.PacketsIn, PacketsOut: s.PacketsOut, BytesIn: s.BytesIn, BytesOut: s.BytesOut}
		for _, r := range s.Reals {
			ms.Reals = append(ms.Reals, metrics.RealCounters{Addr: r.Addr, Port: r.Port, Connections: r.Connections,
				PacketsIn: r.PacketsIn, PacketsOut: r.PacketsOut, BytesIn: r.BytesIn, BytesOut: r.BytesOut})
		}
		out = append(out, ms)
	}
	return out, err
}

// scrape returns the samples of /metrics for a registry reading d.
func scrape(t testing.TB, d *Dataplane) map[string]float64 {
	t.Helper()
	m := metrics.New(func(context.Context) (api.Status, error) { return api.Status{}, fmt.Errorf("no engine in this test") })
	m.AddCounterSource(metricsCounters{d})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "halb_server_") && !strings.HasPrefix(name, "halb_service_") && name != "halb_kernel_counters_up" {
			continue
		}
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue()
			if m.Counter != nil {
				v = m.Counter.GetValue()
			}
			out[name+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

// TestCountersNAT sends connections through a NAT service and checks each
// backend's kernel counters (connections exactly, packets and bytes both
// ways), /metrics, and that a removed backend's counters go with it.
func TestCountersNAT(t *testing.T) {
	l := newNATLab(t, 3)
	d := nsDataplane(t, l.lb, WithMode(LoadBalance))
	reconcile(t, d, natState(t, "", "inhibit"))
	const vs = "tcp 203.0.113.10:80"
	for _, r := range readCounters(t, d)[0].Reals {
		if r.Connections+r.PacketsIn+r.PacketsOut != 0 {
			t.Fatalf("counters before any traffic: %+v", r)
		}
	}
	cl := newDialer(t, l.client)
	const n = 60
	count := map[string]uint64{}
	for i := range n {
		name, err := cl.hit("", "203.0.113.10:80")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		count[name]++
	}
	t.Logf("connections per backend: %v", count)
	cs := readCounters(t, d)
	if len(cs) != 1 || cs[0].Key.String() != vs || cs[0].Service != "web" {
		t.Fatalf("counters of %+v, want one service %s (web)", cs, vs)
	}
	var sum uint64
	for i := range 3 {
		addr := fmt.Sprintf("198.51.100.%d", 21+i)
		r, ok := realCounters(t, cs, vs, addr)
		if !ok {
			t.Fatalf("no counters for backend %s", addr)
		}
		t.Logf("%s: %+v", addr, r)
		// A lost SYN would be counted twice; the lab loses none.
		if r.Connections != count[addr] {
			t.Errorf("%s: %d connections counted, %d made", addr, r.Connections, count[addr])
		}
		// Each connection: at least SYN, ACK, FIN to the backend; SYN-ACK
		// and the greeting from it (its FIN may ride on the greeting).
		if r.PacketsIn < 3*count[addr] || r.PacketsOut < 2*count[addr] || r.BytesIn < 40*r.PacketsIn || r.BytesOut < 40*r.PacketsOut {
			t.Errorf("%s: counters %+v for %d connections", addr, r, count[addr])
		}
		sum += r.Connections
	}
	if cs[0].Connections != sum || sum != n {
		t.Errorf("service counts %d connections, backends %d, made %d", cs[0].Connections, sum, n)
	}

	got := scrape(t, d)
	if got["halb_kernel_counters_up{}"] != 1 {
		t.Errorf("halb_kernel_counters_up = %v", got["halb_kernel_counters_up{}"])
	}
	for i := range 3 {
		addr := fmt.Sprintf("198.51.100.%d", 21+i)
		key := fmt.Sprintf("halb_server_connections_total{address=%s,port=80,vs=%s}", addr, vs)
		if got[key] != float64(count[addr]) {
			t.Errorf("%s = %v, want %d", key, got[key], count[addr])
		}
	}
	if v := got["halb_service_packets_total{direction=out,service=web,vs="+vs+"}"]; v < 2*n {
		t.Errorf("service packets out = %v for %d connections", v, n)
	}

	// 198.51.100.23 leaves: its counters go, the others keep theirs.
	st := natState(t, "", "inhibit")
	st.Services[0].Reals = slices.DeleteFunc(st.Services[0].Reals, func(r dataplane.Real) bool { return r.Addr.String() == "198.51.100.23" })
	reconcile(t, d, st)
	cs = readCounters(t, d)
	if _, ok := realCounters(t, cs, vs, "198.51.100.23"); ok {
		t.Error("the removed backend still has counters")
	}
	if r, _ := realCounters(t, cs, vs, "198.51.100.22"); r.Connections != count["198.51.100.22"] {
		t.Errorf("a remaining backend's counters changed with the table: %d, want %d", r.Connections, count["198.51.100.22"])
	}
	if _, ok := scrape(t, d)["halb_server_connections_total{address=198.51.100.23,port=80,vs="+vs+"}"]; ok {
		t.Error("/metrics still shows the removed backend")
	}
	// A restart reads the table back and keeps the counts.
	d2 := nsDataplane(t, l.lb, WithMode(LoadBalance))
	reconcile(t, d2, st)
	if r, _ := realCounters(t, readCounters(t, d2), vs, "198.51.100.21"); r.Connections != count["198.51.100.21"] {
		t.Errorf("after a restart 198.51.100.21 counts %d connections, want %d", r.Connections, count["198.51.100.21"])
	}
}

// TestCountersRange counts a mark service whose backend keeps the port of
// a port range (an element of the interval sets, whose lookups the chains
// carry only then), then the same traffic by an exact key once the range
// is gone, and checks the chains' lookups each time.
func TestCountersRange(t *testing.T) {
	l := newNATLab(t, 2)
	d := nsDataplane(t, l.lb, WithMode(LoadBalance))
	vip, b1, b2 := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("198.51.100.21"), netip.MustParseAddr("198.51.100.22")
	ranged := dataplane.State{
		Services: []dataplane.VirtualService{{Key: dataplane.ServiceKey{Family: 4, Mark: 9}, Service: "range",
			Reals: []dataplane.Real{{Addr: b1, Weight: 1, Forward: "nat"}}}},
		MarkRules: []dataplane.MarkRule{{Mark: 9, VIP: vip, Protocol: "tcp", PortLo: 80, PortHi: 81, Service: "range"}},
	}
	exact := dataplane.State{Services: []dataplane.VirtualService{{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip, Port: 80},
		Service: "web", Reals: []dataplane.Real{{Addr: b2, Port: 80, Weight: 1, Forward: "nat"}}}}}
	lookups := func() string {
		t.Helper()
		out, err := l.lb.Run("nft", "list", "chain", "inet", DefaultTable+countSuffix, "original4")
		if err != nil {
			t.Fatalf("list chain original4: %v: %s", err, out)
		}
		var sets []string
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "@") {
				sets = append(sets, f)
			}
		}
		return strings.Join(sets, " ")
	}
	cl := newDialer(t, l.client)
	const n = 10
	for _, step := range []struct {
		st                dataplane.State
		vs, backend, sets string
	}{
		{ranged, "fwmark 9 ipv4", "198.51.100.21", "@conns4 @new4 @to4 @in4"},
		{exact, "tcp 203.0.113.10:80", "198.51.100.22", "@conns4 @to4"},
	} {
		reconcile(t, d, step.st)
		if got := lookups(); got != step.sets {
			t.Errorf("%s: chain original4 looks in %q, want %q", step.vs, got, step.sets)
		}
		for i := range n {
			name, err := cl.hit("", "203.0.113.10:80")
			if err != nil || name != step.backend {
				t.Fatalf("%s: connection %d: %q, %v; want %s", step.vs, i, name, err, step.backend)
			}
		}
		r, ok := realCounters(t, readCounters(t, d), step.vs, step.backend)
		if !ok || r.Connections != n || r.PacketsIn < 3*n || r.PacketsOut < 2*n {
			t.Errorf("%s: counters of %s %+v (found %t), want %d connections and their packets", step.vs, step.backend, r, ok, n)
		}
	}
}

// olderCounters is the counters table as a release before the hash sets
// wrote it: every element in an interval set, one chain.
const olderCounters = `table inet halb-counters {
	set new4 { type ipv4_addr . inet_proto . ipv4_addr . inet_service; flags interval; counter;
		elements = { 203.0.113.10 . tcp . 198.51.100.21 . 80 counter packets 5 bytes 300 } }
	set in4 { type ipv4_addr . inet_proto . ipv4_addr . inet_service; flags interval; counter;
		elements = { 203.0.113.10 . tcp . 198.51.100.21 . 80 counter packets 50 bytes 3000 } }
	set out4 { type ipv4_addr . inet_proto . ipv4_addr . inet_service; flags interval; counter;
		elements = { 203.0.113.10 . tcp . 198.51.100.21 . 80 counter packets 40 bytes 2400 } }
	set new6 { type ipv6_addr . inet_proto . ipv6_addr . inet_service; flags interval; counter; }
	set in6 { type ipv6_addr . inet_proto . ipv6_addr . inet_service; flags interval; counter; }
	set out6 { type ipv6_addr . inet_proto . ipv6_addr . inet_service; flags interval; counter; }
	chain count {
		type filter hook forward priority filter; policy accept;
		ct state new ct original ip daddr . meta l4proto . ip daddr . th dport @new4
		ct direction original ct original ip daddr . meta l4proto . ip daddr . th dport @in4
		ct direction reply ct original ip daddr . meta l4proto . ip saddr . th sport @out4
		ct state new ct original ip6 daddr . meta l4proto . ip6 daddr . th dport @new6
		ct direction original ct original ip6 daddr . meta l4proto . ip6 daddr . th dport @in6
		ct direction reply ct original ip6 daddr . meta l4proto . ip6 saddr . th sport @out6
	}
}
`

// TestCountersUpgrade: a start on the counters table of an older release
// rewrites its chain and moves its backends to the hash sets (their
// counts start again from 0), and then counts every connection.
func TestCountersUpgrade(t *testing.T) {
	l := newNATLab(t, 3)
	file := filepath.Join(t.TempDir(), "older.nft")
	if err := os.WriteFile(file, []byte(olderCounters), 0o600); err != nil {
		t.Fatal(err)
	}
	must(t, l.lb, "nft", "-f", file)
	d := nsDataplane(t, l.lb, WithMode(LoadBalance))
	reconcile(t, d, natState(t, "", "inhibit"))
	for _, set := range []string{"new4", "in4", "out4"} {
		out, err := l.lb.Run("nft", "list", "set", "inet", DefaultTable+countSuffix, set)
		if err != nil || strings.Contains(string(out), "198.51.100.") {
			t.Errorf("interval set %s after the upgrade (%v): %s", set, err, out)
		}
	}
	if out := listTable(t, l.lb, DefaultTable+countSuffix); strings.Contains(out, "ct direction reply") {
		t.Errorf("the older chain is still there:\n%s", out)
	}
	cl := newDialer(t, l.client)
	const n = 30
	for i := range n {
		if _, err := cl.hit("", "203.0.113.10:80"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	cs := readCounters(t, d)
	if len(cs) != 1 || cs[0].Connections != n || cs[0].PacketsIn < 3*n || cs[0].PacketsOut < 2*n {
		t.Errorf("counters after the upgrade: %+v, want %d connections and their packets", cs, n)
	}
}

// TestCountersDR sends connections through a direct-routing service and
// checks each backend's flows and packets, and that they survive a table
// change.
func TestCountersDR(t *testing.T) {
	lab, lb := labHost(t)
	lan, client := drLAN(t, lab)
	if _, err := lab.Connect(lb, lan, "eth0", "192.0.2.2/24", "192.0.2.9/24"); err != nil {
		t.Fatal(err)
	}
	d := nsDataplane(t, lb, WithMode(LoadBalance))
	st := drState(t)
	reconcile(t, d, st)
	if out, err := lb.Run("nft", "list", "table", "inet", DefaultTable+countSuffix); err == nil {
		t.Errorf("a NAT counters table without NAT services, on every forwarded packet's path:\n%s", out)
	}
	vs := st.Services[0].Key.String()
	cl := newDialer(t, client)
	const n = 60
	count := map[string]uint64{}
	for i := range n {
		name, err := cl.hit("", "192.0.2.9:80")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		count[name]++
	}
	t.Logf("connections per backend: %v", count)
	cs := readCounters(t, d)
	for i := range 3 {
		addr := fmt.Sprintf("192.0.2.%d", 21+i)
		r, ok := realCounters(t, cs, vs, addr)
		if !ok {
			t.Fatalf("no counters for backend %s in %+v", addr, cs)
		}
		t.Logf("%s: %+v", addr, r)
		if r.Connections != count[addr] {
			t.Errorf("%s: %d flows counted, %d connections made", addr, r.Connections, count[addr])
		}
		if r.PacketsIn < 3*count[addr] || r.BytesIn < 40*r.PacketsIn || r.PacketsOut != 0 {
			t.Errorf("%s: counters %+v for %d connections (DR sees the client's packets only)", addr, r, count[addr])
		}
	}
	if got := scrape(t, d)[fmt.Sprintf("halb_server_connections_total{address=192.0.2.21,port=,vs=%s}", vs)]; got != float64(count["192.0.2.21"]) {
		t.Errorf("/metrics shows %v connections to 192.0.2.21, want %d", got, count["192.0.2.21"])
	}
	// A change of the table (one backend less) keeps the others' counts
	// and removes the gone backend's counters.
	st.Services[0].Reals = st.Services[0].Reals[:2]
	reconcile(t, d, st)
	cs = readCounters(t, d)
	if r, _ := realCounters(t, cs, vs, "192.0.2.21"); r.Connections != count["192.0.2.21"] {
		t.Errorf("after a table change 192.0.2.21 counts %d flows, want %d", r.Connections, count["192.0.2.21"])
	}
	if _, ok := realCounters(t, cs, vs, "192.0.2.23"); ok {
		t.Error("the removed backend still has counters")
	}
	if out := listNetdev(t, lb); strings.Contains(out, "192.0.2.23") || strings.Count(out, "counter drc-") != 2 {
		t.Errorf("netdev table after the change:\n%s", out)
	}
}

func listNetdev(t testing.TB, h interface {
	Run(string, ...string) ([]byte, error)
}) string {
	t.Helper()
	out, err := h.Run("nft", "list", "table", "netdev", DefaultTable)
	if err != nil {
		t.Fatalf("nft list table netdev: %v: %s", err, out)
	}
	return string(out)
}

// BenchmarkPlanCounters is the counters' share of a reconcile of 10,000
// services with 10 backends each: when a weight changed (the plan is
// kept), and when a backend was added (the plan is made again). The
// backends keep the VIP's port, so every backend has a key of its own.
func BenchmarkPlanCounters(b *testing.B) {
	st := bigState(10000)
	for _, vs := range st.Services {
		for i := range vs.Reals {
			vs.Reals[i].Port = 0
		}
	}
	last, skipped := planCounters(st)
	if len(skipped) > 0 || len(last.elems) != 100000 {
		b.Fatalf("%d elements, skipped %v", len(last.elems), skipped)
	}
	b.Run("weight", func(b *testing.B) {
		st.Services[5000].Reals[3].Weight = 7
		for b.Loop() {
			if !last.derivedFrom(st, nil) {
				b.Fatal("a weight changed the plan")
			}
		}
	})
	b.Run("backend", func(b *testing.B) {
		st.Services[5000].Reals = append(st.Services[5000].Reals, dataplane.Real{Addr: netip.MustParseAddr("198.51.100.99"), Weight: 1, Forward: "nat"})
		for b.Loop() {
			if last.derivedFrom(st, nil) {
				b.Fatal("a new backend kept the plan")
			}
			planCounters(st)
		}
	})
}

func samePlan(a, b countPlan) bool {
	return maps.EqualFunc(a.elems, b.elems, func(x, y countElem) bool { return x.owner == y.owner }) && slices.Equal(a.svcs, b.svcs)
}
