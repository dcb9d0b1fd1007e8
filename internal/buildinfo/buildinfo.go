// Package buildinfo says which halb this is: its version, the VCS
// revision it was built from and the Go version that built it.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// version and revision are set at build time with -ldflags
// "-X halb/internal/buildinfo.version=… -X halb/internal/buildinfo.revision=…";
// without them the revision comes from the VCS stamp Go embeds.
var version, revision string

// Info identifies a build.
type Info struct {
	Version   string // "dev" when not set at build time
	Revision  string // "" when unknown
	Modified  bool   // the tree had uncommitted changes
	GoVersion string
}

// Get returns this binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(bi, version, revision)
}

// fromBuild derives the information from Go's build information (nil
// when unavailable) and the values set at build time.
func fromBuild(bi *debug.BuildInfo, version, revision string) Info {
	i := Info{Version: version, Revision: revision}
	if bi != nil {
		i.GoVersion = bi.GoVersion
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && i.Revision == "":
				i.Revision = s.Value
			case s.Key == "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	return i
}

// String is the line `halb --version` prints:
// "halb 1.2.0 (revision 0123abcd…, modified, go1.26.0)".
func (i Info) String() string {
	var parts []string
	if i.Revision != "" {
		parts = append(parts, "revision "+i.Revision)
	}
	if i.Modified {
		parts = append(parts, "modified")
	}
	if i.GoVersion != "" {
		parts = append(parts, i.GoVersion)
	}
	s := "halb " + i.Version
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}
