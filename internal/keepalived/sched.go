package keepalived

// lockMemory maps vrrp_no_swap.
func (m *mapper) lockMemory(n *Node) {
	m.cfg.VRRP.LockMemory = true
	m.set("vrrp.lock_memory", n.Pos)
}

// realtimePriority maps vrrp_rt_priority.
func (m *mapper) realtimePriority(n *Node) {
	if v, ok := m.intArg(n, 0, 1, 99); ok {
		m.cfg.VRRP.RealtimePriority = v
		m.set("vrrp.realtime_priority", n.ArgPos(0))
	}
}
