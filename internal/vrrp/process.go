package vrrp

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"halb/internal/config"
)

// Process tracking: vrrp.processes are counted in /proc on the clock;
// an instance tracking one is in FAULT (weight 0), or has its priority
// moved, while the count is outside the process's quorum.

// process is a running process: its name (comm) and command line.
type process struct {
	comm string
	argv []string
}

// scanProc lists the processes under root (/proc); processes that end
// while it reads are left out.
func scanProc(root string) ([]process, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []process
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(root, e.Name(), "comm"))
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(root, e.Name(), "cmdline"))
		p := process{comm: strings.TrimSuffix(string(comm), "\n")}
		for _, a := range bytes.Split(bytes.TrimSuffix(cmdline, []byte{0}), []byte{0}) {
			p.argv = append(p.argv, string(a))
		}
		out = append(out, p)
	}
	return out, nil
}

// matches reports whether p is one of spec's processes: its name (the
// kernel keeps 15 characters) or, with FullCommand, its program path is
// spec's command, and its arguments begin with spec's Args.
func matches(spec config.Process, p process) bool {
	switch {
	case spec.FullCommand:
		if len(p.argv) == 0 || p.argv[0] != spec.Command {
			return false
		}
	case len(spec.Command) > 15:
		if p.comm != spec.Command[:15] || len(p.argv) == 0 || filepath.Base(p.argv[0]) != spec.Command {
			return false
		}
	default:
		if p.comm != spec.Command {
			return false
		}
	}
	if spec.Args == "" {
		return true
	}
	if len(p.argv) < 2 {
		return false
	}
	return strings.HasPrefix(strings.Join(p.argv[1:], " "), spec.Args)
}

// procState is what is known of one of vrrp.processes.
type procState struct {
	cfg   config.Process
	count int
	next  time.Time
}

// up reports whether the count is within the quorum.
func (s *procState) up() bool {
	return s.count >= s.cfg.Quorum && (s.cfg.QuorumMax == 0 || s.count <= s.cfg.QuorumMax)
}

// syncProcesses follows vrrp.processes of cfg and counts them at once.
func (r *runner) syncProcesses(cfg *config.Config) {
	old := r.procs
	r.procs = map[string]*procState{}
	for _, p := range cfg.VRRP.Processes {
		if s := old[p.Name]; s != nil && s.cfg == p {
			r.procs[p.Name] = s
			continue
		}
		r.procs[p.Name] = &procState{cfg: p}
	}
	if len(r.procs) > 0 {
		r.countProcesses(r.clock.Now(), true)
	}
}

// nextProcessScan is when the next process count is due (zero: none).
func (r *runner) nextProcessScan() time.Time {
	var next time.Time
	for _, s := range r.procs {
		if next.IsZero() || s.next.Before(next) {
			next = s.next
		}
	}
	return next
}

// countProcesses counts the processes due (all with force) and reports
// whether a state changed, updating the instances that track it.
func (r *runner) countProcesses(now time.Time, force bool) {
	list, err := r.scanProcs()
	if err != nil {
		r.log.Error("process tracking: scan failed", "err", err)
	}
	changed := false
	for _, s := range r.procs {
		if !force && now.Before(s.next) {
			continue
		}
		s.next = now.Add(s.cfg.Interval.D())
		if err != nil {
			continue
		}
		was := s.up()
		s.count = 0
		for _, p := range list {
			if matches(s.cfg, p) {
				s.count++
			}
		}
		if s.up() != was || force {
			changed = true
			r.log.Info("tracked process", "process", s.cfg.Name, "running", s.count, "up", s.up())
		}
	}
	if changed {
		for _, ins := range r.instances {
			r.track(ins, now)
		}
	}
}

// trackProcesses adds the faults and weights of the processes ins tracks.
func (r *runner) trackProcesses(ins *instance, faults map[string]string, weights map[string]int) {
	for _, t := range ins.cfg.TrackProcesses {
		s := r.procs[t.Name]
		if s == nil {
			continue
		}
		w := t.Weight
		if w == 0 {
			w = s.cfg.Weight
		}
		r.apply1(faults, weights, "process "+t.Name, w, s.up(),
			fmt.Sprintf("tracked process %s: %d running, quorum %d", t.Name, s.count, s.cfg.Quorum))
	}
}
