package keepalived

import (
	"os/user"
	"strings"
	"testing"
)

const scriptsConf = `GLOBAL
vrrp_script chk {
    script "/usr/local/bin/chk"
    SCRIPT_USER
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.10/24
    }
    track_script {
        chk
    }
    notify /usr/local/sbin/vrrp-notify NOTIFY_USER
}
`

// TestDefaultScriptUser: without a script_user, the programs without a
// user of their own run as keepalived_script when that user exists on
// the converting machine, else as root, with one located warning.
func TestDefaultScriptUser(t *testing.T) {
	defer func(f func(string) (*user.User, error)) { lookupUser = f }(lookupUser)
	conf := func(global, scriptUser, notifyUser string) string {
		return strings.NewReplacer("GLOBAL", global, "SCRIPT_USER", scriptUser, "NOTIFY_USER", notifyUser).Replace(scriptsConf)
	}
	userDiags := func(diags string) []string {
		var out []string
		for _, l := range strings.Split(diags, "\n") {
			if strings.Contains(l, "script_user") || strings.Contains(l, "root") {
				out = append(out, l)
			}
		}
		return out
	}
	for _, tc := range []struct {
		exists bool
		want   string
	}{{true, "keepalived_script"}, {false, "root"}} {
		lookupUser = func(name string) (*user.User, error) {
			if tc.exists && name == "keepalived_script" {
				return &user.User{Username: name}, nil
			}
			return nil, user.UnknownUserError(name)
		}
		cfg, diags, path := loadString(t, conf("", "", ""))
		if cfg == nil {
			t.Fatalf("not converted:\n%s", diags)
		}
		if cfg.ScriptUser != tc.want {
			t.Errorf("script_user %q, want %q", cfg.ScriptUser, tc.want)
		}
		got := userDiags(diags.String())
		if len(got) != 1 || !strings.HasPrefix(got[0], path+":2:1: warning: no script_user in global_defs: keepalived runs scripts as keepalived_script when that user exists, else as root; ") ||
			!strings.HasSuffix(got[0], "so halb writes script_user: "+tc.want) {
			t.Errorf("keepalived_script exists %v: diagnostics %q, want one warning at the vrrp_script", tc.exists, got)
		}
	}
	// A script_user in global_defs, or a user for every program: nothing
	// to choose.
	cfg, diags, _ := loadString(t, conf("global_defs {\n    script_user halb\n}", "", ""))
	if cfg == nil || cfg.ScriptUser != "halb" || len(userDiags(diags.String())) != 0 {
		t.Errorf("given script_user: %+v\n%s", cfg, diags)
	}
	cfg, diags, path := loadString(t, conf("", "user nobody nogroup", "halb"))
	if cfg == nil || cfg.ScriptUser != "" || cfg.VRRP.Scripts[0].User != "nobody" || cfg.Notify.ExecUser != "halb" {
		t.Fatalf("users of their own: %+v\n%s", cfg, diags)
	}
	if got := userDiags(diags.String()); len(got) != 0 {
		t.Errorf("users of their own: %q", got)
	}
	if want := path + `:4:17: warning: user: halb runs the script with the user's own group, not "nogroup"`; !strings.Contains(diags.String(), want) {
		t.Errorf("diagnostics lack %q:\n%s", want, diags)
	}
}
