package ipvs

import (
	"context"
	"strings"
	"testing"

	"halb/internal/dataplane"
)

// TestGuestTunnelTypes programs TUN real servers with each tunnel type
// the kernel offers (ipip, gue with its port and remote checksum, gre with
// checksum), reads them back unchanged, and changes one tunnel with one
// request.
func TestGuestTunnelTypes(t *testing.T) {
	lb := routedLB(t)
	tun := func(port uint16, tunnel dataplane.Tunnel) dataplane.VirtualService {
		return dataplane.VirtualService{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip4, Port: port}, Scheduler: "wlc",
			Reals: []dataplane.Real{{Addr: rs1, Port: port, Weight: 1, Forward: "tun", Tunnel: tunnel}}}
	}
	st := dataplane.State{Services: []dataplane.VirtualService{
		tun(80, dataplane.Tunnel{}), // ipip, no checksum: the defaults
		tun(81, dataplane.Tunnel{Type: dataplane.GUE, Port: 6080, Checksum: dataplane.RemoteChecksum}),
		tun(82, dataplane.Tunnel{Type: dataplane.GRE, Checksum: dataplane.Checksum}),
	}}
	d, err := New(WithNetNS(nsFD(t, lb)), WithStateDir(t.TempDir()), WithProcSys(""))
	must(t, err)
	defer d.Close()
	must(t, d.Reconcile(context.Background(), st))

	out := ipvsadm(t, lb, "-Ln", "--tun-info")
	// ipvsadm writes a tunnel as type[:port][:flags]: +c checksum, r+c
	// remote checksum.
	for _, want := range []string{"198.51.100.11:80             Tunnel  ipip ", "198.51.100.11:81             Tunnel  gue:6080:r+c ",
		"198.51.100.11:82             Tunnel  gre:+c "} {
		if !strings.Contains(out, want) {
			t.Errorf("ipvsadm -Ln --tun-info lacks %q:\n%s", want, out)
		}
	}
	// A fresh reader sees exactly the wanted tunnels: nothing to change.
	d2, err := New(WithNetNS(nsFD(t, lb)), WithStateDir(t.TempDir()), WithProcSys(""))
	must(t, err)
	defer d2.Close()
	must(t, d2.Reconcile(context.Background(), st))
	if _, w := d2.Messages(); w != 0 {
		t.Fatalf("reading back differs from what was written: %d writes\n%s", w, out)
	}
	// Another GUE port is one request, and the kernel has it.
	st.Services[1] = tun(81, dataplane.Tunnel{Type: dataplane.GUE, Port: 7080, Checksum: dataplane.NoChecksum})
	must(t, d2.Reconcile(context.Background(), st))
	if _, w := d2.Messages(); w != 1 {
		t.Errorf("changing a tunnel took %d writes, want 1", w)
	}
	if out := ipvsadm(t, lb, "-Ln", "--tun-info"); !strings.Contains(out, "Tunnel  gue:7080") || strings.Contains(out, "gue:6080") {
		t.Errorf("after the change, ipvsadm -Ln --tun-info:\n%s", out)
	}
}
