package nft

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"halb/internal/dataplane"
	"halb/internal/dataplane/nft/nfbatch"
	"halb/internal/maglev"
)

// Direct routing runs in a netdev table of the same name: an ingress
// chain on each device that leads to DR backends sends a service's
// packets, IP header untouched, to the backend at slot jhash(flow) mod M
// of its Maglev table ("fwd ip to … device"). No conntrack is involved:
// two nodes with the same table agree on every packet. google/nftables
// has no fwd expression, so this table is written through nfbatch, one
// transaction that changes it in place. DR assumes the
// one-armed layout: clients' packets for a VIP arrive on the device that
// leads to its backends.

// drServices splits the DR services off a state.
func drServices(st dataplane.State) (dr []dataplane.VirtualService, rest []dataplane.VirtualService, err error) {
	rest = make([]dataplane.VirtualService, 0, len(st.Services))
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
const drFlowTimeout = 15 * time.Minute

// dynsetOpDelete is NFT_DYNSET_OP_DELETE, which golang.org/x/sys/unix
// lacks: a rule's dynset removes the key from the set.
const dynsetOpDelete = 2

// drPlan is the netdev table's wanted content.
type drPlan struct {
	sets     map[string]drSet    // name → definition
	chains   map[string][]drRule // regular chains → rules
	ingress  []string            // devices with an ingress chain
	dr4, dr6 []drDispatch        // dispatch elements
	counters map[string]owner    // named counters → their backend
	svcs     []owner             // the services counted
}

// drSet is a dynamic set of a DR service: a backend's flows, or its
// pinned client prefixes.
type drSet struct {
	fam  int
	flow bool
}

// drDispatch sends a VIP's protocol and port range to a service's chain.
type drDispatch struct {
	vip    netip.Addr
	proto  byte
	lo, hi uint16
	chain  string
}

// drRule is one rule of the netdev table. With slots, its expressions
// leave a hash in register 1, and the rule jumps to the chain of that
// slot (a jhash vmap).
type drRule struct {
	exprs   []nfbatch.Expr
	slots   []string
	comment string
}

// drLink is the device that leads to a backend.
type drLink struct {
	name  string
	index int
}

// drBuild plans the netdev table of the DR services. device returns the
// device that leads to a backend.
func drBuild(dr []dataplane.VirtualService, marks []dataplane.MarkRule, device func(netip.Addr) (drLink, error)) (drPlan, error) {
	p := drPlan{sets: map[string]drSet{}, chains: map[string][]drRule{}, counters: map[string]owner{}}
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
			e := drDispatch{vip, protoNum[proto], lo, hi, chain}
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
	byTuple := func(a, b drDispatch) int {
		return cmp.Or(a.vip.Compare(b.vip), cmp.Compare(a.proto, b.proto), cmp.Compare(a.lo, b.lo), cmp.Compare(a.hi, b.hi), strings.Compare(a.chain, b.chain))
	}
	slices.SortFunc(p.dr4, byTuple)
	slices.SortFunc(p.dr6, byTuple)
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
func (p drPlan) service(vs dataplane.VirtualService, device func(netip.Addr) (drLink, error)) (string, string, error) {
	h := shortHash(vs.Key.String(), 12)
	chain := "dr-" + h
	size := vs.MaglevSize
	if size == 0 {
		size = maglev.DefaultSize(len(vs.Reals))
	}
	f := fams[vs.Key.Family]
	var bs []maglev.Backend
	beChain := map[string]string{}
	var rules, pins, forget []drRule
	dev := ""
	for _, r := range slices.SortedFunc(slices.Values(vs.Reals), func(a, b dataplane.Real) int { return a.AddrPort().Compare(b.AddrPort()) }) {
		id := r.AddrPort().String()
		b := shortHash(id, 8)
		be, flows, pin := "drbe-"+h+"-"+b, "flow-"+h+"-"+b, "drpin-"+h+"-"+b
		l, err := device(r.Addr)
		if err != nil {
			return "", "", err
		}
		if dev != "" && l.name != dev {
			return "", "", fmt.Errorf("backends behind two devices (%s, %s); direct routing sends from one", dev, l.name)
		}
		dev = l.name
		bs = append(bs, maglev.Backend{ID: id, Weight: r.Weight})
		beChain[id] = be
		p.sets[flows] = drSet{fam: vs.Key.Family, flow: true}
		rules = append(rules, drMatch(drFlowIn(f, flows), be))
		forget = append(forget, drMatch(drFlow(f, &expr.Dynset{SrcRegKey: reg32, SetName: flows, Operation: dynsetOpDelete})))
		body := append(p.drCounters(h, b, f, flows, owner{vs.Key, vs.Service, r.Addr, r.Port}),
			drMatch(drFlow(f, &expr.Dynset{SrcRegKey: reg32, SetName: flows, Operation: unix.NFT_DYNSET_OP_UPDATE})))
		if vs.Persistence > 0 {
			p.sets[pin] = drSet{fam: vs.Key.Family}
			body = append(body, drMatch(drPrefix(f, vs.Netmask, &expr.Dynset{SrcRegKey: reg1, SetName: pin, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: vs.Persistence.Truncate(time.Second)})))
			if r.Weight > 0 {
				pins = append(pins, drMatch(drPrefix(f, vs.Netmask, &expr.Lookup{SourceRegister: reg1, SetName: pin}), be))
			}
		}
		p.chains[be] = append(body, drForward(f, r.Addr, l.index))
	}
	tab, err := maglev.New(bs, size)
	if err != nil {
		return "", "", err
	}
	comment := vs.Service + " " + vs.Key.String()
	// A TCP SYN opens a new connection, even from a reused port: it skips
	// the flow sets and is balanced anew, and forgets the port's old flow
	// first, or the next segment would follow the stale entry to the old
	// backend when the table changed in between.
	newChain, synChain := "drnew-"+h, "drsyn-"+h
	syn := drMatch([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0x02}},
	}, synChain)
	p.chains[chain] = append(append([]drRule{syn}, rules...), drMatch(nil, newChain))
	p.chains[synChain] = append(forget, drMatch(nil, newChain))
	rules = pins
	if len(tab.Entries) == 0 {
		rules = append(rules, drRule{exprs: nfbatch.Libs(&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}), comment: comment})
	} else {
		hash := &expr.Hash{SourceRegister: reg32, DestRegister: reg1, Length: drFlowLen(f), Modulus: uint32(size), Seed: Seed(vs.Key), Type: expr.HashTypeJenkins}
		key := drFlow(f, hash)
		if vs.Persistence > 0 {
			hash.SourceRegister, hash.Length = reg1, f.alen
			key = drPrefix(f, vs.Netmask, hash)
		}
		slots := make([]string, len(tab.Entries))
		for slot, e := range tab.Entries {
			slots[slot] = beChain[tab.Backends[e].ID]
		}
		rules = append(rules, drRule{exprs: nfbatch.Libs(key...), slots: slots, comment: comment})
	}
	p.chains[newChain] = rules
	return chain, dev, nil
}

