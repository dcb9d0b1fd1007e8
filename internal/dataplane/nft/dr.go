package nft

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"halb/internal/dataplane"
	"halb/internal/maglev"
	"halb/internal/proc"
)

// Direct routing runs in a netdev table of the same name: an ingress
// chain on each device that leads to DR backends sends a service's
// packets, IP header untouched, to the backend at slot jhash(flow) mod M
// of its Maglev table ("fwd ip to … device"). No conntrack is involved:
// two nodes with the same table agree on every packet. google/nftables
// has no fwd expression, so this table is written with the nft tool, as
// one transaction that replaces it whole when it changes. DR assumes the
// one-armed layout: clients' packets for a VIP arrive on the device that
// leads to its backends.

// drServices splits the DR services off a state.
func drServices(st dataplane.State) (dr []dataplane.VirtualService, rest []dataplane.VirtualService, err error) {
	for _, vs := range st.Services {
		n := 0
		for _, r := range vs.Reals {
			if r.Forward == "dr" {
				n++
			}
		}
		switch {
		case n == 0:
			rest = append(rest, vs)
		case n == len(vs.Reals):
			dr = append(dr, vs)
		default:
			return nil, nil, fmt.Errorf("service %s (%s) mixes dr with other forwarding methods", vs.Key, vs.Service)
		}
	}
	return dr, rest, nil
}

// drFlowTimeout is how long a DR flow stays on its backend after its last
// packet (IPVS's TCP established timeout).
const drFlowTimeout = "15m"

// drPlan is the netdev table's wanted content.
type drPlan struct {
	sets     map[string]string   // name → definition
	chains   map[string][]string // regular chains → rules
	ingress  []string            // devices with an ingress chain
	dr4, dr6 []string            // dispatch elements
	counters map[string]owner    // named counters → their backend
	svcs     []owner             // the services counted
}

// drBuild plans the netdev table of the DR services. device returns the
// device that leads to a backend.
func drBuild(dr []dataplane.VirtualService, marks []dataplane.MarkRule, device func(netip.Addr) (string, error)) (drPlan, error) {
	p := drPlan{sets: map[string]string{}, chains: map[string][]string{}, counters: map[string]owner{}}
	devices := map[string]bool{}
	for _, vs := range dr {
		chain, dev, err := p.service(vs, device)
		if err != nil {
			return drPlan{}, fmt.Errorf("service %s (%s): %w", vs.Key, vs.Service, err)
		}
		if dev != "" {
			devices[dev] = true
		}
		p.svcs = append(p.svcs, owner{vs: vs.Key, service: vs.Service})
		add := func(vip netip.Addr, proto string, lo, hi uint16) {
			ports := fmt.Sprint(lo)
			if hi != lo {
				ports = fmt.Sprintf("%d-%d", lo, hi)
			}
			e := fmt.Sprintf("%s . %s . %s : goto %s", vip, proto, ports, chain)
			if vip.Is4() {
				p.dr4 = append(p.dr4, e)
			} else {
				p.dr6 = append(p.dr6, e)
			}
		}
		if vs.Key.Mark == 0 {
			add(vs.Key.Addr, vs.Key.Protocol, vs.Key.Port, vs.Key.Port)
			continue
		}
		for _, m := range marks {
			if m.Mark == vs.Key.Mark && family(m.VIP) == vs.Key.Family {
				add(m.VIP, m.Protocol, m.PortLo, m.PortHi)
			}
		}
	}
	slices.Sort(p.dr4)
	slices.Sort(p.dr6)
	p.ingress = slices.Sorted(maps.Keys(devices))
	return p, nil
}

