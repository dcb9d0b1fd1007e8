// Package faults runs the fault matrix on the lab site: each row injects
// one fault into the running site, measures what halb does against what it
// promises, restores the site and checks that nothing was left behind
// (namespaces, processes, nftables rules, addresses). Rows share one site
// and restore it, so the whole matrix runs in a few minutes.
package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"halb/internal/lab/site"
)

// Options say which halb runs the matrix and where its files go.
type Options struct {
	Halb   string // the halb binary the load balancers run
	Dir    string // work directory of the site
	Prefix string // namespace prefix ("halblab" for `halb lab faults`)
	// Dataplane is passed to `halb run --dataplane` ("" = the config's).
	Dataplane string
	// Progress, when set, gets a line per row as it ends.
	Progress io.Writer
	// Rows, when set, picks the rows to run by their fault text.
	Rows func(fault string) bool
	// Previous, when set, returns the previous release's halb binary for
	// the upgrade row, building it when first asked (nil: not run).
	Previous func(ctx context.Context) (string, error)
	// ConfigEdit, when set, edits each load balancer's configuration
	// before the site starts (site.Options.ConfigEdit).
	ConfigEdit func(lb int, yaml string) string
}

// row is one fault of the matrix. run injects it, measures, undoes the
// fault and says whether the promise was kept; Run then restores the site
// and looks for leftovers.
type row struct {
	fault, promise, keepalived string
	// known says why halb does not keep the promise yet ("": it must).
	known string
	run   func(ctx context.Context, e *env) (measured string, kept bool, err error)
	// measureKeepalived, when set, measures keepalived in the same
	// situation, while run measures halb.
	measureKeepalived func(ctx context.Context, e *env) (string, error)
	// dataplane, when set, is the only data plane the row runs with.
	dataplane string
}

// notRun is a row's error when this machine cannot run it (a tool or
// history it lacks): the row is reported as not run, with the reason.
type notRun struct{ why string }

func (n notRun) Error() string { return "not run: " + n.why }

// Run brings the site up (with a keepalived pair beside it when keepalived
// is installed), runs the matrix's rows on it in order, and takes it down.
// An error means the site itself could not run.
func Run(ctx context.Context, opts Options) (results []Result, err error) {
	s, err := site.Up(ctx, site.Options{Prefix: opts.Prefix, Halb: opts.Halb, Dir: opts.Dir, Dataplane: opts.Dataplane,
		ConfigEdit: opts.ConfigEdit})
	if err != nil {
		return nil, fmt.Errorf("bring the site up: %w", err)
	}
	defer func() {
		if derr := s.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("take the site down: %w", derr))
		}
	}()
	// keepalived is measured beside halb where the lab has it.
	var ka *kpair
	if _, err := exec.LookPath("keepalived"); err == nil {
		if ka, err = startKeepalived(s, opts.Dir); err != nil {
			return nil, err
		}
		defer func() {
			if kerr := ka.stop(); kerr != nil {
				err = errors.Join(err, kerr)
			}
		}()
	}
	e, err := newEnv(ctx, s, opts)
	if err != nil {
		return nil, err
	}
	e.ka = ka
	for _, r := range rows() {
		if opts.Rows != nil && !opts.Rows(r.fault) || r.dataplane != "" && r.dataplane != opts.Dataplane {
			continue
		}
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		start := time.Now()
		res := Result{Fault: r.fault, Promise: r.promise, Keepalived: r.keepalived, Known: r.known}
		// keepalived is measured at the same time, on its own nodes.
		kaDone := make(chan string, 1)
		if r.measureKeepalived != nil && e.ka != nil {
			go func() { kaDone <- e.measureKeepalivedIn(ctx, r.measureKeepalived) }()
		} else {
			close(kaDone)
		}
		res.Measured, res.Kept, res.Err = r.run(ctx, e)
		if nr := (notRun{}); errors.As(res.Err, &nr) {
			res.NotRun, res.Err = nr.why, nil
		}
		if text, ok := <-kaDone; ok {
			res.Keepalived += "; measured here: " + text
		}
		if rerr := e.restore(ctx); rerr != nil {
			res.Err = errors.Join(res.Err, fmt.Errorf("restore the site: %w", rerr))
		} else {
			res.Left = e.leftovers(ctx)
		}
		results = append(results, res)
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "%-19s %5.1fs  %s: %s\n", res.Verdict(), time.Since(start).Seconds(), r.fault, res.measured())
			if res.Broken() {
				for _, lb := range s.LBs {
					if data, err := os.ReadFile(lb.Log); err == nil {
						fmt.Fprintf(opts.Progress, "  last lines of %s's log:\n%s\n", lb.Name, lastLines(string(data), 12))
					}
				}
			}
		}
	}
	return results, nil
}
