package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuild(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tt := range []struct {
		name              string
		bi                *debug.BuildInfo
		version, revision string
		want              string
	}{
		{"no build info", nil, "", "", "halb dev"},
		{"VCS stamp", stamped, "", "", "halb dev (revision 0123abcd, modified, go1.26.0)"},
		{"set at build time", stamped, "1.0.0", "feedface", "halb 1.0.0 (revision feedface, modified, go1.26.0)"},
		{"module version", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.2.3"}}, "", "", "halb v1.2.3 (go1.26.1)"},
	} {
		if got := fromBuild(tt.bi, tt.version, tt.revision).String(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
