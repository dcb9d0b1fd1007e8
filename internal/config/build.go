package config

// Location is where a configuration value was written, in whichever file
// holds it (an importer may read several files).
type Location struct {
	File string
	Pos  Pos
}

// Build completes a Config assembled in Go by an importer of another
// format: it applies the defaults and validates, as Parse does for YAML.
// written maps each path the source set ("vrrp.instances[0].vrid",
// "pools.www.servers[1].weight") to where it was written: a path missing
// from it takes its default, and diagnostics point at those places. The
// returned Config is nil when any diagnostic is an error.
func Build(c *Config, written map[string]Location, opts Options) (*Config, Diagnostics) {
	// The validator knows positions only; each path gets a position whose
	// line is an index into locs (and column 0, which no real position
	// has), so that a diagnostic can be put back in its file below.
	locs := make([]Location, 0, len(written))
	c.positions = make(map[string]Pos, len(written))
	for path, loc := range written {
		locs = append(locs, loc)
		c.positions[path] = Pos{Line: len(locs), Col: 0}
	}
	applyDefaults(c, opts)
	diags := validate(c)
	for i, d := range diags {
		if d.Pos.Col == 0 && d.Pos.Line >= 1 && d.Pos.Line <= len(locs) {
			loc := locs[d.Pos.Line-1]
			diags[i].File, diags[i].Pos = loc.File, loc.Pos
		}
	}
	for path, loc := range written {
		c.positions[path] = loc.Pos
	}
	diags.Sort()
	if diags.HasErrors() {
		return nil, diags
	}
	return c, diags
}
