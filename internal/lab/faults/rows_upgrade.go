package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
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
	logged := len(readFile(lb.Log))
	if err := e.s.StartLB(ctx, 0); err != nil {
		return "", false, err
	}
	adopted, err := e.adoption(ctx, 0, logged)
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
	// A format change may write parts again; halb must then say which.
	again := rewritten(before, after)
	var inTable []string // what halb names: chains of its inet table it kept and filled again
	for _, w := range again {
		if chain, ok := strings.CutPrefix(w, "inet halb/"); ok && keptChain(before, after, w) {
			inTable = append(inTable, chain)
		}
	}
	said := (adopted.changes == 0) == (len(again) == 0) && slices.Equal(adopted.rewritten, inTable)
	adoption := "adopted the old table: 0 changes logged, every rule and set as the old one wrote it"
	if adopted.changes > 0 || len(again) > 0 {
		adoption = fmt.Sprintf("%d changes logged on adoption (%s); written again: %s", adopted.changes, adopted.said, strings.Join(again, ", "))
	}
	return fmt.Sprintf("new halb master again after %s; %s; %s", secs(at.Sub(from)), adoption, text), ok && said, nil
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

// adoptionLine is what halb's nftables data plane logs when it adopts a
// table it finds at its start: the changes, and what it wrote again.
var adoptionLine = regexp.MustCompile(`nftables: adopted the table found in the kernel.* changes=(\d+)(.*)`)

// rewrittenAttr is the chains of its table an adoption wrote again.
var rewrittenAttr = regexp.MustCompile(`rewritten="?\[([^\]]*)\]`)

// adoption is one adoption a log tells of.
type adoption struct {
	changes   int
	said      string   // what halb says it wrote again, and why
	rewritten []string // the chains of its inet table it names in said
}

// adoptions returns the adoptions the log text tells of, in order.
func adoptions(log string) []adoption {
	var out []adoption
	for _, m := range adoptionLine.FindAllStringSubmatch(log, -1) {
		a := adoption{said: strings.TrimSpace(m[2])}
		a.changes, _ = strconv.Atoi(m[1]) // \d+: a number
		if r := rewrittenAttr.FindStringSubmatch(a.said); r != nil {
			a.rewritten = strings.Fields(r[1])
		}
		out = append(out, a)
	}
	return out
}

// adoption waits for node i's halb to log its adoption of the nftables
// table after offset in its log, and returns what it logged.
func (e *env) adoption(ctx context.Context, i int, offset int) (adoption, error) {
	lb := e.s.LBs[i]
	deadline := time.Now().Add(10 * time.Second)
	for {
		if log := readFile(lb.Log); len(log) >= offset {
			if a := adoptions(log[offset:]); len(a) > 0 {
				return a[0], nil
			}
		}
		if time.Now().After(deadline) {
			return adoption{}, fmt.Errorf("%s: no adoption of the nftables table logged within 10 s of the start", lb.Name)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return adoption{}, err
		}
	}
}

// nftHandles lists node i's nftables objects and rules by their handles,
// each after the table and chain it is in, without counters or set
// elements: an object written again has a new handle.
func nftHandles(e *env, i int) ([]string, error) {
	lb := e.s.LBs[i]
	out, err := lb.Host.Run("nft", "-a", "-s", "-t", "list", "ruleset")
	if err != nil {
		return nil, fmt.Errorf("%s: nft list ruleset: %v: %s", lb.Name, err, out)
	}
	return handled(string(out)), nil
}

// handled returns the lines of an `nft -a list ruleset` listing that
// carry a handle, each prefixed with its table and chain or set
// ("inet halb/balance: …").
func handled(listing string) []string {
	var out []string
	var table, in string
	for _, line := range strings.Split(listing, "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "table":
			table, in = f[1]+" "+f[2], ""
		case len(f) >= 2 && (f[0] == "chain" || f[0] == "set" || f[0] == "map"):
			in = f[1]
		}
		if strings.Contains(line, "# handle ") {
			where := table
			if in != "" {
				where += "/" + in
			}
			out = append(out, where+": "+line)
		}
	}
	return out
}

// keptChain reports whether chain ("inet halb/balance") is in both
// listings of handled as the same chain (with the same handle).
func keptChain(before, after []string, chain string) bool {
	for _, l := range before {
		if strings.HasPrefix(l, chain+": chain ") {
			return slices.Contains(after, l)
		}
	}
	return false
}

// rewritten names the tables' chains and sets whose handled lines
// differ between two listings of handled.
func rewritten(before, after []string) []string {
	added, removed := diffLines(before, after)
	var where []string
	for _, l := range append(added, removed...) {
		w, _, _ := strings.Cut(l, ":")
		where = append(where, w)
	}
	slices.Sort(where)
	return slices.Compact(where)
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
