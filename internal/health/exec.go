package health

import (
	"bufio"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"halb/internal/proc"
)

// execProber runs a command as its configured user: exit 0 passes. A
// first line of output that is a number from 0 to 65535 is the weight.
type execProber struct {
	spec probeSpec
	net  netEnv
	user proc.User
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
	u, err := proc.LookupUser(name)
	if err != nil {
		return brokenProber(fmt.Sprintf("%s: %v", cmdName, err))
	}
	return onGoroutine{execProber{spec: spec, net: env, user: u, name: cmdName}}
}

func (p execProber) probe(ctx context.Context) Result {
	ch := p.spec.check
	r := proc.Run(ctx, proc.Cmd{
		Path: ch.Command[0], Args: ch.Command[1:], User: p.user,
		Env: []string{
			"HALB_CHECK_ADDRESS=" + p.spec.server.String(),
			"HALB_CHECK_PORT=" + strconv.Itoa(int(p.spec.target.Port())),
		},
		Start: p.net.hook,
	})
	text := firstLine(string(r.Output))
	switch {
	case r.TimedOut:
		return fail("%s: timeout after %s, killed", p.name, ch.Timeout.D())
	case r.Err != nil && r.ExitCode > 0:
		if text != "" {
			return fail("%s: exit status %d: %s", p.name, r.ExitCode, text)
		}
		return fail("%s: exit status %d", p.name, r.ExitCode)
	case r.Err != nil:
		return fail("%s: %v", p.name, r.Err)
	}
	res := pass("%s: exit status 0", p.name)
	if w, err := strconv.Atoi(text); err == nil && w >= 0 && w <= 65535 {
		res.Weight = w
		res.Detail += ", weight " + text
	}
	return res
}

func firstLine(s string) string {
	line, _, _ := bufio.NewReader(strings.NewReader(s)).ReadLine()
	return truncate(strings.TrimSpace(string(line)), 200)
}
