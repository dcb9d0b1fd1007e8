package nft

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
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

// Names of the table's sets.
const (
	setMarks4    = "marks4"   // ipv4_addr . inet_proto . inet_service → mark (intervals)
	setMarks6    = "marks6"   // ipv6_addr . inet_proto . inet_service → mark (intervals)
	setSvc4      = "svc4"     // ipv4_addr . inet_proto . inet_service → jump service chain
	setSvc6      = "svc6"     // ipv6_addr . inet_proto . inet_service → jump service chain
	setSvcMark4  = "svcmark4" // mark → jump service chain (IPv4 mark services)
	setSvcMark6  = "svcmark6" // mark → jump service chain (IPv6 mark services)
	setLB4       = "lb4"      // service id . slot → ipv4_addr . inet_service
	setLB6       = "lb6"      // service id . slot → ipv6_addr . inet_service
	setLive4     = "live4"    // service id . ipv4_addr . inet_service: backends taking traffic
	setLive6     = "live6"    // service id . ipv6_addr . inet_service
	setPersist4  = "persist4" // service id . client prefix → backend (dynamic, timeouts)
	setPersist6  = "persist6" // service id . client prefix → backend (dynamic, timeouts)
	chainMark    = "mark"     // prerouting, mangle: sets marks
	chainBalance = "balance"  // prerouting, dstnat: dispatches to service chains
	chainPrefix  = "svc-"     // service chains: svc-<id>-<fingerprint>
	markPriority = -150       // mangle: before IPVS and before the NAT chain
	natPriority  = -100       // dstnat
)

// elem is one set or map element as bytes; jump is the chain a verdict
// map element jumps to.
type elem struct {
	key, keyEnd, val []byte
	jump             string
}

func (e elem) id() string { return string(e.key) + "\x00" + string(e.keyEnd) }

func (e elem) equal(o elem) bool {
	return bytes.Equal(e.val, o.val) && e.jump == o.jump && bytes.Equal(e.keyEnd, o.keyEnd)
}

// svcChain is the chain of one balanced virtual service. Everything its
// rules depend on is in the chain's name, so a changed service gets a new
// chain and the old one goes, in the same transaction.
type svcChain struct {
	name     string
	id       uint32
	family   int
	seed     uint32
	size     int
	persist  time.Duration
	netmask  int
	withPort bool
	label    string
}

// content is everything halb's table holds: base chains, service chains
// and the sets with their elements (nil elements: the kernel's own).
type content struct {
	base   map[string]bool
	chains map[string]svcChain
	sets   map[string]map[string]elem
}

func newContent(mode Mode) content {
	c := content{base: map[string]bool{chainMark: true}, chains: map[string]svcChain{}, sets: map[string]map[string]elem{}}
	if mode == LoadBalance {
		c.base[chainBalance] = true
	}
	for _, s := range setNames(mode) {
		c.sets[s] = map[string]elem{}
	}
	if mode == LoadBalance {
		c.sets[setPersist4], c.sets[setPersist6] = nil, nil
	}
	return c
}

// setNames lists the sets a mode fills.
func setNames(mode Mode) []string {
	if mode == MarksOnly {
		return []string{setMarks4, setMarks6}
	}
	return []string{setMarks4, setMarks6, setSvc4, setSvc6, setSvcMark4, setSvcMark6, setLB4, setLB6, setLive4, setLive6}
}

func (c content) add(set string, e elem) { c.sets[set][e.id()] = e }

var protoNum = map[string]byte{"tcp": 6, "udp": 17, "sctp": 132}

// build computes the table content for a state. It is pure.
func build(st dataplane.State, mode Mode) (content, error) {
	c := newContent(mode)
	for _, r := range st.MarkRules {
		p, ok := protoNum[r.Protocol]
		if !ok {
			return content{}, fmt.Errorf("mark rule %d: unknown protocol %q", r.Mark, r.Protocol)
		}
		c.add(pick(r.VIP, setMarks4, setMarks6), elem{
			key:    tuple(r.VIP, p, r.PortLo),
			keyEnd: tuple(r.VIP, p, r.PortHi),
			val:    u32(r.Mark),
		})
	}
	if mode == MarksOnly {
		return c, nil
	}
	ids := serviceIDs(st.Services)
	for _, vs := range st.Services {
		if err := c.addService(vs, ids[vs.Key]); err != nil {
			return content{}, fmt.Errorf("service %s (%s): %w", vs.Key, vs.Service, err)
		}
	}
	return c, nil
}

