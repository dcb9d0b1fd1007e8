package nft

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"halb/internal/dataplane"
	"halb/internal/maglev"
)

// Mode says how much of the packet path the nftables data plane carries.
type Mode int

const (
	// MarksOnly installs the firewall-mark rules only: another data plane
	// (IPVS) forwards the packets.
	MarksOnly Mode = iota
	// LoadBalance also balances: Maglev lookup tables, persistence and
	// DNAT to the real servers.
	LoadBalance
)

func (m Mode) String() string {
	if m == LoadBalance {
		return "load-balance"
	}
	return "marks-only"
}

// Names of the table's fixed sets and chains; per-service objects are
// named after a hash of the service key (h) and of the backend (b).
const (
	setMarks4     = "markv4"   // ipv4_addr . inet_proto . inet_service → goto setmark-<mark> (intervals)
	setMarks6     = "markv6"   // ipv6_addr . inet_proto . inet_service → goto setmark-<mark> (intervals)
	setMarkPrefix = "setmark-" // setmark-<mark>: sets the mask's bits of the packet mark to mark
	setSvc4       = "svc4"     // ipv4_addr . inet_proto . inet_service → goto service chain
	setSvc6       = "svc6"     // ipv6_addr . inet_proto . inet_service → goto service chain
	setSvcMark4   = "svcmark4" // mark → goto service chain (IPv4 mark services)
	setSvcMark6   = "svcmark6" // mark → goto service chain (IPv6 mark services)
	setNATSrc4    = "natsrc4"  // addresses of IPv4 NAT backends
	setNATSrc6    = "natsrc6"  // addresses of IPv6 NAT backends
	chainMark     = "marking"  // prerouting, mangle: sets marks ("mark" is a keyword of nft's)
	chainBalance  = "balance"  // prerouting, dstnat: dispatches to service chains
	svcPrefix     = "svc-"     // svc-<h>: a service's chain
	maglevPrefix  = "slots-"   // slots-<h>: Maglev slot → address . port; -a: address; -p: goto backend chain
	bePrefix      = "be-"      // be-<h>-<b>: DNAT to one backend
	pinPrefix     = "pin-"     // pin-<h>-<b>: client prefixes pinned to a backend
	markPriority  = -150       // mangle: before IPVS and before the NAT chain
	natPriority   = -100       // dstnat
)

// setKind says what a set holds.
type setKind int

const (
	kindMarks      setKind = iota // tuple → verdict (a setmark chain)
	kindSvc                       // tuple → verdict
	kindSvcMark                   // mark → verdict
	kindMaglev                    // slot → verdict (persistence)
	kindMaglevNAT                 // slot → address . port
	kindMaglevAddr                // slot → address (the packet keeps its port)
	kindPin                       // client prefixes, dynamic, with timeouts
	kindAddr                      // addresses
)

// setDef is what it takes to create a set.
type setDef struct {
	kind   setKind
	family int
}

// elem is one set or map element as bytes; jump is the chain a verdict
// map element goes to.
type elem struct {
	key, keyEnd, val []byte
	jump             string
}

func (e elem) id() string { return string(e.key) + "\x00" + string(e.keyEnd) }

func (e elem) equal(o elem) bool {
	return bytes.Equal(e.val, o.val) && e.jump == o.jump && bytes.Equal(e.keyEnd, o.keyEnd)
}

// slotMap is a Maglev map: slot → backend, as a chain to go to
// (persistence) or as map data. Services that see their backends alike
// (same backends, ports, weights, size) share one: each hashes its flows
// with its own seed, so flows stay spread, and every node builds the
// same maps.
type slotMap struct {
	name   string
	view   string // what decides its slots (see mapNames)
	kind   setKind
	family int
	size   int
	// values are the backends as the map holds them; slots[i] indexes
	// values (no pointers: a large table costs the garbage collector
	// nothing to scan).
	values []string
	slots  []int32
	addrs  []elem // of the backends, for natsrcN
}

// slot returns the value of slot i, "" past the end (or of a nil map).
func (m *slotMap) slot(i int) string {
	if m == nil || i >= len(m.slots) {
		return ""
	}
	return m.values[m.slots[i]]
}

func (m *slotMap) def() setDef { return setDef{m.kind, m.family} }

