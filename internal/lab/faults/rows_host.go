package faults

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"halb/internal/lab/site"
)

// Rows of the host's interference: other programs' nftables tables and
// hands, the process's resource limits, netlink overruns.

// tableBack waits up to limit for halb's nftables table on node i and
// returns how long after from it was there.
func (e *env) tableBack(ctx context.Context, i int, from time.Time, limit time.Duration) (time.Duration, bool, error) {
	for time.Since(from) < limit {
		if _, err := e.s.LBs[i].Host.Run("nft", "list", "table", "inet", "halb"); err == nil {
			return time.Since(from), true, nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return 0, false, err
		}
	}
	return 0, false, nil
}

// restoredEvents returns the summaries of node i's dataplane_restored
// events since from.
func (e *env) restoredEvents(ctx context.Context, i int, from time.Time) ([]string, error) {
	recs, err := e.api[i].Events(ctx, 1000)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range recs {
		if r.Kind == "dataplane_restored" && r.Restored != nil && !r.Restored.At.Before(from) {
			out = append(out, r.Summary)
		}
	}
	return out, nil
}

// restartLB stops node i's halb, when a row leaves its tables broken;
// the site's restore starts it again.
func (e *env) restartLB(i int) error {
	return e.s.LBs[i].Signal(syscall.SIGTERM, 5*time.Second)
}

func nftTableDeleted(ctx context.Context, e *env) (string, bool, error) {
	lb := e.s.LBs[0]
	g, stop := e.traffic(ctx)
	defer stop()
	if err := sleep(ctx, time.Second); err != nil {
		return "", false, err
	}
	from := time.Now()
	if out, err := lb.Host.Run("nft", "delete", "table", "inet", "halb"); err != nil {
		return "", false, fmt.Errorf("delete halb's table: %v: %s", err, out)
	}
	took, back, err := e.tableBack(ctx, 0, from, 3*time.Second)
	if err != nil {
		return "", false, err
	}
	missing, _ := trafficReport(g, from)
	if !back {
		return fmt.Sprintf("not restored after 3 s; meanwhile %s", missing), false, e.restartLB(0)
	}
	evs, err := e.restoredEvents(ctx, 0, from)
	if err != nil {
		return "", false, err
	}
	said := "no event"
	if len(evs) > 0 {
		said = fmt.Sprintf("event %q", evs[0])
	}
	return fmt.Sprintf("restored after %s, %s; meanwhile %s", secs(took), said, missing), took <= time.Second && len(evs) > 0, nil
}

// markBit is the packet mark bit another table sets in the foreign-marks
// row: outside halb's default mark mask (0x1fffffff).
const markBit = 0x40000000

