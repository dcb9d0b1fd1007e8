package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/config"
	"halb/internal/lab/labtest"
)

const kaCorpus = "../../internal/keepalived/testdata/corpus/"

// TestConvertSiteKeepalived converts the site's keepalived.conf: no
// warning, and YAML that halb loads into the same VRRP and services.
func TestConvertSiteKeepalived(t *testing.T) {
	code, stdout, stderr := runCLI("convert", "../../examples/keepalived/lb-a.conf", "--config-id", "lb-a")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	cfg, diags := config.Parse("lb-a.yaml", []byte(stdout), config.Options{Hostname: "h"})
	if cfg == nil {
		t.Fatalf("the YAML does not load:\n%s\n%s", diags, stdout)
	}
	if cfg.Node != "lb-a" || len(cfg.VRRP.Instances) != 2 || len(cfg.Services) != 13 {
		t.Errorf("node %q, %d instances, %d services; want lb-a, 2, 13 (http, 6 https, 6 ftp marks)", cfg.Node, len(cfg.VRRP.Instances), len(cfg.Services))
	}
	if web, _ := cfg.Instance("web-a"); web.Priority != 150 || web.VRID != 9 || web.Version != 3 {
		t.Errorf("web-a: %+v", web)
	}
	for _, want := range []string{"# from ../../examples/keepalived/vrrp.conf:14: vrrp_instance web-a", "mark: 26"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the YAML lacks %q:\n%s", want, stdout)
		}
	}
	// The flag may also come first.
	if code, again, _ := runCLI("convert", "--config-id", "lb-a", "../../examples/keepalived/lb-a.conf"); code != 0 || again != stdout {
		t.Errorf("flag before the file: exit %d, output differs", code)
	}
}

var diagLine = regexp.MustCompile(`^[^:]+:\d+:\d+: (warning: )?\S`)

// TestConvertNamesUnsupported: every unsupported keyword is a located
// warning or error on stderr, and errors make the exit status 1.
func TestConvertNamesUnsupported(t *testing.T) {
	code, stdout, stderr := runCLI("convert", kaCorpus+"unsupported.conf", "--config-id", "x")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stdout, "# NOT VALID") {
		t.Errorf("the YAML does not say it is not valid:\n%s", stdout)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if !diagLine.MatchString(l) {
			t.Errorf("not FILE:LINE:COL: %q", l)
		}
	}
	for _, kw := range []string{"vrrp_strict", "track_file", "\"frobnicate\"", "ops", "FILE_CHECK", "misc_dynamic"} {
		if !strings.Contains(stderr, kw) {
			t.Errorf("%s is not named:\n%s", kw, stderr)
		}
	}
	if code, _, _ := runCLI("convert"); code != 2 {
		t.Errorf("convert without a file: exit %d, want 2", code)
	}
}

// TestValidateKeepalivedConf: validate recognises a keepalived.conf by its
// content, and locates errors in the file that holds them, through
// includes and parameters.
func TestValidateKeepalivedConf(t *testing.T) {
	if code, _, stderr := runCLI("validate", kaCorpus+"dns-nat.conf"); code != 0 {
		t.Fatalf("dns-nat.conf: exit %d\n%s", code, stderr)
	}
	dir := t.TempDir()
	main := filepath.Join(dir, "keepalived.conf")
	inc := filepath.Join(dir, "instances.conf")
	os.WriteFile(main, []byte("! site\n$PRIO=300\ninclude instances.conf\n"), 0o644)
	os.WriteFile(inc, []byte("vrrp_instance A {\n  interface eth0\n  virtual_router_id 7\n  priority $PRIO\n  virtual_ipaddress {\n    192.0.2.7/24\n  }\n}\nvrrp_instance B {\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {\n    192.0.2.8\n  }\n}\n"), 0o644)
	code, _, stderr := runCLI("validate", main)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	for _, want := range []string{
		inc + ":4:12: warning: priority: \"300\" is not a number from 1 to 255: keepalived uses its default, 100",
		inc + ":11:21: vrrp.instances[1].vrid: VRID 7 is already used on eth0",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestRunKeepalivedConf runs the real binary on a keepalived.conf, with
// the dry-run data plane, and reads the services it derived from the
// status socket.
func TestRunKeepalivedConf(t *testing.T) {
	labtest.RequireRoot(t)
	bin := labtest.HalbBinary(t)
	dir := t.TempDir()
	conf, err := filepath.Abs(kaCorpus + "dns-nat.conf")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "halb.sock")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", conf, "--dataplane", "none", "--socket", sock)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	client := api.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var st api.Status
	for {
		if st, err = client.Status(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no status: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if st.Node != "dns-lb1" || len(st.Services) != 2 {
		t.Fatalf("node %q, %d services; want dns-lb1 and 2:\n%+v", st.Node, len(st.Services), st)
	}
	protos := map[string]bool{}
	for _, s := range st.Services {
		protos[s.Protocol] = true
		if s.VIP != "192.0.2.53" || s.Port != 53 || len(s.Servers) != 2 || s.Servers[0].Port != 5353 {
			t.Errorf("service %+v", s)
		}
	}
	if !protos["udp"] || !protos["tcp"] {
		t.Errorf("protocols %v, want udp and tcp", protos)
	}
}
