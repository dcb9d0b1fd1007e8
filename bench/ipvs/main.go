// Command ipvs-bench measures halb's IPVS data plane against the kernel's
// own loader and keepalived on a real kernel: it boots the IPVS VM
// (internal/lab/vm) and, inside it, times building N virtual services × 4
// real servers from empty, a one-server change on top, and a restart with
// nothing to change, with the netlink requests each takes; then
// `ipvsadm -R` of the same services, and keepalived's startup with an
// equivalent keepalived.conf, in the same VM run, each on an empty IPVS
// table (the one before flushed), and prints the ratios.
//
//	go run ./bench/ipvs [-services 10000] [-changes 21]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	cfipvs "github.com/cloudflare/ipvs"

	"halb/internal/dataplane"
	"halb/internal/dataplane/ipvs"
	"halb/internal/lab/netns"
	"halb/internal/lab/vm"
)

func main() {
	services := flag.Int("services", 10000, "virtual services (4 real servers each)")
	changes := flag.Int("changes", 21, "one-server changes to time (the median is printed)")
	flag.DurationVar(&kaTimeout, "keepalived-timeout", 10*time.Minute, "how long keepalived may take")
	flag.Parse()
	if vm.InGuest() {
		if err := bench(*services, *changes); err != nil {
			log.Fatal(err)
		}
		return
	}
	ctx := context.Background()
	img, err := vm.Prepare(ctx)
	if err != nil {
		log.Fatalf("the IPVS VM cannot be prepared: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	res, err := vm.Run(ctx, img, vm.Spec{Command: append([]string{exe}, os.Args[1:]...), MemoryMB: 2048, CPUs: 2, Timeout: 30 * time.Minute})
	if res != nil {
		defer os.RemoveAll(res.RunDir)
		_, _ = os.Stdout.Write(res.Output) // the report: nowhere else to send it
	}
	if err != nil {
		log.Fatal(err)
	}
	if res.ExitCode != 0 {
		log.Fatalf("the benchmark failed in the VM (exit %d)", res.ExitCode)
	}
}

// state is n TCP services on 192.0.2.x:port, each to the same 4 real
// servers, DR, wlc.
func state(n int, weight0 int) dataplane.State {
	var st dataplane.State
	for i := range n {
		vs := dataplane.VirtualService{
			Key:       dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: vip(i), Port: port(i)},
			Scheduler: "wlc",
		}
		for j := range 4 {
			vs.Reals = append(vs.Reals, dataplane.Real{Addr: real(j), Port: port(i), Weight: 1, Forward: "dr"})
		}
		st.Services = append(st.Services, vs)
	}
	st.Services[0].Reals[0].Weight = weight0
	return st
}

func vip(i int) netip.Addr  { return netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i/50)}) }
func port(i int) uint16     { return uint16(1000 + i%50) }
func real(j int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + j)}) }

