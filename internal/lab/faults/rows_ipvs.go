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
// hand: its 5 s verification period, then the kernel's dump and the
// reconcile (up to 2 s in an emulated VM under the matrix's load).
const ipvsRestoreBound = 5*time.Second + 2*time.Second

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
// ipvsadm -e: each must be put back within ipvsRestoreBound, as its
// dataplane_restored event's time tells.
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
		// From the change made, to halb's restore: starting a program
		// (ipvsadm, to look) can take seconds in an emulated VM.
		changed := time.Now()
		back, err := ipvsBack(ctx, e, saved, changed)
		if err != nil {
			return "", false, err
		}
		if !back {
			parts = append(parts, fmt.Sprintf("%s: not restored after %s", c.what, secs(ipvsRestoreBound+ipvsLook)))
			kept, left = false, true
			break
		}
		at, err := e.restoredAt(ctx, 0, changed)
		if err != nil {
			return "", false, err
		}
		if at.IsZero() {
			parts = append(parts, fmt.Sprintf("%s: restored, no dataplane_restored event", c.what))
			kept = false
			continue
		}
		took := at.Sub(changed)
		parts = append(parts, fmt.Sprintf("%s: restored after %s", c.what, secs(took)))
		kept = kept && took <= ipvsRestoreBound
	}
	missing, _ := trafficReport(g, from)
	text := fmt.Sprintf("%s; meanwhile %s", strings.Join(parts, ", "), missing)
	if left {
		return text, false, e.restartLB(0)
	}
	return text, kept, nil
}

// ipvsLook is how much longer than ipvsRestoreBound the row looks for the
// restored services: ipvsadm's own start in an emulated VM.
const ipvsLook = 5 * time.Second

// ipvsBack waits for lb-a's IPVS services to be saved again.
func ipvsBack(ctx context.Context, e *env, saved string, from time.Time) (bool, error) {
	for time.Since(from) < ipvsRestoreBound+ipvsLook {
		if out, err := e.s.LBs[0].Host.Run("ipvsadm", "-Sn"); err == nil && string(out) == saved {
			return true, nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return false, err
		}
	}
	return false, nil
}

// restoredAt returns when node i recorded its first dataplane_restored
// event since from (zero: none).
func (e *env) restoredAt(ctx context.Context, i int, from time.Time) (time.Time, error) {
	recs, err := e.api[i].Events(ctx, 1000)
	if err != nil {
		return time.Time{}, err
	}
	for _, r := range recs {
		if r.Kind == "dataplane_restored" && r.Restored != nil && !r.Restored.At.Before(from) {
			return r.Restored.At, nil
		}
	}
	return time.Time{}, nil
}
