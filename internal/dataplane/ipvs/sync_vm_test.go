package ipvs

import (
	"bufio"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"halb/internal/lab/vm"
	"halb/internal/vrrp/fsm"
)

// TestGuestSyncDaemons runs two load balancers whose sync daemons follow
// the VRRP state of web-a: a connection made through the master appears
// in the backup's connection table; a state flip swaps the daemons.
func TestGuestSyncDaemons(t *testing.T) {
	vm.RequireGuest(t)
	l := newDRLab(t, 2)
	cfg := siteConfig(t, "api: {", "ipvs_sync: {instance: web-a, interface: eth0, sync_id: 9}\napi: {")
	a, b := newNode(t, l.lbs[0], t.TempDir()), newNode(t, l.lbs[1], t.TempDir())
	a.apply(t, desired(cfg, map[string]string{"web-a": fsm.Master.String()}))
	b.apply(t, desired(cfg, map[string]string{"web-a": fsm.Backup.String()}))
	assertDaemons(t, a, "master@eth0#9")
	assertDaemons(t, b, "backup@eth0#9")

	// A connection through the master, with enough packets (the kernel
	// syncs a connection at its third packet by default).
	c := l.connect(t, "192.0.2.9:443")
	r := bufio.NewReader(c)
	for i := range 3 {
		fmt.Fprintf(c, "more %d\n", i)
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	deadline := time.Now().Add(2*2*time.Second + time.Second) // the master sends at least every 2 s
	for {
		conns, err := b.ipvs.Conns()
		must(t, err)
		if found(conns, client) {
			break
		}
		if time.Now().After(deadline) {
			ac, _ := a.ipvs.Conns()
			t.Fatalf("the backup's table lacks %s after the deadline:\nbackup %+v\nmaster %+v", client, conns, ac)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The persistence template came along too: the backup would send
	// this client to the same server.
	conns, _ := b.ipvs.Conns()
	tmpl := false
	for _, cn := range conns {
		tmpl = tmpl || (cn.Template() && cn.Client.Addr() == client.Addr())
	}
	if !tmpl {
		t.Errorf("the backup has no persistence template for %s: %+v", client.Addr(), conns)
	}

	// VRRP flips: the daemons follow.
	a.apply(t, desired(cfg, map[string]string{"web-a": fsm.Backup.String()}))
	b.apply(t, desired(cfg, map[string]string{"web-a": fsm.Master.String()}))
	assertDaemons(t, a, "backup@eth0#9")
	assertDaemons(t, b, "master@eth0#9")
	// FAULT (or INIT): no daemon.
	a.apply(t, desired(cfg, map[string]string{"web-a": fsm.Fault.String()}))
	assertDaemons(t, a)
	// mode both: keepalived's way, both daemons whatever the state.
	both := siteConfig(t, "api: {", "ipvs_sync: {instance: web-a, interface: eth0, sync_id: 9, mode: both}\napi: {")
	a.apply(t, desired(both, map[string]string{"web-a": fsm.Backup.String()}))
	assertDaemons(t, a, "master@eth0#9", "backup@eth0#9")
}

func found(conns []Conn, client netip.AddrPort) bool {
	for _, c := range conns {
		if c.Client == client {
			return true
		}
	}
	return false
}

func assertDaemons(t *testing.T, n *node, want ...string) {
	t.Helper()
	ds, err := n.ipvs.SyncDaemons()
	must(t, err)
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s@%s#%d", d.Role(), d.Interface, d.SyncID))
	}
	if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("%s: sync daemons %v, want %v", n.h.Name, got, want)
	}
}
