package config

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Parser parses successive versions of one configuration file (a start,
// then reloads). It gives what Parse gives, but decodes again only the
// items of services and pools whose text or place changed since the
// version before: a reload that changes one weight among 10,000 services
// parses one pool. Files it cannot cut into items safely (flow style
// sections, anchors and aliases, several documents) are parsed whole.
type Parser struct {
	mu sync.Mutex
	// items are the items of the last version cut into items, by key;
	// skeleton is that version's text without them, and positions its
	// configuration's positions.
	items     map[itemKey]*item
	skeleton  string
	positions map[string]Pos
	// last is the configuration last returned (nil: none, or with
	// errors), and opts the options it was parsed with.
	last *Config
	opts Options
}

// reuse relates a configuration to the one a Parser returned before it.
type reuse struct {
	from  *Config
	pools []string
}

// ChangedSince tells, of a configuration a Parser returned after prev
// (the one it returned before), how it differs from prev: only in the
// settings of the pools it returns, which both have, when ok. ok is false
// when it cannot tell so: more changed, or prev is not the configuration
// before.
func (c *Config) ChangedSince(prev *Config) (pools []string, ok bool) {
	if c.reused == nil || c.reused.from != prev {
		return nil, false
	}
	return c.reused.pools, true
}

// itemKey identifies an item: its section, its place and its text.
type itemKey struct {
	section     string
	index, line int
	text        string
}

// item is one service or pool as decoded, before defaults.
type item struct {
	name      string // a pool's
	svc       Service
	pool      Pool
	positions map[string]Pos
	diags     Diagnostics
	// at is the position of the section's list or mapping, which its
	// first item gives.
	at Pos
}

// Parse is Parse of data, reusing the items of the version before.
func (p *Parser) Parse(file string, data []byte, opts Options) (*Config, Diagnostics) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cfg, diags, ok := p.parse(file, data, opts)
	if !ok {
		p.items, p.skeleton, p.positions = nil, "", nil
		cfg, diags = Parse(file, data, opts)
	}
	p.last, p.opts = cfg, opts
	return cfg, diags
}

// parse parses data cut into items; ok is false when it cannot be.
func (p *Parser) parse(file string, data []byte, opts Options) (*Config, Diagnostics, bool) {
	skeleton, cut, ok := cutItems(data)
	if !ok {
		return nil, nil, false
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(skeleton, &doc); err != nil {
		return nil, nil, false // Parse reports it
	}
	d := &decoder{file: file, positions: map[string]Pos{}}
	cfg := &Config{File: file}
	if len(doc.Content) > 0 {
		d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
	}
	if cfg.Services != nil || cfg.Pools != nil {
		return nil, nil, false // a section the skeleton kept
	}
	services := 0
	for _, c := range cut {
		if c.section == "services" {
			services++
		}
	}
	items := make(map[itemKey]*item, len(cut))
	if services > 0 {
		cfg.Services = make([]Service, 0, services)
	}
	var fresh []*item // decoded anew: their positions are not in p.positions
	var stale []*item // of p.items, not used any more
	used := make(map[*item]bool, len(cut))
	diags := d.diags
	for _, c := range cut {
		it := p.items[c]
		if it == nil {
			if it, ok = decodeItem(file, c); !ok {
				return nil, nil, false
			}
			fresh = append(fresh, it)
		}
		used[it] = true
		items[c] = it
		diags = append(diags, it.diags...)
		switch c.section {
		case "services":
			cfg.Services = append(cfg.Services, it.svc)
		case "pools":
			if cfg.Pools == nil {
				cfg.Pools = map[string]Pool{}
			}
			if _, dup := cfg.Pools[it.name]; dup {
				return nil, nil, false // Parse reports it
			}
			cfg.Pools[it.name] = clonePool(it.pool) // defaults change it
		}
		if c.index == 0 {
			d.positions[c.section] = it.at
		}
	}
	for _, it := range p.items {
		if !used[it] {
			stale = append(stale, it)
		}
	}
	// Positions: the version before's, changed by the items that went
	// and came, when the skeleton is the same.
	var pos map[string]Pos
	same := p.positions != nil && p.skeleton == string(skeleton) && p.opts == opts
	if same && p.last != nil {
		cfg.reused = poolsChanged(p.last, fresh, stale)
	}
	if same {
		pos = maps.Clone(p.positions)
		for _, it := range stale {
			for k := range it.positions {
				delete(pos, k)
			}
		}
		for _, it := range fresh {
			maps.Copy(pos, it.positions)
		}
	} else {
		pos = d.positions
		for _, it := range items {
			maps.Copy(pos, it.positions)
		}
	}
	maps.Copy(pos, d.positions)
	cfg.positions = pos
	applyDefaults(cfg, opts)
	diags = append(diags, validate(cfg)...)
	diags.Sort()
	p.items, p.skeleton, p.positions = items, string(skeleton), pos // nothing changes a configuration's positions
	if diags.HasErrors() {
		return nil, diags, true
	}
	return cfg, diags, true
}

// poolsChanged returns how a configuration differs from last, which had
// the same skeleton, when only pools changed (not their names): fresh and
// stale are the items it decoded anew and those of last it did not use.
// It returns nil when more changed.
func poolsChanged(last *Config, fresh, stale []*item) *reuse {
	if len(fresh) != len(stale) {
		return nil
	}
	r := &reuse{from: last}
	for _, it := range fresh {
		if it.name == "" { // a service
			return nil
		}
		r.pools = append(r.pools, it.name)
	}
	for _, it := range stale {
		if !slices.Contains(r.pools, it.name) {
			return nil // a pool went, or a service changed
		}
	}
	return r
}

// clonePool copies what applyDefaults changes in place: the servers and
// the checks.
func clonePool(p Pool) Pool {
	p.Checks = slices.Clone(p.Checks)
	p.Servers = slices.Clone(p.Servers)
	for i := range p.Servers {
		p.Servers[i].Checks = slices.Clone(p.Servers[i].Checks)
	}
	return p
}

// decodeItem parses and decodes one item alone, its lines numbered as in
// the file; ok is false when it is not exactly one item.
func decodeItem(file string, k itemKey) (*item, bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(k.text), &doc); err != nil || len(doc.Content) != 1 {
		return nil, false
	}
	root := doc.Content[0]
	shiftLines(root, k.line-1)
	d := &decoder{file: file, positions: map[string]Pos{}}
	it := &item{at: posOf(root)}
	switch {
	case k.section == "services" && root.Kind == yaml.SequenceNode && len(root.Content) == 1:
		d.decode(root.Content[0], reflect.ValueOf(&it.svc).Elem(), fmt.Sprintf("services[%d]", k.index))
	case k.section == "pools" && root.Kind == yaml.MappingNode && len(root.Content) == 2:
		key := root.Content[0]
		if key.Kind != yaml.ScalarNode || key.Value == "" {
			return nil, false // Parse reports it
		}
		it.name = key.Value
		path := joinPath("pools", key.Value)
		d.positions[path+"#key"] = posOf(key)
		d.decode(root.Content[1], reflect.ValueOf(&it.pool).Elem(), path)
	default:
		return nil, false
	}
	it.positions, it.diags = d.positions, d.diags
	return it, true
}

