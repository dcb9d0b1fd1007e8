package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Spec is one guest run: a command executed as root in the guest,
// chrooted into the host's (read-only) root.
type Spec struct {
	// Command is the program and its arguments.
	Command []string
	// Env is added to the guest command's environment ("K=V").
	Env []string
	// Dir is the working directory (default: the host's current one).
	Dir string
	// MemoryMB is the guest's memory (default 1024); CPUs its processors
	// (default 1).
	MemoryMB, CPUs int
	// Timeout bounds the whole run, boot included (default 10 minutes).
	Timeout time.Duration
}

// Result is what a guest run left behind.
type Result struct {
	// Output is the command's standard output and error.
	Output []byte
	// ExitCode is the command's exit status.
	ExitCode int
	// Console is the guest's serial console (kernel and init messages).
	Console []byte
	// Preload is the output of module loading; empty when all loaded.
	Preload []byte
	// RunDir is a host directory that the guest saw, writable, at the same
	// path ($HALB_VM_RUN_DIR in the guest); files left there survive
	// the run. It is the caller's to remove.
	RunDir string
	// Elapsed is the wall time of the run, boot included.
	Elapsed time.Duration
}

// Run boots the image, runs spec's command and waits for the guest to
// power off. An error means the guest did not run the command to its
// end (the command's own failure is in ExitCode).
func Run(ctx context.Context, img *Image, spec Spec) (*Result, error) {
	if len(spec.Command) == 0 {
		return nil, errors.New("vm run: no command")
	}
	if spec.Timeout == 0 {
		spec.Timeout = 10 * time.Minute
	}
	if spec.MemoryMB == 0 {
		spec.MemoryMB = 1024
	}
	if spec.CPUs == 0 {
		spec.CPUs = 1
	}
	if spec.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("vm run: %w", err)
		}
		spec.Dir = wd
	}
	runDir, err := os.MkdirTemp("", "halb-vm-")
	if err != nil {
		return nil, fmt.Errorf("vm run: %w", err)
	}
	res := &Result{RunDir: runDir}
	if err := writeScripts(img, spec, runDir); err != nil {
		return res, err
	}

	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	start := time.Now()
	q := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "q35", "-accel", "tcg", "-cpu", "max",
		"-m", strconv.Itoa(spec.MemoryMB), "-smp", strconv.Itoa(spec.CPUs),
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", img.Kernel, "-initrd", img.Initrd,
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
		"-virtfs", "local,path="+runDir+",mount_tag=run,security_model=passthrough,multidevs=remap",
		// no_timer_check: under a loaded host, emulation can fail the
		// kernel's IO-APIC timer check and panic the boot.
		"-append", "console=ttyS0 quiet panic=-1 oops=panic no_timer_check halb.run="+runDir,
	)
	var console bytes.Buffer
	q.Stdout, q.Stderr = &console, &console
	q.WaitDelay = 5 * time.Second
	err = q.Run()
	res.Elapsed = time.Since(start)
	res.Console = console.Bytes()
	res.Output, _ = os.ReadFile(filepath.Join(runDir, "output"))
	res.Preload, _ = os.ReadFile(filepath.Join(runDir, "preload.log"))
	if err != nil {
		return res, fmt.Errorf("vm run: qemu: %w (after %s)\n%s", err, res.Elapsed.Round(time.Millisecond), tail(res.Console, 4000))
	}
	code, rerr := os.ReadFile(filepath.Join(runDir, "exit"))
	if rerr != nil {
		return res, fmt.Errorf("vm run: the guest did not finish the command: %w\nconsole:\n%s", rerr, tail(res.Console, 4000))
	}
	res.ExitCode, err = strconv.Atoi(strings.TrimSpace(string(code)))
	if err != nil {
		return res, fmt.Errorf("vm run: exit status %q: %w", code, err)
	}
	return res, nil
}

// writeScripts writes preload.sh (run by init before the chroot: module
// loading and module autoloading) and run.sh (the command, chrooted).
func writeScripts(img *Image, spec Spec, runDir string) error {
	var pre strings.Builder
	fmt.Fprintf(&pre, "mkdir -p /lib && ln -sfn /mnt/root%s/lib/modules /lib/modules\n", img.Modules)
	pre.WriteString("echo /bin/modprobe > /proc/sys/kernel/modprobe\n")
	for _, m := range img.Preload {
		fmt.Fprintf(&pre, "insmod /mnt/root%s || echo 'halb-vm: insmod %s failed'\n", m, filepath.Base(m))
	}
	var run strings.Builder
	run.WriteString("export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n")
	run.WriteString("export HOME=/run/home TMPDIR=/run/tmp\nmkdir -p $HOME $TMPDIR\n")
	fmt.Fprintf(&run, "export HALB_VM_GUEST=1 HALB_VM_RUN_DIR=%s\n", shellQuote(runDir))
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&run, "export %s=%s\n", k, shellQuote(v))
	}
	run.WriteString("ip link set lo up\n")
	fmt.Fprintf(&run, "cd %s || exit 125\n", shellQuote(spec.Dir))
	quoted := make([]string, len(spec.Command))
	for i, a := range spec.Command {
		quoted[i] = shellQuote(a)
	}
	fmt.Fprintf(&run, "exec %s\n", strings.Join(quoted, " "))
	if err := os.WriteFile(filepath.Join(runDir, "preload.sh"), []byte(pre.String()), 0o644); err != nil {
		return fmt.Errorf("vm run: %w", err)
	}
	if err := os.WriteFile(filepath.Join(runDir, "run.sh"), []byte(run.String()), 0o644); err != nil {
		return fmt.Errorf("vm run: %w", err)
	}
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
