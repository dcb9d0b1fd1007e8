package ipvs

import (
	"context"
	"strings"
	"testing"
	"time"

	"halb/internal/dataplane"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
	"halb/internal/lab/vm"
)

// TestVM boots the IPVS VM once and runs this package's TestGuest* tests
// in it: the data plane against the real kernel.
func TestVM(t *testing.T) {
	vm.RunTests(t, "^TestGuest", "HALB_BINARY="+labtest.HalbBinary(t))
}

// TestGuestSite applies the seed's site, changes it, and restarts.
func TestGuestSite(t *testing.T) {
	vm.RequireGuest(t)
	l := newDRLab(t, 1)
	lb := l.lbs[0]
	dir := t.TempDir()
	n := newNode(t, lb, dir)
	st := desired(siteConfig(t), nil)
	n.apply(t, st)
	golden(t, "site-lb-a.ipvsadm", withoutCounters(ipvsadm(t, lb, "-Ln")))
	if _, w := n.ipvs.Messages(); w != int64(len(st.Services)+countReals(st)) {
		t.Errorf("%d writes from empty, want %d (one per service and real)", w, len(st.Services)+countReals(st))
	}

	// Traffic through every kind of service: the shared http mark, a
	// per-VIP https mark, and ftp's port range.
	for _, a := range []string{"192.0.2.9:80", "192.0.2.10:80", "192.0.2.50:443", "192.0.2.139:21"} {
		l.connect(t, a)
	}
	// The kernel folds its per-CPU counters every 2 s: wait until they
	// have settled.
	httpBefore := settledStats(t, n, "http")
	if httpBefore != 2 {
		t.Fatalf("the http service counted %d connections, want 2", httpBefore)
	}
	conns, err := n.ipvs.Conns()
	must(t, err)
	if len(conns) < 4 {
		t.Errorf("connection table has %d entries, want at least 4: %+v", len(conns), conns)
	}

	// A changed config applies only the difference: ftp's persistence
	// (6 services) and one server less in www (7 services).
	changed := desired(siteConfig(t, "persistence: {timeout: 600s}", "persistence: {timeout: 900s}",
		"      - {address: 198.51.100.13, weight: 1}\n", ""), nil)
	_, w0 := n.ipvs.Messages()
	n.apply(t, changed)
	_, w1 := n.ipvs.Messages()
	if diff := dataplane.Compute(st, changed).Size(); w1-w0 != int64(diff) || diff != 13 {
		t.Errorf("the change took %d writes; the difference has %d changes (want 13)", w1-w0, diff)
	}
	golden(t, "site-lb-a-changed.ipvsadm", withoutCounters(ipvsadm(t, lb, "-Ln")))
	if got := serviceStats(t, n, "http"); got < httpBefore {
		t.Errorf("http counted %d connections before the change, %d after: it was recreated", httpBefore, got)
	}

	// A restart with the same config writes nothing: the services, their
	// counters and the connections stay.
	saved, counts := ipvsadm(t, lb, "-Sn"), connCounts(t, n)
	connsBefore, err := n.ipvs.Conns()
	must(t, err)
	restarted := newNode(t, lb, dir)
	restarted.apply(t, changed)
	if r, w := restarted.ipvs.Messages(); w != 0 {
		t.Errorf("restart: %d writes (after %d reads), want none", w, r)
	}
	if after := ipvsadm(t, lb, "-Sn"); after != saved {
		t.Errorf("restart changed the kernel:\nbefore\n%s\nafter\n%s", saved, after)
	}
	for k, c := range connCounts(t, restarted) {
		if c < counts[k] {
			t.Errorf("%s counted %d connections before the restart, %d after", k, counts[k], c)
		}
	}
	connsAfter, err := restarted.ipvs.Conns()
	must(t, err)
	for _, c := range connsBefore {
		if !found(connsAfter, c.Client) {
			t.Errorf("connection from %s to %s is gone after the restart", c.Client, c.Virtual)
		}
	}

	// Sysctls are set in the load balancer's namespace and reported.
	rep := restarted.ipvs.Sysctls()
	for _, name := range []string{"net.ipv4.vs.expire_nodest_conn", "net.ipv4.vs.expire_quiescent_template"} {
		out, err := lb.Run("sysctl", "-n", name)
		if err != nil || strings.TrimSpace(string(out)) != "1" || rep[name] != "1" {
			t.Errorf("%s = %q (%v), reported %q; want 1", name, out, err, rep[name])
		}
	}

	// An empty state removes everything halb created, and only that.
	foreign := "192.0.2.200:8080"
	ipvsadm(t, lb, "-A", "-t", foreign, "-s", "rr")
	restarted.apply(t, dataplane.State{})
	if got := ipvsadm(t, lb, "-Ln"); !strings.Contains(got, foreign) || strings.Count(got, "FWM") != 0 {
		t.Errorf("after removing the site:\n%s", got)
	}
}

