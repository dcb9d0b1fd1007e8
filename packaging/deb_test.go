// Package packaging holds the Debian packaging of halb; its test builds
// the .deb, inspects it, and installs it into a throwaway root.
package packaging

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
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

var (
	debOnce sync.Once
	debPath string
	debErr  string
)

// buildDeb runs the build script once per test binary.
func buildDeb(t *testing.T) string {
	t.Helper()
	labtest.RequireTool(t, "dpkg-deb", "go")
	debOnce.Do(func() { debPath, debErr = build() })
	if debErr != "" {
		t.Fatal(debErr)
	}
	return debPath
}

func build() (string, string) {
	out, err := os.MkdirTemp("", "halb-deb-")
	if err != nil {
		return "", err.Error()
	}
	cmd := exec.Command(filepath.Join(repoRoot(), "packaging", "build-deb.sh"), out)
	cmd.Env = append(os.Environ(), "VERSION=1.0.0~test")
	b, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return "", fmt.Sprintf("build-deb.sh: %v\n%s", err, stderr)
	}
	deb := strings.TrimSpace(string(b))
	if !strings.HasPrefix(filepath.Base(deb), "halb_1.0.0~test_") {
		return "", fmt.Sprintf("build-deb.sh printed %q", deb)
	}
	return deb, ""
}

func TestMain(m *testing.M) {
	code := m.Run()
	if debPath != "" {
		os.RemoveAll(filepath.Dir(debPath))
	}
	os.Exit(code)
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
		"./usr/share/bash-completion/completions/halb", "./usr/share/zsh/vendor-completions/_halb",
		"./usr/share/fish/vendor_completions.d/halb.fish", "./usr/share/doc/halb/copyright",
		"./usr/share/doc/halb/examples/site-lb-a.yaml", "./usr/share/doc/halb/examples/keepalived/lb-a.conf",
		"./usr/share/doc/halb/examples/keepalived/lvs.conf",
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

// TestDebUnderSystemd boots systemd in a container (systemd-nspawn) on a
// copy-on-write view of this system with the package installed, and
// drives halb.service as an operator would: start (Type=notify, READY
// and its status text), reload, the journal's view of the logs (priority,
// no duplicate timestamp), the metrics listener, stop.
func TestDebUnderSystemd(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "systemd-nspawn", "unshare", "chroot")
	deb := buildDeb(t)
	out := t.TempDir()
	run(t, 3*time.Minute, "unshare", "--mount", "--propagation", "private", "bash", "-c", nspawnScript, "nspawn", deb, out)
	read := func(name string) string { b, _ := os.ReadFile(filepath.Join(out, name)); return string(b) }
	if t.Failed() || read("result") == "" {
		t.Logf("console:\n%s", read("console"))
	}
	result, journal := read("result"), read("journal")
	t.Logf("in the container:\n%s", result)
	for _, want := range []string{
		"active=active", "Type=notify", "NotifyAccess=main", "WatchdogUSec=30s",
		"StatusText=node lb-test: 0 VRRP instances, 0 services",
		"metrics=halb_status_up 1",
		"reload=0", "StatusText=reloaded; node lb-test",
		"stop=0", "Result=success", "ExecMainStatus=0",
	} {
		if !strings.Contains(result, want) {
			t.Errorf("under systemd: %q missing", want)
		}
	}
	// The journal keeps halb's priorities, and its own timestamps only.
	for _, want := range []string{
		"PRIORITY=6\n    MESSAGE=level=INFO msg=\"halb running\"",
		"PRIORITY=4\n    MESSAGE=level=WARN msg=\"reload: /etc/halb/halb.yaml:",
		"PRIORITY=6\n    MESSAGE=level=INFO msg=\"configuration reloaded\"",
	} {
		if !strings.Contains(journal, want) {
			t.Errorf("journal lacks %q:\n%s", want, journal)
		}
	}
	if strings.Contains(journal, "MESSAGE=time=") {
		t.Errorf("journal lines carry a second timestamp:\n%s", journal)
	}
}

// nspawnScript installs the package in an overlay of / and boots it with
// systemd-nspawn into a target that runs only halb and a check unit.
const nspawnScript = `set -u
deb=$1; out=$2
base=$(mktemp -d)
mount -t tmpfs tmpfs "$base"
mkdir "$base/upper" "$base/work" "$base/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
r=$base/root
# nspawn keeps state under /run/systemd/nspawn: give it a tmpfs here.
mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn
cp "$deb" "$r/tmp/halb.deb"
chroot "$r" dpkg -i /tmp/halb.deb >/dev/null || { echo "dpkg -i failed"; exit 1; }
sed -i 's/^#node: lb-a/node: lb-test/' "$r/etc/halb/halb.yaml"
rm -f "$r/etc/machine-id"
ln -sf /dev/null "$r/etc/systemd/system/systemd-networkd-wait-online.service"
cat > "$r/usr/local/sbin/halb-check" <<'EOT'
#!/bin/sh
exec >/out/result 2>&1
sleep 1
echo "active=$(systemctl is-active halb)"
systemctl show -p Type,NotifyAccess,StatusText,WatchdogUSec halb
echo "metrics=$(curl -s --max-time 5 http://127.0.0.1:9470/metrics | grep '^halb_status_up')"
printf 'notify:\n  exec_user: nobody\n' >> /etc/halb/halb.yaml   # valid, with a warning
systemctl reload halb; echo "reload=$?"
systemctl show -p StatusText halb
journalctl -u halb -o verbose --no-pager | grep -E '^    (PRIORITY|MESSAGE)=' > /out/journal
systemctl stop halb; echo "stop=$?"
systemctl show -p Result,ExecMainStatus halb
systemctl poweroff
EOT
chmod 755 "$r/usr/local/sbin/halb-check"
cat > "$r/etc/systemd/system/halb-check.service" <<'EOT'
[Unit]
Description=drive halb.service as an operator would
Wants=halb.service
After=halb.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/halb-check
EOT
printf '[Unit]\nDescription=halb under systemd\nWants=halb-check.service\n' > "$r/etc/systemd/system/halb-check.target"
timeout 120 systemd-nspawn -q --keep-unit --register=no --link-journal=no -D "$r" --bind="$out:/out" \
  --private-network --boot systemd.unit=halb-check.target > "$out/console" 2>&1
echo "nspawn exit $?"
`
