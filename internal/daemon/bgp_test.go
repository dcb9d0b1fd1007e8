package daemon

import (
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"halb/internal/api"
)

// fakeLoopback keeps the addresses put on the loopback.
type fakeLoopback struct {
	mu    sync.Mutex
	addrs []netip.Prefix
}

func (l *fakeLoopback) Add(ps []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range ps {
		if !slices.Contains(l.addrs, p) {
			l.addrs = append(l.addrs, p)
		}
	}
	return nil
}

func (l *fakeLoopback) Remove(ps []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs = slices.DeleteFunc(l.addrs, func(p netip.Prefix) bool { return slices.Contains(ps, p) })
	return nil
}

func (l *fakeLoopback) list() []netip.Prefix {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.addrs)
}

// bgpSection announces the service's VIP to a peer that never answers.
const bgpSection = `bgp:
  asn: 65010
  router_id: 192.0.2.11
  drain_time: 0s
  peers: [{address: 127.0.0.1, asn: 65000, port: 9}]
  announce: [{vips: [192.0.2.9], communities: ["65010:100"], med: 5}]
`

func (h *harness) bgpStatus() *api.BGP {
	h.t.Helper()
	st, err := api.NewClient(h.d.config().API.Socket).Status(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return st.BGP
}

// TestBGPAnnouncer: with a bgp section the daemon puts the VIP on the
// loopback, announces it once the data plane is programmed and its
// service has quorum, shows the sessions and the VIP in status and
// metrics, withdraws on drain over the status socket, and refuses a
// reload that changes the peers.
func TestBGPAnnouncer(t *testing.T) {
	h := start(t, func(h *harness) string { return h.yaml("http://hook", "127.0.0.1:0", bgpSection) }, nil)
	h.waitFor("the VIP as a /32 on the loopback", func() bool {
		return slices.Equal(h.lo.list(), []netip.Prefix{netip.MustParsePrefix("192.0.2.9/32")})
	})
	h.waitFor("the VIP announced", func() bool {
		b := h.bgpStatus()
		return b != nil && len(b.Announced) == 1 && b.Announced[0].Announced
	})
	b := h.bgpStatus()
	if len(b.Sessions) != 1 || b.Sessions[0].Peer != "127.0.0.1" || b.Sessions[0].ASN != 65000 ||
		b.Sessions[0].State == "established" || b.Draining {
		t.Errorf("bgp status %+v", b)
	}
	if b.Announced[0] != (api.BGPVIP{VIP: "192.0.2.9", Announced: true, Reason: "ready"}) {
		t.Errorf("announced %+v", b.Announced[0])
	}
	if m := h.metrics(0); !strings.Contains(m, `halb_bgp_announced{vip="192.0.2.9"} 1`) ||
		!strings.Contains(m, `halb_bgp_session_up{peer="127.0.0.1"} 0`) {
		t.Errorf("metrics lack the BGP gauges:\n%s", grepLines(m, "halb_bgp"))
	}

	c := api.NewClient(h.d.config().API.Socket)
	d, err := c.Drain(t.Context(), true)
	if err != nil || !slices.Equal(d.Withdrawn, []string{"192.0.2.9"}) || len(d.Announced) != 0 || d.ActiveConnections != -1 {
		t.Errorf("drain: %+v, %v", d, err)
	}
	if b := h.bgpStatus(); !b.Draining || b.Announced[0].Announced || b.Announced[0].Reason != "draining" {
		t.Errorf("after drain: %+v", b)
	}
	h.waitFor("the route events", func() bool {
		evs, _ := h.d.eng.Events(t.Context(), 0)
		var kinds []string
		for _, e := range evs {
			if e.BGPRoute != nil {
				kinds = append(kinds, e.Summary)
			}
		}
		return slices.Equal(kinds, []string{"VIP 192.0.2.9 announced to the routers",
			"VIP 192.0.2.9 withdrawn from the routers: draining"})
	})

	err = h.reload(strings.Replace(h.yaml("http://hook", "127.0.0.1:0", bgpSection), "asn: 65000", "asn: 65001", 1))
	if err == nil || !strings.Contains(err.Error(), "bgp.peers: changed; restart halb") {
		t.Errorf("reload changing the peers: %v, want it refused", err)
	}
}

// TestDrainWithoutBGP: a node without BGP says there is nothing to drain.
func TestDrainWithoutBGP(t *testing.T) {
	h := start(t, func(h *harness) string { return h.yaml("http://hook", "") }, nil)
	_, err := api.NewClient(h.d.config().API.Socket).Drain(t.Context(), true)
	if err == nil || !strings.Contains(err.Error(), "nothing to drain") {
		t.Errorf("drain: %v, want nothing to drain", err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// metrics scrapes /metrics from the i-th listener opened.
func (h *harness) metrics(i int) string {
	h.t.Helper()
	h.mu.Lock()
	addr := h.lns[i].Addr().String()
	h.mu.Unlock()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}
