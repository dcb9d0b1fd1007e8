package keepalived

import (
	"fmt"
	"strings"

	"halb/internal/config"
)

// processScan says how halb's process tracking differs from keepalived's.
const processScan = "halb counts the processes in /proc every second (vrrp.processes[].interval), where keepalived follows the kernel's process events at once"

// vrrpTrackProcess maps a vrrp_track_process block onto vrrp.processes.
func (m *mapper) vrrpTrackProcess(n *Node) {
	i := len(m.cfg.VRRP.Processes)
	p := fmt.Sprintf("vrrp.processes[%d]", i)
	pr := config.Process{Name: n.Arg(0), Quorum: 1}
	if pr.Name == "" {
		m.errorf(n.Pos, "%s needs a name", n.Name)
	}
	m.set(p, n.Pos)
	m.origin(p, n)
	m.set(p+".name", n.ArgPos(0))
	m.warnf(n.Pos, "%s %s: %s", n.Name, pr.Name, processScan)
	m.walk(n.Name, n.Children, map[string]handler{
		"process": func(c *Node) {
			if m.needArgs(c, 1) {
				pr.Command = c.Arg(0)
				pr.Args = strings.Join(argVals(c.Args[1:]), " ")
				m.set(p+".command", c.ArgPos(0))
				if pr.Args != "" {
					m.set(p+".args", c.ArgPos(1))
				}
			}
		},
		"param_match": func(c *Node) {
			if c.Arg(0) != "initial" {
				m.warnf(c.ArgPos(0), "param_match %s is not supported: halb matches the arguments from the first one (initial)", c.Arg(0))
			}
		},
		"full_command": m.flag(p+".full_command", &pr.FullCommand),
		"weight":       m.trackWeight(p+".weight", &pr.Weight, "the processes run", "they do not"),
		"quorum": func(c *Node) {
			pr.Quorum, _ = m.intArg(c, 0, 1, 1<<20)
			m.set(p+".quorum", c.ArgPos(0))
		},
		"quorum_max": func(c *Node) {
			pr.QuorumMax, _ = m.intArg(c, 0, 1, 1<<20)
			m.set(p+".quorum_max", c.ArgPos(0))
		},
		"delay":           m.ignore(processScan),
		"fork_delay":      m.ignore(processScan),
		"terminate_delay": m.ignore(processScan),
	})
	m.cfg.VRRP.Processes = append(m.cfg.VRRP.Processes, pr)
}

// trackProcesses maps an instance's track_process block onto
// track_processes at path p.
func (m *mapper) trackProcesses(in *config.Instance, p string) handler {
	return func(c *Node) { m.trackedObjects(c, "track_process", p+".track_processes", &in.TrackProcesses) }
}