// connCounts returns the connections counted per virtual service.
func connCounts(t *testing.T, n *node) map[dataplane.ServiceKey]uint64 {
	t.Helper()
	st, err := n.ipvs.Status()
	must(t, err)
	out := map[dataplane.ServiceKey]uint64{}
	for _, s := range st {
		out[s.Key] = s.Connections
	}
	return out
}

func countReals(st dataplane.State) int {
	n := 0
	for _, s := range st.Services {
		n += len(s.Reals)
	}
	return n
}

// settledStats waits until serviceStats gives the same figure twice,
// 2.5 s apart (the kernel's stats estimator runs every 2 s).
func settledStats(t *testing.T, n *node, name string) uint64 {
	t.Helper()
	prev := serviceStats(t, n, name)
	for range 10 {
		time.Sleep(2500 * time.Millisecond)
		cur := serviceStats(t, n, name)
		if cur == prev && cur > 0 {
			return cur
		}
		prev = cur
	}
	return prev
}

// serviceStats sums the connections the kernel counted for a config
// service's virtual services.
func serviceStats(t *testing.T, n *node, name string) uint64 {
	t.Helper()
	st, err := n.ipvs.Status()
	must(t, err)
	want := desired(siteConfig(t), nil)
	var sum uint64
	for _, s := range st {
		for _, w := range want.Services {
			if w.Service == name && w.Key == s.Key {
				sum += s.Connections
			}
		}
	}
	return sum
}

// TestGuestAllSchedulers creates a service with every scheduler the
// kernel offers, and the mh/sh flags, IPv4 and IPv6, all forwarding
// methods; reading back gives what was asked.
func TestGuestAllSchedulers(t *testing.T) {
	lb := routedLB(t)
	d, err := New(WithNetNS(nsFD(t, lb)), WithStateDir(t.TempDir()))
	must(t, err)
	defer d.Close()
	var st dataplane.State
	rs := []dataplane.Real{{Addr: rs1, Port: 80, Weight: 1, Forward: "dr"}, {Addr: rs2, Port: 8080, Weight: 2, Forward: "nat"},
		{Addr: netipMust("198.51.100.13"), Port: 80, Weight: 0, Forward: "tun"}}
	for i, sched := range []string{"rr", "wrr", "lc", "wlc", "fo", "ovf", "lblc", "lblcr", "dh", "sh", "mh", "sed", "nq"} {
		vs := dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip4, Port: uint16(1000 + i)},
			Scheduler: sched, Reals: rs}
		switch sched {
		case "sh":
			vs.Flags = []string{"sh-fallback", "sh-port"}
		case "mh":
			vs.Flags = []string{"mh-port"}
			vs.Persistence, vs.Netmask = 30*time.Second, 24
		}
		st.Services = append(st.Services, vs)
	}
	st.Services = append(st.Services, dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 6, Protocol: "udp", Addr: vip6, Port: 53},
		Scheduler: "mh", Flags: []string{"mh-fallback"}, Persistence: time.Minute, Netmask: 64,
		Reals: []dataplane.Real{{Addr: rs6, Port: 53, Weight: 4, Forward: "dr"}}})
	st.Services = append(st.Services, dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 6, Mark: 77}, Scheduler: "wrr",
		Reals: []dataplane.Real{{Addr: rs6, Weight: 1, Forward: "nat"}}})
	must(t, d.Reconcile(context.Background(), st))
	// A fresh reader sees exactly the wanted state: nothing to change.
	d2, err := New(WithNetNS(nsFD(t, lb)), WithStateDir(t.TempDir()), WithProcSys(""))
	must(t, err)
	defer d2.Close()
	must(t, d2.Reconcile(context.Background(), st))
	if _, w := d2.Messages(); w != 0 {
		t.Fatalf("reading back differs from what was written: %d writes\n%s", w, ipvsadm(t, lb, "-Ln"))
	}
	out := ipvsadm(t, lb, "-Ln")
	for _, want := range []string{"sh (sh-fallback,sh-port)", "mh (mh-port) persistent 30 mask 255.255.255.0", "Masq", "Tunnel", "Route",
		"[2001:db8::9]:53 mh (mh-fallback) persistent 60 mask 64", "FWM  77 IPv6 wrr"} {
		if !strings.Contains(out, want) {
			t.Errorf("ipvsadm -Ln lacks %q:\n%s", want, out)
		}
	}
}

// routedLB is a guest namespace whose real servers are routable: a dummy
// interface on their subnets.
func routedLB(t *testing.T) *netns.Host {
	t.Helper()
	vm.RequireGuest(t)
	lb, err := labtest.NewLab(t).AddHost("lb")
	must(t, err)
	must(t, lb.IP("link", "add", "d0", "up", "type", "dummy"))
	must(t, lb.IP("addr", "add", "198.51.100.1/24", "dev", "d0"))
	must(t, lb.IP("-6", "addr", "add", "2001:db8:1::1/64", "dev", "d0", "nodad"))
	return lb
}
