package keepalived

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// publicCorpusDir holds keepalived configurations from public repositories
// (testdata/corpus/public/SOURCES says where each comes from) and
// VERDICTS, keepalived's own verdict on each.
const publicCorpusDir = "testdata/corpus/public"

// publicCorpusTarget is how many files of the public corpus halb must
// handle as keepalived does (converting what keepalived runs, refusing
// with a located error what it refuses); the test fails below it.
const publicCorpusTarget = 43

// TestPublicCorpus takes keepalived 2.2.7's verdict on every file of the
// public corpus, in a network namespace holding the interfaces the file
// names, and compares it with VERDICTS (go test -update rewrites it).
// Then it checks that halb handles each file as keepalived does: a file
// keepalived loads (with complaints or without) converts and the YAML
// validates; a file it refuses, halb refuses with a located error. It
// prints the share.
func TestPublicCorpus(t *testing.T) {
	labtest.RequireTool(t, "keepalived")
	lab := labtest.NewLab(t)
	files, _ := filepath.Glob(filepath.Join(publicCorpusDir, "*.conf"))
	if len(files) < 60 {
		t.Fatalf("%d files in %s, want at least 60", len(files), publicCorpusDir)
	}
	want := readVerdicts(t)
	hosts := make([]*netns.Host, len(files))
	for i, f := range files {
		h, err := lab.AddHost(fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		for j, ifname := range interfaceNames(t, f) {
			if err := h.IP("link", "add", ifname, "type", "veth", "peer", "name", fmt.Sprintf("kpeer%d", j)); err != nil {
				t.Fatal(err)
			}
			if err := h.IP("link", "set", ifname, "up"); err != nil {
				t.Fatal(err)
			}
		}
		hosts[i] = h
	}
	// Each verdict waits for keepalived to run for a while: the files are
	// taken a few at a time.
	verdicts := make([]string, len(files))
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, f := range files {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			verdicts[i], errs[i] = keepalivedVerdict(hosts[i], f, t.TempDir())
		})
	}
	wg.Wait()
	var got []string
	handled := 0
	var missed []string
	for i, f := range files {
		name := filepath.Base(f)
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		verdict := verdicts[i]
		got = append(got, name+": "+verdict)
		if w, ok := want[name]; !ok && !*update {
			t.Errorf("%s: no verdict recorded (go test -update -run TestPublicCorpus records it)", name)
		} else if w != verdict && !*update {
			t.Errorf("%s: keepalived's verdict changed:\n got: %s\nwant: %s", name, verdict, w)
		}
		if why := halbHandles(f, strings.HasPrefix(verdict, "loads")); why != "" {
			missed = append(missed, name+": "+why)
		} else {
			handled++
		}
	}
	if *update {
		if err := os.WriteFile(filepath.Join(publicCorpusDir, "VERDICTS"), []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	share := fmt.Sprintf("public corpus: %d/%d handled as keepalived does", handled, len(files))
	fmt.Println(share)
	t.Log(share)
	for _, m := range missed {
		t.Log("  not as keepalived: " + m)
	}
	if handled < publicCorpusTarget {
		t.Errorf("%s, fewer than the %d reached before", share, publicCorpusTarget)
	}
}

// readVerdicts reads VERDICTS: one "FILE: VERDICT" line per file.
func readVerdicts(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(publicCorpusDir, "VERDICTS"))
	if err != nil && !(*update && errors.Is(err, os.ErrNotExist)) {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, verdict, ok := strings.Cut(sc.Text(), ": ")
		if ok {
			out[name] = verdict
		}
	}
	return out
}

var (
	ifnameWord  = regexp.MustCompile(`\b(?:interface|dev|lvs_sync_daemon_interface|lvs_sync_daemon)\s+([A-Za-z][\w.-]*)`)
	trackBlock  = regexp.MustCompile(`track_interface\s*\{([^}]*)\}`)
	commentTail = regexp.MustCompile(`[#!].*`)
)