// Expressions of the netdev table's rules. The family comes from the
// link layer's protocol (meta nfproto is "netdev" here), and a flow is
// saddr . sport . daddr . dport from the first 32-bit register.

// drIsFamily matches the packets of one IP family.
func drIsFamily(f famInfo) []expr.Any {
	proto := []byte{0x08, 0x00} // ETH_P_IP
	if f.nfproto == unix.NFPROTO_IPV6 {
		proto = []byte{0x86, 0xdd}
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: proto},
	}
}

// drFlowLen is the length of a flow in registers.
func drFlowLen(f famInfo) uint32 { return 4 * (2*regs(f.alen) + 2) }

// drFlow loads a packet's flow, then applies use to it.
func drFlow(f famInfo, use ...expr.Any) []expr.Any {
	ar, r := regs(f.alen), uint32(reg32)
	ex := append(drIsFamily(f),
		&expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddr, Len: f.alen},
		&expr.Payload{DestRegister: r + ar, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Payload{DestRegister: r + ar + 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddr, Len: f.alen},
		&expr.Payload{DestRegister: r + 2*ar + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	)
	return append(ex, use...)
}

// drFlowIn matches a flow in a set.
func drFlowIn(f famInfo, set string) []expr.Any {
	return drFlow(f, &expr.Lookup{SourceRegister: reg32, SetName: set})
}

// drPrefix loads the client's prefix into register 1, then applies use
// to it.
func drPrefix(f famInfo, bits int, use ...expr.Any) []expr.Any {
	return append(append(drIsFamily(f), loadPrefix(f, reg1, bits)...), use...)
}

// drMatch is a rule of library expressions that goes to chain when they
// match (no chain: the expressions are the rule).
func drMatch(ex []expr.Any, chain ...string) drRule {
	for _, c := range chain {
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictGoto, Chain: c})
	}
	return drRule{exprs: nfbatch.Libs(ex...)}
}

