package health

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

const onePool = `
services:
  - {name: web, vips: [192.0.2.9], ports: [80], pool: web}
pools:
  web:
    %s
    check: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 3}
    servers:
      - {address: 198.51.100.11, weight: 10}
`

var srv11 = netip.MustParseAddrPort("198.51.100.11:80")

func TestRiseFall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, parse(t, fmt.Sprintf(onePool, "")))
		h.advance(1 * time.Second) // first check lands within one interval
		evs := h.take()
		if len(evs) != 1 || !evs[0].Up || evs[0].Pool != "web" || evs[0].Addr != srv11.Addr() || evs[0].Weight != -1 {
			t.Fatalf("first check: want one up event for web/198.51.100.11, got %+v", evs)
		}
		h.net.target(srv11).ok.Store(false)
		h.advance(2 * time.Second)
		if evs := h.take(); len(evs) != 0 {
			t.Fatalf("two failures with fall 3 changed the state: %+v", evs)
		}
		h.advance(1 * time.Second)
		evs = h.take()
		if len(evs) != 1 || evs[0].Up {
			t.Fatalf("third failure: want one down event, got %+v", evs)
		}
		if want := "fake 198.51.100.11:80 refused, 3rd failure in a row"; evs[0].Reason != want || evs[0].Consecutive != 3 {
			t.Errorf("down event: reason %q consecutive %d, want %q and 3", evs[0].Reason, evs[0].Consecutive, want)
		}
		if evs[0].Check != "tcp 198.51.100.11:80" {
			t.Errorf("check description %q", evs[0].Check)
		}
		h.net.target(srv11).ok.Store(true)
		h.advance(1 * time.Second)
		if evs := h.take(); len(evs) != 0 {
			t.Fatalf("one success with rise 2 changed the state: %+v", evs)
		}
		h.advance(1 * time.Second)
		evs = h.take()
		if len(evs) != 1 || !evs[0].Up || !strings.HasSuffix(evs[0].Reason, "2nd success in a row") {
			t.Fatalf("second success: want one up event, got %+v", evs)
		}
		// A failure between successes resets the count: no flap.
		for range 5 {
			h.net.target(srv11).ok.Store(false)
			h.advance(time.Second)
			h.net.target(srv11).ok.Store(true)
			h.advance(time.Second)
		}
		if evs := h.take(); len(evs) != 0 {
			t.Fatalf("isolated failures changed the state: %+v", evs)
		}
		if calls := h.net.target(srv11).calls.Load(); calls < 15 || calls > 16 {
			t.Errorf("%d checks in 16 intervals", calls)
		}
		if st := h.c.Stats(); st.Checks != uint64(h.net.target(srv11).calls.Load()) || st.Failures != 8 {
			t.Errorf("stats %+v: want every check counted and 8 failures", st)
		}
	})
}

func TestInitialStateDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, parse(t, fmt.Sprintf(onePool, "initial_state: down")))
		h.advance(1 * time.Second)
		if evs := h.take(); len(evs) != 0 {
			t.Fatalf("one success proved an initially down server up (rise 2): %+v", evs)
		}
		h.advance(1 * time.Second)
		evs := h.take()
		if len(evs) != 1 || !evs[0].Up {
			t.Fatalf("want up after rise successes, got %+v", evs)
		}
	})
}

func TestInitialStateDownConfirmedByFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, parse(t, fmt.Sprintf(onePool, "initial_state: down")))
		h.net.target(srv11).ok.Store(false)
		h.advance(1 * time.Second)
		evs := h.take()
		if len(evs) != 1 || evs[0].Up || evs[0].Reason != "fake 198.51.100.11:80 refused" {
			t.Fatalf("a failure should confirm the initial down state with its reason, got %+v", evs)
		}
	})
}