func bench(n, changes int) error {
	if n > 250*50 {
		return fmt.Errorf("at most %d services", 250*50)
	}
	lab := netns.New("halbb")
	defer func() {
		if err := lab.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "removing the lab:", err)
		}
	}()
	hosts := map[string]*netns.Host{}
	for _, name := range []string{"halb", "ipvsadm", "ka"} {
		h, err := lab.AddHost(name)
		if err != nil {
			return err
		}
		for _, args := range [][]string{{"link", "add", "d0", "up", "type", "dummy"}, {"addr", "add", "198.51.100.1/24", "dev", "d0"}} {
			if err := h.IP(args...); err != nil {
				return err
			}
		}
		hosts[name] = h
	}
	fd, err := os.Open(filepath.Join("/run/netns", hosts["halb"].Name))
	if err != nil {
		return err
	}
	defer func() { _ = fd.Close() }() // a namespace handle, only read
	stateDir, err := os.MkdirTemp("", "halb-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	ctx := context.Background()
	newDP := func() (*ipvs.Dataplane, error) {
		return ipvs.New(ipvs.WithNetNS(int(fd.Fd())), ipvs.WithStateDir(stateDir), ipvs.WithProcSys(""))
	}

	// ipvsadm -R first, on the VM's pristine kernel; its table is then
	// emptied, so that the kernel keeps estimating none of its services
	// during the next phases.
	log.Printf("ipvsadm -R: loading %d services", n)
	restore, err := ipvsadmRestore(hosts["ipvsadm"], n)
	if err != nil {
		return err
	}
	if out, err := hosts["ipvsadm"].Run("ipvsadm", "-C"); err != nil {
		return fmt.Errorf("ipvsadm -C: %v: %s", err, out)
	}

	log.Printf("halb: building %d services from empty", n)
	// halb: from empty.
	d, err := newDP()
	if err != nil {
		return err
	}
	full := state(n, 1)
	start := time.Now()
	if err := d.Reconcile(ctx, full); err != nil {
		return err
	}
	halbFull := time.Since(start)
	fullReads, fullWrites := d.Messages()

	// The kernel's share of a change, before halb's changes (which then
	// set the weight the way halb wants it).
	kernelShare, err := oneRequest(hosts["halb"], changes)
	if err != nil {
		return err
	}
	// halb: one server's weight changes, again and again.
	var times []time.Duration
	r0, w0 := d.Messages()
	for i := range changes {
		st := state(n, 2+i%2)
		start := time.Now()
		if err := d.Reconcile(ctx, st); err != nil {
			return err
		}
		times = append(times, time.Since(start))
	}
	r1, w1 := d.Messages()
	if err := d.Close(); err != nil {
		return err
	}

	// halb: restart with the last state: reads, no writes.
	d2, err := newDP()
	if err != nil {
		return err
	}
	start = time.Now()
	if err := d2.Reconcile(ctx, state(n, 2+(changes-1)%2)); err != nil {
		return err
	}
	restart := time.Since(start)
	rr, rw := d2.Messages()
	if err := d2.Close(); err != nil {
		return err
	}

	slices.Sort(times)
	fmt.Printf("services=%d reals=%d (kernel IPVS in the VM, TCG)\n", n, 4*n)
	fmt.Printf("halb full build:        %8.3f s  netlink requests: %d writes, %d reads\n", halbFull.Seconds(), fullWrites, fullReads)
	fmt.Printf("halb one-server change: %8.3f ms median of %d (min %.3f, max %.3f)  netlink requests per change: %.1f writes, %.1f reads\n",
		ms(times[len(times)/2]), len(times), ms(times[0]), ms(times[len(times)-1]),
		float64(w1-w0)/float64(changes), float64(r1-r0)/float64(changes))
	fmt.Printf("  of which the kernel:  %8.3f ms median (the same request sent alone); the rest is halb's userspace under TCG emulation\n", ms(kernelShare))
	fmt.Printf("halb restart, no change:%8.3f s  netlink requests: %d writes, %d reads\n", restart.Seconds(), rw, rr)
	fmt.Printf("ipvsadm -R:             %8.3f s  (the same services from %d -A/-a lines; run first)\n", restore.Seconds(), 5*n)
	// keepalived runs on a table as empty as the others' first was: no
	// services of an earlier phase for the kernel to keep estimating.
	if out, err := hosts["halb"].Run("ipvsadm", "-C"); err != nil {
		return fmt.Errorf("ipvsadm -C: %v: %s", err, out)
	}
	log.Printf("keepalived: starting with %d services", n)
	// keepalived: the same services from an equivalent keepalived.conf.
	kaFull, err := keepalived(hosts["ka"], stateDir, n)
	if err != nil {
		return err
	}

	fmt.Printf("keepalived startup:     %8.3f s  (until it logs Startup complete; the kernel then holds %d services and %d reals)\n", kaFull.Seconds(), n, 4*n)
	fmt.Printf("ratio halb/ipvsadm -R full build: %.2f\n", halbFull.Seconds()/restore.Seconds())
	fmt.Printf("ratio keepalived/halb full build: %.2f\n", kaFull.Seconds()/halbFull.Seconds())
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("guest load average: %s", b)
	}
	return nil
}

