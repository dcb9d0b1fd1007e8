package ipvs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"halb/internal/lab/netns"
	"halb/internal/lab/vm"
)

// TestGuestHalbRestart runs the halb binary (halb run --dataplane ipvs) on
// the seed's site, stops it and starts it again: the kernel's services,
// counters and connections are untouched by the stop and the restart, and
// the established connections go on answering.
func TestGuestHalbRestart(t *testing.T) {
	vm.RequireGuest(t)
	bin := os.Getenv("HALB_BINARY")
	if bin == "" {
		t.Fatal("HALB_BINARY is not set (TestVM sets it)")
	}
	l := newDRLab(t, 1)
	lb := l.lbs[0]
	dir, conf := halbSite(t)
	h1 := startHalb(t, lb, bin, conf, dir)
	waitProgrammed(t, lb)
	var open []net.Conn
	for _, a := range longLived {
		open = append(open, l.connect(t, a))
	}
	reader, err := New(WithNetNS(nsFD(t, lb)), WithStateDir(t.TempDir()), WithProcSys(""))
	must(t, err)
	defer reader.Close()
	snapshot := func() (string, map[string]uint64, []Conn) {
		st, err := reader.Status()
		must(t, err)
		counts := map[string]uint64{}
		for _, s := range st {
			counts[s.Key.String()] = s.Connections
		}
		conns, err := reader.Conns()
		must(t, err)
		return ipvsadm(t, lb, "-Sn"), counts, conns
	}
	time.Sleep(2500 * time.Millisecond) // the kernel folds its counters every 2 s
	saved, counts, conns := snapshot()

	h1.stop(t)
	h2 := startHalb(t, lb, bin, conf, dir)
	waitFor(t, "the restarted halb's status socket", func() bool {
		_, err := os.Stat(filepath.Join(dir, "halb.sock"))
		return err == nil
	})
	time.Sleep(3 * time.Second) // its first reconcile
	after, afterCounts, afterConns := snapshot()
	if after != saved {
		t.Errorf("halb's restart changed the kernel:\nbefore\n%s\nafter\n%s\nhalb said:\n%s", saved, after, h2.out.String())
	}
	for k, c := range counts {
		if afterCounts[k] < c {
			t.Errorf("%s counted %d connections before the restart, %d after: recreated", k, c, afterCounts[k])
		}
	}
	for _, c := range conns {
		if !found(afterConns, c.Client) {
			t.Errorf("connection from %s is gone after the restart", c.Client)
		}
	}
	for i, c := range open {
		stillAnswers(t, c, longLived[i])
	}
	h2.stop(t)
}

// longLived are the addresses the tests keep a connection to.
var longLived = []string{"192.0.2.9:80", "192.0.2.10:443", "192.0.2.139:21"}

// halbSite writes the seed's site for halb run, in a new directory that
// is its state directory's and the status socket's too.
func halbSite(t *testing.T) (dir, conf string) {
	t.Helper()
	dir = t.TempDir()
	b, err := os.ReadFile("../../../examples/site-lb-a.yaml")
	must(t, err)
	// No health checks: the lab's servers speak no HTTP, and a check
	// going down would change the kernel during the test.
	text := regexp.MustCompile(`(?m)^    check: .*\n`).ReplaceAllString(string(b), "")
	text = "state_dir: " + filepath.Join(dir, "state") + "\n" + text
	conf = filepath.Join(dir, "site.yaml")
	must(t, os.WriteFile(conf, []byte(text), 0o644))
	return dir, conf
}

// waitProgrammed waits until halb has programmed the site's services.
func waitProgrammed(t *testing.T, lb *netns.Host) {
	t.Helper()
	waitFor(t, "halb to program the site", func() bool {
		out := ipvsadm(t, lb, "-Sn")
		return strings.Count(out, "-A ") == 13 && strings.Count(out, "-a ") == 39
	})
}

// stillAnswers checks one more request and answer through an established
// connection to addr.
func stillAnswers(t *testing.T, c net.Conn, addr string) {
	t.Helper()
	must(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	if _, err := fmt.Fprintf(c, "again\n"); err != nil {
		t.Errorf("connection to %s: write: %v", addr, err)
		return
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, addr+" again") {
		t.Errorf("connection to %s: answer %q, %v", addr, line, err)
	}
}

type halbProc struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan error
	out    *bytes.Buffer
}

func startHalb(t *testing.T, h *netns.Host, bin, conf, dir string) *halbProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := h.Command(ctx, bin, "run", "--config", conf, "--dataplane", "ipvs", "--socket", filepath.Join(dir, "halb.sock"))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	p := &halbProc{cmd: cmd, cancel: cancel, done: make(chan error, 1), out: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	must(t, cmd.Start())
	go func() {
		err := cmd.Wait()
		if cmd.ProcessState != nil && cmd.ProcessState.Success() {
			err = nil // stopped by our SIGTERM, exit status 0
		}
		p.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *halbProc) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	if err := <-p.done; err != nil {
		t.Fatalf("halb did not exit cleanly: %v\n%s", err, p.out.String())
	}
	p.done <- nil // for the cleanup
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