// foreignMarks sends packets for lb-a's HTTP VIP through its prerouting
// hook, where another table sets markBit before halb's marking chain and
// a third counts the marks the packets leave with. The client's packets
// come in on a veth pair of their own: on eth0 the direct-routing ingress
// chain forwards them before prerouting.
func foreignMarks(ctx context.Context, e *env) (string, bool, error) {
	lb, client := e.s.LBs[0].Host, e.s.Client
	vip := site.VIPsA[0]
	from := time.Now()
	if err := client.IP("link", "add", "fx0", "type", "veth", "peer", "name", "fx1", "netns", lb.Name); err != nil {
		return "", false, err
	}
	defer func() { _ = client.IP("link", "del", "fx0") }() // the peer goes with it; leftovers would show it
	out, err := lb.Run("ip", "-br", "link", "show", "fx1")
	f := strings.Fields(string(out))
	if err != nil || len(f) < 3 {
		return "", false, fmt.Errorf("fx1's address: %v: %s", err, out)
	}
	for _, args := range [][]string{{"link", "set", "fx0", "up"}, {"route", "add", vip + "/32", "dev", "fx0"},
		{"neigh", "replace", vip, "lladdr", f[2], "dev", "fx0", "nud", "permanent"}} {
		if err := client.IP(args...); err != nil {
			return "", false, err
		}
	}
	if err := lb.IP("link", "set", "fx1", "up"); err != nil {
		return "", false, err
	}
	script := fmt.Sprintf(`table inet %[1]s {
 chain other {
  type filter hook prerouting priority -200; policy accept;
  iifname "fx1" tcp dport 80 meta mark set meta mark | %#[2]x
 }
 chain count {
  type filter hook prerouting priority 0; policy accept;
  iifname "fx1" tcp dport 80 counter
  iifname "fx1" tcp dport 80 meta mark & %#[2]x == %#[2]x meta mark & 0x1fffffff != 0 counter
 }
}
`, faultTable, markBit)
	cmd := lb.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("add the marking and counting table: %v: %s", err, out)
	}
	for range 5 {
		// A SYN each; lb-a answers with a reset or not at all.
		_, _ = client.Run("timeout", "0.3", "bash", "-c", "echo > /dev/tcp/"+vip+"/80")
	}
	counts := dropFault(lb)
	if len(counts) != 2 {
		return "", false, fmt.Errorf("counters %v", counts)
	}
	sent, both := counts[0], counts[1]
	evs, err := e.restoredEvents(ctx, 0, from)
	if err != nil {
		return "", false, err
	}
	n, _ := strconv.Atoi(sent)
	return fmt.Sprintf("%s of %s packets left with halb's mark and the other table's bit %#x; halb's tables restored %d times meanwhile", both, sent, markBit, len(evs)),
		n > 0 && both == sent && len(evs) == 0, nil
}

// fdLimitWindow is how long halb runs without a free file descriptor:
// long enough for a check to fail twice at its interval (2 s), and for
// the data plane's retries to fail.
const fdLimitWindow = 5 * time.Second