// drForward sends the packet to a backend through a device, IP header
// untouched: fwd ip to ADDR device DEV.
func drForward(f famInfo, addr netip.Addr, dev int) drRule {
	return drRule{exprs: []nfbatch.Expr{
		nfbatch.Lib{Any: &expr.Immediate{Register: reg1, Data: binaryutil.NativeEndian.PutUint32(uint32(dev))}},
		nfbatch.Lib{Any: &expr.Immediate{Register: reg2, Data: addr.AsSlice()}},
		&nfbatch.Fwd{DevReg: reg1, AddrReg: reg2, NFProto: f.nfproto},
	}}
}

// nftSet returns the set to create for a definition.
func (s drSet) nftSet(t *nftables.Table, name string) *nftables.Set {
	addr := nftables.TypeIPAddr
	if s.fam == 6 {
		addr = nftables.TypeIP6Addr
	}
	set := &nftables.Set{Table: t, Name: name, KeyType: addr, Dynamic: true, HasTimeout: true, Size: pinSetSize}
	if s.flow {
		set.KeyType = nftables.MustConcatSetType(addr, nftables.TypeInetService, addr, nftables.TypeInetService)
		set.Timeout = drFlowTimeout
	}
	return set
}

// drDispatchMap is the verdict map of one family's dispatch elements.
func drDispatchMap(t *nftables.Table, fam int) *nftables.Set {
	addr := nftables.TypeIPAddr
	if fam == 6 {
		addr = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: t, Name: pickFam(fam, "dr4", "dr6"), IsMap: true, Interval: true, Concatenation: true,
		KeyType:  nftables.MustConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService),
		DataType: nftables.TypeVerdict}
}

// element is the dispatch map's element of e.
func (e drDispatch) element() nftables.SetElement {
	key := func(port uint16) []byte {
		b := append(e.vip.AsSlice(), e.proto, 0, 0, 0)
		return append(b, byte(port>>8), byte(port), 0, 0)
	}
	return nftables.SetElement{Key: key(e.lo), KeyEnd: key(e.hi), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}}
}

// ingressRules are an ingress chain's rules: only frames addressed to
// this node (a switch floods unknown unicast, and a node must not forward
// what another node owns), dispatched by daddr . l4proto . dport.
func ingressRules() [][]expr.Any {
	var out [][]expr.Any
	for _, fam := range []int{4, 6} {
		f := fams[fam]
		ex := append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.PACKET_HOST}},
		}, drIsFamily(f)...)
		ex = append(append(ex, loadTuple(f)...),
			&expr.Lookup{SourceRegister: reg32, DestRegister: regVerdict, IsDestRegSet: true, SetName: pickFam(fam, "dr4", "dr6")})
		out = append(out, ex)
	}
	return out
}

