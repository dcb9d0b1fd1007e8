package ecmp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"halb/internal/api"
)

// BenchOptions configure the benchmark.
type BenchOptions struct {
	Options
	Out io.Writer
	// Conns is the number of long-lived connections established before
	// each event.
	Conns int
}

// BenchRow is one event's outcome with one kind of node.
type BenchRow struct {
	Event, Mode string
	// Eligible counts the connections that could survive (not on a
	// removed backend), Survived those that answered from their backend
	// after the event.
	Eligible, Survived  int
	NewTried, NewFailed int
	// Router is how long the router's route took to reflect the event (0:
	// the event does not change it).
	Router time.Duration
}

// settle is how long after an event the connections are checked.
const settle = 2 * time.Second

// Bench runs, with halb's nodes and then with the baseline's, five events
// — a node crash, a drain, a node added, a backend removed and added —
// and reports for each the share of established connections that
// survived, the new connections that failed, and the router's time.
func Bench(ctx context.Context, opts BenchOptions) ([]BenchRow, error) {
	var rows []BenchRow
	for _, baseline := range []bool{false, true} {
		o := opts.Options
		o.Baseline = baseline
		mode := "halb (Maglev)"
		if baseline {
			mode = "baseline (per-node hash)"
		}
		fmt.Fprintf(opts.Out, "running the events with %s nodes…\n", mode)
		r, err := benchRun(ctx, o, mode, opts.Conns)
		rows = append(rows, r...)
		if err != nil {
			return rows, err
		}
	}
	writeBench(opts.Out, rows)
	return rows, nil
}

func writeBench(w io.Writer, rows []BenchRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nEVENT\tNODES\tESTABLISHED SURVIVED\tNEW FAILED\tROUTER UPDATED")
	for _, r := range rows {
		router := "-"
		if r.Router > 0 {
			router = r.Router.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d (%.1f%%)\t%d/%d\t%s\n", r.Event, r.Mode, r.Survived, r.Eligible,
			100*float64(r.Survived)/float64(max(r.Eligible, 1)), r.NewFailed, r.NewTried, router)
	}
	tw.Flush()
}

func benchRun(ctx context.Context, o Options, mode string, conns int) (rows []BenchRow, err error) {
	l, err := Up(ctx, o, 3)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil && err == nil {
			err = derr
		}
	}()
	d := &demo{out: io.Discard, start: time.Now(), lab: l}
	all := BackendAddrs
	tables := func(backends []string) error {
		if !o.Baseline {
			return nil
		}
		for i, n := range l.Nodes {
			if n.Running() {
				if err := l.Baseline(i, backends); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := tables(all); err != nil {
		return nil, err
	}
	if _, err := d.waitHops(ctx, []string{NodeAddr(0), NodeAddr(1), NodeAddr(2)}, 30*time.Second); err != nil {
		return nil, err
	}
	if err := d.waitHealthy(ctx, 3, 30*time.Second); err != nil {
		return nil, err
	}
	events := []struct {
		name    string
		do      func() error
		hops    []string
		removed string // the name of the backend whose connections cannot survive
	}{
		{"LB node crash (kill -9)", l.Nodes[2].Kill, []string{NodeAddr(0), NodeAddr(1)}, ""},
		{"LB node drain", func() error {
			_, err := api.NewClient(l.Nodes[1].Socket).Drain(ctx, true)
			return err
		}, []string{NodeAddr(0)}, ""},
		{"LB node added", func() error {
			if err := l.StartNode(ctx, 3); err != nil {
				return err
			}
			return tables(all)
		}, []string{NodeAddr(0), NodeAddr(3)}, ""},
		{"backend removed", func() error {
			l.Backends[2].Kill()
			if err := tables(all[:2]); err != nil {
				return err
			}
			return d.waitServer(ctx, all[2], false, 10*time.Second)
		}, nil, l.Backends[2].Name},
		{"backend added", func() error {
			if err := l.Backends[2].Start(); err != nil {
				return err
			}
			if err := tables(all); err != nil {
				return err
			}
			return d.waitHealthy(ctx, 3, 10*time.Second)
		}, nil, ""},
	}
	for _, ev := range events {
		flows, err := openFlows(ctx, l, conns)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", ev.name, err)
		}
		row := BenchRow{Event: ev.name, Mode: mode}
		newCtx, stopNew := context.WithCancel(ctx)
		var tried, failed atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() { newConns(newCtx, l, &tried, &failed) })
		start := time.Now()
		err = ev.do()
		if err == nil && ev.hops != nil {
			if _, err = d.waitHops(ctx, ev.hops, 30*time.Second); err == nil {
				row.Router = time.Since(start)
			}
		}
		if err != nil {
			stopNew()
			wg.Wait()
			closeFlows(flows)
			return rows, fmt.Errorf("%s: %w", ev.name, err)
		}
		time.Sleep(settle)
		stopNew()
		wg.Wait()
		row.NewTried, row.NewFailed = int(tried.Load()), int(failed.Load())
		for _, f := range flows {
			if f.on == ev.removed {
				continue
			}
			row.Eligible++
			if name, err := f.get(); err == nil && name == f.on {
				row.Survived++
			}
		}
		closeFlows(flows)
		rows = append(rows, row)
	}
	return rows, nil
}

// benchFlow is a long-lived HTTP connection and the backend that answered
// it first.
type benchFlow struct {
	c  net.Conn
	br *bufio.Reader
	on string
}

// get asks on the connection and returns the answering backend's name.
func (f *benchFlow) get() (string, error) {
	if err := f.c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(f.c, "GET / HTTP/1.1\r\nHost: "+VIP+"\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(f.br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	return strings.TrimSpace(string(b)), err
}

// openFlows opens n connections from the client, 50 at a time.
func openFlows(ctx context.Context, l *Lab, n int) ([]*benchFlow, error) {
	flows := make([]*benchFlow, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			c, err := l.Client.DialContext(dctx, "tcp", net.JoinHostPort(VIP, "80"))
			if err != nil {
				errs[i] = err
				return
			}
			f := &benchFlow{c: c, br: bufio.NewReader(c)}
			if f.on, errs[i] = f.get(); errs[i] != nil {
				c.Close()
				return
			}
			flows[i] = f
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			closeFlows(flows)
			return nil, fmt.Errorf("connection %d of %d: %w", i, n, err)
		}
	}
	return flows, nil
}

func closeFlows(flows []*benchFlow) {
	for _, f := range flows {
		if f != nil {
			f.c.Close()
		}
	}
}

// newConns makes one new connection and request every 10 ms until ctx
// is done, counting those tried and those that failed.
func newConns(ctx context.Context, l *Lab, tried, failed *atomic.Int64) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Go(func() {
			tried.Add(1)
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c, err := l.Client.DialContext(dctx, "tcp", net.JoinHostPort(VIP, "80"))
			if err != nil {
				failed.Add(1)
				return
			}
			defer c.Close()
			f := &benchFlow{c: c, br: bufio.NewReader(c)}
			if _, err := f.get(); err != nil {
				failed.Add(1)
			}
		})
	}
}
