package faults

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"halb/internal/lab/site"
)

// floodClients is how many clients the status socket flood opens.
const floodClients = 1000

func statusFlood(ctx context.Context, e *env) (string, bool, error) {
	pid, err := e.halbPid(0)
	if err != nil {
		return "", false, err
	}
	threads0, rss0, gor0, err := e.usage(ctx, pid)
	if err != nil {
		return "", false, err
	}
	sock := e.s.LBs[0].Socket
	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var dialFailed atomic.Int64
	for i := range floodClients {
		wg.Go(func() {
			if floodClient(fctx, sock, i%3) != nil {
				dialFailed.Add(1)
			}
		})
	}
	var worst time.Duration
	failed, peakRSS, peakThreads := 0, rss0, threads0
	for range 10 {
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			cancel()
			wg.Wait()
			return "", false, err
		}
		start := time.Now()
		if err := statusOnce(ctx, sock, time.Second); err != nil {
			failed++
		}
		worst = max(worst, time.Since(start))
		if v, err := procStatus(pid, "VmRSS"); err == nil {
			peakRSS = max(peakRSS, v)
		}
		if v, err := procStatus(pid, "Threads"); err == nil {
			peakThreads = max(peakThreads, v)
		}
	}
	cancel()
	wg.Wait()
	// Connections close on the daemon's side within its read timeout.
	var threads1, rss1, gor1 int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if threads1, rss1, gor1, err = e.usage(ctx, pid); err != nil {
			return "", false, err
		}
		if gor1 <= gor0+10 || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return "", false, err
		}
	}
	grewMB := (peakRSS - rss0) / 1024
	text := fmt.Sprintf("%d/10 status queries failed, slowest %s; %d clients not connected; threads %d→%d (peak %d), goroutines %d→%d, RSS %d→%d MB (peak +%d MB)",
		failed, secs(worst), dialFailed.Load(), threads0, threads1, peakThreads, gor0, gor1, rss0/1024, rss1/1024, grewMB)
	return text, failed == 0 && worst <= time.Second && gor1 <= gor0+10 && threads1 <= threads0+8 && grewMB <= 64, nil
}

// floodClient is one hostile client of the status socket: kind 0 sends
// garbage, 1 sends nothing, 2 a 10 MB request header. It holds its
// connection until ctx is done or the daemon closes it.
func floodClient(ctx context.Context, sock string, kind int) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // ends the reads below
	defer stop()
	defer conn.Close()
	switch kind {
	case 0:
		_, _ = conn.Write([]byte("\x16\x03\x01\xff\xfe garbage \x00\r\n\r\n")) // the daemon may close first
	case 2:
		_, _ = io.WriteString(conn, "GET /status HTTP/1.1\r\nHost: halb\r\nX-Big: ")
		chunk := []byte(strings.Repeat("a", 64<<10))
		for range 160 { // 10 MB, or until the daemon closes
			if _, err := conn.Write(chunk); err != nil {
				break
			}
		}
	}
	_, _ = io.Copy(io.Discard, conn) // whatever the daemon answers, until it closes
	return nil
}

// statusOnce asks for the status on a new connection, as `halb status`
// does, within limit.
func statusOnce(ctx context.Context, sock string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	if err := conn.SetDeadline(dl); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "GET /status HTTP/1.1\r\nHost: halb\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status: %s", resp.Status)
	}
	return nil
}

// usage reads halb's threads and resident memory (kB) from /proc and its
// goroutines from its metrics.
func (e *env) usage(ctx context.Context, pid int) (threads, rssKB, goroutines int, err error) {
	if threads, err = procStatus(pid, "Threads"); err != nil {
		return
	}
	if rssKB, err = procStatus(pid, "VmRSS"); err != nil {
		return
	}
	goroutines, err = e.goroutines(ctx, 0)
	return
}

// goroutines reads go_goroutines from node i's metrics.
func (e *env) goroutines(ctx context.Context, i int) (int, error) {
	body, err := e.metrics(ctx, i)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("%s: metrics have no go_goroutines", e.s.LBs[i].Name)
}