// service plans one DR service: a chain that sends a packet of a known
// flow to its backend, a chain for new connections that sends a pinned
// client to its backend and the others to their Maglev slot's, and a
// chain per backend that records the flow and forwards the packet. The
// flow sets keep established connections on their backend when the table
// changes (no conntrack here); they last because the table is changed in
// place.
func (p drPlan) service(vs dataplane.VirtualService, device func(netip.Addr) (string, error)) (string, string, error) {
	h := shortHash(vs.Key.String(), 12)
	chain := "dr-" + h
	size := vs.MaglevSize
	if size == 0 {
		size = maglev.DefaultSize(len(vs.Reals))
	}
	ip, addrType := "ip", "ipv4_addr"
	if vs.Key.Family == 6 {
		ip, addrType = "ip6", "ipv6_addr"
	}
	flow := fmt.Sprintf("%s saddr . th sport . %s daddr . th dport", ip, ip)
	prefix := fmt.Sprintf("%s saddr & %s", ip, prefixMask(vs.Key.Family, vs.Netmask))
	var bs []maglev.Backend
	beChain := map[string]string{}
	var rules, pins, forget []string
	dev := ""
	for _, r := range slices.SortedFunc(slices.Values(vs.Reals), func(a, b dataplane.Real) int { return a.AddrPort().Compare(b.AddrPort()) }) {
		id := r.AddrPort().String()
		b := shortHash(id, 8)
		be, flows, pin := "drbe-"+h+"-"+b, "flow-"+h+"-"+b, "drpin-"+h+"-"+b
		d, err := device(r.Addr)
		if err != nil {
			return "", "", err
		}
		if dev != "" && d != dev {
			return "", "", fmt.Errorf("backends behind two devices (%s, %s); direct routing sends from one", dev, d)
		}
		dev = d
		bs = append(bs, maglev.Backend{ID: id, Weight: r.Weight})
		beChain[id] = be
		p.sets[flows] = fmt.Sprintf("type %s . inet_service . %s . inet_service; flags dynamic,timeout; timeout %s; size %d;", addrType, addrType, drFlowTimeout, pinSetSize)
		rules = append(rules, fmt.Sprintf("%s @%s goto %s", flow, flows, be))
		forget = append(forget, fmt.Sprintf("delete @%s { %s }", flows, flow))
		body := append(p.drCounters(h, b, flow, flows, owner{vs.Key, vs.Service, r.Addr, r.Port}), fmt.Sprintf("update @%s { %s }", flows, flow))
		if vs.Persistence > 0 {
			p.sets[pin] = fmt.Sprintf("type %s; flags dynamic,timeout; size %d;", addrType, pinSetSize)
			body = append(body, fmt.Sprintf("update @%s { %s timeout %ds }", pin, prefix, int(vs.Persistence.Seconds())))
			if r.Weight > 0 {
				pins = append(pins, fmt.Sprintf("%s @%s goto %s", prefix, pin, be))
			}
		}
		p.chains[be] = append(body, fmt.Sprintf("fwd %s to %s device %q", ip, r.Addr, d))
	}
	tab, err := maglev.New(bs, size)
	if err != nil {
		return "", "", err
	}
	// A TCP SYN opens a new connection, even from a reused port: it skips
	// the flow sets and is balanced anew, and forgets the port's old flow
	// first, or the next segment would follow the stale entry to the old
	// backend when the table changed in between.
	newChain, synChain := "drnew-"+h, "drsyn-"+h
	rules = append([]string{"tcp flags & (syn | ack) == syn goto " + synChain}, rules...)
	rules = append(rules, "goto "+newChain)
	p.chains[chain] = rules
	p.chains[synChain] = append(forget, "goto "+newChain)
	rules = pins
	if len(tab.Entries) == 0 {
		rules = append(rules, fmt.Sprintf("counter drop comment %q", vs.Service+" "+vs.Key.String()))
	} else {
		key := flow
		if vs.Persistence > 0 {
			key = prefix
		}
		var slots strings.Builder
		for slot, e := range tab.Entries {
			if slot > 0 {
				slots.WriteString(", ")
			}
			fmt.Fprintf(&slots, "%d : goto %s", slot, beChain[tab.Backends[e].ID])
		}
		rules = append(rules, fmt.Sprintf("jhash %s mod %d seed %#x vmap { %s } comment %q", key, size, Seed(vs.Key), slots.String(), vs.Service+" "+vs.Key.String()))
	}
	p.chains[newChain] = rules
	return chain, dev, nil
}

// script renders the nft commands that bring the netdev table from the
// chains and sets it has to the plan, in place, in one transaction.
func (p drPlan) script(table string, haveChains, haveSets, haveCounters map[string]bool) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("add table netdev %s", table)
	declare, remove := p.drCounterScript(table, haveCounters)
	b.WriteString(declare)
	for _, name := range slices.Sorted(maps.Keys(p.sets)) {
		w("add set netdev %s %s { %s }", table, name, p.sets[name])
	}
	w("add map netdev %s dr4 { type ipv4_addr . inet_proto . inet_service : verdict; flags interval; }", table)
	w("add map netdev %s dr6 { type ipv6_addr . inet_proto . inet_service : verdict; flags interval; }", table)
	names := slices.Sorted(maps.Keys(p.chains))
	for _, name := range names {
		w("add chain netdev %s %s", table, name)
	}
	for _, name := range names {
		w("flush chain netdev %s %s", table, name)
		for _, r := range p.chains[name] {
			w("add rule netdev %s %s %s", table, name, r)
		}
	}
	for _, m := range []struct {
		name  string
		elems []string
	}{{"dr4", p.dr4}, {"dr6", p.dr6}} {
		w("flush map netdev %s %s", table, m.name)
		if len(m.elems) > 0 {
			w("add element netdev %s %s { %s }", table, m.name, strings.Join(m.elems, ", "))
		}
	}
	wanted := map[string]bool{}
	for _, dev := range p.ingress {
		in := "in-" + dev
		wanted[in] = true
		if !haveChains[in] { // a hooked chain is declared once: again would be EBUSY
			w("add chain netdev %s %s { type filter hook ingress device %q priority filter; policy accept; }", table, in, dev)
		}
		w("flush chain netdev %s %s", table, in)
		// Only frames addressed to this node: a switch floods unknown
		// unicast, and a node must not forward what another node owns.
		w("add rule netdev %s %s meta pkttype host meta protocol ip ip daddr . meta l4proto . th dport vmap @dr4", table, in)
		w("add rule netdev %s %s meta pkttype host meta protocol ip6 ip6 daddr . meta l4proto . th dport vmap @dr6", table, in)
	}
	var gone []string
	for name := range haveChains {
		if _, ok := p.chains[name]; !ok && !wanted[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		w("flush chain netdev %s %s", table, name)
	}
	for _, name := range slices.Sorted(maps.Keys(haveSets)) {
		if _, ok := p.sets[name]; !ok && name != "dr4" && name != "dr6" {
			w("delete set netdev %s %s", table, name)
		}
	}
	for _, name := range gone {
		w("delete chain netdev %s %s", table, name)
	}
	b.WriteString(remove)
	return b.String()
}