// interfaceNames lists the interfaces a keepalived file names (instance
// interfaces, dev of addresses and routes, tracked interfaces), so that
// keepalived's config test does not fail on an interface this machine
// lacks.
func interfaceNames(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := commentTail.ReplaceAllString(string(data), "")
	var names []string
	for _, m := range ifnameWord.FindAllStringSubmatch(text, -1) {
		names = append(names, m[1])
	}
	for _, m := range trackBlock.FindAllStringSubmatch(text, -1) {
		for _, line := range strings.Split(m[1], "\n") {
			if w := strings.Fields(line); len(w) > 0 {
				names = append(names, w[0])
			}
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return slices.DeleteFunc(names, func(n string) bool { return n == "lo" || len(n) > 15 || strings.ContainsAny(n, "<>$") })
}

// runAtMost bounds each keepalived run of a verdict. keepalived refuses a
// configuration while starting: a process that says it has started (or
// that it has nothing to run) is stopped then and taken as running, and so
// is one still running after runAtMost without saying so.
const runAtMost = 10 * time.Second

// keepalivedVerdict is keepalived's verdict on the file: "loads" when its
// config test passes and it runs; "loads-with-complaints: " and the first
// line of the config test's output when the test complains (it fails on
// any complaint, even one keepalived runs with) but keepalived runs;
// "refuses: " and why when keepalived stops on its own. The file's path is
// shortened to its name; pids holds keepalived's pid files.
func keepalivedVerdict(h *netns.Host, path, pids string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	complaint, err := keepalivedConfigTest(h, abs)
	if err != nil {
		return "", err
	}
	// The VRRP and the checker process, each on its own, since the
	// checker stops on this kernel's missing IPVS and would take the
	// VRRP process with it.
	var why [2]string
	var errs [2]error
	var wg sync.WaitGroup
	for i, only := range []string{"--vrrp", "--check"} {
		wg.Go(func() { why[i], errs[i] = keepalivedRefuses(h, abs, only, filepath.Join(pids, only[2:])) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return "", err
	}
	short := func(s string) string { return strings.ReplaceAll(s, abs, filepath.Base(path)) }
	switch {
	case why[0] != "":
		return "refuses: " + short(why[0]), nil
	case why[1] != "":
		return "refuses: " + short(why[1]), nil
	case complaint != "":
		return "loads-with-complaints: " + short(complaint), nil
	}
	return "loads", nil
}

// keepalivedConfigTest runs keepalived -t on the file: "" when it passes,
// else the first line of its output.
func keepalivedConfigTest(h *netns.Host, abs string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Command(ctx, "keepalived", "-t", "-f", abs).CombinedOutput()
	if err == nil {
		return "", nil
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return "", fmt.Errorf("keepalived -t -f %s: %w", abs, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			return line, nil
		}
	}
	return "", nil
}

var (
	logStamp = regexp.MustCompile(`^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}: `)
	// What keepalived logs whatever the file: starting, its processes'
	// bookkeeping, stopping. The reason it stops is the last other line
	// (its processes' lines interleave differently from run to run).
	bookkeeping = regexp.MustCompile(`^(Starting|Running on|Command line|Opening file|Configuration file|Changing syslog ident|Overriding config net_namespace|NOTICE:|Registering|unlink of|Stopped|Stopping|Shutting down|pid \d+ exited|CPU usage|Terminating|Removing service|Unregistering)`)
	// What keepalived logs once it has read the file and started (or
	// found nothing to run), or when the checker stops for want of IPVS.
	started   = regexp.MustCompile(`^(Startup complete|Warning - keepalived has no configuration to run|IPVS: Can't initialize ipvs)`)
	netnsWord = regexp.MustCompile(`(?m)^\s*net_namespace\s`)
)

// keepalivedRefuses runs keepalived on the file in the foreground with
// only one of its processes (only: --vrrp or --check). It returns "" when
// keepalived runs the file: it says it has started, or still runs after
// runAtMost, or stops only because this kernel has no IPVS (after reading
// the file); else the last line it logged before stopping, bookkeeping
// aside.
func keepalivedRefuses(h *netns.Host, abs, only, pids string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runAtMost)
	defer cancel()
	args := []string{"-n", "-l", "-D", only, "-f", abs,
		"-p", pids + ".pid", "-r", pids + ".vrrp.pid", "-c", pids + ".check.pid", "-b", pids + ".bfd.pid"}
	if data, err := os.ReadFile(abs); err != nil {
		return "", err
	} else if netnsWord.Match(data) {
		// Run in the host's namespace, not the file's.
		args = append(args, "-s", h.Name)
	}
	cmd := h.Command(ctx, "keepalived", args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("keepalived %s -f %s: %w", only, abs, err)
	}
	waited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		waited <- err
	}()
	ran := false
	var lines []string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := logStamp.ReplaceAllString(sc.Text(), "")
		if started.MatchString(line) && !ran {
			ran = true
			cancel()
		}
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, " ") && !bookkeeping.MatchString(line) {
			lines = append(lines, line)
		}
	}
	err := <-waited
	if ran || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "", nil
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return "", fmt.Errorf("keepalived %s -f %s: %w", only, abs, err)
	}
	if len(lines) == 0 {
		return fmt.Sprintf("exit %v with nothing logged", err), nil
	}
	return lines[len(lines)-1], nil
}

// halbHandles says why halb does not handle the file as keepalived does
// ("" when it does). A file keepalived loads must convert, and the YAML
// written must load as halb configuration; a file it refuses, halb must
// refuse with an error located in it.
func halbHandles(path string, loads bool) string {
	conv := Convert(path, Options{ConfigID: "lb1"})
	var diags config.Diagnostics
	var out []byte
	if conv.Config != nil {
		// Rendered before Build, which completes the Config with
		// halb's defaults (as halb convert does).
		var err error
		out, err = RenderYAML(conv.Config, conv.Written, conv.Origins)
		if err != nil {
			return "rendering: " + err.Error()
		}
		_, diags = conv.Build(config.Options{Hostname: "h"})
	} else {
		diags = conv.Diags
	}
	if !loads {
		for _, d := range diags.Errors() {
			if d.File != "" && d.Pos.Line > 0 {
				return ""
			}
		}
		return "keepalived refuses it, halb converts it"
	}
	if errs := diags.Errors(); len(errs) > 0 {
		return "halb refuses it: " + errs[0].String()
	}
	if _, pd := config.Parse("converted.yaml", out, config.Options{Hostname: "h"}); pd.HasErrors() {
		return "the YAML written does not validate: " + pd.Errors()[0].String()
	}
	return ""
}