// queue queues the messages that bring the netdev table from the chains,
// sets and counters it has to the plan, in place, in one transaction.
// The last rule of each ingress chain carries digest, the plan's.
func (p drPlan) queue(b *nfbatch.Batch, table string, haveChains, haveSets, haveCounters map[string]bool, digest []byte) error {
	c := b.Conn()
	t := c.AddTable(&nftables.Table{Name: table, Family: nftables.TableFamilyNetdev})
	p.declareCounters(c, t)
	for _, name := range slices.Sorted(maps.Keys(p.sets)) {
		if err := b.AddSet(p.sets[name].nftSet(t, name)); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	for _, fam := range []int{4, 6} {
		if err := b.AddSet(drDispatchMap(t, fam)); err != nil {
			return fmt.Errorf("map of IPv%d services: %w", fam, err)
		}
	}
	names := slices.Sorted(maps.Keys(p.chains))
	for _, name := range names {
		c.AddChain(&nftables.Chain{Table: t, Name: name})
	}
	for _, name := range names {
		c.FlushChain(&nftables.Chain{Table: t, Name: name})
		for _, r := range p.chains[name] {
			rule := nfbatch.Rule{Table: t, Chain: name, Exprs: r.exprs}
			if r.comment != "" {
				rule.UserData = userdata.AppendString(nil, userdata.TypeComment, r.comment)
			}
			if r.slots != nil {
				m := b.AddSlotMap(t, r.slots)
				rule.Exprs = append(slices.Clip(rule.Exprs), nfbatch.Lib{Any: &expr.Lookup{SourceRegister: reg1, DestRegister: regVerdict, IsDestRegSet: true, SetName: m.Name, SetID: m.ID}})
			}
			b.AddRule(rule)
		}
	}
	for _, fam := range []int{4, 6} {
		m := drDispatchMap(t, fam)
		c.FlushSet(m)
		var els []nftables.SetElement
		dispatch := p.dr4
		if fam == 6 {
			dispatch = p.dr6
		}
		for _, e := range dispatch {
			els = append(els, e.element())
		}
		for part := range slices.Chunk(els, elemsPerMessage) {
			if err := c.SetAddElements(m, part); err != nil {
				return fmt.Errorf("elements of %s: %w", m.Name, err)
			}
		}
	}
	wanted := map[string]bool{}
	for _, dev := range p.ingress {
		in := &nftables.Chain{Table: t, Name: "in-" + dev}
		wanted[in.Name] = true
		if !haveChains[in.Name] { // a hooked chain is declared once: again would be EBUSY
			accept := nftables.ChainPolicyAccept
			in.Type, in.Hooknum, in.Priority, in.Device, in.Policy = nftables.ChainTypeFilter, nftables.ChainHookIngress, nftables.ChainPriorityFilter, dev, &accept
			c.AddChain(in)
		}
		c.FlushChain(in)
		rules := ingressRules()
		for i, ex := range rules {
			r := nfbatch.Rule{Table: t, Chain: in.Name, Exprs: nfbatch.Libs(ex...)}
			if i == len(rules)-1 && digest != nil {
				r.UserData = userdata.Append(nil, udDigest, digest)
			}
			b.AddRule(r)
		}
	}
	var gone []string
	for name := range haveChains {
		if _, ok := p.chains[name]; !ok && !wanted[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		c.FlushChain(&nftables.Chain{Table: t, Name: name})
	}
	for _, name := range slices.Sorted(maps.Keys(haveSets)) {
		if _, ok := p.sets[name]; !ok && name != "dr4" && name != "dr6" {
			c.DelSet(&nftables.Set{Table: t, Name: name})
		}
	}
	for _, name := range gone {
		c.DelChain(&nftables.Chain{Table: t, Name: name})
	}
	p.removeCounters(c, t, haveCounters)
	return nil
}

// digest is the digest of the messages that write the plan into an empty
// table.
func (p drPlan) digest(table string) ([]byte, error) {
	b := nfbatch.New()
	if err := p.queue(b, table, nil, nil, nil, nil); err != nil {
		return nil, err
	}
	msgs, err := b.Messages()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write([]byte(rulesVersion))
	for _, m := range msgs {
		h.Write(binary.BigEndian.AppendUint16(nil, uint16(m.Header.Type)))
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(m.Data))))
		h.Write(m.Data)
	}
	return h.Sum(nil)[:8], nil
}