// slotsOrNil returns the slots of m, nil for a nil map.
func (m *slotMap) slotsOrNil() []int32 {
	if m == nil {
		return nil
	}
	return m.slots
}

// service is everything one balanced virtual service puts in the table.
// Services without persistence that share a Maglev map and a protocol
// share a chain too: one jhash of the flow (addresses and ports, so flows
// stay spread over the backends for each service) picks their slot.
// It is built from the VirtualService alone, so an unchanged service is
// reused as is and costs nothing to reconcile.
type service struct {
	hash  string
	vs    dataplane.VirtualService
	chain string            // svc-<h>, its own or shared
	spec  svcSpec           // the rules of chain (a shared chain's: see build)
	slots *slotMap          // its own (persistence) or shared
	ident string            // of its backends, for a shared map (see mapNames)
	bes   map[string]beSpec // backend chains by name
	pins  []string          // pin sets, one per backend (persistence)
	// dispatch is the element of svcN or svcmarkN that jumps to chain.
	dispatchSet string
	dispatch    elem
	dispatchID  string // dispatch.id()
}

// svcSpec is the chain of one balanced virtual service: pinned clients
// first (persistence), then the Maglev slot of the flow's hash.
type svcSpec struct {
	family  int
	maglev  string  // the map of slots
	nat     setKind // kindMaglev: goto backend chains; else DNAT from the map
	size    int
	seed    uint32
	persist time.Duration
	netmask int
	pins    []pinRule // live backends' pins, canonical order
	label   string
	proto   byte // the service's transport protocol; 0: by mark, any
}

func (s svcSpec) equal(o svcSpec) bool {
	return s.family == o.family && s.maglev == o.maglev && s.nat == o.nat && s.size == o.size && s.seed == o.seed &&
		s.persist == o.persist && s.netmask == o.netmask && slices.Equal(s.pins, o.pins) && s.label == o.label && s.proto == o.proto
}

type pinRule struct{ set, chain string }

// beSpec is the chain that sends a flow to one backend.
type beSpec struct {
	addr    netip.Addr
	port    uint16
	pin     string // set to refresh (persistence), or ""
	persist time.Duration
	netmask int
	proto   byte // as svcSpec's
}

// String renders the spec for its digest (see digestOf): by value, as
// netip.Addr's own fields hold a pointer that differs from one process to
// the next.
func (b beSpec) String() string {
	return fmt.Sprintf("%s|%d|%s|%s|%d|%d", b.addr, b.port, b.pin, b.persist, b.netmask, b.proto)
}

// content is everything halb's table holds: base chains, the shared sets
// with their elements, and the services. After a restart, the names of
// per-service chains and sets found in the kernel are in chains and sets:
// they are rewritten when a service claims them and removed otherwise.
type content struct {
	base   map[string]bool
	shared map[string]map[string]elem // marks, svc and svcmark maps
	svcs   map[string]*service        // by service hash
	byKey  map[dataplane.ServiceKey]*service
	maps   map[string]*slotMap // Maglev maps by name
	// svcChains are the services' chains by name, shared or not.
	svcChains map[string]svcSpec
	// markChains are the chains that set marks, by name: their mark.
	markChains map[string]uint32
	// What a next state is patched from (see patch.go): the services of
	// each shared chain, the users of each map, how many services have
	// each view (by identity) and the best view of each identity, the
	// mark rules, and how many maps hold each natsrcN address.
	members  map[string][]*service
	mapUsers map[string]int
	views    map[string]map[string]int
	best     map[string]viewKeys
	marks    []dataplane.MarkRule
	natRefs  map[string]int
	// delta is what a patched content changed from the content it was
	// patched from.
	delta  *delta
	chains map[string]bool
	sets   map[string]bool
	// digests are the digests found on the kernel's chains (see adopt.go).
	digests map[string]string
}

func emptyContent() content {
	return content{base: map[string]bool{}, shared: map[string]map[string]elem{}, svcs: map[string]*service{},
		byKey: map[dataplane.ServiceKey]*service{}, maps: map[string]*slotMap{}, svcChains: map[string]svcSpec{}, markChains: map[string]uint32{}, mapUsers: map[string]int{}, chains: map[string]bool{}, sets: map[string]bool{}}
}