// fdLimit lowers the open-file limit of lb-a's halb to what it has open,
// so that whatever opens a descriptor fails with EMFILE (a check's new
// socket, a netlink socket, the status socket's accept), deletes halb's
// nftables table meanwhile, so that restoring it needs a netlink socket,
// then raises the limit.
func fdLimit(ctx context.Context, e *env) (string, bool, error) {
	lb := e.s.LBs[0]
	pid, err := e.halbPid(0)
	if err != nil {
		return "", false, err
	}
	out, err := lb.Host.Run("prlimit", "--pid", strconv.Itoa(pid), "--nofile", "--output", "SOFT,HARD", "--noheadings", "--raw")
	limits := strings.Fields(string(out))
	if err != nil || len(limits) != 2 {
		return "", false, fmt.Errorf("prlimit: %v: %s", err, out)
	}
	body, err := e.metrics(ctx, 0)
	if err != nil {
		return "", false, err
	}
	_, fail0 := checkRuns(body)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return "", false, err
	}
	logged := len(readFile(lb.Log))
	from := time.Now()
	set := func(soft string) error {
		if out, err := lb.Host.Run("prlimit", "--pid", strconv.Itoa(pid), "--nofile="+soft+":"+limits[1]); err != nil {
			return fmt.Errorf("prlimit --nofile=%s: %v: %s", soft, err, out)
		}
		return nil
	}
	if err := set(strconv.Itoa(len(fds))); err != nil {
		return "", false, err
	}
	if err := sleep(ctx, time.Second); err != nil {
		return "", false, err
	}
	if out, err := lb.Host.Run("nft", "delete", "table", "inet", "halb"); err != nil {
		return "", false, fmt.Errorf("delete halb's table: %v: %s", err, out)
	}
	if err := sleep(ctx, time.Until(from.Add(fdLimitWindow))); err != nil {
		return "", false, err
	}
	if err := set(limits[0]); err != nil {
		return "", false, err
	}
	raised := time.Now()
	if !lb.Running() {
		return "halb stopped while it had no file descriptor left", false, nil
	}
	// The data plane's retries wait 1 s, doubling.
	tableAfter, restored, err := e.tableBack(ctx, 0, raised, 10*time.Second)
	if err != nil {
		return "", false, err
	}
	if !restored {
		return "halb's table not restored 10 s after the limit was raised", false, e.restartLB(0)
	}
	if err := e.settle(ctx); err != nil {
		return "", false, err
	}
	back := time.Since(raised)
	recs, err := e.api[0].Events(ctx, 1000)
	if err != nil {
		return "", false, err
	}
	dpErr := ""
	for _, r := range recs {
		if r.Kind == "dataplane" && r.Dataplane != nil && !r.Dataplane.At.Before(from) {
			dpErr = r.Dataplane.Err
			break
		}
	}
	if body, err = e.metrics(ctx, 0); err != nil {
		return "", false, err
	}
	_, fail1 := checkRuns(body)
	// What failed, by the log's messages, and the servers put down.
	failed := map[string]bool{}
	var down, otherDown []string
	for _, line := range strings.Split(readFile(lb.Log)[logged:], "\n") {
		msg := logField(line, "msg")
		switch {
		case msg == "server health" && logField(line, "state") == "DOWN":
			down = append(down, logField(line, "reason"))
			if !strings.Contains(logField(line, "reason"), "no file descriptor left") {
				otherDown = append(otherDown, logField(line, "reason"))
			}
		case strings.Contains(line, "too many open files"):
			failed[msg] = true
		}
	}
	var changes [2]int
	for i := range changes {
		for _, instance := range []string{"web-a", "web-b"} {
			trs, err := e.transitions(ctx, i, instance, from)
			if err != nil {
				return "", false, err
			}
			changes[i] += len(trs)
		}
	}
	text := fmt.Sprintf("limit %d for %s: %d checks failed, %d servers put down (%q); logged EMFILE in %q; the table deleted meanwhile: data plane error %q, restored %s after the limit was raised; VRRP changes lb-a %d, lb-b %d; halb alive, all healthy %s after",
		len(fds), secs(fdLimitWindow), fail1-fail0, len(down), down, slices.Sorted(maps.Keys(failed)), dpErr, secs(tableAfter), changes[0], changes[1], secs(back))
	return text, len(otherDown) == 0 && changes == [2]int{} && strings.Contains(dpErr, "too many open files") && tableAfter <= 8*time.Second && back <= 10*time.Second, nil
}

// checkRuns sums halb_server_checks_total of a metrics page by result.
func checkRuns(metrics string) (ok, fail int) {
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, "halb_server_checks_total{") {
			continue
		}
		f := strings.Fields(line)
		n, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		if strings.Contains(line, `result="fail"`) {
			fail += int(n)
		} else {
			ok += int(n)
		}
	}
	return ok, fail
}

// logField reads key's value from a log line of slog's text handler.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if s, err := strconv.QuotedPrefix(v); err == nil {
			u, _ := strconv.Unquote(s) // a quoted prefix unquotes
			return u
		}
	}
	v, _, _ = strings.Cut(v, " ")
	return v
}

// overrunElements is how many set elements the overrun row's batch adds:
// about 1 MB of notifications, several times a socket's default buffer.
const overrunElements = 5000