func vipDeleted(ctx context.Context, e *env) (string, bool, error) {
	lb := e.s.LBs[0]
	vip := site.VIPsA[1] + "/24"
	g, stop := e.traffic(ctx)
	defer stop()
	if err := sleep(ctx, time.Second); err != nil {
		return "", false, err
	}
	from := time.Now()
	if err := lb.Host.IP("addr", "del", vip, "dev", "eth0"); err != nil {
		return "", false, err
	}
	limit := 3 * advert
	for time.Since(from) < limit {
		out, _ := lb.Host.Run("ip", "-o", "addr", "show", "dev", "eth0") // an error reads as absent
		if strings.Contains(string(out), " "+vip+" ") {
			took := time.Since(from)
			return "back after " + secs(took), took <= advert+slack, nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", false, err
		}
	}
	missing, _ := trafficReport(g, from)
	if err := lb.Host.IP("addr", "add", vip, "dev", "eth0"); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("not back after %s; meanwhile %s", secs(limit), missing), false, nil
}

func reloadStorm(ctx context.Context, e *env) (string, bool, error) {
	const old, new = "{address: 198.51.100.13, weight: 1}", "{address: 198.51.100.13, weight: 2}"
	var alt [2][]byte
	for i := range alt {
		if !strings.Contains(string(e.config[i]), old) {
			return "", false, fmt.Errorf("%s's configuration has no %q", e.s.LBs[i].Name, old)
		}
		alt[i] = []byte(strings.Replace(string(e.config[i]), old, new, 1))
	}
	g, stop := e.traffic(ctx)
	defer stop()
	if err := sleep(ctx, 1500*time.Millisecond); err != nil {
		return "", false, err
	}
	from := time.Now()
	const reloads = 50
	for n := range reloads {
		for i, lb := range e.s.LBs {
			text := e.config[i]
			if n%2 == 1 { // the last reload loads the changed weights
				text = alt[i]
			}
			if err := os.WriteFile(lb.Config, text, 0o644); err != nil {
				return "", false, err
			}
			if err := lb.Notify(syscall.SIGHUP); err != nil {
				return "", false, err
			}
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return "", false, err
		}
	}
	if err := sleep(ctx, 3*time.Second); err != nil {
		return "", false, err
	}
	final := true
	for i := range e.s.LBs {
		st, err := e.api[i].Status(ctx)
		if err != nil {
			return "", false, err
		}
		for _, svc := range st.Services {
			for _, srv := range svc.Servers {
				if svc.Pool == "www" && srv.Address == "198.51.100.13" && srv.Weight != 2 {
					final = false
				}
			}
		}
	}
	text, ok := trafficReport(g, from)
	state := "final weights = the last config's on both nodes"
	if !final {
		state = "final weights NOT the last config's"
	}
	return fmt.Sprintf("%d reloads on each node; %s; %s", reloads, text, state), ok && final, nil
}

func readOnlyState(ctx context.Context, e *env) (string, bool, error) {
	lb := e.s.LBs[0]
	dir := filepath.Join(e.opts.Dir, site.LBNames[0], "state")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	if err := lb.Signal(syscall.SIGTERM, 5*time.Second); err != nil {
		return "", false, err
	}
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("bind-mount the state directory: %v: %s", err, out)
	}
	defer func() { _ = exec.Command("umount", dir).Run() }() // restore finds any failure as a leftover
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", dir).CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("make the state directory read-only: %v: %s", err, out)
	}
	logged := len(readFile(lb.Log))
	if err := e.s.StartLB(ctx, 0); err != nil {
		return "started: no (" + err.Error() + ")", false, nil
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return "", false, err
	}
	if _, err := e.api[0].Status(ctx); err != nil || !lb.Running() {
		return fmt.Sprintf("halb stopped or does not answer: %v", err), false, nil
	}
	said := "the log says nothing of it: the nftables data plane keeps no state there (the IPVS one does)"
	for _, line := range strings.Split(readFile(lb.Log)[logged:], "\n") {
		if strings.Contains(line, "state") && (strings.Contains(line, "read-only") || strings.Contains(line, "ERROR") || strings.Contains(line, "WARN")) {
			said = "the log says: " + line
			break
		}
	}
	// Restart with the directory writable again (restore starts it).
	if err := lb.Signal(syscall.SIGTERM, 5*time.Second); err != nil {
		return "", false, err
	}
	return "runs and answers; " + said, true, nil
}
