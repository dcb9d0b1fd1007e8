package health

import (
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestLabReusedSocketsKeepMarkAndSource runs TCP and HTTP checks often
// enough that the connector reuses their sockets, with a firewall mark
// and a source address, and checks that every check passed and that
// every connection the checks opened carried the mark and the source.
func TestLabReusedSocketsKeepMarkAndSource(t *testing.T) {
	r := newRig(t)
	labtest.RequireTool(t, "nft")
	r.startNginx()
	// Count the SYNs that leave with mark 7 from 198.51.100.1.
	r.run(r.lb, "nft", "add table inet halbtest; add chain inet halbtest out { type filter hook output priority 0; policy accept; }; "+
		"add rule inet halbtest out meta mark 7 ip saddr 198.51.100.1 tcp dport 80 tcp flags & (syn | ack) == syn counter")
	cfg := parse(t, `pools:
  tcp:
    initial_state: down
    check: {type: tcp, port: 80, fwmark: 7, source: 198.51.100.1, interval: 100ms, timeout: 90ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11}]
  http:
    initial_state: down
    check: {type: http, port: 80, path: /healthz, fwmark: 7, source: 198.51.100.1, interval: 100ms, timeout: 90ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11}]
`)
	var mu sync.Mutex
	ok := map[string]int{}
	var failures []string
	rec := r.check(cfg, WithResultHook(func(res CheckResult) {
		mu.Lock()
		defer mu.Unlock()
		if res.Result.OK {
			ok[res.Type]++
		} else {
			failures = append(failures, res.Result.Detail)
		}
	}))
	rec.wait(0, "tcp", true, 5*time.Second)
	rec.wait(0, "http", true, 5*time.Second)
	time.Sleep(2 * time.Second)
	out, err := r.lb.Run("nft", "list", "chain", "inet", "halbtest", "out")
	if err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in %s", out)
	}
	syns, _ := strconv.Atoi(string(m[1]))
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d TCP and %d HTTP checks passed; %d SYNs with the mark and source", ok["tcp"], ok["http"], syns)
	if len(failures) > 0 {
		t.Errorf("%d checks failed, the first: %s", len(failures), failures[0])
	}
	// Twenty checks each in two seconds: the sockets were reused.
	if ok["tcp"] < 15 || ok["http"] < 15 {
		t.Errorf("%d TCP and %d HTTP checks passed in 2s at 100ms intervals, want 15 or more each", ok["tcp"], ok["http"])
	}
	if syns < ok["tcp"]+ok["http"] {
		t.Errorf("%d SYNs with mark 7 from 198.51.100.1 for %d passed checks: some connections lost the mark or the source", syns, ok["tcp"]+ok["http"])
	}
}