func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}

// cutItems cuts the items of the services and pools sections out of a
// file written in block style: it returns the file with their lines
// blank (the skeleton, its lines where they were), and the items. ok is
// false when the file may not be cut so: anchors or aliases, several
// documents, or lines that do not fit the items' indentation.
func cutItems(data []byte) (skeleton []byte, items []itemKey, ok bool) {
	if bytes.ContainsAny(data, "&*") {
		return nil, nil, false
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	out := make([][]byte, len(lines))
	copy(out, lines)
	section := "" // the section being cut
	indent := -1  // its items' indentation, once known
	var cur *itemKey
	from, to := 0, 0 // the current item's bytes
	end := func() {
		if cur != nil {
			cur.text = string(data[from:to])
			items = append(items, *cur)
			cur = nil
		}
	}
	count, seen := map[string]int{}, map[string]bool{}
	started := false // a line of content was seen
	off := 0         // of the line in data
	for i, line := range lines {
		at := off
		off += len(line)
		trimmed := bytes.TrimLeft(line, " ")
		blank := len(bytes.TrimSpace(trimmed)) == 0 || trimmed[0] == '#'
		ind := len(line) - len(trimmed)
		if !blank && !started {
			if ind > 0 {
				return nil, nil, false // the top level indented
			}
			started = true
		}
		switch {
		case blank && section == "":
			continue
		case !blank && ind == 0 && (trimmed[0] != '-' || section == ""):
			// A top-level key (or a document marker, refused below).
			end()
			section, indent = "", -1
			if bytes.HasPrefix(line, []byte("---")) || bytes.HasPrefix(line, []byte("...")) || line[0] == '%' {
				return nil, nil, false
			}
			key := string(bytes.TrimRight(bytes.TrimSpace(stripComment(line)), " "))
			if key == "services:" || key == "pools:" {
				section = key[:len(key)-1]
				if seen[section] {
					return nil, nil, false // given twice: Parse reports it
				}
				seen[section] = true
			}
			continue
		case section == "":
			continue
		}
		// A line of a section being cut.
		out[i] = newlineOf(line)
		if blank {
			to = off
			continue
		}
		if indent < 0 {
			indent = ind
		}
		switch {
		case ind < indent:
			return nil, nil, false
		case ind == indent:
			if section == "services" && trimmed[0] != '-' || section == "pools" && trimmed[0] == '-' {
				return nil, nil, false
			}
			end()
			cur, from = &itemKey{section: section, index: count[section], line: i + 1}, at
			count[section]++
		}
		if cur == nil {
			return nil, nil, false
		}
		to = off
	}
	end()
	return bytes.Join(out, nil), items, true
}

// stripComment drops a comment that follows a key on its line.
func stripComment(line []byte) []byte {
	if i := bytes.Index(line, []byte(" #")); i >= 0 {
		return line[:i]
	}
	return line
}

// newlineOf is the line ending of a line, for a blanked line.
func newlineOf(line []byte) []byte {
	switch {
	case bytes.HasSuffix(line, []byte("\r\n")):
		return []byte("\r\n")
	case bytes.HasSuffix(line, []byte("\n")):
		return []byte("\n")
	}
	return nil
}
