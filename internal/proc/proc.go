// Package proc is the only place halb starts programs: those an operator
// configured (exec health checks, VRRP tracking scripts, notify programs)
// and the system tools halb uses (nft). Every run has an explicit user, a
// clean environment, the working directory "/", its own process group
// that is killed as a whole at the timeout or when its context ends, and
// a bounded capture of its output. A Queue bounds how many run at once and
// how many wait.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Path is the PATH every program gets.
const Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultOutputLimit is how much of a program's output is kept when a
// Cmd sets no limit.
const DefaultOutputLimit = 4096

// waitDelay bounds Wait after the group was killed, for pipes held open
// by processes that left the group.
const waitDelay = time.Second

// User is who a program runs as: resolved credentials, or, when the user
// is the one halb runs as, none to switch to.
type User struct {
	Name string
	cred *syscall.Credential
}

// LookupUser resolves a user name to credentials (with its supplementary
// groups). The empty name is an error: there is no default user. Switching
// to another user needs root; running as halb's own user needs nothing.
func LookupUser(name string) (User, error) {
	if name == "" {
		return User{}, errors.New("no user to run as")
	}
	u, err := user.Lookup(name)
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	if uint64(os.Geteuid()) == uid {
		return User{Name: name}, nil
	}
	if os.Geteuid() != 0 {
		return User{}, fmt.Errorf("user %q: switching users needs root", name)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	gids, err := u.GroupIds()
	if err != nil {
		return User{}, fmt.Errorf("user %q: groups: %w", name, err)
	}
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil && n != gid {
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	return User{Name: name, cred: cred}, nil
}

// Self is the user halb runs as, for the system tools halb itself runs
// (nft): no switch of credentials.
func Self() User { return User{Name: "uid " + strconv.Itoa(os.Geteuid())} }

// Cmd is one run of a program.
type Cmd struct {
	// Path and Args are the program and its arguments (without argv[0]).
	Path string
	Args []string
	User User
	// Env holds "NAME=value" entries added to the fixed PATH; nothing of
	// halb's own environment is passed.
	Env   []string
	Stdin []byte // nil: /dev/null
	// Timeout kills the program's process group (0: no timeout but ctx).
	Timeout time.Duration
	// OutputLimit is how many bytes of stdout and stderr together are
	// kept (0: DefaultOutputLimit); the rest is read and dropped.
	OutputLimit int
	// Start, when set, is called with the function that starts the
	// process, to run it in a prepared context (a network namespace).
	Start func(start func() error) error
}

// Result is what a run ended with.
type Result struct {
	// ExitCode is the program's exit status, -1 when it did not exit on
	// its own (not started, killed).
	ExitCode int
	// Output is stdout and stderr as written, at most the output limit;
	// Truncated says whether more was written.
	Output    []byte
	Truncated bool
	// TimedOut says the timeout killed the program's group.
	TimedOut bool
	// Err is nil when the program exited with 0; else the start error,
	// the non-zero exit status or the signal that ended it.
	Err error
}

// Run runs c and waits for it; at the timeout or when ctx ends, the
// whole process group is killed.
func Run(ctx context.Context, c Cmd) Result {
	if c.User.Name == "" {
		return Result{ExitCode: -1, Err: fmt.Errorf("run %s: no user to run as", c.Path)}
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	path, err := lookPath(c.Path)
	if err != nil {
		return Result{ExitCode: -1, Err: fmt.Errorf("start %s: %w", c.Path, err)}
	}
	cmd := exec.CommandContext(ctx, path, c.Args...)
	cmd.Env = append([]string{"PATH=" + Path}, c.Env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.User.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	limit := c.OutputLimit
	if limit <= 0 {
		limit = DefaultOutputLimit
	}
	out := &limitedBuffer{limit: limit}
	cmd.Stdout, cmd.Stderr = out, out
	start := cmd.Start
	if c.Start != nil {
		start = func() error { return c.Start(cmd.Start) }
	}
	if err := start(); err != nil {
		return Result{ExitCode: -1, Err: fmt.Errorf("start %s: %w", c.Path, err)}
	}
	err = cmd.Wait()
	r := Result{ExitCode: cmd.ProcessState.ExitCode(), Output: out.buf.Bytes(), Truncated: out.dropped, Err: err}
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		r.TimedOut = true
	}
	return r
}

// lookPath finds a program named without a slash in Path (not in halb's
// own PATH), as the program's environment says.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(Path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", name, Path)
}

// limitedBuffer keeps the first limit bytes written to it.
type limitedBuffer struct {
	buf     bytes.Buffer
	limit   int
	dropped bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room < len(p) {
		b.dropped = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.buf.Write(p)
}
