package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"halb/internal/api"
	"halb/internal/event"
	"halb/internal/lab/netns"
	"halb/internal/lab/site"
	"halb/internal/lab/traffic"
)

// The site's VRRP timing: adverts every second; the backup (priority 100)
// waits 3 adverts and its skew, (256-100)/256 s, before it takes over.
const (
	advert = time.Second
	skew   = 609 * time.Millisecond
	bound  = 3*advert + skew
	// slack covers scheduling on a loaded machine in promises of time.
	slack = 500 * time.Millisecond
)

// faultTable is the nftables table rows add to a node to drop packets.
const faultTable = "halbfault"

// env is the running site and what the rows need to measure it.
type env struct {
	s      *site.Site
	opts   Options
	api    [2]*api.Client
	config [2][]byte // each node's configuration as the site wrote it
	mac    [2]string // each node's eth0 address
	base   [2]kernel // each node's kernel state with the site settled
	ns     []string  // the site's namespaces
	ka     *kpair    // keepalived beside the site (nil: not installed)
}

// kernel is what a node holds in its kernel and process table.
type kernel struct {
	ruleset []string // nft -s -t list ruleset: rules without counters or set elements
	addrs   []string // its addresses, sorted
	procs   int      // processes in its namespace (halb alone)
}

func newEnv(ctx context.Context, s *site.Site, opts Options) (*env, error) {
	e := &env{s: s, opts: opts}
	for i, lb := range s.LBs {
		e.api[i] = api.NewClient(lb.Socket)
		var err error
		if e.config[i], err = os.ReadFile(lb.Config); err != nil {
			return nil, fmt.Errorf("read %s's configuration: %w", lb.Name, err)
		}
		out, err := lb.Host.Run("ip", "-br", "link", "show", "eth0")
		if f := strings.Fields(string(out)); err != nil || len(f) < 3 {
			return nil, fmt.Errorf("%s: eth0's address: %v: %s", lb.Name, err, out)
		} else {
			e.mac[i] = f[2]
		}
	}
	if err := e.settle(ctx); err != nil {
		return nil, err
	}
	var err error
	if e.ns, err = netns.Leftovers(s.Lab.Prefix()); err != nil {
		return nil, fmt.Errorf("list the site's namespaces: %w", err)
	}
	for i := range e.base {
		if e.base[i], err = e.kernel(i); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// settle waits until both nodes run, each is master of its own instance
// and sees every server healthy.
func (e *env) settle(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		why := e.unsettled(ctx)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the site does not settle in 30s: %s", why)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func (e *env) unsettled(ctx context.Context) string {
	own := map[string]int{"web-a": 0, "web-b": 1}
	for i, lb := range e.s.LBs {
		st, err := e.api[i].Status(ctx)
		if err != nil {
			return err.Error()
		}
		for _, in := range st.VRRP {
			if (in.State == "MASTER") != (own[in.Name] == i) {
				return fmt.Sprintf("%s is %s of %s", lb.Name, in.State, in.Name)
			}
		}
		for _, svc := range st.Services {
			for _, srv := range svc.Servers {
				if !srv.Healthy {
					return fmt.Sprintf("%s sees %s down", lb.Name, srv.Address)
				}
			}
		}
		// A node that was master moves its VIPs off the loop: the kernel
		// follows the state a moment later.
		if why := holdsOwnVIPs(lb.Host, i); why != "" {
			return fmt.Sprintf("%s %s", lb.Name, why)
		}
	}
	return ""
}

// holdsOwnVIPs says how node i's addresses differ from its own
// instance's VIPs ("": they do not).
func holdsOwnVIPs(h *netns.Host, i int) string {
	out, err := h.Run("ip", "-o", "addr", "show", "dev", "eth0")
	if err != nil {
		return fmt.Sprintf("addresses: %v: %s", err, out)
	}
	own, other := site.VIPsA, site.VIPsB
	if i == 1 {
		own, other = other, own
	}
	for _, vip := range own {
		if !strings.Contains(string(out), " "+vip+"/") {
			return "does not hold " + vip
		}
	}
	for _, vip := range other {
		if strings.Contains(string(out), " "+vip+"/") {
			return "holds " + vip
		}
	}
	return ""
}

// restore puts the site back as it was before a row: nodes linked and
// running, no fault table, the site's configurations, masters back.
func (e *env) restore(ctx context.Context) error {
	var errs []error
	for i, lb := range e.s.LBs {
		errs = append(errs, e.s.Cut(i, false))
		dropFault(lb.Host)
		if lb.Running() {
			errs = append(errs, lb.Notify(syscall.SIGCONT))
		}
		cur, err := os.ReadFile(lb.Config)
		if err != nil || string(cur) != string(e.config[i]) {
			errs = append(errs, os.WriteFile(lb.Config, e.config[i], 0o644))
			if lb.Running() {
				errs = append(errs, lb.Notify(syscall.SIGHUP))
			}
		}
		if !lb.Running() {
			errs = append(errs, e.s.StartLB(ctx, i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return e.settle(ctx)
}

// measureKeepalivedIn runs a keepalived measurement between two settled
// states of the keepalived pair.
func (e *env) measureKeepalivedIn(ctx context.Context, measure func(context.Context, *env) (string, error)) string {
	if err := e.ka.settle(ctx); err != nil {
		return "not measured: " + err.Error()
	}
	text, err := measure(ctx, e)
	if err != nil {
		text = "failed: " + err.Error()
	}
	if err := e.ka.settle(ctx); err != nil {
		text += "; " + err.Error()
	}
	return text
}

// leftovers compares the settled site with its state before the matrix.
// Kernel state converges after a transition: it is read until it matches
// or 5 s have passed.
func (e *env) leftovers(ctx context.Context) []string {
	var left []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		left = left[:0]
		ns, err := netns.Leftovers(e.s.Lab.Prefix())
		if err != nil {
			left = append(left, "namespaces: "+err.Error())
		} else if !slices.Equal(ns, e.ns) {
			left = append(left, fmt.Sprintf("namespaces %v, want %v", ns, e.ns))
		}
		for i, lb := range e.s.LBs {
			k, err := e.kernel(i)
			if err != nil {
				left = append(left, err.Error())
				continue
			}
			left = append(left, k.differences(lb.Name, e.base[i])...)
		}
		if len(left) == 0 || time.Now().After(deadline) || sleep(ctx, 200*time.Millisecond) != nil {
			return left
		}
	}
}

func (e *env) kernel(i int) (kernel, error) {
	lb := e.s.LBs[i]
	rules, err := lb.Host.Run("nft", "-s", "-t", "list", "ruleset")
	if err != nil {
		return kernel{}, fmt.Errorf("%s: nft list ruleset: %v: %s", lb.Name, err, rules)
	}
	addrs, err := lb.Host.Run("ip", "-o", "addr", "show")
	if err != nil {
		return kernel{}, fmt.Errorf("%s: ip addr: %v: %s", lb.Name, err, addrs)
	}
	pids, err := namespacePids(lb.Host.Name)
	if err != nil {
		return kernel{}, err
	}
	k := kernel{ruleset: strings.Split(strings.TrimSpace(string(rules)), "\n"), procs: len(pids)}
	for _, line := range strings.Split(strings.TrimSpace(string(addrs)), "\n") {
		// "2: eth0    inet 192.0.2.11/24 brd … scope global eth0 …"
		f := strings.Fields(line)
		if len(f) >= 4 {
			k.addrs = append(k.addrs, f[1]+" "+f[3])
		}
	}
	slices.Sort(k.addrs)
	return k, nil
}

// differences names how k differs from the node's state before the matrix.
func (k kernel) differences(node string, base kernel) []string {
	var out []string
	if added, removed := diffLines(base.ruleset, k.ruleset); len(added)+len(removed) > 0 {
		out = append(out, fmt.Sprintf("%s: nftables rules added %q, removed %q", node, added, removed))
	}
	if added, removed := diffLines(base.addrs, k.addrs); len(added)+len(removed) > 0 {
		out = append(out, fmt.Sprintf("%s: addresses added %v, removed %v", node, added, removed))
	}
	if k.procs != base.procs {
		out = append(out, fmt.Sprintf("%s: %d processes, was %d", node, k.procs, base.procs))
	}
	return out
}

// diffLines returns the lines of b not in a and of a not in b, counting
// repeats (a duplicated rule is an added line).
func diffLines(a, b []string) (added, removed []string) {
	count := map[string]int{}
	for _, l := range a {
		count[strings.TrimSpace(l)]++
	}
	for _, l := range b {
		l = strings.TrimSpace(l)
		if count[l] > 0 {
			count[l]--
		} else {
			added = append(added, l)
		}
	}
	for l, n := range count {
		for range n {
			removed = append(removed, l)
		}
	}
	slices.Sort(removed)
	return added, removed
}

// namespacePids lists the processes in a namespace.
func namespacePids(ns string) ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", ns).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %v: %s", ns, err, out)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// halbPid returns the pid of halb on node i (the only process there).
func (e *env) halbPid(i int) (int, error) {
	pids, err := namespacePids(e.s.LBs[i].Host.Name)
	if err != nil {
		return 0, err
	}
	if len(pids) != 1 {
		return 0, fmt.Errorf("%s: %d processes, want halb alone", e.s.LBs[i].Name, len(pids))
	}
	return pids[0], nil
}

// procStatus reads a field of /proc/PID/status as a number ("Threads",
// "VmRSS" in kB).
func procStatus(pid int, field string) (int, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, field)
}

// addFault adds the fault table to host h: rule runs on every packet it
// receives, before anything else.
func addFault(h *netns.Host, rule string) error {
	script := fmt.Sprintf("table inet %s {\n chain in {\n  type filter hook input priority -300; policy accept;\n  %s\n }\n}\n", faultTable, rule)
	cmd := h.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: add the fault table: %v: %s", h.Name, err, out)
	}
	return nil
}

// dropFault removes the fault table from host h and returns what its
// counters counted, in order.
func dropFault(h *netns.Host) []string {
	out, _ := h.Run("nft", "list", "table", "inet", faultTable) // absent is fine
	_, _ = h.Run("nft", "delete", "table", "inet", faultTable)
	var counts []string
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "packets" && i+1 < len(f) {
			counts = append(counts, f[i+1])
		}
	}
	return counts
}

// transitions returns node i's VRRP transitions of instance since from.
func (e *env) transitions(ctx context.Context, i int, instance string, from time.Time) ([]event.VRRP, error) {
	recs, err := e.api[i].Events(ctx, 1000)
	if err != nil {
		return nil, err
	}
	var out []event.VRRP
	for _, r := range recs {
		if r.Kind == "vrrp" && r.VRRP != nil && r.VRRP.Instance == instance && !r.VRRP.At.Before(from) {
			out = append(out, *r.VRRP)
		}
	}
	return out, nil
}

// waitState waits up to limit for node i to enter state for instance after
// from, and returns when it did (by halb's own event).
func (e *env) waitState(ctx context.Context, i int, instance, state string, from time.Time, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		trs, err := e.transitions(ctx, i, instance, from)
		if err == nil {
			for _, tr := range trs {
				if tr.New == state {
					return tr.At, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s did not become %s of %s within %v", e.s.LBs[i].Name, state, instance, limit)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

// masters returns, per instance, the nodes that say they are its master.
func (e *env) masters(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	for i, lb := range e.s.LBs {
		if !lb.Running() {
			continue
		}
		st, err := e.api[i].Status(ctx)
		if err != nil {
			return nil, err
		}
		for _, in := range st.VRRP {
			if in.State == "MASTER" {
				out[in.Name] = append(out[in.Name], lb.Name)
			}
			if _, ok := out[in.Name]; !ok {
				out[in.Name] = nil
			}
		}
	}
	return out, nil
}

// waitOneMaster waits up to limit for exactly one master per instance and
// returns how long it took from since.
func (e *env) waitOneMaster(ctx context.Context, since time.Time, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for {
		m, err := e.masters(ctx)
		one := err == nil && len(m) > 0
		for _, nodes := range m {
			one = one && len(nodes) == 1
		}
		if one {
			return time.Since(since), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("masters %v after %v", m, limit)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// clientMAC returns the link address the client has for vip ("" if none).
func (e *env) clientMAC(vip string) string {
	out, _ := e.s.Client.Run("ip", "neigh", "show", vip) // no entry reads as ""
	f := strings.Fields(string(out))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}

// traffic starts client traffic to every VIP: a new connection per VIP
// every 100 ms, and one long-lived connection per VIP. Requests may wait
// 3 s, the client's first SYN retransmissions. stop ends it.
func (e *env) traffic(ctx context.Context) (g *traffic.Generator, stop func()) {
	g = &traffic.Generator{Dial: e.s.Client.DialContext, VIPs: site.AllVIPs(), Port: 80,
		Interval: 100 * time.Millisecond, Timeout: 3 * time.Second, Persistent: 1}
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { g.Run(gctx); close(done) }()
	return g, func() { cancel(); <-done }
}

// trafficReport says how traffic fared from from on, and whether it was
// untouched: no failed request, every long-lived connection kept.
func trafficReport(g *traffic.Generator, from time.Time) (string, bool) {
	w := g.Summary(from, time.Now())
	total, broken, why := g.LongLived()
	text := fmt.Sprintf("%d/%d requests failed, %d/%d long-lived connections kept", w.Failed, w.Requests, total-broken, total)
	if broken > 0 {
		text += fmt.Sprintf(" (%s)", why[0])
	}
	return text, w.Failed == 0 && broken == 0
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
