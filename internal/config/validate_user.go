package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// programUsers checks who every configured program runs as: its own user
// key, else the top-level script_user. Neither is an error naming the key
// to set; root is allowed only as written, with a warning.
func (v *validator) programUsers() {
	var viaScriptUser []string // programs that run as a root script_user
	// check checks the program at p, whose user key is at path key (named
	// name in messages).
	check := func(what, p, key, name, own string) {
		switch {
		case own == "root":
			v.warnf(key, "%s: root: halb runs %s as root, with every privilege", key, what)
		case own != "":
		case v.c.ScriptUser == "":
			v.errorf(p, "%s: %s needs %s (or the top-level script_user), the user it runs as", p, what, name)
		case v.c.ScriptUser == "root":
			viaScriptUser = append(viaScriptUser, p)
		}
	}
	for i, s := range v.c.VRRP.Scripts {
		p := fmt.Sprintf("vrrp.scripts[%d]", i)
		check("a tracking script", p, p+".user", "user", s.User)
	}
	for i, in := range v.c.VRRP.Instances {
		p := fmt.Sprintf("vrrp.instances[%d]", i)
		switch {
		case in.Notify != "":
			check("the notify program", p+".notify", p+".notify_user", "notify_user", in.NotifyUser)
		case in.NotifyUser != "":
			v.warnf(p+".notify_user", "%s.notify_user: set without notify", p)
		}
	}
	execChecks := func(at string, checks Checks) {
		for i, ch := range checks {
			if ch.Type == "exec" {
				p := fmt.Sprintf("%s.check[%d]", at, i)
				check("an exec check", p, p+".user", "user", ch.User)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(v.c.Pools)) {
		pool := v.c.Pools[name]
		execChecks("pools."+name, pool.Checks)
		for j, srv := range pool.Servers {
			execChecks(fmt.Sprintf("pools.%s.servers[%d]", name, j), srv.Checks)
		}
	}
	if n := v.c.Notify; n.Exec != "" {
		check("the notify program", "notify.exec", "notify.exec_user", "notify.exec_user", n.ExecUser)
	}
	if len(viaScriptUser) > 0 {
		v.warnf("script_user", "script_user: root: halb runs %s as root, with every privilege", strings.Join(viaScriptUser, ", "))
	}
}
