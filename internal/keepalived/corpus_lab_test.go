package keepalived

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
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

	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// publicCorpusRunTarget is how many files of the public corpus that
// keepalived loads halb must run in a lab; the test fails below it.
const publicCorpusRunTarget = 55

// corpusRunAtMost bounds one file's run: start, status, stop.
const corpusRunAtMost = 30 * time.Second

// TestPublicCorpusInLab runs halb on every file of the public corpus that
// keepalived loads (VERDICTS, which TestPublicCorpus keeps true): the file
// is converted, and halb run on the YAML written, in a namespace holding
// the file's interfaces, until halb's status lists the file's instances
// (each out of INIT) and services; then halb must stop on SIGTERM with
// exit status 0. It prints how many ran, and says why for each that did
// not.
func TestPublicCorpusInLab(t *testing.T) {
	labtest.RequireRoot(t)
	lab := labtest.NewLab(t)
	bin := labtest.HalbBinary(t)
	verdicts := readVerdicts(t)
	files, _ := filepath.Glob(filepath.Join(publicCorpusDir, "*.conf"))
	var loads []string
	for _, f := range files {
		if strings.HasPrefix(verdicts[filepath.Base(f)], "loads") {
			loads = append(loads, f)
		}
	}
	if len(loads) < 30 {
		t.Fatalf("%d files keepalived loads in %s, want at least 30", len(loads), publicCorpusDir)
	}
	hosts := make([]*netns.Host, len(loads))
	for i, f := range loads {
		hosts[i] = corpusHost(t, lab, fmt.Sprintf("r%d", i), f)
	}
	why := make([]string, len(loads))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, f := range loads {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			why[i] = runInLab(bin, hosts[i], f, t.TempDir())
		})
	}
	wg.Wait()
	ran := 0
	var notRun []string
	for i, f := range loads {
		if why[i] == "" {
			ran++
			continue
		}
		notRun = append(notRun, filepath.Base(f)+": "+why[i])
	}
	share := fmt.Sprintf("corpus in a lab: %d/%d ran", ran, len(loads))
	fmt.Println(share)
	t.Log(share)
	for _, n := range notRun {
		t.Log("  did not run: " + n)
	}
	if ran < publicCorpusRunTarget {
		t.Errorf("%s, fewer than the %d reached before", share, publicCorpusRunTarget)
	}
}

// srcWord finds the addresses a file sends adverts from.
var srcWord = regexp.MustCompile(`(?m)^\s*(?:unicast_src_ip|mcast_src_ip)\s+([0-9A-Fa-f:.]+)`)

// corpusHost adds a host holding the interfaces the file names, up, with
// carrier (a veth pair each), each with an IPv4 address (203.0.113.N)
// and the link-local IPv6 one; the first also has the addresses the file
// sends adverts from.
func corpusHost(t *testing.T, lab *netns.Lab, name, path string) *netns.Host {
	t.Helper()
	h, err := lab.AddHost(name)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := h.Run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for j, ifname := range interfaceNames(t, path) {
		peer := fmt.Sprintf("rpeer%d", j)
		cmds := [][]string{{"link", "add", ifname, "type", "veth", "peer", "name", peer},
			{"link", "set", ifname, "up"}, {"link", "set", peer, "up"},
			{"addr", "add", fmt.Sprintf("203.0.113.%d/24", j+1), "dev", ifname}}
		if j == 0 {
			for _, m := range srcWord.FindAllStringSubmatch(commentTail.ReplaceAllString(string(data), ""), -1) {
				if a, err := netip.ParseAddr(m[1]); err == nil && !a.IsMulticast() {
					cmds = append(cmds, []string{"addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", ifname})
				}
			}
		}
		for _, c := range cmds {
			if err := h.IP(c...); err != nil {
				t.Fatal(err)
			}
		}
	}
	return h
}

// runInLab converts the file, runs halb on the YAML in h until its status
// lists the file's instances and services, and stops it. It returns ""
// when all went so, else why not.
func runInLab(bin string, h *netns.Host, path, dir string) string {
	conv := Convert(path, Options{ConfigID: "lb1"})
	if conv.Config == nil || conv.Diags.HasErrors() {
		return "halb refuses it: " + conv.Diags.Errors()[0].String()
	}
	cfg := conv.Config
	cfg.StateDir = filepath.Join(dir, "state")
	if cfg.NetNamespace != "" {
		// The file's namespace is the lab host's here.
		cfg.NetNamespace = h.Name
	}
	out, err := RenderYAML(cfg, conv.Written, conv.Origins)
	if err != nil {
		return "rendering: " + err.Error()
	}
	yamlPath := filepath.Join(dir, "halb.yaml")
	if err := os.WriteFile(yamlPath, out, 0o644); err != nil {
		return err.Error()
	}
	var want []string
	for _, in := range cfg.VRRP.Instances {
		want = append(want, in.Name)
	}
	slices.Sort(want)
	sock := filepath.Join(dir, "halb.sock")
	ctx, cancel := context.WithTimeout(context.Background(), corpusRunAtMost)
	defer cancel()
	cmd := h.Command(ctx, bin, "run", "--config", yamlPath, "--socket", sock)
	var logs safeBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	if err := cmd.Start(); err != nil {
		return err.Error()
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tail := func() string {
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		return lines[len(lines)-1]
	}
	var got statusSeen
	for {
		select {
		case err := <-exited:
			return fmt.Sprintf("halb run stopped (%v) before its status listed %d instance(s) and %d service(s): %s", err, len(want), len(cfg.Services), tail())
		case <-time.After(100 * time.Millisecond):
		}
		got = status(ctx, h, bin, sock)
		if slices.Equal(got.instances, want) && !got.initial && got.services == len(cfg.Services) {
			break
		}
		if ctx.Err() != nil {
			return fmt.Sprintf("after %s the status lists instances %v (any in INIT: %v) and %d service(s), want %v and %d", corpusRunAtMost, got.instances, got.initial, got.services, want, len(cfg.Services))
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err = <-exited
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return fmt.Sprintf("halb run exits with %v on SIGTERM: %s", err, tail())
	case err != nil:
		return fmt.Sprintf("halb run: %v", err)
	}
	return ""
}

// statusSeen is what halb status --json says of the instances and
// services.
type statusSeen struct {
	instances []string // names, sorted
	initial   bool     // an instance is in INIT
	services  int
}

func status(ctx context.Context, h *netns.Host, bin, sock string) statusSeen {
	out, err := h.Command(ctx, bin, "status", "--json", "--socket", sock).Output()
	if err != nil {
		return statusSeen{}
	}
	var doc struct {
		VRRP []struct {
			Name, State string
		} `json:"vrrp"`
		Services []json.RawMessage `json:"services"`
	}
	if json.Unmarshal(out, &doc) != nil {
		return statusSeen{}
	}
	s := statusSeen{services: len(doc.Services)}
	for _, in := range doc.VRRP {
		s.instances = append(s.instances, in.Name)
		s.initial = s.initial || in.State == "INIT"
	}
	slices.Sort(s.instances)
	return s
}