var protoNum = map[string]byte{"tcp": 6, "udp": 17, "sctp": 132}

// sharedSets lists the shared sets of a mode and their definitions.
func sharedSets(mode Mode) map[string]setDef {
	m := map[string]setDef{setMarks4: {kindMarks, 4}, setMarks6: {kindMarks, 6}}
	if mode == LoadBalance {
		m[setSvc4], m[setSvc6] = setDef{kindSvc, 4}, setDef{kindSvc, 6}
		m[setSvcMark4], m[setSvcMark6] = setDef{kindSvcMark, 4}, setDef{kindSvcMark, 6}
		m[setNATSrc4], m[setNATSrc6] = setDef{kindAddr, 4}, setDef{kindAddr, 6}
	}
	return m
}

// build computes the table content for a state; services equal to those
// of prev are taken from it. changed, when not nil, lists the indexes of
// the only services that may differ from prev's (see patch). It changes
// prev only when it patches it into the content it returns.
func build(st dataplane.State, mode Mode, prev *content, changed []int) (content, error) {
	if mode == LoadBalance {
		if c, ok, err := patch(st, prev, changed); ok || err != nil {
			return c, err
		}
	}
	c := emptyContent()
	if len(st.MarkRules) > 0 { // else no packet pays for a hook that sets nothing
		c.base[chainMark] = true
	}
	for name := range sharedSets(mode) {
		c.shared[name] = map[string]elem{}
		if prev != nil { // sized as before: no growing a large map again
			c.shared[name] = make(map[string]elem, len(prev.shared[name]))
		}
	}
	if prev != nil {
		c.svcs = make(map[string]*service, len(prev.svcs))
		c.byKey = make(map[dataplane.ServiceKey]*service, len(prev.byKey))
	}
	for _, r := range st.MarkRules {
		p, ok := protoNum[r.Protocol]
		if !ok {
			return content{}, fmt.Errorf("mark rule %d: unknown protocol %q", r.Mark, r.Protocol)
		}
		chain := fmt.Sprintf("%s%08x", setMarkPrefix, r.Mark)
		e := elem{key: tuple(r.VIP, p, r.PortLo), keyEnd: tuple(r.VIP, p, r.PortHi), jump: chain}
		c.shared[pick(r.VIP, setMarks4, setMarks6)][e.id()] = e
		c.markChains[chain] = r.Mark
	}
	if mode == MarksOnly {
		return c, nil
	}
	c.base[chainBalance] = true
	names, count, best := mapNames(st.Services, prev)
	c.views, c.best, c.marks = count, best, slices.Clone(st.MarkRules)
	sharing := map[string][]*service{} // shared chains' services
	for i, vs := range st.Services {
		s := (*service)(nil)
		if prev != nil {
			if old := prev.byKey[vs.Key]; old != nil && sameService(old.vs, vs) && old.slots.name == names[i].name {
				s = old
			}
		}
		if s == nil {
			var err error
			known := func(name string) *slotMap { return findMap(name, names[i].view, &c, prev) }
			if s, err = newService(shortHash(vs.Key.String(), 12), vs, names[i], known); err != nil {
				return content{}, fmt.Errorf("service %s (%s): %w", vs.Key, vs.Service, err)
			}
		}
		if _, dup := c.svcs[s.hash]; dup {
			return content{}, fmt.Errorf("service %s: its hash %s collides with another service's", vs.Key, s.hash)
		}
		if m, ok := c.maps[s.slots.name]; ok && m != s.slots {
			if m.view != s.slots.view {
				return content{}, fmt.Errorf("service %s: its map %s is another's", vs.Key, m.name)
			}
			s = s.withMap(m) // the same map, built for another service
		}
		c.maps[s.slots.name] = s.slots
		c.mapUsers[s.slots.name]++
		c.svcs[s.hash] = s
		c.byKey[vs.Key] = s
		c.shared[s.dispatchSet][s.dispatchID] = s.dispatch
		if s.slots.kind == kindMaglev {
			c.svcChains[s.chain] = s.spec
		} else {
			sharing[s.chain] = append(sharing[s.chain], s)
		}
	}
	natSources(&c)
	c.members = sharing
	for name := range sharing {
		c.sharedChain(name)
	}
	return c, nil
}