// ipvsadmRestore loads n services × 4 reals, as state(n) has them, with
// one `ipvsadm -R`, and returns how long it took; the kernel's table is
// checked after.
func ipvsadmRestore(h *netns.Host, n int) (time.Duration, error) {
	var b strings.Builder
	for _, vs := range state(n, 1).Services {
		fmt.Fprintf(&b, "-A -t %s -s %s\n", netip.AddrPortFrom(vs.Key.Addr, vs.Key.Port), vs.Scheduler)
		for _, r := range vs.Reals {
			fmt.Fprintf(&b, "-a -t %s -r %s -g -w %d\n", netip.AddrPortFrom(vs.Key.Addr, vs.Key.Port), r.AddrPort(), r.Weight)
		}
	}
	cmd := h.Command(context.Background(), "ipvsadm", "-R")
	cmd.Stdin = strings.NewReader(b.String())
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("ipvsadm -R: %v: %s", err, out)
	}
	took := time.Since(start)
	all, err := h.Run("ipvsadm", "-Sn")
	if err != nil {
		return 0, fmt.Errorf("ipvsadm -Sn: %v: %s", err, all)
	}
	if got := strings.Count(string(all), "\n"); got != 5*n {
		return 0, fmt.Errorf("ipvsadm -R programmed %d lines, want %d", got, 5*n)
	}
	return took, nil
}

var kaTimeout time.Duration

// oneRequest times the kernel's share of a one-server change: the weight
// request halb sends, alone, on a netlink connection of its own. It
// returns the median of n.
func oneRequest(h *netns.Host, n int) (time.Duration, error) {
	var c cfipvs.Client
	if err := h.Do(func() (err error) { c, err = cfipvs.New(); return err }); err != nil {
		return 0, err
	}
	if cl, ok := c.(interface{ Close() error }); ok {
		defer func() { _ = cl.Close() }() // the netlink connection, on the way out
	}
	svc := cfipvs.Service{Address: vip(0), Port: port(0), Family: cfipvs.INET, Protocol: cfipvs.TCP}
	var times []time.Duration
	for i := range n {
		dst := cfipvs.Destination{Address: real(0), Port: port(0), Family: cfipvs.INET, Weight: uint32(4 + i%2), FwdMethod: cfipvs.DirectRoute}
		start := time.Now()
		if err := c.UpdateDestination(svc, dst); err != nil {
			return 0, fmt.Errorf("update real %s of %s: %w", real(0), vip(0), err)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// keepalived starts keepalived's checker with n virtual services and
// returns the time until the kernel has all of them and their reals.
func keepalived(h *netns.Host, dir string, n int) (time.Duration, error) {
	var b strings.Builder
	b.WriteString("global_defs {\n  router_id bench\n}\n")
	for i := range n {
		fmt.Fprintf(&b, "virtual_server %s %d {\n  lb_algo wlc\n  lb_kind DR\n  protocol TCP\n", vip(i), port(i))
		for j := range 4 {
			fmt.Fprintf(&b, "  real_server %s %d {\n    weight 1\n  }\n", real(j), port(i))
		}
		b.WriteString("}\n")
	}
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return 0, err
	}
	logf, err := os.Create(filepath.Join(dir, "keepalived.log"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = logf.Close() }() // keepalived writes it; it is read back by name
	ctx, cancel := context.WithCancel(context.Background())
	cmd := h.Command(ctx, "keepalived", "-n", "-l", "-D", "-C", "-f", conf,
		"-p", filepath.Join(dir, "ka.pid"), "-c", filepath.Join(dir, "checker.pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		return 0, err
	}
	defer func() {
		cancel()
		_ = cmd.Wait() // killed by cancel: its exit status says so
	}()
	// keepalived logs "Startup complete" once it has programmed every
	// service; the kernel's table is checked after.
	done := make(chan error, 1)
	var took time.Duration
	go func() {
		for {
			b, err := os.ReadFile(logf.Name())
			if err != nil {
				done <- err
				return
			}
			if strings.Contains(string(b), "Startup complete") {
				took = time.Since(start)
				done <- nil
				return
			}
			if time.Since(start) > kaTimeout {
				done <- fmt.Errorf("keepalived did not start %d services in %s; it said:\n%s", n, kaTimeout, b)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if err := <-done; err != nil {
		return 0, err
	}
	all, err := h.Run("ipvsadm", "-Sn")
	if err != nil {
		return 0, fmt.Errorf("ipvsadm -Sn: %v: %s", err, all)
	}
	if got := strings.Count(string(all), "\n"); got != 5*n {
		return 0, fmt.Errorf("keepalived programmed %d lines, want %d", got, 5*n)
	}
	return took, nil
}
