package keepalived

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
	"halb/internal/vrrp/packet"
)

// TestKeepalivedAdvertsMatchConversion runs keepalived (VRRP only) on
// corpus files in a lab (the site's own files are in
// TestSiteAdvertsSameAsKeepalived), captures its adverts on the wire, and checks that
// the configuration halb reads from the same file says the same: VRID,
// version, priority, interval, addresses, authentication, source and
// destination of every instance.
func TestKeepalivedAdvertsMatchConversion(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "keepalived", "tcpdump", "ip")
	cases := []struct {
		name, path, id string
		ifaces         map[string][]string
		// neighbours are unicast peers, given a MAC so that adverts to
		// them leave the host.
		neighbours map[string]string
	}{
		{name: "corpus/haproxy-unicast-pair.conf", path: "testdata/corpus/haproxy-unicast-pair.conf", id: "lb1",
			ifaces:     map[string][]string{"ens3": {"198.51.100.21/24"}},
			neighbours: map[string]string{"198.51.100.22": "ens3"}},
		{name: "corpus/ipv6-dual.conf", path: "testdata/corpus/ipv6-dual.conf", id: "lb1",
			ifaces: map[string][]string{"eth0": {"203.0.113.3/24", "2001:db8::3/64"}, "eth1": {"198.51.100.3/24"}}},
		{name: "corpus/dns-nat.conf", path: "testdata/corpus/dns-nat.conf", id: "lb1",
			ifaces: map[string][]string{"eth0": {"192.0.2.3/24"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := Load(tc.path, Options{ConfigID: tc.id}, config.Options{Hostname: "h"})
			if cfg == nil {
				t.Fatalf("does not load:\n%s", diags)
			}
			lab := labtest.NewLab(t)
			sw, err := lab.AddSwitch("sw")
			must(t, err)
			out, err := sw.Run("ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
			if err != nil {
				t.Fatalf("bridge: %v: %s", err, out)
			}
			h, err := lab.AddHost("ka")
			must(t, err)
			for name, addrs := range tc.ifaces {
				_, err := lab.Connect(h, sw, name, addrs...)
				must(t, err)
			}
			for peer, dev := range tc.neighbours {
				must(t, h.IP("neigh", "add", peer, "lladdr", "02:00:5e:00:00:99", "dev", dev))
			}
			adverts := captureKeepalived(t, sw, h, tc.path, tc.id, len(cfg.VRRP.Instances))
			for _, in := range cfg.VRRP.Instances {
				checkAdverts(t, in, tc.ifaces, adverts)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// captured is one advert seen on the wire.
type captured struct {
	src, dst netip.Addr
	advert   *packet.Advert
}

// captureKeepalived starts tcpdump on the lab's bridge and keepalived on
// the file, and returns the adverts seen once every instance has sent two
// (at most 30 s).
func captureKeepalived(t *testing.T, sw, h *netns.Host, path, id string, instances int) []captured {
	t.Helper()
	dir := t.TempDir()
	pcap := filepath.Join(dir, "vrrp.pcap")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dump := sw.Command(ctx, "tcpdump", "-i", "br0", "-U", "-n", "-w", pcap, "ip proto 112 or ip6 proto 112")
	var dumpOut safeBuffer
	dump.Stderr = &dumpOut
	must(t, dump.Start())
	defer func() {
		dump.Process.Signal(syscall.SIGTERM)
		dump.Wait()
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(dumpOut.String(), "listening on"); {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start: %s", dumpOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	abs, err := filepath.Abs(path)
	must(t, err)
	ka := h.Command(ctx, "keepalived", "--dont-fork", "--log-console", "--vrrp", "--use-file", abs, "--config-id", id,
		"--pid", filepath.Join(dir, "k.pid"), "--vrrp_pid", filepath.Join(dir, "v.pid"))
	var kaOut safeBuffer
	ka.Stdout, ka.Stderr = &kaOut, &kaOut
	must(t, ka.Start())
	defer func() {
		ka.Process.Signal(syscall.SIGTERM)
		ka.Wait()
	}()
	var got []captured
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got = readPcap(t, pcap)
		type key struct {
			vrid uint8
			v6   bool
		}
		per := map[key]int{}
		for _, c := range got {
			per[key{c.advert.VRID, c.src.Is6()}]++
		}
		done := len(per) >= instances
		for _, n := range per {
			done = done && n >= 2
		}
		if done {
			return got
		}
	}
	t.Fatalf("keepalived did not send two adverts per instance in 30 s (%d captured); its log:\n%s", len(got), kaOut.String())
	return nil
}

// readPcap reads the VRRP packets of a pcap file of Ethernet frames; a
// record still being written is left for the next read.
func readPcap(t *testing.T, path string) []captured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 24 {
		return nil
	}
	if binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("%s: not a little-endian pcap of Ethernet frames", path)
	}
	var out []captured
	for b = b[24:]; len(b) >= 16; {
		n := int(binary.LittleEndian.Uint32(b[8:]))
		if len(b) < 16+n {
			break
		}
		frame := b[16 : 16+n]
		b = b[16+n:]
		if c, ok := parseFrame(frame); ok {
			out = append(out, c)
		}
	}
	return out
}

func parseFrame(f []byte) (captured, bool) {
	if len(f) < 14 {
		return captured{}, false
	}
	var h packet.Header
	var payload []byte
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		ip := f[14:]
		if len(ip) < 20 || ip[9] != 112 {
			return captured{}, false
		}
		ihl := int(ip[0]&0x0f) * 4
		h.Src, _ = netip.AddrFromSlice(ip[12:16])
		h.Dst, _ = netip.AddrFromSlice(ip[16:20])
		h.TTL = int(ip[8])
		payload = ip[ihl:]
	case 0x86dd:
		ip := f[14:]
		if len(ip) < 40 || ip[6] != 112 {
			return captured{}, false
		}
		h.Src, _ = netip.AddrFromSlice(ip[8:24])
		h.Dst, _ = netip.AddrFromSlice(ip[24:40])
		h.TTL = int(ip[7])
		payload = ip[40:]
	default:
		return captured{}, false
	}
	a, err := packet.Decode(h, payload)
	if err != nil {
		return captured{}, false
	}
	return captured{h.Src, h.Dst, a}, true
}

// checkAdverts compares an instance of the converted configuration with
// the adverts keepalived sent for it.
func checkAdverts(t *testing.T, in config.Instance, ifaces map[string][]string, adverts []captured) {
	t.Helper()
	var mine []captured
	for _, c := range adverts {
		if int(c.advert.VRID) == in.VRID && c.src.Is6() == (in.Family() == 6) {
			mine = append(mine, c)
		}
	}
	if len(mine) == 0 {
		t.Errorf("instance %s: no advert with VRID %d", in.Name, in.VRID)
		return
	}
	wantDst := netip.MustParseAddr("224.0.0.18")
	if in.Family() == 6 {
		wantDst = netip.MustParseAddr("ff02::12")
	}
	if in.Unicast() {
		wantDst = in.UnicastPeers[0]
	}
	var wantVIPs []netip.Addr
	for _, p := range in.VIPs {
		wantVIPs = append(wantVIPs, p.Addr())
	}
	for _, c := range mine {
		a := c.advert
		got := fmt.Sprintf("v%d prio %d interval %s addrs %v dst %s", a.Version, a.Priority, a.Interval, a.Addrs, c.dst)
		want := fmt.Sprintf("v%d prio %d interval %s addrs %v dst %s", in.Version, in.Priority, in.AdvertInterval, wantVIPs, wantDst)
		if in.Family() == 6 {
			// IPv6 adverts list link-local addresses first; keepalived
			// lists the configured ones as they are.
			slices.SortFunc(a.Addrs, netip.Addr.Compare)
			slices.SortFunc(wantVIPs, netip.Addr.Compare)
		}
		if got != want {
			t.Errorf("instance %s: keepalived sent %s; halb's configuration says %s", in.Name, got, want)
		}
		if in.Version == 2 {
			wantAuth := uint8(packet.AuthNone)
			if in.AuthPassword != "" {
				wantAuth = packet.AuthSimple
			}
			if a.AuthType != wantAuth || (wantAuth == packet.AuthSimple && a.Auth != packet.Password(in.AuthPassword)) {
				t.Errorf("instance %s: keepalived's authentication %d %q, halb's %d %q", in.Name, a.AuthType, a.Auth, wantAuth, in.AuthPassword)
			}
		}
		if in.UnicastSource.IsValid() && c.src != in.UnicastSource {
			t.Errorf("instance %s: keepalived sent from %s, halb's unicast_source is %s", in.Name, c.src, in.UnicastSource)
		}
		if !in.UnicastSource.IsValid() && !hostHas(ifaces[in.Interface], c.src) && !c.src.IsLinkLocalUnicast() {
			t.Errorf("instance %s: keepalived sent from %s, not an address of %s", in.Name, c.src, in.Interface)
		}
	}
}

func hostHas(prefixes []string, a netip.Addr) bool {
	for _, p := range prefixes {
		if pfx, err := netip.ParsePrefix(p); err == nil && pfx.Addr() == a {
			return true
		}
	}
	return false
}
