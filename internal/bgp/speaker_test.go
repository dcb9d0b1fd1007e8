package bgp

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"halb/internal/config"
)

func TestFromConfig(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := config.BGP{ASN: 65010, Peers: []config.BGPPeer{{
		Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, HoldTime: config.Duration(3 * time.Second),
		PasswordFile: pw, BFD: &config.BFD{Interval: config.Duration(100 * time.Millisecond), Multiplier: 3},
	}}}
	got, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	p := got.Peers[0]
	if got.ASN != 65010 || p.Password != "s3cret" || p.HoldTime != 3*time.Second || *p.BFD != (BFD{100 * time.Millisecond, 3}) {
		t.Errorf("FromConfig = %+v, peer %+v", got, p)
	}
	c.Peers[0].PasswordFile = filepath.Join(t.TempDir(), "missing")
	if _, err := FromConfig(c); err == nil || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Errorf("missing password file: err = %v, want an error naming the peer", err)
	}
}

func TestAPIPeer(t *testing.T) {
	p := Peer{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, Port: 1179, HoldTime: 9 * time.Second,
		Password: "pw", Multihop: true, BFD: &BFD{100 * time.Millisecond, 3}}
	a := apiPeer(p, true)
	tm := a.Timers.Config
	if a.Conf.PeerAsn != 65000 || a.Conf.AuthPassword != "pw" || a.Transport.RemotePort != 1179 {
		t.Errorf("conf %v transport %v", a.Conf, a.Transport)
	}
	if tm.HoldTime != 9 || tm.KeepaliveInterval != 3 || tm.IdleHoldTimeAfterReset != idleHoldAfterReset || tm.ConnectRetry != connectRetry {
		t.Errorf("timers %v", tm)
	}
	if !a.EbgpMultihop.GetEnabled() || a.EbgpMultihop.MultihopTtl != 255 {
		t.Errorf("multihop %v", a.EbgpMultihop)
	}
	if b := a.Bfd; !b.GetEnabled() || b.DesiredMinimumTxInterval != 100000 || b.RequiredMinimumReceive != 100000 || b.DetectionMultiplier != 3 {
		t.Errorf("bfd %v", b)
	}
	if apiPeer(p, false).Bfd != nil {
		t.Error("BFD configured while off")
	}
	if f := a.AfiSafis[0].Config.Family; f.Afi.String() != "AFI_IP" {
		t.Errorf("family %v", f)
	}
}

func TestAPIPath(t *testing.T) {
	for _, tt := range []struct {
		prefix string
		family gobgp.Family
	}{
		{"203.0.113.10/32", gobgp.RF_IPv4_UC},
		{"2001:db8::10/128", gobgp.RF_IPv6_UC},
	} {
		p, err := apiPath(netip.MustParsePrefix(tt.prefix), Attrs{Communities: []uint32{65010<<16 | 100}, MED: 7})
		if err != nil {
			t.Fatal(err)
		}
		if p.Family != tt.family || p.Nlri.String() != tt.prefix {
			t.Errorf("%s: family %v nlri %v", tt.prefix, p.Family, p.Nlri)
		}
		var nh netip.Addr
		var med uint32
		var comms []uint32
		for _, a := range p.Attrs {
			switch a := a.(type) {
			case *gobgp.PathAttributeNextHop:
				nh = a.Value
			case *gobgp.PathAttributeMpReachNLRI:
				nh = a.Nexthop
			case *gobgp.PathAttributeMultiExitDisc:
				med = a.Value
			case *gobgp.PathAttributeCommunities:
				comms = a.Value
			}
		}
		// An unspecified next hop is gobgp's cue to put the session's own
		// local address there.
		if !nh.IsUnspecified() || med != 7 || !slices.Equal(comms, []uint32{65010<<16 | 100}) {
			t.Errorf("%s: next hop %v, MED %d, communities %v", tt.prefix, nh, med, comms)
		}
	}
}

// Routes given before Run are kept; announcing again and withdrawing
// twice are no-ops.
func TestAnnounceBeforeRun(t *testing.T) {
	sp, err := New(Config{ASN: 65010, Peers: []Peer{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000}}}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParsePrefix("203.0.113.10/32")
	for range 2 {
		if err := sp.Announce(vip, Attrs{MED: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if got := sp.Announced(); !slices.Equal(got, []netip.Prefix{vip}) {
		t.Errorf("Announced = %v", got)
	}
	for range 2 {
		if err := sp.Withdraw(vip); err != nil {
			t.Fatal(err)
		}
	}
	if got := sp.Announced(); len(got) != 0 {
		t.Errorf("Announced after withdraw = %v", got)
	}
	if ps := sp.Peers(); len(ps) != 1 || ps[0].State != StateIdle {
		t.Errorf("Peers = %+v", ps)
	}
	if err := sp.Close(); err != nil {
		t.Errorf("Close before Run: %v", err)
	}
	if _, err := New(Config{ASN: 65010}, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Error("New without peers: no error")
	}
}

// The tap reports the notifications gobgp logs, with the peer from the
// logger's attributes, and passes records on only at the handler's level.
func TestNotificationTap(t *testing.T) {
	var got []string
	var logged strings.Builder
	next := slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn})
	tap := &notificationTap{next: next, onNotification: func(peer netip.Addr, sent bool, code, subcode uint8, reason string) {
		got = append(got, peer.String()+map[bool]string{true: " sent ", false: " received "}[sent]+gobgp.NewNotificationErrorCode(code, subcode).String()+" "+reason)
	}}
	log := slog.New(tap).With("Topic", "Peer", "Key", "192.0.2.1")
	log.Info("sent notification", "State", "BGP_FSM_ACTIVE", "Code", 2, "Subcode", 2)
	log.Info("received notification", "Code", 6, "Subcode", 4, "Communicated-Reason", "BFD is down")
	log.Info("Peer Up")
	want := []string{"192.0.2.1 sent code 2(open) subcode 2(bad peer as) ", "192.0.2.1 received code 6(cease) subcode 4(administrative reset) BFD is down"}
	if !slices.Equal(got, want) {
		t.Errorf("notifications %q, want %q", got, want)
	}
	if logged.Len() != 0 {
		t.Errorf("info records passed to a warn handler: %s", logged.String())
	}
	log.Warn("hold timer expired")
	if !strings.Contains(logged.String(), "hold timer expired") {
		t.Errorf("warning not passed on: %q", logged.String())
	}
}
