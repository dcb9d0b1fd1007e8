package keepalived

import (
	"cmp"
	"fmt"
	"os/user"
	"slices"

	"halb/internal/config"
)

// lookupUser finds a user on the converting machine; tests replace it.
var lookupUser = user.Lookup

// defaultScriptUser gives the programs that name no user of their own
// (tracking scripts, MISC_CHECKs, the notify program) the user keepalived
// would run them as when global_defs has no script_user: keepalived_script
// when that user exists on this machine, else root. It is one warning, at
// the first such program.
func (m *mapper) defaultScriptUser() {
	if m.cfg.ScriptUser != "" {
		return
	}
	var at []config.Location
	for i, s := range m.cfg.VRRP.Scripts {
		if s.User == "" {
			at = append(at, m.written[fmt.Sprintf("vrrp.scripts[%d]", i)])
		}
	}
	execChecks := func(path string, checks config.Checks) {
		for j, ch := range checks {
			if ch.Type == "exec" && ch.User == "" {
				at = append(at, m.written[fmt.Sprintf("%s.check[%d]", path, j)])
			}
		}
	}
	for name, pool := range m.cfg.Pools {
		execChecks("pools."+name, pool.Checks)
		for i, srv := range pool.Servers {
			execChecks(fmt.Sprintf("pools.%s.servers[%d]", name, i), srv.Checks)
		}
	}
	if n := m.cfg.Notify; n.Exec != "" && n.ExecUser == "" {
		at = append(at, m.written["notify.exec"])
	}
	if len(at) == 0 {
		return
	}
	first := slices.MinFunc(at, func(a, b config.Location) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	name, why := "keepalived_script", "it exists here"
	if _, err := lookupUser(name); err != nil {
		name, why = "root", "there is no user keepalived_script here"
	}
	m.cfg.ScriptUser = name
	m.written["script_user"] = first
	m.warnf(Pos{File: first.File, Line: first.Pos.Line, Col: first.Pos.Col},
		"no script_user in global_defs: keepalived runs scripts as keepalived_script when that user exists, else as root; %s, so halb writes script_user: %s", why, name)
}