// natSources puts the backends' addresses in natsrcN, map by map, and
// counts the maps of each.
func natSources(c *content) {
	c.natRefs = map[string]int{}
	for _, m := range c.maps {
		for _, e := range m.addrs {
			c.shared[pickFam(m.family, setNATSrc4, setNATSrc6)][e.id()] = e
			c.natRefs[e.id()]++
		}
	}
}

// sharedChain sets the spec of a shared chain from its services, or
// removes it when it has none.
func (c *content) sharedChain(name string) {
	ss := c.members[name]
	if len(ss) == 0 {
		delete(c.members, name)
		delete(c.svcChains, name)
		return
	}
	spec := ss[0].spec
	spec.label = sharedLabel(ss)
	c.svcChains[name] = spec
}

// sharedLabel is the comment of a shared chain: the first names of its
// services, and how many they are. One pass, no sort: a pool may have
// thousands of services.
func sharedLabel(ss []*service) string {
	if len(ss) == 1 {
		return fmt.Sprintf("%s %s", ss[0].vs.Service, ss[0].vs.Key)
	}
	var first []string // the smallest names, up to 3, sorted
	more := ""
	for _, s := range ss {
		n := s.vs.Service
		i, found := slices.BinarySearch(first, n)
		switch {
		case found:
		case i == 3:
			more = ", …"
		default:
			if first = slices.Insert(first, i, n); len(first) > 3 {
				first, more = first[:3], ", …"
			}
		}
	}
	return fmt.Sprintf("%s%s (%d services)", strings.Join(first, ", "), more, len(ss))
}

// mapKey says which Maglev map a service uses: the map's name, and its
// view (kind, family, size, backends with their ports and weights), which
// decides its slots. A persistent service has a map of its own.
type mapKey struct{ name, view, ident string }

// mapNames names the Maglev map of each service. Services that see the
// same backends (ident: all of the view but the weights) share a map
// named after them when they see them alike, as the services of a pool
// do; when their views differ, the view most of them have keeps that
// name and the others get maps named after their views. So a weight
// changed for a whole pool rewrites the slots that changed in place,
// without touching the services' chains.
func mapNames(svcs []dataplane.VirtualService, prev *content) ([]mapKey, map[string]map[string]int, map[string]viewKeys) {
	type keys = viewKeys
	ks := make([]keys, len(svcs))
	count := map[string]map[string]int{}
	add := func(k keys) {
		if count[k.ident] == nil {
			count[k.ident] = map[string]int{}
		}
		count[k.ident][k.view]++
	}
	for i, vs := range svcs {
		if vs.Persistence > 0 {
			continue
		}
		if prev != nil {
			if old := prev.byKey[vs.Key]; old != nil && sameService(old.vs, vs) && old.ident != "" {
				ks[i] = keys{old.ident, old.slots.view}
				add(ks[i])
				continue
			}
		}
		ks[i].ident, ks[i].view = viewOf(vs)
		add(ks[i])
	}
	best := bestViews(count)
	hashes := map[string]string{}
	out := make([]mapKey, len(svcs))
	for i, vs := range svcs {
		if vs.Persistence > 0 {
			out[i] = ownMap(vs.Key)
			continue
		}
		out[i] = sharedMap(ks[i], best, hashes)
	}
	return out, count, best
}

// viewKeys are a service's view of its backends and their identity (the
// view but the weights).
type viewKeys struct{ ident, view string }

// bestViews returns, for each identity, the view most services have.
func bestViews(count map[string]map[string]int) map[string]viewKeys {
	best := make(map[string]viewKeys, len(count))
	for ident, views := range count {
		if k, ok := bestView(ident, views); ok {
			best[ident] = k
		}
	}
	return best
}

// bestView returns the view most services of an identity have (the
// least, of those as many), if any has one.
func bestView(ident string, views map[string]int) (viewKeys, bool) {
	best, most := "", 0
	for v, n := range views {
		if n > most || n == most && n > 0 && v < best {
			best, most = v, n
		}
	}
	return viewKeys{ident, best}, most > 0
}

// ownMap is the map of a persistent service.
func ownMap(k dataplane.ServiceKey) mapKey {
	h := shortHash(k.String(), 12)
	return mapKey{name: maglevPrefix + h + "-p", view: "persistence " + h}
}

