package health

import (
	"maps"
	"regexp"
	"slices"
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
	r.startNginx()
	// Count the SYNs that leave with mark 7 from 198.51.100.1.
	r.countOutgoing("meta mark 7 ip saddr 198.51.100.1 tcp dport 80 tcp flags & (syn | ack) == syn")
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
	var tl tally
	rec := r.check(cfg, WithResultHook(tl.add))
	rec.wait(0, "tcp", true, 5*time.Second)
	rec.wait(0, "http", true, 5*time.Second)
	time.Sleep(2 * time.Second)
	syns := r.outgoingCounts(1)[0]
	ok, failures := tl.result()
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

// countOutgoing counts, in the load balancer's namespace, the packets
// leaving it that match each of the nft matches.
func (r *rig) countOutgoing(matches ...string) {
	r.t.Helper()
	labtest.RequireTool(r.t, "nft")
	script := "add table inet halbtest; add chain inet halbtest out { type filter hook output priority 0; policy accept; }"
	for _, m := range matches {
		script += "; add rule inet halbtest out " + m + " counter"
	}
	r.run(r.lb, "nft", script)
}

var counterPackets = regexp.MustCompile(`counter packets (\d+)`)

// outgoingCounts reads the n counters countOutgoing set up, in order.
func (r *rig) outgoingCounts(n int) []int {
	r.t.Helper()
	out, err := r.lb.Run("nft", "list", "chain", "inet", "halbtest", "out")
	if err != nil {
		r.t.Fatalf("nft: %v: %s", err, out)
	}
	m := counterPackets.FindAllSubmatch(out, -1)
	if len(m) != n {
		r.t.Fatalf("want %d counters in %s", n, out)
	}
	counts := make([]int, n)
	for i := range m {
		counts[i], _ = strconv.Atoi(string(m[i][1]))
	}
	return counts
}

// tally counts passed checks by type and keeps the failures' details; its
// add is a result hook.
type tally struct {
	mu       sync.Mutex
	passed   map[string]int
	failures []string
}

func (tl *tally) add(res CheckResult) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if !res.Result.OK {
		tl.failures = append(tl.failures, res.Result.Detail)
		return
	}
	if tl.passed == nil {
		tl.passed = map[string]int{}
	}
	tl.passed[res.Type]++
}

func (tl *tally) result() (passed map[string]int, failures []string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	passed = maps.Clone(tl.passed)
	if passed == nil {
		passed = map[string]int{}
	}
	return passed, slices.Clone(tl.failures)
}
