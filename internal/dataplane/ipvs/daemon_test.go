package ipvs

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
)

// TestDaemonMessages checks the sync-daemon requests byte for byte against
// a fake generic netlink peer that keeps the daemons as the kernel does.
func TestDaemonMessages(t *testing.T) {
	family := genetlink.Family{ID: 42, Name: "IPVS", Version: 1}
	var running [][]byte // the encoded daemon attribute of each running daemon
	var cmds []uint8
	conn := genltest.Dial(genltest.ServeFamily(family, func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		cmds = append(cmds, greq.Header.Command)
		if greq.Header.Version != 1 {
			t.Errorf("version %d", greq.Header.Version)
		}
		switch greq.Header.Command {
		case cmdNewDaemon:
			if nreq.Header.Flags&netlink.Acknowledge == 0 {
				t.Error("new daemon without ack flag")
			}
			running = append(running, greq.Data)
			return []genetlink.Message{{}}, nil
		case cmdDelDaemon:
			d, _, err := decodeDaemon(greq.Data)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range running {
				if rd, _, _ := decodeDaemon(r); rd.Backup == d.Backup {
					running = append(running[:i], running[i+1:]...)
					return []genetlink.Message{{}}, nil
				}
			}
			return nil, genltest.Error(3) // ESRCH
		case cmdGetDaemon:
			if nreq.Header.Flags&netlink.Dump == 0 {
				t.Error("get daemon without dump flag")
			}
			var out []genetlink.Message
			for _, r := range running {
				out = append(out, genetlink.Message{Header: greq.Header, Data: r})
			}
			return out, nil
		}
		t.Fatalf("unexpected command %d", greq.Header.Command)
		return nil, nil
	}))
	dc, err := newDaemonConn(conn)
	if err != nil {
		t.Fatal(err)
	}
	master := Daemon{Interface: "eth0", SyncID: 7, MaxLen: 1400, McastGroup: netip.MustParseAddr("224.0.0.81"), McastPort: 8848, McastTTL: 2}
	backup := Daemon{Backup: true, Interface: "eth1", SyncID: 7, McastGroup: netip.MustParseAddr("ff02::81")}
	if err := dc.start(master); err != nil {
		t.Fatal(err)
	}
	if err := dc.start(backup); err != nil {
		t.Fatal(err)
	}
	// The port travels in network byte order: 8848 = 0x2290.
	if b := running[0]; !strings.Contains(string(b), "\x22\x90") {
		t.Errorf("master daemon attribute %x lacks the port in network order", b)
	}
	got, err := dc.list()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Daemon{master, backup}; !reflect.DeepEqual(got, want) {
		t.Fatalf("list = %+v, want %+v", got, want)
	}
	if err := dc.stop(master); err != nil {
		t.Fatal(err)
	}
	if got, _ := dc.list(); len(got) != 1 || !got[0].Backup {
		t.Fatalf("after stopping the master: %+v", got)
	}
	if err := dc.stop(master); err == nil {
		t.Fatal("stopping a stopped daemon: want the kernel's error")
	}
	if want := []uint8{cmdNewDaemon, cmdNewDaemon, cmdGetDaemon, cmdDelDaemon, cmdGetDaemon, cmdDelDaemon}; !reflect.DeepEqual(cmds, want) {
		t.Errorf("commands %v, want %v", cmds, want)
	}
}

// The stop request carries the state only: the kernel needs nothing else.
func TestStopRequestCarriesStateOnly(t *testing.T) {
	b, err := encodeDaemon(Daemon{Backup: true, Interface: "eth0", SyncID: 3}, false)
	if err != nil {
		t.Fatal(err)
	}
	// nested header (4) + state attribute (8)
	if len(b) != 12 {
		t.Fatalf("stop request is %d bytes (%x), want 12", len(b), b)
	}
	d, ok, err := decodeDaemon(b)
	if err != nil || !ok || !d.Backup || d.Interface != "" {
		t.Fatalf("decoded %+v %v %v", d, ok, err)
	}
}

func TestParseConns(t *testing.T) {
	text := `Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C0000201 9C40 C0000209 0050 C633640B 0050 ESTABLISHED      899
TCP C0000201 0000 C0000209 0000 C633640B 0000 NONE             299
IP  C0000201 0000 1BD026A3 0000 C633640B 0000 ASSURED          299
TCP 2001:0db8:0000:0000:0000:0000:0000:0001 9C41 2001:0db8:0000:0000:0000:0000:0000:0009 01BB 2001:0db8:0001:0000:0000:0000:0000:0011 01BB SYN_RECV 59
`
	got, err := ParseConns(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []Conn{
		{Protocol: "tcp", Client: netip.MustParseAddrPort("192.0.2.1:40000"), Virtual: netip.MustParseAddrPort("192.0.2.9:80"),
			Real: netip.MustParseAddrPort("198.51.100.11:80"), State: "ESTABLISHED", Expires: 899 * time.Second},
		{Protocol: "tcp", Client: netip.MustParseAddrPort("192.0.2.1:0"), Virtual: netip.MustParseAddrPort("192.0.2.9:0"),
			Real: netip.MustParseAddrPort("198.51.100.11:0"), State: "NONE", Expires: 299 * time.Second},
		{Protocol: "ip", Client: netip.MustParseAddrPort("192.0.2.1:0"), Virtual: netip.MustParseAddrPort("27.208.38.163:0"),
			Real: netip.MustParseAddrPort("198.51.100.11:0"), State: "ASSURED", Expires: 299 * time.Second},
		{Protocol: "tcp", Client: netip.MustParseAddrPort("[2001:db8::1]:40001"), Virtual: netip.MustParseAddrPort("[2001:db8::9]:443"),
			Real: netip.MustParseAddrPort("[2001:db8:1::11]:443"), State: "SYN_RECV", Expires: 59 * time.Second},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got[0].Template() || !got[1].Template() || !got[2].Template() || got[3].Template() {
		t.Error("Template() wrong")
	}
}
