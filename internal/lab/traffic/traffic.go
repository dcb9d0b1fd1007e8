// Package traffic sends steady, bounded client traffic to VIPs and measures
// what a load balancer's changes do to it: failed requests, the longest gap
// without an answer per VIP, which backend answered, and whether
// long-lived connections survive.
package traffic

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// DialFunc opens a connection (for labs: from inside the client namespace).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Result is one request's outcome.
type Result struct {
	At      time.Time
	VIP     string
	OK      bool
	Backend string // the body of the answer: the backend's name
	Err     string
	Latency time.Duration
}

// Generator sends one new-connection HTTP request to each VIP every
// Interval, and keeps Persistent long-lived connections per VIP that send a
// request on the same connection every Interval.
type Generator struct {
	Dial       DialFunc
	VIPs       []string
	Port       int
	Interval   time.Duration
	Timeout    time.Duration
	Persistent int

	mu      sync.Mutex
	results []Result
	conns   []*longConn
}

type longConn struct {
	vip      string
	backend  string
	broken   string
	brokenAt time.Time
}

// Run sends traffic until ctx is done.
func (g *Generator) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, vip := range g.VIPs {
		wg.Go(func() { g.shortLoop(ctx, vip) })
		for range g.Persistent {
			lc := &longConn{vip: vip}
			g.mu.Lock()
			g.conns = append(g.conns, lc)
			g.mu.Unlock()
			wg.Go(func() { g.longLoop(ctx, lc) })
		}
	}
	wg.Wait()
}

func (g *Generator) record(r Result) {
	g.mu.Lock()
	g.results = append(g.results, r)
	g.mu.Unlock()
}

func (g *Generator) shortLoop(ctx context.Context, vip string) {
	tick := time.NewTicker(g.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, g.Timeout)
		backend, err := g.get(rctx, vip)
		cancel()
		if ctx.Err() != nil {
			return
		}
		r := Result{At: start, VIP: vip, OK: err == nil, Backend: backend, Latency: time.Since(start)}
		if err != nil {
			r.Err = err.Error()
		}
		g.record(r)
	}
}

// get makes one request on a new connection and returns the answer's body.
func (g *Generator) get(ctx context.Context, vip string) (string, error) {
	conn, err := g.Dial(ctx, "tcp", net.JoinHostPort(vip, fmt.Sprint(g.Port)))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return request(conn, bufio.NewReader(conn), vip, true)
}

func request(conn net.Conn, br *bufio.Reader, vip string, closeConn bool) (string, error) {
	hdr := "Connection: keep-alive"
	if closeConn {
		hdr = "Connection: close"
	}
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", vip, hdr); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(body)), nil
}

func (g *Generator) longLoop(ctx context.Context, lc *longConn) {
	conn, err := g.Dial(ctx, "tcp", net.JoinHostPort(lc.vip, fmt.Sprint(g.Port)))
	if err != nil {
		g.breakConn(lc, "connect: "+err.Error())
		return
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	tick := time.NewTicker(g.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// A request may wait out a failover: allow the VRRP bound and more.
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		backend, err := request(conn, br, lc.vip, false)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			g.breakConn(lc, err.Error())
			return
		}
		g.mu.Lock()
		if lc.backend == "" {
			lc.backend = backend
		} else if lc.backend != backend {
			lc.broken, lc.brokenAt = fmt.Sprintf("moved from %s to %s", lc.backend, backend), time.Now()
		}
		g.mu.Unlock()
		if lc.broken != "" {
			return
		}
	}
}

func (g *Generator) breakConn(lc *longConn, why string) {
	g.mu.Lock()
	lc.broken, lc.brokenAt = why, time.Now()
	g.mu.Unlock()
}

// Window summarises the results between two times.
type Window struct {
	Requests, Failed int
	// LongestGap is the longest time, over all VIPs, between two
	// successful answers from one VIP.
	LongestGap time.Duration
	GapVIP     string
	// ByBackend counts successful answers per backend.
	ByBackend map[string]int
	// Errors counts failures by message.
	Errors map[string]int
}

// Summary returns the window [from, to).
func (g *Generator) Summary(from, to time.Time) Window {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := Window{ByBackend: map[string]int{}, Errors: map[string]int{}}
	lastOK := map[string]time.Time{}
	for _, vip := range g.VIPs {
		lastOK[vip] = from
	}
	for _, r := range g.results {
		if r.At.Before(from) || !r.At.Before(to) {
			continue
		}
		w.Requests++
		if !r.OK {
			w.Failed++
			w.Errors[shortErr(r.Err)]++
			continue
		}
		w.ByBackend[r.Backend]++
		answered := r.At.Add(r.Latency)
		if gap := answered.Sub(lastOK[r.VIP]); gap > w.LongestGap {
			w.LongestGap, w.GapVIP = gap, r.VIP
		}
		lastOK[r.VIP] = answered
	}
	return w
}

func shortErr(s string) string {
	for _, k := range []string{"connection refused", "i/o timeout", "deadline exceeded", "connection reset", "no route to host", "EOF"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return s
}

// LongLived returns how many long-lived connections exist and how many
// broke, with the reasons.
func (g *Generator) LongLived() (total, broken int, reasons []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		total++
		if c.broken != "" {
			broken++
			reasons = append(reasons, c.vip+": "+c.broken)
		}
	}
	sort.Strings(reasons)
	return total, broken, reasons
}

// Spread renders a backend count map as "web1 34%, web2 33%, web3 33%".
func Spread(by map[string]int) string {
	total := 0
	names := make([]string, 0, len(by))
	for n, c := range by {
		total += c
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d%%", n, (by[n]*100+total/2)/max(total, 1)))
	}
	return strings.Join(parts, ", ")
}

// Conn is one long-lived connection: its VIP, the backend that answered
// its first request ("" before one did) and why it broke ("": it did not).
type Conn struct {
	VIP, Backend, Broken string
}

// Conns returns the long-lived connections in the order they were opened.
func (g *Generator) Conns() []Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Conn, 0, len(g.conns))
	for _, c := range g.conns {
		out = append(out, Conn{VIP: c.vip, Backend: c.backend, Broken: c.broken})
	}
	return out
}
