package keepalived

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/lab/labtest"
)

// publicCorpusDir holds keepalived configurations from public repositories
// (testdata/corpus/public/SOURCES says where each comes from) and
// VERDICTS, keepalived's own verdict on each.
const publicCorpusDir = "testdata/corpus/public"

// publicCorpusTarget is how many files of the public corpus halb must
// handle as keepalived does (converting what keepalived loads, refusing
// with a located error what it refuses); the test fails below it.
const publicCorpusTarget = 40

// TestPublicCorpus runs keepalived 2.2.7's config test on every file of
// the public corpus, in a network namespace holding the interfaces the
// file names, and compares its verdict with VERDICTS (go test -update
// rewrites it). Then it checks that halb handles each file as keepalived
// does: a file keepalived loads converts and the YAML validates; a file it
// refuses, halb refuses with a located error. It prints the share.
func TestPublicCorpus(t *testing.T) {
	labtest.RequireTool(t, "keepalived")
	lab := labtest.NewLab(t)
	files, _ := filepath.Glob(filepath.Join(publicCorpusDir, "*.conf"))
	if len(files) < 60 {
		t.Fatalf("%d files in %s, want at least 60", len(files), publicCorpusDir)
	}
	want := readVerdicts(t)
	var got []string
	handled := 0
	var missed []string
	for i, f := range files {
		name := filepath.Base(f)
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
		verdict := keepalivedVerdict(t, h.Command, f)
		got = append(got, name+": "+verdict)
		if w, ok := want[name]; !ok && !*update {
			t.Errorf("%s: no verdict recorded (go test -update -run TestPublicCorpus records it)", name)
		} else if w != verdict && !*update {
			t.Errorf("%s: keepalived's verdict changed:\n got: %s\nwant: %s", name, verdict, w)
		}
		if why := halbHandles(f, verdict == "loads"); why != "" {
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

// readVerdicts reads VERDICTS: one "FILE: loads" or "FILE: refuses …"
// line per file.
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

// keepalivedVerdict runs keepalived -t on the file: "loads", or "refuses
// (exit N): " and the first line of its output, with the file's path
// shortened to its name.
func keepalivedVerdict(t *testing.T, command func(context.Context, string, ...string) *exec.Cmd, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := command(ctx, "keepalived", "-t", "-f", abs).CombinedOutput()
	if err == nil {
		return "loads"
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("keepalived -t -f %s: %v", path, err)
	}
	first := ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			first = strings.ReplaceAll(line, abs, filepath.Base(path))
			break
		}
	}
	return fmt.Sprintf("refuses (exit %d): %s", exit.ExitCode(), first)
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
