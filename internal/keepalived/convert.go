package keepalived

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"halb/internal/config"
)

// Load reads a keepalived configuration and turns it into a validated halb
// Config. Diagnostics (the reader's, the mapping's and halb's validation)
// point into the files the user wrote; the Config is nil when any of them
// is an error.
func Load(path string, opts Options, cfgOpts config.Options) (*config.Config, config.Diagnostics) {
	conv := Convert(path, opts)
	if conv.Config == nil {
		return nil, conv.Diags
	}
	return conv.Build(cfgOpts)
}

// Build completes the mapped Config with halb's defaults and validates it,
// returning every diagnostic (the mapping's and the validation's, without
// repeating a place the mapping already reported). The Config is nil when
// any diagnostic is an error.
func (conv *Conversion) Build(cfgOpts config.Options) (*config.Config, config.Diagnostics) {
	cfg, diags := config.Build(conv.Config, conv.Written, cfgOpts)
	diags = append(dropRepeated(diags, conv.Diags), conv.Diags...)
	diags.Sort()
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

// dropRepeated leaves out validation diagnostics at places where the
// mapping already reported one as severe: a value it could not read is
// zero, and the validator would say so again; a value it chose (a
// script_user) it has already explained.
func dropRepeated(diags, mapped config.Diagnostics) config.Diagnostics {
	type key struct {
		file string
		pos  config.Pos
		sev  config.Severity
	}
	seen := map[key]bool{}
	for _, d := range mapped {
		seen[key{d.File, d.Pos, d.Severity}] = true
	}
	out := diags[:0:0]
	for _, d := range diags {
		if seen[key{d.File, d.Pos, d.Severity}] {
			continue
		}
		out = append(out, d)
	}
	return out
}

// Conversion is a keepalived configuration mapped onto halb's, before
// halb's defaults and validation (config.Build does those).
type Conversion struct {
	Config *config.Config
	// Written maps every configuration path the keepalived files set to
	// where they set it.
	Written map[string]config.Location
	// Origins says, for the main parts of the configuration, which
	// keepalived statement they come from.
	Origins map[string]string
	Diags   config.Diagnostics
}

// Convert reads a keepalived configuration and maps it. Every keyword halb
// does not support is a located warning saying what halb does instead, or
// an error when ignoring it would change behaviour.
func Convert(path string, opts Options) Conversion {
	nodes, diags := Read(path, opts)
	if nodes == nil && diags.HasErrors() {
		return Conversion{Diags: diags}
	}
	m := newMapper(path)
	m.configID = opts.ConfigID
	if m.configID == "" {
		m.configID = DefaultConfigID()
	}
	m.diags = diags
	m.top(nodes)
	m.defaultScriptUser()
	m.diags.Sort()
	m.diags = foldWarnings(m.diags)
	return Conversion{Config: m.cfg, Written: m.written, Origins: m.origins, Diags: m.diags}
}

// mapper holds the state of one conversion.
type mapper struct {
	cfg     *config.Config
	written map[string]config.Location
	origins map[string]string
	diags   config.Diagnostics

	// global_defs values that are defaults of every instance.
	version    int
	versionAt  Pos
	garp       map[string]Pos // garp.count/second_burst/refresh written globally
	globalGARP config.GARP

	configID string
	// syncMembers are the instances of sync groups that ignore weights.
	syncMembers []string
	groups      map[string]*Node // virtual_server_group by name
	names       map[string]bool  // service and pool names in use
	syncAt      Pos              // legacy lvs_sync_daemon_interface, per instance
	instances   map[string]int
	// claimed maps the address, port and protocol of each group entry
	// converted so far to its group.
	claimed map[groupKey]string
}

func newMapper(path string) *mapper {
	return &mapper{
		cfg:       &config.Config{File: path, Pools: map[string]config.Pool{}},
		written:   map[string]config.Location{},
		origins:   map[string]string{},
		version:   2,
		garp:      map[string]Pos{},
		groups:    map[string]*Node{},
		names:     map[string]bool{},
		instances: map[string]int{},
		claimed:   map[groupKey]string{},
	}
}

// set records that the keepalived file wrote the value at a config path.
func (m *mapper) set(path string, p Pos) {
	m.written[path] = config.Location{File: p.File, Pos: config.Pos{Line: p.Line, Col: p.Col}}
}

// origin notes the statement a part of the configuration comes from.
func (m *mapper) origin(path string, n *Node) {
	words := append([]string{n.Name}, argVals(n.Args)...)
	m.origins[path] = fmt.Sprintf("from %s:%d: %s", n.Pos.File, n.Pos.Line, strings.Join(words, " "))
}

func (m *mapper) errorf(p Pos, format string, args ...any) {
	m.diags = append(m.diags, config.Diagnostic{File: p.File, Pos: config.Pos{Line: p.Line, Col: p.Col}, Message: fmt.Sprintf(format, args...)})
}

func (m *mapper) warnf(p Pos, format string, args ...any) {
	m.diags = append(m.diags, config.Diagnostic{File: p.File, Pos: config.Pos{Line: p.Line, Col: p.Col}, Severity: config.Warning, Message: fmt.Sprintf(format, args...)})
}

// handler maps one statement.
type handler func(n *Node)

// walk maps the statements of a block; a keyword without a handler is a
// warning that names it.
func (m *mapper) walk(what string, nodes []*Node, hs map[string]handler) {
	for _, n := range nodes {
		if h, ok := hs[n.Name]; ok {
			if n.Block && !blockKeywords[n.Name] {
				m.warnf(n.Pos, "%s takes no block; what the block holds is ignored", n.Name)
			}
			h(n)
			continue
		}
		m.warnf(n.Pos, "%s: keyword %q is not known to halb; ignored", what, n.Name)
	}
}

// mergeHandlers joins the handlers of the parts of a block.
func mergeHandlers(parts ...map[string]handler) map[string]handler {
	out := map[string]handler{}
	for _, part := range parts {
		for k, h := range part {
			out[k] = h
		}
	}
	return out
}

// blockKeywords are the statements whose block halb reads.
var blockKeywords = map[string]bool{
	"global_defs": true, "vrrp_script": true, "vrrp_instance": true, "vrrp_sync_group": true,
	"virtual_server_group": true, "virtual_server": true, "real_server": true,
	"notification_email": true, "authentication": true, "unicast_peer": true,
	"virtual_ipaddress": true, "virtual_ipaddress_excluded": true, "track_interface": true,
	"track_script": true, "group": true, "url": true, "host": true,
	"TCP_CHECK": true, "HTTP_GET": true, "SSL_GET": true, "SMTP_CHECK": true, "DNS_CHECK": true,
	"UDP_CHECK": true, "PING_CHECK": true, "ICMP_CHECK": true, "MISC_CHECK": true,
	"FILE_CHECK": true, "BFD_CHECK": true,
	// Blocks halb rejects or ignores as a whole.
	"static_ipaddress": true, "static_routes": true, "static_rules": true, "virtual_routes": true,
	"virtual_rules": true, "linkbeat_interfaces": true, "track_file": true, "track_process": true,
	"vrrp_track_process": true, "vrrp_track_file": true, "bfd_instance": true, "garp_group": true,
	"SSL": true, "track_bfd": true, "track_src_ip": true,
}

// ignore is a handler for a keyword halb leaves aside: a warning saying
// what halb does instead.
func (m *mapper) ignore(instead string) handler {
	return func(n *Node) { m.warnf(n.Pos, "%s is not supported: %s", n.Name, instead) }
}

// reject is a handler for a keyword whose absence would change behaviour.
func (m *mapper) reject(why string) handler {
	return func(n *Node) { m.errorf(n.Pos, "%s is not supported: %s", n.Name, why) }
}

// noop is a handler for a keyword whose meaning halb has anyway.
func noop(*Node) {}

func (m *mapper) top(nodes []*Node) {
	// Groups may be defined after the virtual servers that use them.
	for _, n := range nodes {
		if n.Name == "virtual_server_group" {
			if n.Arg(0) == "" {
				m.errorf(n.Pos, "virtual_server_group needs a name")
				continue
			}
			if _, dup := m.groups[n.Arg(0)]; dup {
				m.errorf(n.ArgPos(0), "virtual_server_group %q is defined twice", n.Arg(0))
			}
			m.groups[n.Arg(0)] = n
		}
	}
	// global_defs first: it holds defaults of the instances.
	for _, n := range nodes {
		if n.Name == "global_defs" {
			m.globalDefs(n)
		}
	}
	m.walk("top level", nodes, map[string]handler{
		"global_defs":          noop,
		"virtual_server_group": noop,
		"vrrp_script":          m.vrrpScript,
		"vrrp_instance":        m.vrrpInstance,
		"vrrp_sync_group":      m.syncGroup,
		"virtual_server":       m.virtualServer,
		"static_ipaddress":     m.staticAddresses,
		"static_routes":        m.routeLines(&m.cfg.VRRP.Static.Routes, "vrrp.static.routes"),
		"static_rules":         m.ruleLines(&m.cfg.VRRP.Static.Rules, "vrrp.static.rules"),
		"linkbeat_interfaces":  m.ignore("halb watches links over netlink"),
		"track_file":           m.ignore("halb tracks interfaces and scripts only; an instance that uses it is an error"),
		"track_process":        m.vrrpTrackProcess,
		"vrrp_track_process":   m.vrrpTrackProcess,
		"vrrp_track_file":      m.ignore("halb tracks interfaces and scripts only; an instance that uses it is an error"),
		"bfd_instance":         m.ignore("halb has no BFD; an instance or checker that uses it is an error"),
		"garp_group":           m.ignore("halb sends gratuitous ARP per instance (garp settings)"),
		"net_namespace":        m.netNamespace,
		"net_namespace_ipvs":   m.reject("halb programs IPVS in its own network namespace"),
		"instance":             m.ignore("one halb process per configuration; its socket and state directory name it"),
		"use_pid_dir":          m.ignore("halb writes no pid file"),
		"child_wait_time":      m.ignore("halb is one process"),
		"linkbeat_use_polling": m.ignore("halb watches links over netlink"),
		"SSL":                  m.ignore("give https checks client_cert, client_key and ca_file in halb's configuration"),
	})
	m.unknownScripts()
	m.syncWeights()
	m.foldPools()
	if m.cfg.IPVSSync != nil && m.cfg.IPVSSync.Instance != "" {
		if _, ok := m.instances[m.cfg.IPVSSync.Instance]; !ok {
			m.errorf(m.syncAt, "lvs_sync_daemon: no vrrp_instance named %q", m.cfg.IPVSSync.Instance)
		}
	}
}

// ---- argument helpers ----

func (m *mapper) needArgs(n *Node, count int) bool {
	if len(n.Args) < count {
		m.errorf(n.Pos, "%s needs %d argument(s)", n.Name, count)
		return false
	}
	return true
}

func (m *mapper) intArg(n *Node, i int, lo, hi int64) (int, bool) {
	if !m.needArgs(n, i+1) {
		return 0, false
	}
	v, err := strconv.ParseInt(n.Arg(i), 10, 64)
	if err != nil || v < lo || v > hi {
		m.errorf(n.ArgPos(i), "%s: %q is not a number from %d to %d%s", n.Name, n.Arg(i), lo, hi, m.undefinedHint(n.Arg(i)))
		return 0, false
	}
	return int(v), true
}

// undefinedHint explains a value that is a parameter left undefined.
func (m *mapper) undefinedHint(v string) string {
	if strings.HasPrefix(v, "$") {
		return fmt.Sprintf(" (the parameter is not defined; is it defined on @ lines for another config-id? this one is %q)", m.configID)
	}
	return ""
}

// timerArg reads keepalived's <TIMER>: seconds, possibly fractional.
func (m *mapper) timerArg(n *Node, i int) (config.Duration, bool) {
	if !m.needArgs(n, i+1) {
		return 0, false
	}
	v, err := strconv.ParseFloat(n.Arg(i), 64)
	if err != nil || v < 0 || v > 1e6 || math.IsNaN(v) {
		m.errorf(n.ArgPos(i), "%s: %q is not a time in seconds", n.Name, n.Arg(i))
		return 0, false
	}
	return config.Duration(math.Round(v*1e6) * 1e3), true
}

// boolArg reads an optional <BOOL> (keepalived also takes 1 and 0); a
// keyword alone means true.
func (m *mapper) boolArg(n *Node, i int) bool {
	switch strings.ToLower(n.Arg(i)) {
	case "", "on", "true", "yes", "1":
		return true
	case "off", "false", "no", "0":
		return false
	}
	m.errorf(n.ArgPos(i), "%s: %q is not on, off, true, false, yes, no, 1 or 0", n.Name, n.Arg(i))
	return false
}

func (m *mapper) addrArg(n *Node, i int) (netip.Addr, bool) {
	if !m.needArgs(n, i+1) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(n.Arg(i))
	if err != nil {
		m.errorf(n.ArgPos(i), "%s: %q is not an IP address", n.Name, n.Arg(i))
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func (m *mapper) portArg(n *Node, i int) (uint16, bool) {
	p, ok := m.intArg(n, i, 0, 65535)
	return uint16(p), ok
}

// words lists the statements of a block that are plain values (the lines of
// notification_email, unicast_peer, group …).
func words(n *Node) []*Node { return n.Children }

// uniqueName returns base, or base with a suffix, unused by services and
// pools so far.
func (m *mapper) uniqueName(base string) string {
	name := base
	for i := 2; m.names[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	m.names[name] = true
	return name
}

// splitCommand splits a script line as keepalived does: spaces separate
// words, single or double quotes keep spaces in a word.
func splitCommand(s string) []string {
	var out []string
	var b strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			b.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
			in = true
		case isSpace(c):
			if in {
				out = append(out, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, b.String())
	}
	return out
}
