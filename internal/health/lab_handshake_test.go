package health

import (
	"testing"
	"time"
)

// TestLabTCPCheckNeverAcksSynAck runs TCP checks often enough that the
// connector reuses their sockets and checks, on the packets leaving the
// load balancer, that no check completed the handshake: every check is
// SYN, SYN-ACK, RST, with no ACK of the SYN-ACK, so that the server's
// application never sees it.
func TestLabTCPCheckNeverAcksSynAck(t *testing.T) {
	r := newRig(t)
	r.startNginx()
	r.countOutgoing("ip daddr 198.51.100.11 tcp dport 80 tcp flags & (fin | syn | rst | psh | ack) == syn",
		"ip daddr 198.51.100.11 tcp dport 80 tcp flags & (fin | syn | rst | psh | ack) == ack")
	cfg := parse(t, `pools:
  tcp:
    initial_state: down
    check: {type: tcp, port: 80, interval: 100ms, timeout: 90ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11}]
`)
	var tl tally
	rec := r.check(cfg, WithResultHook(tl.add))
	rec.wait(0, "tcp", true, 5*time.Second)
	time.Sleep(2 * time.Second)
	counts := r.outgoingCounts(2)
	syns, acks := counts[0], counts[1]
	ok, failures := tl.result()
	passed := ok["tcp"]
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
