package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"halb/internal/lab/release"
)

func upgradeLive(ctx context.Context, e *env) (string, bool, error) {
	if e.opts.Previous == nil {
		return "", false, notRun{"no previous release's binary was given"}
	}
	prev, err := e.opts.Previous(ctx)
	if errors.Is(err, release.ErrNoHistory) {
		return "", false, notRun{err.Error()}
	}
	if err != nil {
		return "", false, fmt.Errorf("the previous release: %w", err)
	}
	lb := e.s.LBs[0]
	// lb-a runs the previous release and is master again, as before an
	// upgrade; on an error it is stopped, and restore starts the new one.
	if err := lb.Signal(syscall.SIGTERM, 5*time.Second); err != nil {
		return "", false, err
	}
	if err := e.s.StartLBWith(ctx, 0, prev); err != nil {
		return "", false, err
	}
	oldRuns := true
	defer func() {
		if oldRuns {
			_ = lb.Signal(syscall.SIGTERM, 5*time.Second) // the row's error is the one to report
		}
	}()
	if err := e.settle(ctx); err != nil {
		return "", false, err
	}
	if err := e.runs(0, prev); err != nil {
		return "", false, err
	}
	before, err := nftHandles(e, 0)
	if err != nil {
		return "", false, err
	}

	g, stop := e.traffic(ctx)
	defer stop()
	if err := sleep(ctx, 1500*time.Millisecond); err != nil {
		return "", false, err
	}
	from := time.Now()
	if err := lb.Signal(syscall.SIGTERM, 5*time.Second); err != nil {
		return "", false, err
	}
	oldRuns = false
	if err := e.s.StartLB(ctx, 0); err != nil {
		return "", false, err
	}
	changes, err := e.firstReconcile(ctx, 0, from)
	if err != nil {
		return "", false, err
	}
	at, err := e.waitState(ctx, 0, "web-a", "MASTER", from, 3*bound)
	if err != nil {
		return "", false, err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return "", false, err
	}
	text, ok := trafficReport(g, from)
	after, err := nftHandles(e, 0)
	if err != nil {
		return "", false, err
	}
	added, removed := diffLines(before, after)
	adopted := fmt.Sprintf("adopted the old table: %d changes, every rule as the old one wrote it", changes)
	if changes > 0 || len(added)+len(removed) > 0 {
		adopted = fmt.Sprintf("%d changes on adoption; nftables lines written %q, removed %q", changes, added, removed)
	}
	return fmt.Sprintf("new halb master again after %s; %s; %s", secs(at.Sub(from)), adopted, text),
		ok && changes == 0 && len(added)+len(removed) == 0, nil
}

// runs checks that node i's halb is the binary bin.
func (e *env) runs(i int, bin string) error {
	pid, err := e.halbPid(i)
	if err != nil {
		return err
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return fmt.Errorf("%s: which binary halb runs: %w", e.s.LBs[i].Name, err)
	}
	if exe != bin {
		return fmt.Errorf("%s runs %s, want %s", e.s.LBs[i].Name, exe, bin)
	}
	return nil
}

// firstReconcile waits for node i's first data plane update after since
// and returns how many changes it made in the kernel.
func (e *env) firstReconcile(ctx context.Context, i int, since time.Time) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := e.api[i].Status(ctx)
		if err == nil && !st.LastReconcile.At.Before(since) {
			if st.LastReconcile.Error != "" {
				return 0, fmt.Errorf("%s: data plane update failed: %s", e.s.LBs[i].Name, st.LastReconcile.Error)
			}
			return st.LastReconcile.Changes, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: no data plane update within 10 s of its start (%v)", e.s.LBs[i].Name, err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// nftHandles lists node i's nftables rules with their handles, without
// counters or set elements: a rule written again has a new handle.
func nftHandles(e *env, i int) ([]string, error) {
	lb := e.s.LBs[i]
	out, err := lb.Host.Run("nft", "-a", "-s", "-t", "list", "ruleset")
	if err != nil {
		return nil, fmt.Errorf("%s: nft list ruleset: %v: %s", lb.Name, err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}

// kaRestart restarts keepalived's master, as a package upgrade does, and
// says where the VIP went meanwhile.
func kaRestart(ctx context.Context, e *env) (string, error) {
	k := e.ka
	const master = "Entering MASTER STATE"
	before := strings.Count(readFile(k.logs[1]), master)
	from := time.Now()
	if err := k.kill(0, syscall.SIGTERM); err != nil {
		return "", err
	}
	released := !k.hasVIP(0)
	if err := k.start(0); err != nil {
		return "", err
	}
	for !k.hasVIP(0) {
		if time.Since(from) > 3*bound {
			return "", fmt.Errorf("the restarted master holds no VIP after %s", secs(3*bound))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return "", err
		}
	}
	back := time.Since(from)
	if err := sleep(ctx, advert); err != nil { // the backup's log catches up
		return "", err
	}
	text := "kept the VIP while stopped"
	if released {
		text = "released the VIP on SIGTERM"
	}
	flips := strings.Count(readFile(k.logs[1]), master) - before
	return fmt.Sprintf("%s; the backup became master %d time(s); the restarted node holds the VIP again after %s", text, flips, secs(back)), nil
}
