package health

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestLabReloadChurnNoLeak reloads random configurations in a loop while
// real checks run (and hang on a blackholed address), then checks that
// goroutines and file descriptors return to where they were.
func TestLabReloadChurnNoLeak(t *testing.T) {
	r := newRig(t)
	r.startNginx()
	// The baseline runs a TCP check, so that what lives as long as Run
	// (the TCP connector) is in it.
	base := parse(t, "pools:\n  p:\n    check: {type: tcp, port: 80, interval: 100ms, timeout: 90ms}\n    servers: [{address: 198.51.100.11}]\n")
	rec := r.check(base)
	time.Sleep(300 * time.Millisecond)
	baseG, baseFD := runtime.NumGoroutine(), countFDs(t)

	checks := []string{
		`{type: tcp, port: 80, interval: 100ms, timeout: 90ms}`,
		`{type: http, port: 80, path: /healthz, interval: 100ms, timeout: 90ms}`,
		`{type: https, port: 443, interval: 150ms, timeout: 100ms}`,
		`{type: tls, port: 443, interval: 100ms, timeout: 100ms}`,
		`{type: ping, interval: 100ms, timeout: 90ms}`,
		`{type: udp, port: 9, no_icmp_unreachable: true, interval: 100ms, timeout: 90ms}`,
	}
	// 198.51.100.50 does not exist: its checks hang until their timeout,
	// so reloads keep cancelling checks in flight.
	servers := []string{"198.51.100.11", "198.51.100.50", "198.51.100.51", "198.51.100.52", "2001:db8:1::11", "2001:db8:1::50"}
	maxG := 0
	rng := rand.New(rand.NewPCG(1, 2))
	const rounds = 60
	for i := range rounds {
		var b strings.Builder
		b.WriteString("pools:\n")
		for p := range 1 + rng.IntN(4) {
			fmt.Fprintf(&b, "  p%d:\n    check: %s\n    servers:\n", p, checks[rng.IntN(len(checks))])
			for _, s := range servers {
				if rng.IntN(3) > 0 {
					fmt.Fprintf(&b, "      - {address: %s}\n", s)
				}
			}
		}
		if err := rec.c.Reload(parse(t, b.String())); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
		maxG = max(maxG, runtime.NumGoroutine())
		if i == rounds/2 {
			t.Logf("mid-churn: %d goroutines, %d fds (baseline %d, %d)", runtime.NumGoroutine(), countFDs(t), baseG, baseFD)
		}
	}
	if maxG < baseG+5 {
		t.Errorf("at most %d goroutines during the churn (baseline %d): too few checks in flight to test anything", maxG, baseG)
	}
	if err := rec.c.Reload(base); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, fd := runtime.NumGoroutine(), countFDs(t)
		if g <= baseG && fd <= baseFD {
			t.Logf("after %d reloads (peak %d goroutines): %d goroutines, %d fds (baseline %d, %d); %d events", rounds, maxG, g, fd, baseG, baseFD, rec.mark())
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("leak after %d reloads: %d goroutines (baseline %d), %d fds (baseline %d)\n%s",
				rounds, g, baseG, fd, baseFD, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rec.mark() == 0 {
		t.Error("no events at all during the churn: the checks did not run")
	}
	for deadline := time.Now().Add(2 * time.Second); len(rec.c.Status()) != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("status after reloading to one pool server: %+v", rec.c.Status())
			break
		}
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