// sharedMap is the map of a view; hashes caches the names' hashes.
func sharedMap(k viewKeys, best map[string]viewKeys, hashes map[string]string) mapKey {
	named := k.view
	if best[k.ident] == k {
		named = k.ident
	}
	h, ok := hashes[named]
	if !ok {
		h = shortHash(named, 12)
		hashes[named] = h
	}
	return mapKey{name: maglevPrefix + h, view: k.view, ident: k.ident}
}

// viewOf returns the identity of a service's backends (kind, family,
// Maglev size, addresses and ports) and its view: the identity with the
// weights.
func viewOf(vs dataplane.VirtualService) (ident, view string) {
	size := vs.MaglevSize
	if size == 0 {
		size = maglev.DefaultSize(len(vs.Reals))
	}
	withPort := slices.ContainsFunc(vs.Reals, func(r dataplane.Real) bool { return r.Port != 0 })
	b := fmt.Appendf(nil, "%d/%t/%d", vs.Key.Family, withPort, size)
	w := make([]byte, 0, 8*len(vs.Reals))
	for _, r := range vs.Reals {
		b = r.AddrPort().AppendTo(append(b, '|'))
		w = strconv.AppendInt(append(w, '/'), int64(r.Weight), 10)
	}
	return string(b), string(b) + string(w)
}

func sameService(a, b dataplane.VirtualService) bool {
	return a.Key == b.Key && a.Service == b.Service && a.Persistence == b.Persistence && a.Netmask == b.Netmask &&
		a.MaglevSize == b.MaglevSize && slices.Equal(a.Reals, b.Reals)
}

// findMap returns a map of that name and view being built, or prev's.
func findMap(name, view string, c, prev *content) *slotMap {
	if m := c.maps[name]; m != nil && m.view == view {
		return m
	}
	if prev != nil {
		if m := prev.maps[name]; m != nil && m.view == view {
			return m
		}
	}
	return nil
}

// withMap returns s using m, a map equal to its own.
func (s *service) withMap(m *slotMap) *service {
	c := *s
	c.slots = m
	return &c
}