const sharedPools = `
services:
  - {name: web, vips: [192.0.2.9], ports: [80], pool: web}
  - {name: web2, vips: [192.0.2.10], ports: [80], pool: web2}
  - {name: api, vips: [192.0.2.11], ports: [8080], pool: api}
pools:
  web:
    check: {type: tcp, port: 80, interval: 1s, timeout: 500ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11}, {address: 198.51.100.12}]
  web2:
    check: {type: tcp, port: 80, interval: 1s, timeout: 500ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11, weight: 5}]
  api:
    check: [{type: tcp, port: 80, interval: 1s, timeout: 500ms, rise: 1, fall: 1},
            {type: tcp, port: 8080, interval: 1s, timeout: 500ms, rise: 1, fall: 1}]
    servers: [{address: 198.51.100.11}]
`

func TestOneProbePerServerAndSpec(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, parse(t, sharedPools))
		h.advance(10 * time.Second)
		if n := h.net.target(srv11).calls.Load(); n != 10 {
			t.Errorf("198.51.100.11:80 used by three pools was checked %d times in 10 intervals, want 10", n)
		}
		h.take()
		h.net.target(netip.MustParseAddrPort("198.51.100.11:8080")).ok.Store(false)
		h.advance(1 * time.Second)
		evs := h.take()
		if len(evs) != 1 || evs[0].Pool != "api" || evs[0].Up {
			t.Fatalf("8080 failing must take down only api's server (all checks must pass), got %+v", evs)
		}
		h.net.target(srv11).ok.Store(false)
		h.advance(1 * time.Second)
		pools := map[string]bool{}
		for _, ev := range h.take() {
			if ev.Up {
				t.Errorf("unexpected up event %+v", ev)
			}
			pools[ev.Pool] = true
		}
		if !pools["web"] || !pools["web2"] || len(pools) != 2 {
			t.Errorf("port 80 failing: want down events for web and web2, got %v", pools)
		}
	})
}

func TestFirstChecksSpread(t *testing.T) {
	var b strings.Builder
	b.WriteString("pools:\n  p:\n    check: {type: tcp, port: 80, interval: 1s, timeout: 500ms}\n    servers:\n")
	for i := range 200 {
		fmt.Fprintf(&b, "      - {address: \"2001:db8::%x\"}\n", i+1)
	}
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, parse(t, b.String()))
		total := int64(0)
		for slot := range 10 {
			h.advance(100 * time.Millisecond)
			n := int64(0)
			for _, tg := range h.net.targets {
				n += tg.calls.Load()
			}
			if n-total > 50 {
				t.Errorf("%d of 200 first checks in 100ms slot %d: not spread", n-total, slot)
			}
			total = n
		}
		if total != 200 {
			t.Errorf("%d first checks within one interval, want 200", total)
		}
	})
}

func TestConcurrencyBound(t *testing.T) {
	var b strings.Builder
	b.WriteString("pools:\n  p:\n    check: {type: tcp, port: 80, interval: 1s, timeout: 1s}\n    servers:\n")
	for i := range 20 {
		fmt.Fprintf(&b, "      - {address: 198.51.100.%d}\n", i+1)
	}
	synctest.Test(t, func(t *testing.T) {
		cfg := parse(t, b.String())
		block := make(chan struct{})
		fn := &fakeNet{}
		for i := range 20 {
			fn.target(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), 80)).block = block
		}
		h := startHarnessWith(t, cfg, fn, WithConcurrency(3))
		h.advance(1 * time.Second)
		running := int64(0)
		for _, tg := range fn.targets {
			running += tg.running.Load()
		}
		if running != 3 {
			t.Errorf("%d probes in flight, want the limit 3", running)
		}
		close(block)
		h.advance(3 * time.Second)
		calls := int64(0)
		for _, tg := range fn.targets {
			calls += tg.calls.Load()
		}
		if calls < 40 {
			t.Errorf("only %d checks of 20 servers in 3 intervals after unblocking", calls)
		}
	})
}

func TestSlowStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, parse(t, fmt.Sprintf(onePool, "slow_start: 4s")))
		h.advance(time.Second)
		if evs := h.take(); len(evs) != 1 || evs[0].Weight != -1 {
			t.Fatalf("startup must not ramp: %+v", evs)
		}
		h.net.target(srv11).ok.Store(false)
		h.advance(3 * time.Second)
		h.take()
		h.net.target(srv11).ok.Store(true)
		h.advance(7 * time.Second)
		var weights []int
		for _, ev := range h.take() {
			if !ev.Up {
				t.Fatalf("unexpected down event %+v", ev)
			}
			weights = append(weights, ev.Weight)
		}
		// Up at the 2nd success with weight 1, then 3/4, 5/8 … of 10 per
		// interval, then the configured weight (-1) after 4s.
		want := []int{1, 3, 5, 8, -1}
		if fmt.Sprint(weights) != fmt.Sprint(want) {
			t.Errorf("slow start weights %v, want %v", weights, want)
		}
	})
}

