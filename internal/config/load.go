package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Defaults used where the configuration says nothing.
const (
	DefaultStateDir = "/var/lib/halb"
	DefaultSocket   = "/run/halb/halb.sock"
	DefaultTable    = "halb"
	// DefaultMarkMask are the bits of derived marks (see DeriveMark).
	DefaultMarkMask = markBase | (markSpan - 1)
)

// Options are the inputs of Parse that do not come from the file.
type Options struct {
	// Hostname is the default node name.
	Hostname string
}

// Load reads and parses a configuration file.
func Load(path string, opts Options) (*Config, Diagnostics) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Diagnostics{{File: path, Pos: Pos{1, 1}, Message: fmt.Sprintf("cannot read configuration: %v", err)}}
	}
	return Parse(path, data, opts)
}

var yamlLine = regexp.MustCompile(`line (\d+)(?:, column (\d+))?: (.*)`)

// Parse decodes, completes with defaults and validates a configuration.
// The returned Config is nil when any diagnostic is an error.
func Parse(file string, data []byte, opts Options) (*Config, Diagnostics) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxDiagnostics(file, err)
	}
	d := &decoder{file: file, positions: map[string]Pos{}}
	cfg := &Config{File: file}
	if len(doc.Content) > 0 {
		d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
	}
	cfg.positions = d.positions
	applyDefaults(cfg, opts)
	diags := append(d.diags, validate(cfg)...)
	diags.Sort()
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

func syntaxDiagnostics(file string, err error) Diagnostics {
	var out Diagnostics
	msgs := []string{err.Error()}
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	}
	for _, m := range msgs {
		d := Diagnostic{File: file, Pos: Pos{1, 1}, Message: "YAML syntax: " + m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			d.Pos.Line, _ = strconv.Atoi(sm[1])
			// The YAML parser (not its scanner) reports a 0-based line.
			if strings.HasPrefix(sm[3], "did not find expected") {
				d.Pos.Line++
			}
			if sm[2] != "" {
				d.Pos.Col, _ = strconv.Atoi(sm[2])
			}
			d.Message = "YAML syntax: " + sm[3]
		}
		out = append(out, d)
	}
	return out
}

func (c *Config) has(path string) bool {
	_, ok := c.positions[path]
	return ok
}

func applyDefaults(c *Config, opts Options) {
	if c.Node == "" {
		c.Node = opts.Hostname
	}
	setDefault(&c.StateDir, DefaultStateDir)
	setDefault(&c.Dataplane, "auto")
	setDefault(&c.API.Socket, DefaultSocket)
	setDefault(&c.NFTables.Table, DefaultTable)
	if !c.has("nftables.mark_mask") {
		c.NFTables.MarkMask = DefaultMarkMask
	}
	for i := range c.VRRP.Instances {
		in := &c.VRRP.Instances[i]
		p := fmt.Sprintf("vrrp.instances[%d]", i)
		if in.Version == 0 {
			in.Version = 3
		}
		if in.AdvertInterval == 0 && !c.has(p+".advert_interval") {
			in.AdvertInterval = Duration(1e9)
		}
		if !c.has(p + ".preempt") {
			in.Preempt = true
		}
		setDefault(&in.IPv4Checksum, "pseudo-header")
		if !c.has(p + ".garp.count") {
			in.GARP.Count = 5
		}
		if !c.has(p + ".garp.second_burst") {
			in.GARP.SecondBurst = Duration(5e9)
		}
		c.vrrpExtraDefaults(p, in)
	}
	c.processDefaults()
	for i := range c.VRRP.Scripts {
		s := &c.VRRP.Scripts[i]
		if s.Interval == 0 {
			s.Interval = Duration(2e9)
		}
		if s.Timeout == 0 {
			s.Timeout = s.Interval
		}
		setDefaultInt(&s.Rise, 1)
		setDefaultInt(&s.Fall, 1)
	}
	for i := range c.Services {
		s := &c.Services[i]
		setDefault(&s.Protocol, "tcp")
		setDefault(&s.Scheduler, "wlc")
		setDefault(&s.Forward, "dr")
		if s.Mark.Mode == "" {
			s.Mark.Mode = MarkNone
		}
		if s.Persistence.Netmask == 0 && !c.has(fmt.Sprintf("services[%d].persistence.netmask", i)) {
			s.Persistence.Netmask = 32
			if len(s.VIPs) > 0 && s.VIPs[0].Is6() {
				s.Persistence.Netmask = 128
			}
		}
	}
	for name, p := range c.Pools {
		p.Name = name
		setDefault(&p.OnFailure, "inhibit")
		setDefault(&p.InitialState, "up")
		if !c.has("pools." + name + ".quorum") {
			p.Quorum = 1
		}
		for i := range p.Servers {
			if !c.has(fmt.Sprintf("pools.%s.servers[%d].weight", name, i)) {
				p.Servers[i].Weight = 1
			}
		}
		for i := range p.Checks {
			applyCheckDefaults(&p.Checks[i])
		}
		for i := range p.Servers {
			for j := range p.Servers[i].Checks {
				applyCheckDefaults(&p.Servers[i].Checks[j])
			}
		}
		c.Pools[name] = p
	}
	if c.IPVSSync != nil {
		s := c.IPVSSync
		setDefault(&s.Mode, "follow")
		if s.SyncID == 0 && !c.has("ipvs_sync.sync_id") {
			if in, ok := c.Instance(s.Instance); ok {
				s.SyncID = in.VRID
			}
		}
		if s.McastTTL == 0 {
			s.McastTTL = 1
		}
	}
	for i := range c.Notify.Webhooks {
		if c.Notify.Webhooks[i].Timeout == 0 {
			c.Notify.Webhooks[i].Timeout = Duration(5e9)
		}
	}
	c.bgpDefaults()
}

func applyCheckDefaults(ch *Check) {
	if ch.Interval == 0 {
		ch.Interval = Duration(2e9)
	}
	if ch.Timeout == 0 {
		ch.Timeout = Duration(1e9)
	}
	setDefaultInt(&ch.Rise, 2)
	setDefaultInt(&ch.Fall, 3)
	switch ch.Type {
	case "http", "https":
		setDefault(&ch.Path, "/")
		if len(ch.ExpectStatus) == 0 {
			ch.ExpectStatus = []StatusRange{{200, 299}}
		}
	case "dns":
		setDefault(&ch.QueryType, "A")
	}
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

func setDefaultInt(i *int, v int) {
	if *i == 0 {
		*i = v
	}
}