// newService builds a service whose map is mk; known returns a shared
// map already built under a name, so that the services of a pool compute
// it once.
func newService(h string, vs dataplane.VirtualService, mk mapKey, known func(string) *slotMap) (*service, error) {
	size := vs.MaglevSize
	if size == 0 {
		size = maglev.DefaultSize(len(vs.Reals))
	}
	vs.Reals, vs.Flags = slices.Clone(vs.Reals), slices.Clone(vs.Flags) // kept to compare with the next state
	s := &service{hash: h, vs: vs, chain: svcPrefix + h, bes: map[string]beSpec{}}
	withPort := slices.ContainsFunc(vs.Reals, func(r dataplane.Real) bool { return r.Port != 0 })
	m := &slotMap{name: mk.name, view: mk.view, family: vs.Key.Family, size: size}
	switch {
	case vs.Persistence > 0:
		m.kind = kindMaglev
	case withPort:
		m.kind = kindMaglevNAT
	default:
		m.kind = kindMaglevAddr
	}
	s.slots = m
	s.spec = svcSpec{
		family:  vs.Key.Family,
		maglev:  m.name,
		nat:     m.kind,
		size:    size,
		persist: vs.Persistence,
		proto:   protoNum[vs.Key.Protocol],
	}
	if m.kind == kindMaglev {
		s.spec.seed, s.spec.label = Seed(vs.Key), fmt.Sprintf("%s %s", vs.Service, vs.Key)
	} else { // a shared chain: see build
		s.ident = mk.ident
		s.chain = svcPrefix + shortHash(m.name+"/"+vs.Key.Protocol, 12)
		s.spec.seed = seedOf(m.name)
	}
	if vs.Persistence > 0 {
		s.spec.netmask = vs.Netmask
		if s.spec.netmask == 0 {
			s.spec.netmask = 8 * addrLen(vs.Key.Family)
		}
	}
	var bs []maglev.Backend
	chainOf := map[string]string{}
	for _, r := range vs.Reals {
		if r.Forward != "nat" {
			return nil, fmt.Errorf("real %s: forward %s is not supported by the nftables data plane, which forwards with nat", r.AddrPort(), r.Forward)
		}
		if family(r.Addr) != vs.Key.Family {
			return nil, fmt.Errorf("real %s is not IPv%d", r.Addr, vs.Key.Family)
		}
		if withPort && r.Port == 0 {
			return nil, fmt.Errorf("real %s keeps the destination port while others set one: give all or none a port", r.Addr)
		}
		id := r.AddrPort().String()
		b := shortHash(id, 8)
		be := bePrefix + h + "-" + b
		if _, dup := s.bes[be]; dup {
			return nil, fmt.Errorf("backend hash of %s collides with another backend's", id)
		}
		bs = append(bs, maglev.Backend{ID: id, Weight: r.Weight})
		if m.kind != kindMaglev {
			chainOf[id] = string(backendData(r, withPort))
			continue
		}
		chainOf[id] = be
		spec := beSpec{addr: r.Addr, port: r.Port, proto: s.spec.proto}
		spec.pin, spec.persist, spec.netmask = pinPrefix+h+"-"+b, vs.Persistence, s.spec.netmask
		s.pins = append(s.pins, spec.pin)
		s.bes[be] = spec
	}
	if known := known(m.name); known != nil && m.kind != kindMaglev {
		s.slots = known
	} else {
		tab, err := maglev.New(bs, size)
		if err != nil {
			return nil, err
		}
		if vs.Persistence > 0 {
			for _, b := range tab.Backends {
				be := chainOf[b.ID]
				s.spec.pins = append(s.spec.pins, pinRule{set: s.bes[be].pin, chain: be})
			}
		}
		for _, b := range tab.Backends {
			m.values = append(m.values, chainOf[b.ID])
		}
		m.slots = tab.Entries
		for _, r := range vs.Reals {
			m.addrs = append(m.addrs, elem{key: r.Addr.AsSlice()})
		}
	}
	if vs.Key.Mark != 0 {
		s.dispatchSet = pickFam(vs.Key.Family, setSvcMark4, setSvcMark6)
		s.dispatch = elem{key: u32(vs.Key.Mark), jump: s.chain}
		s.dispatchID = s.dispatch.id()
		return s, nil
	}
	p, ok := protoNum[vs.Key.Protocol]
	if !ok {
		return nil, fmt.Errorf("unknown protocol %q", vs.Key.Protocol)
	}
	s.dispatchSet = pick(vs.Key.Addr, setSvc4, setSvc6)
	s.dispatch = elem{key: tuple(vs.Key.Addr, p, vs.Key.Port), jump: s.chain}
	s.dispatchID = s.dispatch.id()
	return s, nil
}

// backendData is a backend as map data: address . port, or the address.
func backendData(r dataplane.Real, withPort bool) []byte {
	if !withPort {
		return r.Addr.AsSlice()
	}
	return append(r.Addr.AsSlice(), byte(r.Port>>8), byte(r.Port), 0, 0)
}

// Seed returns the jhash seed of a virtual service: derived from its key
// only, so every node hashes a flow alike, and never zero (the kernel
// would pick a random one).
func Seed(k dataplane.ServiceKey) uint32 { return seedOf(k.String()) }

// seedOf is the jhash seed of what name names.
func seedOf(name string) uint32 {
	sum := sha256.Sum256([]byte("halb-jhash-v1\x00" + name))
	if s := binary.BigEndian.Uint32(sum[:4]); s != 0 {
		return s
	}
	return 1
}

// shortHash names per-service objects: n hex digits of a hash of s.
func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte("halb-name-v1\x00" + s))
	return hex.EncodeToString(sum[:])[:n]
}

// tuple is the key address . protocol . port, each field padded to 32 bits
// as nftables concatenations are.
func tuple(a netip.Addr, proto byte, p uint16) []byte {
	return bytes.Join([][]byte{a.AsSlice(), {proto, 0, 0, 0}, {byte(p >> 8), byte(p), 0, 0}}, nil)
}

// u32 is a 32-bit value in host byte order, as the kernel's registers
// hold marks and hash results.
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func pick(a netip.Addr, v4, v6 string) string { return pickFam(family(a), v4, v6) }

func pickFam(fam int, v4, v6 string) string {
	if fam == 6 {
		return v6
	}
	return v4
}

func addrLen(fam int) int {
	if fam == 6 {
		return 16
	}
	return 4
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