func (c content) addService(vs dataplane.VirtualService, id uint32) error {
	withPort := false
	for _, r := range vs.Reals {
		if r.Forward != "nat" {
			return fmt.Errorf("real %s: forward %s is not supported by the nftables data plane, which forwards with nat", r.AddrPort(), r.Forward)
		}
		if family(r.Addr) != vs.Key.Family {
			return fmt.Errorf("real %s is not IPv%d", r.Addr, vs.Key.Family)
		}
		withPort = withPort || r.Port != 0
	}
	for _, r := range vs.Reals {
		if withPort && r.Port == 0 {
			return fmt.Errorf("real %s keeps the destination port while others set one; give every real a port or none", r.Addr)
		}
	}
	size := vs.MaglevSize
	if size == 0 {
		size = maglev.DefaultSize(len(vs.Reals))
	}
	var bs []maglev.Backend
	byID := map[string]dataplane.Real{}
	for _, r := range vs.Reals {
		id := r.AddrPort().String()
		bs = append(bs, maglev.Backend{ID: id, Weight: r.Weight})
		byID[id] = r
	}
	tab, err := maglev.New(bs, size)
	if err != nil {
		return err
	}
	sc := svcChain{
		id:       id,
		family:   vs.Key.Family,
		seed:     Seed(vs.Key),
		size:     size,
		persist:  vs.Persistence,
		withPort: withPort,
		label:    fmt.Sprintf("%s %s", vs.Service, vs.Key),
	}
	if vs.Persistence > 0 {
		sc.netmask = vs.Netmask
		if sc.netmask == 0 {
			sc.netmask = 8 * addrLen(vs.Key.Family)
		}
	}
	sc.name = sc.chainName()
	c.chains[sc.name] = sc

	lb, live := pickFam(vs.Key.Family, setLB4, setLB6), pickFam(vs.Key.Family, setLive4, setLive6)
	for slot, e := range tab.Entries {
		r := byID[tab.Backends[e].ID]
		c.add(lb, elem{key: cat(u32(id), u32(uint32(slot))), val: backend(r)})
	}
	for _, b := range tab.Backends {
		c.add(live, elem{key: cat(u32(id), backend(byID[b.ID]))})
	}
	switch {
	case vs.Key.Mark != 0:
		c.add(pickFam(vs.Key.Family, setSvcMark4, setSvcMark6), elem{key: u32(vs.Key.Mark), jump: sc.name})
	default:
		p, ok := protoNum[vs.Key.Protocol]
		if !ok {
			return fmt.Errorf("unknown protocol %q", vs.Key.Protocol)
		}
		c.add(pick(vs.Key.Addr, setSvc4, setSvc6), elem{key: tuple(vs.Key.Addr, p, vs.Key.Port), jump: sc.name})
	}
	return nil
}

// chainName encodes the service id and a fingerprint of every parameter
// of the chain's rules.
func (s svcChain) chainName() string {
	h := sha256.New()
	fmt.Fprintf(h, "v1 %d %d %d %d %d %d %t", s.id, s.family, s.seed, s.size, s.persist/time.Second, s.netmask, s.withPort)
	return fmt.Sprintf("%s%08x-%08x", chainPrefix, s.id, binary.BigEndian.Uint32(h.Sum(nil)))
}

// Seed returns the jhash seed of a virtual service: derived from its key
// only, so every node hashes a flow alike, and never zero (the kernel
// would pick a random one).
func Seed(k dataplane.ServiceKey) uint32 {
	sum := sha256.Sum256([]byte("halb-jhash-v1\x00" + k.String()))
	if s := binary.BigEndian.Uint32(sum[:4]); s != 0 {
		return s
	}
	return 1
}

// serviceIDs gives every service a 32-bit id local to this node (the keys
// of its map elements): a hash of its key, the next free number on a
// collision.
func serviceIDs(svcs []dataplane.VirtualService) map[dataplane.ServiceKey]uint32 {
	keys := make([]dataplane.ServiceKey, 0, len(svcs))
	for _, s := range svcs {
		keys = append(keys, s.Key)
	}
	slices.SortFunc(keys, dataplane.ServiceKey.Compare)
	used := map[uint32]bool{}
	out := map[dataplane.ServiceKey]uint32{}
	for _, k := range keys {
		sum := sha256.Sum256([]byte("halb-service-id-v1\x00" + k.String()))
		id := binary.BigEndian.Uint32(sum[:4])
		for used[id] {
			id++
		}
		used[id] = true
		out[k] = id
	}
	return out
}

// backend is a real server as map data: address . port (a port 0 keeps
// the packet's destination port).
func backend(r dataplane.Real) []byte {
	return cat(r.Addr.AsSlice(), port(r.Port))
}

// tuple is the key address . protocol . port, each field padded to 32 bits
// as nftables concatenations are.
func tuple(a netip.Addr, proto byte, p uint16) []byte {
	return cat(a.AsSlice(), []byte{proto, 0, 0, 0}, port(p))
}

func port(p uint16) []byte { return []byte{byte(p >> 8), byte(p), 0, 0} }

// u32 is a 32-bit value in host byte order, as the kernel's registers
// hold marks and hash results.
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

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
