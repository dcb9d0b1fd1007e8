package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"halb/internal/api"
	"halb/internal/lab/labtest"
)

// halbCmd runs the real binary and returns its exit status and output.
func halbCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(labtest.HalbBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestHelpOnStdout: every way of asking for help prints it on stdout and
// exits 0; a command's help lists each of its flags in one style.
func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, errOut := halbCmd(t, args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: halb COMMAND") {
			t.Errorf("halb %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
		for _, name := range names() {
			if !strings.Contains(out, "\n  "+name+" ") {
				t.Errorf("halb %s does not list %s:\n%s", strings.Join(args, " "), name, out)
			}
		}
	}
	for _, name := range names() {
		flags := []string{"-h, --help"}
		for _, f := range commands[name].completions() {
			flags = append(flags, flagName(f.name))
		}
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {"help", name}} {
			code, out, errOut := halbCmd(t, args...)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: halb "+name) {
				t.Errorf("halb %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
				continue
			}
			for _, f := range flags {
				if !strings.Contains(out, "\n  "+f+" ") {
					t.Errorf("halb %s does not list %s:\n%s", strings.Join(args, " "), f, out)
				}
			}
		}
	}
	if code, out, _ := halbCmd(t, "status", "--help"); code != 0 || !strings.Contains(out, "--socket PATH") || !strings.Contains(out, "--json ") {
		t.Errorf("halb status --help:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, _ := halbCmd(t, args...)
		if code != 0 || !strings.HasPrefix(out, "halb ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("halb %s: exit %d, %q (want the version and %s)", args[0], code, out, runtime.Version())
		}
	}
}

// TestMisuseExitsTwoWithAHint: an unknown command or flag, or missing
// arguments, exit 2 with one line on stderr that says what to run.
func TestMisuseExitsTwoWithAHint(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts"}, `halb: unknown command "stauts"; did you mean "status"? see halb --help`},
		{[]string{"frobnicate"}, `halb: unknown command "frobnicate"; see halb --help`},
		{[]string{"--frob"}, `halb: unknown flag "--frob"; see halb --help`},
		{[]string{"status", "--jsno"}, `halb status: unknown flag "--jsno"; did you mean "--json"? see halb status --help`},
		{[]string{"events", "-n", "many"}, `see halb events --help`},
		{[]string{"validate"}, `halb validate: needs a FILE; see halb validate --help`},
		{[]string{"run"}, `see halb run --help`},
		{[]string{"help", "stats"}, `halb help: unknown command "stats"; did you mean "status"? see halb --help`},
		{[]string{"completion", "tcsh"}, `see halb completion --help`},
		{[]string{"lab", "upp"}, `see halb lab --help`},
		{[]string{"lab", "faults", "--rows", "upgrade ("}, `halb lab: bad --rows: error parsing regexp`},
	} {
		code, out, errOut := halbCmd(t, tt.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("halb %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
	}
	if code, _, errOut := halbCmd(t); code != 2 || !strings.Contains(errOut, "usage: halb") {
		t.Errorf("halb alone: exit %d, stderr %q", code, errOut)
	}
}

// TestFlagsAfterArguments: flags may follow the positional arguments.
func TestFlagsAfterArguments(t *testing.T) {
	f := filepath.Join(t.TempDir(), "keepalived.conf")
	os.WriteFile(f, []byte("vrrp_instance web {\n  interface eth0\n  @lb-a virtual_router_id 9\n  @broken virtual_router_id 300\n  priority 150\n  virtual_ipaddress {\n    192.0.2.9/24\n  }\n}\n"), 0o644)
	if code, _, errOut := halbCmd(t, "validate", f, "--config-id", "lb-a"); code != 0 {
		t.Errorf("validate FILE --config-id lb-a: exit %d, %s", code, errOut)
	}
	if code, _, _ := halbCmd(t, "validate", f, "--config-id", "broken"); code != 1 {
		t.Errorf("validate FILE --config-id broken: exit %d, want 1", code)
	}
}

// TestCompletion: the generated bash completion completes commands, flags,
// flag values and arguments; zsh's and fish's name every command and flag.
func TestCompletion(t *testing.T) {
	code, script, _ := halbCmd(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("halb completion bash: exit %d", code)
	}
	path := filepath.Join(t.TempDir(), "halb.bash")
	os.WriteFile(path, []byte(script), 0o644)
	for line, want := range map[string]string{
		"halb st":                 "status",
		"halb run --dataplane ''": "auto ipvs nftables none",
		"halb status --":          "--json --socket --wide --help",
		"halb events -":           "--follow --json -n --socket --help",
		"halb lab d":              "demo down",
		"halb help v":             "validate version",
		"halb completion ":        "bash zsh fish",
		"halb run --log-level w":  "warn",
	} {
		out, err := exec.Command("bash", "-c", `source "$1"; eval "COMP_WORDS=($2)"; [[ "$2" == *" " ]] && COMP_WORDS+=("");`+
			` COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _halb; echo "${COMPREPLY[@]}"`, "bash", path, line).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("completing %q: %q (%v), want %q", line, out, err, want)
		}
	}
	for _, shell := range []string{"zsh", "fish"} {
		code, script, _ := halbCmd(t, "completion", shell)
		if code != 0 {
			t.Fatalf("halb completion %s: exit %d", shell, code)
		}
		for _, name := range names() {
			if !strings.Contains(script, name) {
				t.Errorf("%s completion lacks the command %s", shell, name)
			}
			for _, f := range commands[name].completions() {
				if !strings.Contains(script, f.name) {
					t.Errorf("%s completion lacks %s's flag %s", shell, name, f.name)
				}
			}
		}
	}
}

// TestSocketAccessMessages: halb status says in plain words that halb is
// not running, or who may read its socket: root only (mode 0600), or the
// members of api.socket_group (mode 0660), who then can.
func TestSocketAccessMessages(t *testing.T) {
	labtest.RequireRoot(t) // to run halb status as another user
	bin := labtest.HalbBinary(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	dir, err := os.MkdirTemp("", "halb-sock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	serve := func(name, group string) string {
		sock := filepath.Join(dir, name)
		ln, err := api.ListenUnix(sock, group)
		if err != nil {
			t.Fatal(err)
		}
		status := func(context.Context) (api.Status, error) { return api.Status{Node: "lb-a"}, nil }
		go api.Serve(t.Context(), ln, api.Handler(status, nil, nil))
		return sock
	}
	rootOnly, grouped := serve("root.sock", ""), serve("group.sock", "65534")
	groupName := "65534"
	if g, err := user.LookupGroupId("65534"); err == nil {
		groupName = g.Name
	}
	as := func(gid uint32, sock string) (int, string) {
		cmd := exec.Command(bin, "status", "--socket", sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: gid, Groups: []uint32{}}}
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), errb.String()
		}
		return 0, errb.String()
	}
	for _, tt := range []struct {
		gid        uint32
		sock, want string
		code       int
	}{
		{65534, rootOnly, "halb status: permission denied on " + rootOnly + ": run as root (api.socket_group opens it to a group)\n", 1},
		{65533, grouped, "halb status: permission denied on " + grouped + ": run as root or join group " + groupName + "\n", 1},
		{65534, grouped, "", 0},
		{65534, filepath.Join(dir, "none.sock"), "halb status: halb is not running (no socket at " + filepath.Join(dir, "none.sock") + ")\n", 1},
	} {
		if code, stderr := as(tt.gid, tt.sock); code != tt.code || stderr != tt.want {
			t.Errorf("halb status --socket %s as group %d: exit %d, stderr %q; want exit %d, %q", tt.sock, tt.gid, code, stderr, tt.code, tt.want)
		}
	}
}