// drHolds says whether the kernel's netdev table was written from the
// plan: each of its ingress chains carries the plan's digest, and the
// plan's chains exist.
func (d *Dataplane) drHolds(p *drPlan, digest []byte, haveChains map[string]bool) bool {
	digests, err := d.readDigestsOf(unix.NFPROTO_NETDEV, d.table)
	if err != nil {
		return false
	}
	for _, dev := range p.ingress {
		if digests["in-"+dev] != string(digest) {
			return false
		}
	}
	for name := range p.chains {
		if !haveChains[name] {
			return false
		}
	}
	return len(p.ingress) > 0
}

// routeDevice returns the device that leads to an address in the data
// plane's namespace.
func (d *Dataplane) routeDevice(a netip.Addr) (drLink, error) {
	ns := netns.None()
	if d.netns != 0 {
		ns = netns.NsHandle(d.netns)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return drLink{}, fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	routes, err := h.RouteGet(a.AsSlice())
	if err != nil || len(routes) == 0 {
		return drLink{}, fmt.Errorf("no route to DR backend %s: %v", a, err)
	}
	link, err := h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return drLink{}, fmt.Errorf("device of the route to %s: %w", a, err)
	}
	if link.Attrs().Flags&net.FlagLoopback != 0 {
		return drLink{}, fmt.Errorf("DR backend %s is an address of this node", a)
	}
	return drLink{name: link.Attrs().Name, index: link.Attrs().Index}, nil
}

// applyDR brings the netdev table to the plan (nil: no table) in one
// transaction; c reads what the table holds and removes a table no
// longer wanted. It returns the number of changes: the messages sent.
func (d *Dataplane) applyDR(c *nftables.Conn, p *drPlan) (int, error) {
	if d.drKnown && reflect.DeepEqual(p, d.drApplied) {
		return 0, nil
	}
	t := &nftables.Table{Name: d.table, Family: nftables.TableFamilyNetdev}
	exists := false
	if tables, err := c.ListTablesOfFamily(nftables.TableFamilyNetdev); err == nil {
		exists = slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == d.table })
	}
	if p == nil {
		n := 0
		if exists {
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return 0, fmt.Errorf("delete direct routing table: %w", err)
			}
			n = 1
		}
		d.drApplied, d.drKnown = nil, true
		return n, nil
	}
	haveChains, haveSets, haveCounters := map[string]bool{}, map[string]bool{}, map[string]bool{}
	if exists {
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyNetdev)
		if err != nil {
			return 0, fmt.Errorf("list direct routing chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Table.Name == d.table {
				haveChains[ch.Name] = true
			}
		}
		sets, err := c.GetSets(t)
		if err != nil {
			return 0, fmt.Errorf("list direct routing sets: %w", err)
		}
		for _, s := range sets {
			if !s.Anonymous && !strings.HasPrefix(s.Name, "__") { // a rule's own map goes with the rule
				haveSets[s.Name] = true
			}
		}
		objs, err := c.GetObjects(t)
		if err != nil {
			return 0, fmt.Errorf("list direct routing counters: %w", err)
		}
		for _, o := range objs {
			if co, ok := o.(*nftables.CounterObj); ok {
				haveCounters[co.Name] = true
			}
		}
	}
	digest, err := p.digest(d.table)
	if err != nil {
		return 0, fmt.Errorf("direct routing table: %w", err)
	}
	if exists && !d.drKnown && d.drHolds(p, digest, haveChains) {
		d.drApplied, d.drKnown = p, true // a restart on the table it wrote
		return 0, nil
	}
	b := nfbatch.New()
	if err := p.queue(b, d.table, haveChains, haveSets, haveCounters, digest); err != nil {
		return 0, fmt.Errorf("direct routing table: %w", err)
	}
	msgs, err := b.Messages()
	if err != nil {
		return 0, fmt.Errorf("direct routing table: %w", err)
	}
	if err := d.send(b); err != nil {
		d.drKnown = false
		return 0, fmt.Errorf("write direct routing table: %w", err)
	}
	d.drApplied, d.drKnown = p, true
	return len(msgs), nil
}