func TestExecWeight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, parse(t, fmt.Sprintf(onePool, "")))
		h.net.target(srv11).weight.Store(7)
		h.advance(time.Second)
		if evs := h.take(); len(evs) != 1 || evs[0].Weight != 7 {
			t.Fatalf("want the reported weight 7, got %+v", evs)
		}
		h.net.target(srv11).weight.Store(3)
		h.advance(time.Second)
		if evs := h.take(); len(evs) != 1 || evs[0].Weight != 3 || !evs[0].Up {
			t.Fatalf("want a weight change to 3, got %+v", evs)
		}
	})
}

func TestReloadKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, parse(t, fmt.Sprintf(onePool, "")))
		h.net.target(srv11).ok.Store(false)
		h.advance(4 * time.Second)
		if evs := h.take(); len(evs) != 1 || evs[0].Up {
			t.Fatalf("want down, got %+v", evs)
		}
		calls := h.net.target(srv11).calls.Load()
		// Same check, plus a new pool sharing it and a new server.
		cfg2 := parse(t, `
services:
  - {name: web, vips: [192.0.2.9], ports: [80], pool: web}
  - {name: more, vips: [192.0.2.10], ports: [80], pool: more}
pools:
  web:
    check: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 3}
    servers:
      - {address: 198.51.100.11, weight: 10}
      - {address: 198.51.100.12}
  more:
    check: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 3}
    servers:
      - {address: 198.51.100.11}
`)
		if err := h.c.Reload(cfg2); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		evs := h.take()
		if len(evs) != 1 || evs[0].Pool != "more" || evs[0].Up || !strings.Contains(evs[0].Reason, "failure in a row") {
			t.Fatalf("a new pool sharing a known-down check must learn its state at once, got %+v", evs)
		}
		h.advance(time.Second)
		for _, ev := range h.take() {
			if ev.Addr == srv11.Addr() {
				t.Errorf("kept check re-reported after reload: %+v", ev)
			}
		}
		if n := h.net.target(srv11).calls.Load() - calls; n != 1 {
			t.Errorf("kept check ran %d times in the interval after reload, want 1 (same schedule)", n)
		}
		// Removing the pools stops the checks.
		if err := h.c.Reload(parse(t, "node: x\n")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		calls = h.net.target(srv11).calls.Load()
		h.advance(3 * time.Second)
		if n := h.net.target(srv11).calls.Load() - calls; n != 0 {
			t.Errorf("removed check ran %d times", n)
		}
		if st := h.c.Status(); len(st) != 0 {
			t.Errorf("status keeps removed servers: %+v", st)
		}
	})
}

func TestOrdinal(t *testing.T) {
	for n, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 22: "22nd", 103: "103rd", 111: "111th"} {
		if got := ordinal(n); got != want {
			t.Errorf("ordinal(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCheckThatCannotRunIsLoggedAndFails(t *testing.T) {
	var logs strings.Builder
	cfg := parse(t, `
pools:
  p:
    check: {type: exec, command: [/bin/true], user: halb-no-such-user, interval: 1s, timeout: 500ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11}]
`)
	synctest.Test(t, func(t *testing.T) {
		h := startHarnessWith(t, cfg, nil, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		h.advance(time.Second)
		evs := h.take()
		if len(evs) != 1 || evs[0].Up || !strings.Contains(evs[0].Reason, `user "halb-no-such-user"`) {
			t.Fatalf("want one down event naming the unknown user, got %+v", evs)
		}
	})
	if !strings.Contains(logs.String(), "health check cannot run") || !strings.Contains(logs.String(), "health checks configured") {
		t.Errorf("log does not say the check cannot run:\n%s", logs.String())
	}
}