// netlinkOverrun stalls lb-a's halb (SIGSTOP) while one batch adds
// overrunElements elements to a set of another table and deletes halb's
// table: a notification per element overruns halb's notification socket,
// which nobody reads, so that the deletion's notification is lost.
func netlinkOverrun(ctx context.Context, e *env) (string, bool, error) {
	lb := e.s.LBs[0]
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n set flood {\n  type inet_service\n  size 65535\n }\n}\nadd element inet %s flood { ", faultTable, faultTable)
	for p := 1; p <= overrunElements; p++ {
		if p > 1 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(p))
	}
	b.WriteString(" }\ndelete table inet halb\n")
	logged := len(readFile(lb.Log))
	if err := lb.Notify(syscall.SIGSTOP); err != nil {
		return "", false, err
	}
	stalled := time.Now()
	cmd := lb.Host.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	out, err := cmd.CombinedOutput()
	if cerr := lb.Notify(syscall.SIGCONT); cerr != nil {
		return "", false, cerr
	}
	if err != nil {
		return "", false, fmt.Errorf("the flood batch: %v: %s", err, out)
	}
	from := time.Now()
	took, back, err := e.tableBack(ctx, 0, from, 3*time.Second)
	if err != nil {
		return "", false, err
	}
	overran := strings.Contains(readFile(lb.Log)[logged:], "notifications lost")
	said := "halb's notification socket overran, logged"
	if !overran {
		said = "no overrun logged"
	}
	text := fmt.Sprintf("halb stalled %s while %d elements were added and its table deleted in one batch: %s", secs(from.Sub(stalled)), overrunElements, said)
	if !back {
		return text + "; table not restored 3 s after SIGCONT", false, e.restartLB(0)
	}
	return fmt.Sprintf("%s; table restored %s after SIGCONT", text, secs(took)), overran && took <= time.Second, nil
}

// floodAddrs is how many addresses the address-flood row adds: a
// notification each, several times a netlink socket's default buffer.
const floodAddrs = 3000

// addressOverrun stalls lb-a's halb (SIGSTOP) while floodAddrs addresses
// are added to an interface of a veth pair, so that its link and address
// subscriptions overrun; once it runs again, a VIP deleted by hand must
// still be put back.
func addressOverrun(ctx context.Context, e *env) (string, bool, error) {
	lb := e.s.LBs[0]
	if err := lb.Host.IP("link", "add", "fx0", "type", "veth", "peer", "name", "fx1"); err != nil {
		return "", false, err
	}
	defer func() { _ = lb.Host.IP("link", "del", "fx0") }() // its peer and addresses go with it; leftovers would show them
	var b strings.Builder
	for i := 1; i <= floodAddrs; i++ {
		fmt.Fprintf(&b, "address add 2001:db8:ffff::%x/128 dev fx0\n", i)
	}
	logged := len(readFile(lb.Log))
	if err := lb.Notify(syscall.SIGSTOP); err != nil {
		return "", false, err
	}
	cmd := lb.Host.Command(ctx, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	out, err := cmd.CombinedOutput()
	if cerr := lb.Notify(syscall.SIGCONT); cerr != nil {
		return "", false, cerr
	}
	if err != nil {
		return "", false, fmt.Errorf("add %d addresses: %v: %s", floodAddrs, err, out)
	}
	// The flood's updates take a moment to be read.
	if err := sleep(ctx, time.Second); err != nil {
		return "", false, err
	}
	vip := site.VIPsA[1] + "/24"
	from := time.Now()
	if err := lb.Host.IP("addr", "del", vip, "dev", "eth0"); err != nil {
		return "", false, err
	}
	var took time.Duration = -1
	for time.Since(from) < 3*advert {
		out, _ := lb.Host.Run("ip", "-o", "addr", "show", "dev", "eth0") // an error reads as absent
		if strings.Contains(string(out), " "+vip+" ") {
			took = time.Since(from)
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", false, err
		}
	}
	stopped := strings.Contains(readFile(lb.Log)[logged:], "watch stopped")
	said := "the link and address watches went on"
	if stopped {
		said = "a watch stopped (logged)"
	}
	if took < 0 {
		if err := lb.Host.IP("addr", "add", vip, "dev", "eth0"); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%d addresses added while halb was stalled: %s; a VIP deleted after it was not back after %s", floodAddrs, said, secs(3*advert)), false, nil
	}
	return fmt.Sprintf("%d addresses added while halb was stalled: %s; a VIP deleted after it was back after %s", floodAddrs, said, secs(took)),
		!stopped && took <= advert+slack, nil
}