// prefixMask renders a prefix length as an address mask (0: the whole
// address).
func prefixMask(fam, bits int) string {
	n := 8 * addrLen(fam)
	if bits == 0 || bits > n {
		bits = n
	}
	a, _ := netip.AddrFromSlice(net.CIDRMask(bits, n))
	return a.String()
}

// routeDevice returns the device that leads to an address in the data
// plane's namespace.
func (d *Dataplane) routeDevice(a netip.Addr) (string, error) {
	ns := netns.None()
	if d.netns != 0 {
		ns = netns.NsHandle(d.netns)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return "", fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	routes, err := h.RouteGet(a.AsSlice())
	if err != nil || len(routes) == 0 {
		return "", fmt.Errorf("no route to DR backend %s: %v", a, err)
	}
	link, err := h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("device of the route to %s: %w", a, err)
	}
	if link.Attrs().Flags&net.FlagLoopback != 0 {
		return "", fmt.Errorf("DR backend %s is an address of this node", a)
	}
	return link.Attrs().Name, nil
}

// applyDR brings the netdev table to the plan (nil: no table) with the
// nft tool, in the data plane's namespace; c reads what the table holds
// and removes a table no longer wanted without the tool.
func (d *Dataplane) applyDR(ctx context.Context, c *nftables.Conn, p *drPlan) error {
	if d.drKnown && reflect.DeepEqual(p, d.drApplied) {
		return nil
	}
	t := &nftables.Table{Name: d.table, Family: nftables.TableFamilyNetdev}
	exists := false
	if tables, err := c.ListTablesOfFamily(nftables.TableFamilyNetdev); err == nil {
		exists = slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == d.table })
	}
	if p == nil {
		if exists {
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("delete direct routing table: %w", err)
			}
		}
		d.drApplied, d.drKnown = nil, true
		return nil
	}
	haveChains, haveSets, haveCounters := map[string]bool{}, map[string]bool{}, map[string]bool{}
	if exists {
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyNetdev)
		if err != nil {
			return fmt.Errorf("list direct routing chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Table.Name == d.table {
				haveChains[ch.Name] = true
			}
		}
		sets, err := c.GetSets(t)
		if err != nil {
			return fmt.Errorf("list direct routing sets: %w", err)
		}
		for _, s := range sets {
			if !s.Anonymous && !strings.HasPrefix(s.Name, "__") { // a rule's own map goes with the rule
				haveSets[s.Name] = true
			}
		}
		objs, err := c.GetObjects(t)
		if err != nil {
			return fmt.Errorf("list direct routing counters: %w", err)
		}
		for _, o := range objs {
			if co, ok := o.(*nftables.CounterObj); ok {
				haveCounters[co.Name] = true
			}
		}
	}
	args := []string{"nft", "-f", "-"}
	if d.netns != 0 {
		args = append([]string{"nsenter", fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), d.netns)}, args...)
	}
	r := proc.Run(ctx, proc.Cmd{Path: args[0], Args: args[1:], User: proc.Self(),
		Stdin: []byte(p.script(d.table, haveChains, haveSets, haveCounters)), OutputLimit: nftOutputLimit})
	if r.Err != nil {
		d.drKnown = false
		return fmt.Errorf("nft -f (direct routing table): %w: %s", r.Err, bytes.TrimSpace(r.Output))
	}
	d.drApplied, d.drKnown = p, true
	return nil
}
