package health

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// execProber runs a command as an unprivileged user: exit 0 passes. A
// first line of output that is a number from 0 to 65535 is the weight.
type execProber struct {
	spec probeSpec
	net  netEnv
	cred *syscall.Credential
	name string
}

func newExecProber(spec probeSpec, env netEnv) prober {
	ch := spec.check
	name := ch.User
	if name == "" {
		name = env.scriptUser
	}
	cmdName := "exec " + filepath.Base(ch.Command[0])
	if name == "" {
		return brokenProber(cmdName + ": no user to run it as (user or script_user)")
	}
	u, err := user.Lookup(name)
	if err != nil {
		return brokenProber(fmt.Sprintf("%s: user %q: %v", cmdName, name, err))
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil || uid == 0 {
		return brokenProber(fmt.Sprintf("%s: user %q is root or has no numeric ids", cmdName, name))
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	return onGoroutine{execProber{spec: spec, net: env, cred: cred, name: cmdName}}
}

func (p execProber) probe(ctx context.Context) Result {
	ch := p.spec.check
	cmd := exec.CommandContext(ctx, ch.Command[0], ch.Command[1:]...)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HALB_CHECK_ADDRESS=" + p.spec.server.String(),
		"HALB_CHECK_PORT=" + strconv.Itoa(int(p.spec.target.Port())),
	}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	// On timeout kill the whole process group, not just the shell.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := p.net.hook(cmd.Start); err != nil {
		return fail("%s: %v", p.name, err)
	}
	err := cmd.Wait()
	text := firstLine(out.String())
	switch {
	case ctx.Err() != nil:
		return fail("%s: timeout after %s, killed", p.name, ch.Timeout.D())
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if text != "" {
				return fail("%s: exit status %d: %s", p.name, ee.ExitCode(), text)
			}
			return fail("%s: exit status %d", p.name, ee.ExitCode())
		}
		return fail("%s: %v", p.name, err)
	}
	r := pass("%s: exit status 0", p.name)
	if w, err := strconv.Atoi(text); err == nil && w >= 0 && w <= 65535 {
		r.Weight = w
		r.Detail += ", weight " + text
	}
	return r
}

func firstLine(s string) string {
	line, _, _ := bufio.NewReader(strings.NewReader(s)).ReadLine()
	return truncate(strings.TrimSpace(string(line)), 200)
}
