package health

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// hookLog keeps what a result hook was called with.
type hookLog struct {
	mu   sync.Mutex
	seen []CheckResult
}

func (l *hookLog) hook(r CheckResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.Servers = slices.Clone(r.Servers)
	l.seen = append(l.seen, r)
}

func (l *hookLog) results() []CheckResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen)
}

func TestResultHookSeesEveryResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log hookLog
		h := startHarness(t, parse(t, sharedPools), WithResultHook(log.hook))
		srv12 := netip.MustParseAddrPort("198.51.100.12:80")
		srv11alt := netip.MustParseAddrPort("198.51.100.11:8080")
		h.net.target(srv12).ok.Store(false)
		h.advance(10 * time.Second)

		type tally struct {
			ok, fail int
			servers  []PoolServer
			typ      string
		}
		by := map[string]*tally{}
		for _, r := range log.results() {
			tl := by[r.Check]
			if tl == nil {
				tl = &tally{servers: r.Servers, typ: r.Type}
				by[r.Check] = tl
			}
			if r.Result.OK {
				tl.ok++
			} else {
				tl.fail++
			}
			if !slices.Equal(r.Servers, tl.servers) {
				t.Errorf("%s: servers changed from %v to %v", r.Check, tl.servers, r.Servers)
			}
		}
		want := map[string]struct {
			target  netip.AddrPort
			ok      bool
			servers []PoolServer
		}{
			"tcp 198.51.100.11:80": {srv11, true,
				[]PoolServer{{"api", "198.51.100.11"}, {"web", "198.51.100.11"}, {"web2", "198.51.100.11"}}},
			"tcp 198.51.100.11:8080": {srv11alt, true, []PoolServer{{"api", "198.51.100.11"}}},
			"tcp 198.51.100.12:80":   {srv12, false, []PoolServer{{"web", "198.51.100.12"}}},
		}
		if len(by) != len(want) {
			t.Errorf("hook saw checks %v, want %d checks", by, len(want))
		}
		total := 0
		for check, w := range want {
			tl := by[check]
			if tl == nil {
				t.Errorf("hook never saw %s", check)
				continue
			}
			calls := int(h.net.target(w.target).calls.Load())
			n := tl.ok + tl.fail
			total += n
			if n != calls || calls != 10 {
				t.Errorf("%s: hook saw %d results of %d checks run, want 10 of 10", check, n, calls)
			}
			if w.ok && tl.fail != 0 || !w.ok && tl.ok != 0 {
				t.Errorf("%s: %d ok, %d failed; want all ok=%v", check, tl.ok, tl.fail, w.ok)
			}
			got := slices.Clone(tl.servers)
			slices.SortFunc(got, func(a, b PoolServer) int { return strings.Compare(a.Pool, b.Pool) })
			if !slices.Equal(got, w.servers) {
				t.Errorf("%s decides %v, want %v", check, got, w.servers)
			}
			if tl.typ != "tcp" {
				t.Errorf("%s: type %q", check, tl.typ)
			}
		}
		if st := h.c.Stats(); st.Checks != uint64(total) || st.Failures != uint64(by["tcp 198.51.100.12:80"].fail) {
			t.Errorf("stats %+v, hook saw %d results", st, total)
		}
	})
}
