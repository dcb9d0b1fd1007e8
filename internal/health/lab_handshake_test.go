package health

import (
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// TestLabTCPCheckNeverAcksSynAck runs TCP checks often enough that the
// connector reuses their sockets and checks, on the packets leaving the
// load balancer, that no check completed the handshake: every check is
// SYN, SYN-ACK, RST, with no ACK of the SYN-ACK, so that the server's
// application never sees it.
func TestLabTCPCheckNeverAcksSynAck(t *testing.T) {
	r := newRig(t)
	labtest.RequireTool(t, "nft")
	r.startNginx()
	r.run(r.lb, "nft", "add table inet halbtest; add chain inet halbtest out { type filter hook output priority 0; policy accept; }; "+
		"add rule inet halbtest out ip daddr 198.51.100.11 tcp dport 80 tcp flags & (fin | syn | rst | psh | ack) == syn counter; "+
		"add rule inet halbtest out ip daddr 198.51.100.11 tcp dport 80 tcp flags & (fin | syn | rst | psh | ack) == ack counter")
	cfg := parse(t, `pools:
  tcp:
    initial_state: down
    check: {type: tcp, port: 80, interval: 100ms, timeout: 90ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11}]
`)
	var mu sync.Mutex
	passed := 0
	var failures []string
	rec := r.check(cfg, WithResultHook(func(res CheckResult) {
		mu.Lock()
		defer mu.Unlock()
		if res.Result.OK {
			passed++
		} else {
			failures = append(failures, res.Result.Detail)
		}
	}))
	rec.wait(0, "tcp", true, 5*time.Second)
	time.Sleep(2 * time.Second)
	out, err := r.lb.Run("nft", "list", "chain", "inet", "halbtest", "out")
	if err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindAllSubmatch(out, -1)
	if len(m) != 2 {
		t.Fatalf("want two counters in %s", out)
	}
	syns, _ := strconv.Atoi(string(m[0][1]))
	acks, _ := strconv.Atoi(string(m[1][1]))
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d TCP checks passed; %d SYNs, %d pure ACKs sent", passed, syns, acks)
	if len(failures) > 0 {
		t.Errorf("%d checks failed, the first: %s", len(failures), failures[0])
	}
	// Twenty checks in two seconds: the sockets were reused.
	if passed < 15 || syns < passed {
		t.Errorf("%d checks passed and %d SYNs sent in 2s at 100ms intervals, want 15 or more of each", passed, syns)
	}
	if acks != 0 {
		t.Errorf("%d ACKs sent for %d SYNs: some checks completed the handshake", acks, syns)
	}
}
