// Package packaging holds the Debian packaging of halb; its test builds
// the .deb, inspects it, and installs it into a throwaway root.
package packaging

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args[:min(len(args), 3)], " "), err, out.String())
	}
	return out.String()
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// buildDeb runs the build script once per test binary.
func buildDeb(t *testing.T) string {
	t.Helper()
	labtest.RequireTool(t, "dpkg-deb", "go")
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(repoRoot(), "packaging", "build-deb.sh"), out)
	cmd.Env = append(os.Environ(), "VERSION=1.0.0~test")
	b, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("build-deb.sh: %v\n%s", err, stderr)
	}
	deb := strings.TrimSpace(string(b))
	if !strings.HasPrefix(filepath.Base(deb), "halb_1.0.0~test_") {
		t.Fatalf("build-deb.sh printed %q", deb)
	}
	return deb
}

// TestDebPackage builds the package, checks its content and lintian's
// verdict, then installs it with dpkg -i into a copy-on-write view of this
// Debian system (a private mount and network namespace) and uses what it
// installed: the binary, its unit, man pages, completion, and a running
// halb answering on its status socket and metrics listener.
func TestDebPackage(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "lintian", "unshare", "chroot", "man", "bash", "systemd-analyze")
	deb := buildDeb(t)

	list := run(t, time.Minute, "dpkg-deb", "-c", deb)
	for _, want := range []string{
		"-rwxr-xr-x root/root", "./usr/sbin/halb",
		"./lib/systemd/system/halb.service", "./etc/halb/halb.yaml",
		"./usr/share/man/man8/halb.8.gz", "./usr/share/man/man5/halb.yaml.5.gz",
		"./usr/share/bash-completion/completions/halb", "./usr/share/doc/halb/copyright",
		"./usr/share/doc/halb/examples/site-lb-a.yaml",
	} {
		if !strings.Contains(list, want) {
			t.Errorf("package lacks %s:\n%s", want, list)
		}
	}
	info := run(t, time.Minute, "dpkg-deb", "-I", deb)
	for _, want := range []string{"Package: halb", "Version: 1.0.0~test", "Section: net", "conffiles", "postinst"} {
		if !strings.Contains(info, want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}

	// lintian: no errors (warnings are logged).
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	lout, _ := exec.CommandContext(ctx, "lintian", "--allow-root", deb).CombinedOutput()
	sc := bufio.NewScanner(bytes.NewReader(lout))
	for sc.Scan() {
		switch line := sc.Text(); {
		case strings.HasPrefix(line, "E:"):
			t.Errorf("lintian: %s", line)
		case strings.HasPrefix(line, "W:"):
			t.Logf("lintian: %s", line)
		}
	}

	out := run(t, 3*time.Minute, "unshare", "--mount", "--net", "--propagation", "private", "bash", "-c", installScript, "install", deb)
	t.Logf("install in a scratch root:\n%s", out)
	for _, want := range []string{
		"VERSION halb 1.0.0~test",
		"STATUS install ok installed",
		"ENABLED multi-user.target.wants/halb.service",
		"UNIT ok",
		"MAN8 /usr/share/man/man8/halb.8.gz",
		"MAN5 halb.yaml - configuration of the halb load balancer",
		"COMPLETE status",
		"COMPLETE-DATAPLANE auto ipvs nftables none",
		"VALID ok",
		"RUNNING node",
		"METRICS halb_status_up 1",
		"PAGE halb on",
		"STOPPED 0",
		"REMOVED conffile kept",
		"PURGED",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("install check %q failed", want)
		}
	}
}

// installScript runs in a private mount and network namespace: it builds
// an overlay of / whose writes land in a tmpfs, and works in it with
// chroot. Nothing it does reaches the real system.
const installScript = `set -u
deb=$1
base=$(mktemp -d)
mount -t tmpfs tmpfs "$base"
mkdir "$base/upper" "$base/work" "$base/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
r=$base/root
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount -t tmpfs tmpfs "$r/run"
mount -t tmpfs tmpfs "$r/tmp"
cp "$deb" "$r/tmp/halb.deb"
ip link set lo up
inroot() { chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

inroot dpkg --force-confold -i /tmp/halb.deb || { echo "dpkg -i failed"; exit 1; }
echo "VERSION $(inroot halb version)"
echo "STATUS $(inroot dpkg-query -W -f='${Status}' halb)"
[ -L "$r/etc/systemd/system/multi-user.target.wants/halb.service" ] && echo "ENABLED multi-user.target.wants/halb.service"
v=$(inroot systemd-analyze verify --man=no /lib/systemd/system/halb.service 2>&1) && [ -z "$v" ] && echo "UNIT ok" || echo "UNIT: $v"
echo "MAN8 $(inroot man -w 8 halb)"
echo "MAN5 $(inroot env MANWIDTH=100 man -P cat 5 halb.yaml 2>/dev/null | grep -m1 -o 'halb.yaml - .*')"
echo "COMPLETE $(inroot bash -c 'source /usr/share/bash-completion/bash_completion; _completion_loader halb; COMP_WORDS=(halb st); COMP_CWORD=1; COMP_LINE="halb st"; COMP_POINT=7; _halb; echo ${COMPREPLY[@]}')"
echo "COMPLETE-DATAPLANE $(inroot bash -c 'source /usr/share/bash-completion/bash_completion; _completion_loader halb; COMP_WORDS=(halb run --dataplane ""); COMP_CWORD=3; COMP_LINE="halb run --dataplane "; COMP_POINT=21; _halb; echo ${COMPREPLY[@]}')"
inroot halb validate /etc/halb/halb.yaml && echo "VALID ok"

# Run the installed halb on the installed default configuration.
chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin halb run --config /etc/halb/halb.yaml --dataplane none >"$r/tmp/halb.log" 2>&1 &
pid=$!
for i in $(seq 100); do [ -S "$r/run/halb/halb.sock" ] && inroot halb status >/dev/null 2>&1 && break; sleep 0.1; done
echo "RUNNING $(inroot halb status 2>&1 | head -1)"
echo "METRICS $(curl -s --max-time 5 http://127.0.0.1:9470/metrics | grep '^halb_status_up')"
echo "PAGE $(curl -s --max-time 5 http://127.0.0.1:9470/ | grep -o 'halb on [^<]*' | head -1)"
kill -TERM $pid; wait $pid; echo "STOPPED $?"
cat "$r/tmp/halb.log" | head -20

inroot dpkg -r halb >/dev/null
[ ! -e "$r/usr/sbin/halb" ] && [ -e "$r/etc/halb/halb.yaml" ] && echo "REMOVED conffile kept"
inroot dpkg -P halb >/dev/null
[ ! -e "$r/etc/halb/halb.yaml" ] && ! inroot dpkg-query -W halb >/dev/null 2>&1 && echo "PURGED"
`
