// Command programming measures how long halb's nftables data plane takes
// to program N NAT services of B backends each into an empty table of a
// fresh network namespace, and then one backend's failure on top, with
// the netlink bytes each step sends (counted against a fake kernel, which
// also gives the change's userspace share). Run as root:
//
//	go run ./bench/nft/programming -services 1000,10000 -backends 10
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"

	"halb/internal/dataplane"
	"halb/internal/dataplane/nft"
	"halb/internal/dataplane/nft/nfttest"
	"halb/internal/maglev"
)

func main() {
	services := flag.String("services", "1000,10000", "comma-separated service counts")
	backends := flag.Int("backends", 10, "backends per service")
	runs := flag.Int("runs", 3, "runs per size (the median is printed)")
	flag.Parse()
	fmt.Printf("%-9s %-9s %-10s %-12s %-12s %-12s %-13s %-14s\n", "services", "backends", "slots", "from-empty", "bytes", "one-change", "(userspace)", "change-bytes")
	for _, s := range strings.Split(*services, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fail(err)
		}
		if err := measure(n, *backends, *runs); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "programming:", err)
	os.Exit(1)
}

// state has n NAT services of b backends each.
func state(n, b int) dataplane.State {
	var st dataplane.State
	for i := range n {
		vs := dataplane.VirtualService{
			Key:     dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 250)}), Port: uint16(1000 + i/250)},
			Service: fmt.Sprintf("svc%d", i),
		}
		for j := range b {
			vs.Reals = append(vs.Reals, dataplane.Real{Addr: netip.AddrFrom4([4]byte{198, 51, byte(100 + j/250), byte(j%250 + 1)}), Port: 80, Weight: 1, Forward: "nat"})
		}
		st.Services = append(st.Services, vs)
	}
	st.Sort()
	return st
}

func measure(n, b, runs int) error {
	st := state(n, b)
	changed := state(n, b)
	changed.Services[n/2].Reals[b/2].Weight = 0

	// Bytes: the same two steps against a fake kernel that counts them.
	k := &nfttest.Kernel{}
	fake, err := nft.New(nft.WithMode(nft.LoadBalance), nft.WithConnOptions(nftables.WithTestDial(k.Dial)))
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := fake.Reconcile(ctx, st); err != nil {
		return err
	}
	fullBytes, _ := k.Sent()
	t0 := time.Now()
	if err := fake.Reconcile(ctx, changed); err != nil {
		return err
	}
	userspace := time.Since(t0)
	changeBytes, _ := k.Sent()

	var full, change []time.Duration
	for r := range runs {
		f, c, err := timed(fmt.Sprintf("halbbench%dx%d", os.Getpid(), r), st, changed)
		if err != nil {
			return err
		}
		full, change = append(full, f), append(change, c)
	}
	elements := maglev.DefaultSize(b) // one map: every service sees the same backends
	fmt.Printf("%-9d %-9d %-10d %-12s %-12s %-12s %-13s %-14s\n", n, b, elements, median(full).Round(time.Millisecond),
		mib(fullBytes), median(change).Round(10*time.Microsecond), userspace.Round(10*time.Microsecond), fmt.Sprintf("%d B", changeBytes))
	return nil
}

// timed programs st, then changed, into a fresh namespace.
func timed(ns string, st, changed dataplane.State) (time.Duration, time.Duration, error) {
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer func() { _ = exec.Command("ip", "netns", "del", ns).Run() }() // best effort: a left namespace is harmless
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = f.Close() }() // a namespace handle, only read
	d, err := nft.New(nft.WithMode(nft.LoadBalance), nft.WithNetNS(int(f.Fd())))
	if err != nil {
		return 0, 0, err
	}
	ctx := context.Background()
	t0 := time.Now()
	if err := d.Reconcile(ctx, st); err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	if err := d.Reconcile(ctx, changed); err != nil {
		return 0, 0, err
	}
	return t1.Sub(t0), time.Since(t1), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
