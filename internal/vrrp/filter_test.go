package vrrp

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/bpf"

	"halb/internal/config"
	"halb/internal/vrrp/ah"
	"halb/internal/vrrp/packet"
)

var (
	filterSrc   = netip.MustParseAddr("192.0.2.1")
	filterGroup = netip.MustParseAddr("224.0.0.18")
	filterPeer  = netip.MustParseAddr("192.0.2.2")
)

// advertBytes is a valid advert of version v for vrid from filterSrc to
// dst.
func advertBytes(t *testing.T, v int, vrid uint8, dst netip.Addr) []byte {
	t.Helper()
	a := packet.Advert{Version: v, VRID: vrid, Priority: 100, Interval: time.Second,
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.100")}}
	src := filterSrc
	if dst.Is6() {
		src, a.Addrs = netip.MustParseAddr("fe80::1"), []netip.Addr{netip.MustParseAddr("2001:db8::100")}
	}
	b, err := a.Marshal(src, dst, packet.ChecksumPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ipv4Datagram puts msg behind an IPv4 header (with options words of
// options) with ttl, to dst.
func ipv4Datagram(msg []byte, ttl uint8, dst netip.Addr, options int) []byte {
	hl := 20 + 4*options
	d := make([]byte, hl+len(msg))
	d[0], d[8], d[9] = 0x40|byte(hl/4), ttl, packet.Protocol
	src, to := filterSrc.As4(), dst.As4()
	copy(d[12:], src[:])
	copy(d[16:], to[:])
	copy(d[hl:], msg)
	return d
}

// runFilter says whether the program for family, withAH and spec lets
// datagram d through.
func runFilter(t *testing.T, family int, withAH bool, spec filterSpec, d []byte) bool {
	t.Helper()
	prog, err := filterProgram(family, withAH, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatalf("assemble: %v", err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("filter program: %v", err)
	}
	n, err := vm.Run(d)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestFilterIPv4(t *testing.T) {
	ours := filterSpec{3: {9, 42}}
	v3 := advertBytes(t, 3, 9, filterGroup)
	typ2 := append([]byte{0x32}, v3[1:]...)
	for _, c := range []struct {
		name string
		d    []byte
		want bool
	}{
		{"ours", ipv4Datagram(v3, 255, filterGroup, 0), true},
		{"our other VRID", ipv4Datagram(advertBytes(t, 3, 42, filterGroup), 255, filterGroup, 0), true},
		{"with IP options", ipv4Datagram(v3, 255, filterGroup, 2), true},
		{"unicast, routed (TTL 64)", ipv4Datagram(advertBytes(t, 3, 9, filterPeer), 64, filterPeer, 0), true},
		{"multicast with TTL 254", ipv4Datagram(v3, 254, filterGroup, 0), false},
		{"another VRID", ipv4Datagram(advertBytes(t, 3, 10, filterGroup), 255, filterGroup, 0), false},
		{"another version", ipv4Datagram(advertBytes(t, 2, 9, filterGroup), 255, filterGroup, 0), false},
		{"another type", ipv4Datagram(typ2, 255, filterGroup, 0), false},
		{"truncated", ipv4Datagram([]byte{0x31, 9}, 255, filterGroup, 0), false},
		{"header alone", ipv4Datagram(nil, 255, filterGroup, 0)[:20], false},
	} {
		if got := runFilter(t, 4, false, ours, c.d); got != c.want {
			t.Errorf("%s: let through %v, want %v", c.name, got, c.want)
		}
	}
	both := filterSpec{2: {9}, 3: {9}}
	for _, v := range []int{2, 3} {
		if !runFilter(t, 4, false, both, ipv4Datagram(advertBytes(t, v, 9, filterGroup), 255, filterGroup, 0)) {
			t.Errorf("VRRPv%d dropped by a filter for versions 2 and 3", v)
		}
	}
}

func TestFilterIPv6(t *testing.T) {
	group := netip.MustParseAddr("ff02::12")
	ours := filterSpec{3: {9}}
	for _, c := range []struct {
		name string
		d    []byte
		want bool
	}{
		{"ours", advertBytes(t, 3, 9, group), true},
		{"another VRID", advertBytes(t, 3, 8, group), false},
		{"another version", append([]byte{0x21}, advertBytes(t, 3, 9, group)[1:]...), false},
		{"truncated", []byte{0x31, 9, 100, 1}, false},
	} {
		if got := runFilter(t, 6, false, ours, c.d); got != c.want {
			t.Errorf("%s: let through %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFilterAH(t *testing.T) {
	ours := filterSpec{2: {9}}
	sealed := func(vrid uint8, dst netip.Addr) []byte {
		d, err := ah.Seal{Src: filterSrc, Dst: dst, ID: 1, Seq: 1, Key: "secret"}.Datagram(advertBytes(t, 2, vrid, dst))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	otherNext := sealed(9, filterGroup)
	otherNext[20] = 6
	lowTTL := sealed(9, filterGroup)
	lowTTL[8] = 1
	for _, c := range []struct {
		name string
		d    []byte
		want bool
	}{
		{"ours", sealed(9, filterGroup), true},
		{"ours, unicast", sealed(9, filterPeer), true},
		{"another VRID", sealed(7, filterGroup), false},
		{"not VRRP under AH", otherNext, false},
		{"multicast with TTL 1", lowTTL, false},
		{"AH header cut short", sealed(9, filterGroup)[:28], false},
		{"VRRP cut short", sealed(9, filterGroup)[:48], false},
	} {
		if got := runFilter(t, 4, true, ours, c.d); got != c.want {
			t.Errorf("%s: let through %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFilterNoInstances(t *testing.T) {
	d := ipv4Datagram(advertBytes(t, 3, 9, filterGroup), 255, filterGroup, 0)
	if runFilter(t, 4, false, filterSpec{}, d) {
		t.Error("a socket without instances lets adverts through")
	}
}

func TestFilterTooManyVRIDs(t *testing.T) {
	var ids []int
	for id := 1; id <= 255; id++ {
		ids = append(ids, id)
	}
	if _, err := filterProgram(4, true, filterSpec{2: ids, 3: ids}); err == nil {
		t.Error("a program too long to jump over was built")
	}
	spec := filterSpec{3: ids[:200]}
	d := ipv4Datagram(advertBytes(t, 3, 200, filterGroup), 255, filterGroup, 0)
	if !runFilter(t, 4, false, spec, d) {
		t.Error("the last of 200 VRIDs dropped")
	}
}

// TestFilterVersionsApart: each version lets through its own VRIDs.
func TestFilterVersionsApart(t *testing.T) {
	spec := filterSpec{2: {10}, 3: {9}}
	for _, c := range []struct {
		v    int
		vrid uint8
		want bool
	}{{3, 9, true}, {2, 10, true}, {2, 9, false}, {3, 10, false}} {
		d := ipv4Datagram(advertBytes(t, c.v, c.vrid, filterGroup), 255, filterGroup, 0)
		if got := runFilter(t, 4, false, spec, d); got != c.want {
			t.Errorf("VRRPv%d for VRID %d: let through %v, want %v", c.v, c.vrid, got, c.want)
		}
	}
}

// TestRunnerFilterFollowsReload: the socket's filter lets through the
// VRIDs and versions of the instances on it, as a reload changes them,
// and adverts of another version until they were warned of.
func TestRunnerFilterFollowsReload(t *testing.T) {
	tr := newTestRunner(t, oneInstance, "eth0")
	if want := (filterSpec{2: {10}, 3: {10}}); !tr.conn.spec.equal(want) {
		t.Fatalf("filter %+v at start, want %+v: another version passes until it is warned of", tr.conn.spec, want)
	}
	tr.receive(received{sock: tr.conn, hdr: packet.Header{Src: filterPeer, Dst: packet.GroupIPv4, TTL: 255},
		msg: advertBytes(t, 2, 10, packet.GroupIPv4)})
	if want := (filterSpec{3: {10}}); !tr.conn.spec.equal(want) {
		t.Fatalf("filter %+v after a VRRPv2 advert was warned of, want %+v", tr.conn.spec, want)
	}
	cfg, diags := config.Parse("t.yaml", []byte(oneInstance+`    - name: v2
      interface: eth0
      vrid: 20
      version: 2
      priority: 100
      advert_interval: 1s
      vips: [192.0.2.101/24]
`), config.Options{})
	if cfg == nil || len(diags.Errors()) > 0 {
		t.Fatalf("config: %s", diags)
	}
	if err := tr.apply(cfg); err != nil {
		t.Fatal(err)
	}
	if want := (filterSpec{2: {20}, 3: {10, 20}}); !tr.conn.spec.equal(want) {
		t.Fatalf("filter %+v after the reload, want %+v", tr.conn.spec, want)
	}
}

// TestRunnerCountsOverflow: the datagrams the socket dropped, as the
// kernel counts them, are rejected as overflow for its instances.
func TestRunnerCountsOverflow(t *testing.T) {
	tr := newTestRunner(t, oneInstance, "eth0")
	msg := advertBytes(t, 3, 10, packet.GroupIPv4)
	for _, drops := range []uint32{0, 5, 5, 12} {
		tr.receive(received{sock: tr.conn, hdr: packet.Header{Src: filterPeer, Dst: packet.GroupIPv4, TTL: 255}, msg: msg, drops: drops})
	}
	c := tr.counters.of("vi")
	if got := c.rejected[slices.Index(rejectReasons[:], RejectOverflow)].Load(); got != 12 {
		t.Fatalf("%d counted as overflow, want 12", got)
	}
}
