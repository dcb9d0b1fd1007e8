package ipvs

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzDecodeDaemon: a daemon the encoder writes reads back as it was, and
// any dump message is read or refused without a panic.
func FuzzDecodeDaemon(f *testing.F) {
	full, err := encodeDaemon(Daemon{Interface: "eth0", SyncID: 7, McastGroup: netip.MustParseAddr("224.0.0.81")}, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full, true, "eth0", uint32(3), uint16(1472), []byte{224, 0, 0, 81}, uint16(8848), uint8(1))
	f.Add([]byte{4, 0, 1, 0}, false, "bond0.12", uint32(0), uint16(0), []byte{}, uint16(0), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, backup bool, iface string, syncID uint32, maxLen uint16, group []byte, port uint16, ttl uint8) {
		_, _, _ = decodeDaemon(raw)
		g, ok := netip.AddrFromSlice(group)
		if strings.ContainsRune(iface, 0) || !ok && len(group) > 0 || int32(syncID) < 0 {
			return // not what the encoder is given
		}
		want := Daemon{Backup: backup, Interface: iface, SyncID: int(syncID), MaxLen: int(maxLen), McastGroup: g, McastPort: port, McastTTL: int(ttl)}
		b, err := encodeDaemon(want, true)
		if err != nil {
			t.Fatal(err)
		}
		got, ok, err := decodeDaemon(b)
		if err != nil || !ok || got != want {
			t.Errorf("encoded %+v, read %+v (%v, %v)", want, got, ok, err)
		}
	})
}

// FuzzParseConns: any text of /proc/net/ip_vs_conn parses or is refused
// without a panic; each connection read has valid addresses.
func FuzzParseConns(f *testing.F) {
	f.Add("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n" +
		"TCP C0000201 9C40 C0000209 0050 C633640B 0050 ESTABLISHED      899\n")
	f.Add("UDP 2001:0db8:0000:0000:0000:0000:0000:0001 9C41 2001:0db8:0000:0000:0000:0000:0000:0009 0035 2001:0db8:0001:0000:0000:0000:0000:0011 0035 UDP 59\n")
	f.Fuzz(func(t *testing.T, text string) {
		conns, err := ParseConns(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, c := range conns {
			if !c.Client.IsValid() || !c.Virtual.IsValid() || !c.Real.IsValid() {
				t.Errorf("%+v has an invalid address", c)
			}
		}
	})
}
