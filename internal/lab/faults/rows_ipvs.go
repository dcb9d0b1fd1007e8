package faults

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Rows of the IPVS data plane, which exists only where the kernel has
// IPVS (the VM's): elsewhere they are not run.

// ipvsRestoreBound is how soon halb puts back an IPVS service changed by
// hand: its 5 s verification period, the kernel's dump and the reconcile
// (slow in an emulated VM).
const ipvsRestoreBound = 5*time.Second + 3*time.Second

var (
	ipvsService = regexp.MustCompile(`(?m)^-A (-[tuf] \S+)`)
	ipvsReal    = regexp.MustCompile(`(?m)^-a (-[tuf] \S+) -r (\S+) (-[gmi])`)
)

// firstIPVSReal reads `ipvsadm -Sn` output: it returns the first virtual
// service as ipvsadm names it ("-f 279998255", "-t 192.0.2.9:80") and its
// first real server's address and forwarding flag.
func firstIPVSReal(saved string) (svc string, dest [2]string, ok bool) {
	s := ipvsService.FindStringSubmatch(saved)
	if s == nil {
		return "", dest, false
	}
	for _, m := range ipvsReal.FindAllStringSubmatch(saved, -1) {
		if m[1] == s[1] {
			return s[1], [2]string{m[2], m[3]}, true
		}
	}
	return "", dest, false
}

// ipvsByHand deletes lb-a's first IPVS service with ipvsadm -D under
// traffic, and once it is back, edits a real server's weight with
// ipvsadm -e: each must be put back within ipvsRestoreBound and recorded.
func ipvsByHand(ctx context.Context, e *env) (string, bool, error) {
	lb := e.s.LBs[0]
	out, err := lb.Host.Run("ipvsadm", "-Sn")
	if err != nil {
		return "", false, notRun{fmt.Sprintf("no IPVS here (ipvsadm: %v)", err)}
	}
	saved := string(out)
	svc, dest, ok := firstIPVSReal(saved)
	if !ok {
		return "", false, notRun{"halb runs no IPVS service with a real server here"}
	}
	g, stop := e.traffic(ctx)
	defer stop()
	if err := sleep(ctx, time.Second); err != nil {
		return "", false, err
	}
	from := time.Now()
	var parts []string
	kept, left := true, false // left: a change is still in the kernel
	for _, c := range []struct{ what, args string }{
		{"service deleted (ipvsadm -D)", "-D " + svc},
		{"weight edited (ipvsadm -e)", fmt.Sprintf("-e %s -r %s %s -w 7", svc, dest[0], dest[1])},
	} {
		if out, err := lb.Host.Run("ipvsadm", strings.Fields(c.args)...); err != nil {
			return "", false, fmt.Errorf("ipvsadm %s: %v: %s", c.args, err, out)
		}
		// From the change made: starting a program can take seconds in
		// an emulated VM.
		took, back, err := ipvsBack(ctx, e, saved, time.Now())
		if err != nil {
			return "", false, err
		}
		if !back {
			parts = append(parts, fmt.Sprintf("%s: not restored after %s", c.what, secs(ipvsRestoreBound)))
			kept, left = false, true
			break
		}
		parts = append(parts, fmt.Sprintf("%s: restored after %s", c.what, secs(took)))
		kept = kept && took <= ipvsRestoreBound
	}
	evs, err := e.restoredEvents(ctx, 0, from)
	if err != nil {
		return "", false, err
	}
	missing, _ := trafficReport(g, from)
	text := fmt.Sprintf("%s; %d dataplane_restored events; meanwhile %s", strings.Join(parts, ", "), len(evs), missing)
	if left {
		return text, false, e.restartLB(0)
	}
	return text, kept && len(evs) == 2, nil
}

// ipvsBack waits up to ipvsRestoreBound for lb-a's IPVS services to be
// saved again, and returns how long after from they were.
func ipvsBack(ctx context.Context, e *env, saved string, from time.Time) (time.Duration, bool, error) {
	for time.Since(from) < ipvsRestoreBound {
		if out, err := e.s.LBs[0].Host.Run("ipvsadm", "-Sn"); err == nil && string(out) == saved {
			return time.Since(from), true, nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return 0, false, err
		}
	}
	return 0, false, nil
}
