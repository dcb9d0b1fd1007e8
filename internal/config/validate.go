package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"halb/internal/maglev"
)

// Schedulers are the IPVS scheduler names halb accepts.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// schedulerFlags lists the flags each scheduler takes.
var schedulerFlags = map[string][]string{
	"sh": {"sh-fallback", "sh-port"},
	"mh": {"mh-fallback", "mh-port"},
}

// CheckTypes are the health check kinds halb runs.
var CheckTypes = []string{"tcp", "http", "https", "tls", "smtp", "dns", "udp", "ping", "exec"}

type validator struct {
	c     *Config
	diags Diagnostics
}

// at returns the position of path, or of its nearest written parent.
func (v *validator) at(path string) Pos {
	for {
		if p, ok := v.c.positions[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return Pos{1, 1}
		}
		path = path[:i]
	}
}

func (v *validator) errorf(path, format string, args ...any) {
	v.diags = append(v.diags, Diagnostic{File: v.c.File, Pos: v.at(path), Message: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(path, format string, args ...any) {
	v.diags = append(v.diags, Diagnostic{File: v.c.File, Pos: v.at(path), Severity: Warning, Message: fmt.Sprintf(format, args...)})
}

func validate(c *Config) Diagnostics {
	v := &validator{c: c}
	if c.Node == "" {
		v.errorf("node", "node: no name given and no hostname to default to")
	}
	switch c.Dataplane {
	case "auto", "ipvs", "nftables", "none":
	default:
		v.errorf("dataplane", "dataplane: %q is not one of auto, ipvs, nftables, none", c.Dataplane)
	}
	if n := c.NetNamespace; n != "" && (n == "." || n == ".." || strings.ContainsAny(n, "/\x00") || len(n) > 255) {
		v.errorf("net_namespace", "net_namespace: %q is not a namespace name (a file name under /run/netns, without slashes)", n)
	}
	if c.API.Metrics != "" {
		if _, _, err := net.SplitHostPort(c.API.Metrics); err != nil {
			v.errorf("api.metrics", "api.metrics: %q is not HOST:PORT", c.API.Metrics)
		}
	}
	v.vrrp()
	v.vrrpScheduling()
	v.pools()
	v.services()
	v.tunnels()
	v.ipvsSync()
	v.notify()
	v.notifyDelivery()
	v.health()
	v.programUsers()
	v.bgp()
	v.bgpScheduling()
	return v.diags
}

// errorAt reports an error at path, the message starting with the path.
func (v *validator) errorAt(path, format string, args ...any) {
	v.errorf(path, "%s: "+format, append([]any{path}, args...)...)
}

func (v *validator) vrrp() {
	scripts := v.vrrpScripts()
	names := v.vrrpInstances(scripts)
	v.syncGroups(names)
	v.vrrpExtras()
}

// vrrpScripts checks the track scripts and returns their names.
func (v *validator) vrrpScripts() map[string]bool {
	scripts := map[string]bool{}
	for i, s := range v.c.VRRP.Scripts {
		p := fmt.Sprintf("vrrp.scripts[%d]", i)
		if s.Name == "" {
			v.errorAt(p, "script needs a name")
		} else if scripts[s.Name] {
			v.errorf(p+".name", "%s: script %q defined twice", p, s.Name)
		}
		scripts[s.Name] = true
		if len(s.Command) == 0 {
			v.errorAt(p, "script %q needs a command", s.Name)
		}
		if s.Timeout > s.Interval {
			v.errorAt(p+".timeout", "timeout %s is longer than the interval %s", s.Timeout, s.Interval)
		}
		if s.Rise < 1 || s.Fall < 1 {
			v.errorAt(p, "rise and fall must be at least 1")
		}
	}
	return scripts
}

// vrrpInstances checks each instance and what instances must not share
// (names, VIPs, a VRID on a link), and returns the instances' indexes by
// name.
func (v *validator) vrrpInstances(scripts map[string]bool) map[string]int {
	names := map[string]int{}
	vipOwner := map[netip.Addr]string{}
	vridOn := map[string]string{}
	for i, in := range v.c.VRRP.Instances {
		p := fmt.Sprintf("vrrp.instances[%d]", i)
		if in.Name == "" {
			v.errorAt(p, "instance needs a name")
		} else if j, dup := names[in.Name]; dup {
			v.errorf(p+".name", "%s: instance name %q already used by vrrp.instances[%d]", p, in.Name, j)
		} else {
			names[in.Name] = i
		}
		v.instance(p, in)
		v.instanceAddrs(p, in)
		for j, vip := range in.VIPs {
			vp := fmt.Sprintf("%s.vips[%d]", p, j)
			if owner, dup := vipOwner[vip.Addr()]; dup {
				v.warnf(vp, "%s: VIP %s is also carried by instance %q; the instance that changes state last decides whether it is on the interface (keepalived runs so too)", vp, vip.Addr(), owner)
			} else {
				vipOwner[vip.Addr()] = in.Name
			}
		}
		key := fmt.Sprintf("%s/%d/v%d", in.Interface, in.VRID, in.Family())
		if other, dup := vridOn[key]; dup {
			v.errorAt(p+".vrid", "VRID %d is already used on %s by instance %q", in.VRID, in.Interface, other)
		} else {
			vridOn[key] = in.Name
		}
		v.instanceTracking(p, in, scripts)
	}
	return names
}

// instance checks one instance's own settings.
func (v *validator) instance(p string, in Instance) {
	if in.Interface == "" {
		v.errorAt(p, "instance %q needs an interface", in.Name)
	}
	if in.VRID < 1 || in.VRID > 255 {
		v.errorAt(p+".vrid", "%d is not from 1 to 255", in.VRID)
	}
	if in.Priority < 1 || in.Priority > 255 {
		v.errorAt(p+".priority", "%d is not from 1 to 255", in.Priority)
	}
	v.instanceTiming(p, in)
	if in.AuthPassword != "" && in.Version != 2 {
		v.errorAt(p+".auth_password", "authentication exists only in VRRP version 2")
	}
	if len(in.AuthPassword) > 8 {
		v.errorAt(p+".auth_password", "at most 8 characters")
	}
	switch in.AuthType {
	case "", "pass":
	case "ah":
		if in.AuthPassword == "" {
			v.errorAt(p+".auth_type", "ah needs auth_password, its key")
		}
		if in.Version != 2 {
			v.errorAt(p+".auth_type", "ah exists only in VRRP version 2 over IPv4")
		}
	default:
		v.errorAt(p+".auth_type", "%q is not pass or ah", in.AuthType)
	}
	if in.Version == 2 && in.Family() == 6 {
		v.errorAt(p+".version", "VRRP version 2 has no IPv6; use version 3")
	}
	switch in.IPv4Checksum {
	case "pseudo-header", "message":
	default:
		v.errorAt(p+".ipv4_checksum", "%q is not pseudo-header or message", in.IPv4Checksum)
	}
	if in.GARP.Count < 0 {
		v.errorAt(p+".garp.count", "must not be negative")
	}
	v.instanceExtras(p, in)
}

// instanceAddrs checks that an instance's addresses are of one family:
// the family of its first VIP. Addresses that did not parse were reported
// when decoded and are not compared.
func (v *validator) instanceAddrs(p string, in Instance) {
	fam := in.Family()
	if i := slices.IndexFunc(in.VIPs, netip.Prefix.IsValid); i >= 0 {
		fam = vipFamily(in.VIPs[i].Addr())
	} else if len(in.VIPs) > 0 {
		return // no VIP parsed: no family to compare with
	}
	for j, vip := range in.VIPs {
		if vip.IsValid() && vipFamily(vip.Addr()) != fam {
			v.errorAt(fmt.Sprintf("%s.vips[%d]", p, j), "%s mixes IPv4 and IPv6 in one instance; VRRP carries one family per instance, use two instances in a sync group", vip)
		}
	}
	if in.UnicastSource.IsValid() && vipFamily(in.UnicastSource) != fam {
		v.errorAt(p+".unicast_source", "%s is not of the VIPs' address family", in.UnicastSource)
	}
	for j, peer := range in.UnicastPeers {
		if peer.IsValid() && vipFamily(peer) != fam {
			v.errorAt(fmt.Sprintf("%s.unicast_peers[%d]", p, j), "%s is not of the VIPs' address family", peer)
		}
	}
}

// instanceTracking checks what an instance tracks.
func (v *validator) instanceTracking(p string, in Instance, scripts map[string]bool) {
	for j, t := range in.TrackScripts {
		if !scripts[t.Name] {
			v.errorAt(fmt.Sprintf("%s.track_scripts[%d]", p, j), "no script named %q in vrrp.scripts%s", t.Name, didYouMean(t.Name, maps.Keys(scripts)))
		}
	}
	for j, t := range in.TrackInterface {
		if t.Name == "" {
			v.errorAt(fmt.Sprintf("%s.track_interfaces[%d]", p, j), "needs an interface name")
		}
	}
}

// syncGroups checks the sync groups against the instances (by name).
func (v *validator) syncGroups(names map[string]int) {
	member := map[string]string{}
	groups := map[string]bool{}
	for i, g := range v.c.VRRP.SyncGroups {
		p := fmt.Sprintf("vrrp.sync_groups[%d]", i)
		if g.Name == "" {
			v.errorAt(p, "sync group needs a name")
		} else if groups[g.Name] {
			v.errorf(p+".name", "%s: sync group %q defined twice", p, g.Name)
		}
		groups[g.Name] = true
		if len(g.Instances) < 2 {
			v.warnf(p+".instances", "%s: sync group %q has fewer than two instances", p, g.Name)
		}
		for j, name := range g.Instances {
			ip := fmt.Sprintf("%s.instances[%d]", p, j)
			if _, ok := names[name]; !ok {
				v.errorAt(ip, "no VRRP instance named %q", name)
			}
			if other, dup := member[name]; dup {
				v.errorAt(ip, "instance %q is already in sync group %q", name, other)
			}
			member[name] = g.Name
		}
	}
}

func (v *validator) instanceTiming(p string, in Instance) {
	ai := in.AdvertInterval.D()
	switch in.Version {
	case 3:
		if ai < 10*time.Millisecond || ai > 40950*time.Millisecond || ai%(10*time.Millisecond) != 0 {
			v.errorf(p+".advert_interval", "%s.advert_interval: %s must be a multiple of 10ms from 10ms to 40.95s in VRRP version 3", p, ai)
		}
	case 2:
		if ai < time.Second || ai > 255*time.Second || ai%time.Second != 0 {
			v.errorf(p+".advert_interval", "%s.advert_interval: %s must be whole seconds from 1s to 255s in VRRP version 2", p, ai)
		}
	default:
		v.errorf(p+".version", "%s.version: %d is not 2 or 3", p, in.Version)
	}
}

func vipFamily(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func (v *validator) pools() {
	names := make([]string, 0, len(v.c.Pools))
	for name := range v.c.Pools {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pool := v.c.Pools[name]
		p := "pools." + name
		if pool.Quorum < 0 {
			v.errorf(p+".quorum", "%s.quorum: must not be negative", p)
		}
		if pool.Hysteresis < 0 || (pool.Hysteresis > 0 && pool.Hysteresis >= pool.Quorum) {
			v.errorf(p+".hysteresis", "%s.hysteresis: must be from 0 to quorum-1 (%d)", p, pool.Quorum-1)
		}
		if pool.SorryServer != "" {
			if _, err := parseHostPort(pool.SorryServer); err != nil {
				v.errorf(p+".sorry_server", "%s.sorry_server: %v", p, err)
			}
		}
		if pool.OnFailure != "inhibit" && pool.OnFailure != "remove" {
			v.errorf(p+".on_failure", "%s.on_failure: %q is not inhibit or remove", p, pool.OnFailure)
		}
		if pool.InitialState != "up" && pool.InitialState != "down" {
			v.errorf(p+".initial_state", "%s.initial_state: %q is not up or down", p, pool.InitialState)
		}
		seen := map[netip.AddrPort]int{}
		for i, s := range pool.Servers {
			sp := fmt.Sprintf("%s.servers[%d]", p, i)
			if !s.Address.IsValid() {
				if !v.c.has(sp + ".address") { // a bad address is already reported
					v.errorf(sp, "%s: server needs an address", sp)
				}
				continue
			}
			key := netip.AddrPortFrom(s.Address, s.Port)
			if j, dup := seen[key]; dup {
				v.errorf(sp, "%s: server %s is listed twice (also %s.servers[%d])", sp, key, p, j)
			}
			seen[key] = i
			if s.Weight < 0 || s.Weight > 65535 {
				v.errorf(sp+".weight", "%s.weight: %d is not from 0 to 65535", sp, s.Weight)
			}
			for j, ch := range s.Checks {
				v.check(fmt.Sprintf("%s.check[%d]", sp, j), ch)
			}
			v.serverOptions(sp, s)
		}
		for i, ch := range pool.Checks {
			v.check(fmt.Sprintf("%s.check[%d]", p, i), ch)
		}
	}
}

func (v *validator) check(p string, ch Check) {
	if !slices.Contains(CheckTypes, ch.Type) {
		v.errorf(p+".type", "%s.type: %q is not one of %s", p, ch.Type, strings.Join(CheckTypes, ", "))
	}
	if ch.Timeout > ch.Interval {
		v.errorf(p+".timeout", "%s.timeout: %s is longer than the interval %s", p, ch.Timeout, ch.Interval)
	}
	if ch.Rise < 1 || ch.Fall < 1 {
		v.errorf(p, "%s: rise and fall must be at least 1", p)
	}
	if ch.Address != "" {
		if _, err := netip.ParseAddr(ch.Address); err != nil {
			v.errorf(p+".connect_address", "%s.connect_address: bad IP address %q", p, ch.Address)
		}
	}
	if ch.BodyRegex != "" {
		if _, err := regexp.Compile(ch.BodyRegex); err != nil {
			v.errorf(p+".body_regex", "%s.body_regex: %v", p, err)
		}
	}
	switch ch.Type {
	case "exec":
		if len(ch.Command) == 0 {
			v.errorf(p, "%s: an exec check needs a command", p)
		}
	case "dns":
		if ch.Query == "" {
			v.errorf(p, "%s: a dns check needs a query name", p)
		}
	}
	if (ch.ClientCert == "") != (ch.ClientKey == "") {
		v.errorf(p, "%s: client_cert and client_key go together", p)
	}
}

// portKey identifies one port of one VIP and protocol, to find overlaps.
type portKey struct {
	vip   netip.Addr
	proto string
}

type portUse struct {
	r       PortRange
	service string
}

func (v *validator) services() {
	c := v.c
	names := map[string]int{}
	carried := map[netip.Addr]bool{}
	for _, in := range c.VRRP.Instances {
		for _, vip := range in.VIPs {
			carried[vip.Addr()] = true
		}
	}
	uses := map[portKey][]portUse{}
	for i, s := range c.Services {
		p := "services[" + strconv.Itoa(i) + "]" // as Sprintf, at a fraction of its cost for many services
		if s.Name == "" {
			v.errorf(p, "%s: service needs a name", p)
		} else if j, dup := names[s.Name]; dup {
			v.errorf(p+".name", "%s: service name %q already used by services[%d]", p, s.Name, j)
		} else {
			names[s.Name] = i
		}
		switch s.Protocol {
		case "tcp", "udp", "sctp":
		default:
			v.errorf(p+".protocol", "%s.protocol: %q is not tcp, udp or sctp", p, s.Protocol)
		}
		// An external mark (a keepalived fwmark service) may leave its
		// VIPs and ports unsaid: rules outside halb choose the packets.
		if len(s.VIPs) == 0 && s.Mark.Mode != MarkExternal {
			v.errorf(p, "%s: service %q has no vips", p, s.Name)
		}
		if len(s.Ports) == 0 && s.Mark.Mode != MarkExternal {
			v.errorf(p, "%s: service %q has no ports", p, s.Name)
		}
		if !slices.Contains(Schedulers, s.Scheduler) {
			v.errorf(p+".scheduler", "%s.scheduler: %q is not one of %s", p, s.Scheduler, strings.Join(Schedulers, ", "))
		}
		for j, f := range s.SchedulerFlags {
			if !slices.Contains(schedulerFlags[s.Scheduler], f) {
				v.errorf(fmt.Sprintf("%s.scheduler_flags[%d]", p, j), "%s.scheduler_flags[%d]: %q is not a flag of scheduler %s (it takes: %s)",
					p, j, f, s.Scheduler, strings.Join(schedulerFlags[s.Scheduler], ", "))
			}
		}
		switch s.Forward {
		case "dr", "nat", "tun":
		default:
			v.errorf(p+".forward", "%s.forward: %q is not dr, nat or tun", p, s.Forward)
		}
		if c.Dataplane == "nftables" && s.Forward == "tun" {
			v.errorf(p+".forward", "%s.forward: the nftables data plane forwards with nat or dr; tun needs dataplane ipvs", p)
		}
		for j, r := range s.Ports {
			if !r.Single() {
				if s.Mark.Mode == MarkNone {
					v.errorf(fmt.Sprintf("%s.ports[%d]", p, j), "%s.ports[%d]: the range %s needs a mark (shared or per-vip); mark: none takes single ports", p, j, r)
				}
			}
		}
		fam := 0
		for j, vip := range s.VIPs {
			if !vip.IsValid() {
				continue // reported when decoded
			}
			if len(carried) > 0 && !carried[vip] && !v.bgpAnnounced(vip) {
				vp := fmt.Sprintf("%s.vips[%d]", p, j)
				v.warnf(vp, "%s: no VRRP instance carries VIP %s; it must be configured by other means", vp, vip)
			}
			if fam == 0 {
				fam = vipFamily(vip)
			}
			for k, r := range s.Ports {
				key := portKey{vip, s.Protocol}
				for _, u := range uses[key] {
					if r.Lo <= u.r.Hi && u.r.Lo <= r.Hi {
						v.errorf(fmt.Sprintf("%s.ports[%d]", p, k), "%s.ports[%d]: %s/%s port %s overlaps port %s of service %q",
							p, k, vip, s.Protocol, r, u.r, u.service)
					}
				}
				uses[key] = append(uses[key], portUse{r, s.Name})
			}
		}
		if s.Persistence.Netmask < 0 || s.Persistence.Netmask > 8*addrLen(fam) {
			v.errorf(p+".persistence.netmask", "%s.persistence.netmask: %d is not a prefix length from 0 to %d", p, s.Persistence.Netmask, 8*addrLen(fam))
		}
		if s.Persistence.Timeout > 0 && s.Persistence.Timeout.D()%time.Second != 0 {
			v.errorf(p+".persistence.timeout", "%s.persistence.timeout: %s is not whole seconds", p, s.Persistence.Timeout)
		}
		if s.MaglevSize != 0 && (s.MaglevSize < 7 || !maglev.IsPrime(s.MaglevSize)) {
			v.errorf(p+".maglev_size", "%s.maglev_size: %d is not a prime of at least 7", p, s.MaglevSize)
		}
		v.servicePool(p, s)
	}
	v.markCollisions()
	v.markMask()
}

func addrLen(fam int) int {
	if fam == 6 {
		return 16
	}
	return 4
}

// servicePool checks a service against the pool it sends traffic to.
func (v *validator) servicePool(p string, s Service) {
	if s.Pool == "" {
		v.errorf(p, "%s: service %q needs a pool", p, s.Name)
		return
	}
	pool, ok := v.c.Pools[s.Pool]
	if !ok {
		v.errorf(p+".pool", "%s.pool: no pool named %q%s", p, s.Pool, didYouMean(s.Pool, maps.Keys(v.c.Pools)))
		return
	}
	families := map[int]bool{}
	for _, vip := range s.VIPs {
		if vip.IsValid() {
			families[vipFamily(vip)] = true
		}
	}
	hasFamily := map[int]bool{}
	for i, srv := range pool.Servers {
		if !srv.Address.IsValid() {
			hasFamily[4], hasFamily[6] = true, true // reported already; don't cascade
			continue
		}
		sf := vipFamily(srv.Address)
		hasFamily[sf] = true
		if srv.Port != 0 && s.Forward != "nat" && !(len(s.Ports) == 1 && s.Ports[0].Single() && s.Ports[0].Lo == srv.Port) {
			sp := fmt.Sprintf("pools.%s.servers[%d]", s.Pool, i)
			v.errorf(sp+".port", "%s.port: server port %d differs from the ports of service %q, which only forward nat can do (forward is %s)",
				sp, srv.Port, s.Name, s.Forward)
		}
	}
	for fam := range families {
		if len(pool.Servers) > 0 && !hasFamily[fam] {
			v.errorf(p+".pool", "%s.pool: pool %q has no IPv%d server for the IPv%d VIPs of service %q", p, s.Pool, fam, fam, s.Name)
		}
	}
	multiPort := len(s.Ports) > 1 || (len(s.Ports) == 1 && !s.Ports[0].Single())
	for i, ch := range pool.Checks {
		if ch.Port != 0 || !multiPort || s.Mark.Mode == MarkNone {
			continue
		}
		for _, srv := range pool.Servers {
			if srv.Port == 0 && srv.Checks == nil && ch.Type != "ping" && ch.Type != "exec" {
				v.errorf(fmt.Sprintf("pools.%s.check[%d]", s.Pool, i), "pools.%s.check[%d]: service %q covers several ports, so the check needs a port (or each server one)",
					s.Pool, i, s.Name)
				break
			}
		}
	}
	for i, srv := range pool.Servers {
		for j, ch := range srv.Checks {
			if multiPort && s.Mark.Mode != MarkNone && ch.Port == 0 && srv.Port == 0 && ch.Type != "ping" && ch.Type != "exec" {
				cp := fmt.Sprintf("pools.%s.servers[%d].check[%d]", s.Pool, i, j)
				v.errorf(cp, "%s: service %q covers several ports, so the check needs a port (or the server one)", cp, s.Name)
			}
		}
	}
	if sorry, ok := pool.Sorry(); ok && len(families) == 1 && !families[vipFamily(sorry.Addr())] {
		v.errorf("pools."+s.Pool+".sorry_server", "pools.%s.sorry_server: %s is not of the address family of service %q", s.Pool, sorry.Addr(), s.Name)
	}
}

// markMask reports a mark halb sets that has bits outside
// nftables.mark_mask: halb sets only the mask's bits.
func (v *validator) markMask() {
	mask := v.c.NFTables.MarkMask
	if mask == 0 {
		v.errorf("nftables.mark_mask", "nftables.mark_mask: 0 leaves halb no bit of the packet mark to set")
		return
	}
	for _, m := range v.c.MarkPlan() {
		if m.External || m.Mark&^mask == 0 {
			continue
		}
		i := slices.IndexFunc(v.c.Services, func(s Service) bool { return s.Name == m.Service })
		v.errorf(fmt.Sprintf("services[%d].mark", i), "services[%d].mark: mark %#x of service %q has bits outside nftables.mark_mask %#x; widen the mask, or set the mark with rules of your own (mark: NUMBER)",
			i, m.Mark, m.Service, mask)
	}
}

// markCollisions reports two services whose marks are the same number.
func (v *validator) markCollisions() {
	owner := map[uint32]string{}
	for _, m := range v.c.MarkPlan() {
		if prev, dup := owner[m.Mark]; dup && prev != m.Service {
			i := slices.IndexFunc(v.c.Services, func(s Service) bool { return s.Name == m.Service })
			v.errorf(fmt.Sprintf("services[%d].mark", i), "services[%d].mark: mark %d of service %q is also the mark of service %q; rename one of them",
				i, m.Mark, m.Service, prev)
			continue
		}
		owner[m.Mark] = m.Service
	}
}

func (v *validator) ipvsSync() {
	s := v.c.IPVSSync
	if s == nil {
		return
	}
	if _, ok := v.c.Instance(s.Instance); !ok {
		v.errorf("ipvs_sync.instance", "ipvs_sync.instance: no VRRP instance named %q", s.Instance)
	}
	if s.Interface == "" {
		v.errorf("ipvs_sync", "ipvs_sync: needs an interface")
	}
	if s.SyncID < 0 || s.SyncID > 255 {
		v.errorf("ipvs_sync.sync_id", "ipvs_sync.sync_id: %d is not from 0 to 255", s.SyncID)
	}
	if s.Mode != "follow" && s.Mode != "both" {
		v.errorf("ipvs_sync.mode", "ipvs_sync.mode: %q is not follow or both", s.Mode)
	}
	if s.McastTTL < 1 || s.McastTTL > 255 {
		v.errorf("ipvs_sync.mcast_ttl", "ipvs_sync.mcast_ttl: %d is not from 1 to 255", s.McastTTL)
	}
}

func (v *validator) notify() {
	n := v.c.Notify
	if n.SMTP != nil {
		if _, _, err := net.SplitHostPort(n.SMTP.Server); err != nil {
			v.errorf("notify.smtp.server", "notify.smtp.server: %q is not HOST:PORT", n.SMTP.Server)
		}
		if n.SMTP.From == "" || len(n.SMTP.To) == 0 {
			v.errorf("notify.smtp", "notify.smtp: needs from and to")
		}
	}
	for i, w := range n.Webhooks {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf(fmt.Sprintf("notify.webhooks[%d].url", i), "notify.webhooks[%d].url: %q is not an http(s) URL", i, w.URL)
		}
	}
	if n.Exec != "" && !strings.HasPrefix(n.Exec, "/") {
		v.errorf("notify.exec", "notify.exec: %q must be an absolute path", n.Exec)
	}
}

// serverOptions checks a server's own on_failure and connection thresholds.
func (v *validator) serverOptions(sp string, s Server) {
	switch s.OnFailure {
	case "", "inhibit", "remove":
	default:
		v.errorf(sp+".on_failure", "%s.on_failure: %q is not inhibit or remove", sp, s.OnFailure)
	}
	if s.MaxConnections != 0 && s.MinConnections > s.MaxConnections {
		v.errorf(sp+".min_connections", "%s.min_connections: %d is above max_connections %d", sp, s.MinConnections, s.MaxConnections)
	}
	if s.MinConnections != 0 && s.MaxConnections == 0 {
		v.errorf(sp+".min_connections", "%s.min_connections: only means something with max_connections", sp)
	}
	if v.c.Dataplane == "nftables" && s.MaxConnections != 0 {
		v.warnf(sp+".max_connections", "%s.max_connections: the nftables data plane cannot limit a server's connections; only dataplane ipvs honours it", sp)
	}
}
