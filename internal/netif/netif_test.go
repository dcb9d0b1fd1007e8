package netif

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

const inNamespace = "HALB_NETIF_TEST_IN_NAMESPACE"

// TestLabAddrsAnnounceWatch adds, lists and removes VIPs, announces them
// (b captures the gratuitous ARP and the unsolicited NA) and watches a
// link go down, all in host a of a lab. The test binary re-runs itself
// inside a's namespace for the part that acts on a.
func TestLabAddrsAnnounceWatch(t *testing.T) {
	if os.Getenv(inNamespace) != "" {
		actOnA(t)
		return
	}
	labtest.RequireTool(t, "tcpdump")
	lab := labtest.NewLab(t)
	sw, err := lab.AddSwitch("sw")
	if err != nil {
		t.Fatal(err)
	}
	a, err := lab.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddHost("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(a, sw, "eth0", "192.0.2.1/24", "2001:db8::1/64"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(b, sw, "eth0", "192.0.2.2/24", "2001:db8::2/64"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	capture := b.Command(ctx, "tcpdump", "-i", "eth0", "-nn", "-l", "-c", "2", "arp or (icmp6 and ip6[40] == 136)")
	var out strings.Builder
	capture.Stdout = &out
	said := newSayWatch("listening on")
	capture.Stderr = said
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-said.seen:
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump is not listening after 10s: %s", said)
	}

	child := a.Command(ctx, os.Args[0], "-test.run=^TestLabAddrsAnnounceWatch$", "-test.v")
	child.Env = append(os.Environ(), inNamespace+"=1")
	if res, err := child.CombinedOutput(); err != nil {
		t.Fatalf("in namespace a: %v\n%s", err, res)
	}
	if err := capture.Wait(); err != nil {
		t.Fatalf("capture: %v: %s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"Request who-has 192.0.2.100 tell 192.0.2.100", "neighbor advertisement, tgt is 2001:db8::100"} {
		if !strings.Contains(got, want) {
			t.Errorf("b did not see %q:\n%s", want, got)
		}
	}
}

// sayWatch is a process's output that closes seen once it has said want.
type sayWatch struct {
	want string
	seen chan struct{}
	mu   sync.Mutex
	buf  strings.Builder
}

func newSayWatch(want string) *sayWatch { return &sayWatch{want: want, seen: make(chan struct{})} }

func (w *sayWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

func (w *sayWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func actOnA(t *testing.T) {
	vips := []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24"), netip.MustParsePrefix("2001:db8::100/64")}
	for range 2 { // adding twice is not an error
		if err := AddAddrs("eth0", vips); err != nil {
			t.Fatal(err)
		}
	}
	v4, err := Addrs("eth0", 4)
	if err != nil {
		t.Fatal(err)
	}
	v6, err := Addrs("eth0", 6)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(v4, vips[0]) || !slices.Contains(v6, vips[1]) {
		t.Fatalf("VIPs not added: %v %v", v4, v6)
	}
	if p, err := PrimaryAddr("eth0", 4, vips); err != nil || p != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("primary IPv4 %s %v", p, err)
	}
	if p, err := PrimaryAddr("eth0", 6, vips); err != nil || !p.IsLinkLocalUnicast() {
		t.Fatalf("primary IPv6 %s %v", p, err)
	}
	if err := Announce("eth0", []netip.Addr{vips[0].Addr(), vips[1].Addr()}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // removing twice is not an error
		if err := RemoveAddrs("eth0", vips); err != nil {
			t.Fatal(err)
		}
	}
	v4, _ = Addrs("eth0", 4)
	if slices.Contains(v4, vips[0]) {
		t.Fatal("VIP not removed")
	}

	changes := make(chan LinkChange, 16)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go WatchLinks(ctx, changes)
	time.Sleep(100 * time.Millisecond)
	if out, err := exec.Command("ip", "link", "set", "eth0", "down").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case c := <-changes:
			if c.Name == "eth0" && !c.Up {
				if up, err := LinkUp("eth0"); err != nil || up {
					t.Fatalf("LinkUp after down: %v %v", up, err)
				}
				return
			}
		case <-deadline:
			t.Fatal("no link-down change seen")
		}
	}
}
