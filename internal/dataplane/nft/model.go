package nft

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
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
	setMarks4    = "marks4"   // ipv4_addr . inet_proto . inet_service → mark (intervals)
	setMarks6    = "marks6"   // ipv6_addr . inet_proto . inet_service → mark (intervals)
	setSvc4      = "svc4"     // ipv4_addr . inet_proto . inet_service → goto service chain
	setSvc6      = "svc6"     // ipv6_addr . inet_proto . inet_service → goto service chain
	setSvcMark4  = "svcmark4" // mark → goto service chain (IPv4 mark services)
	setSvcMark6  = "svcmark6" // mark → goto service chain (IPv6 mark services)
	chainMark    = "mark"     // prerouting, mangle: sets marks
	chainBalance = "balance"  // prerouting, dstnat: dispatches to service chains
	svcPrefix    = "svc-"     // svc-<h>: a service's chain
	maglevPrefix = "maglev-"  // maglev-<h>: slot → goto backend chain
	bePrefix     = "be-"      // be-<h>-<b>: DNAT to one backend
	pinPrefix    = "pin-"     // pin-<h>-<b>: client prefixes pinned to a backend
	markPriority = -150       // mangle: before IPVS and before the NAT chain
	natPriority  = -100       // dstnat
)

// setKind says what a set holds.
type setKind int

const (
	kindMarks   setKind = iota // tuple → mark
	kindSvc                    // tuple → verdict
	kindSvcMark                // mark → verdict
	kindMaglev                 // slot → verdict
	kindPin                    // client prefixes, dynamic, with timeouts
)

// setDef is what it takes to create a set.
type setDef struct {
	kind   setKind
	family int
}

// setState is a set and its elements; nil elements are the kernel's own
// (pins) or unknown (after a restart: rewritten whole).
type setState struct {
	def   setDef
	elems map[string]elem
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

// svcSpec is the chain of one balanced virtual service: pinned clients
// first (persistence), then the Maglev slot of the flow's hash.
type svcSpec struct {
	family  int
	maglev  string // the map of slots
	size    int
	seed    uint32
	persist time.Duration
	netmask int
	pins    []pinRule // live backends' pins, canonical order
	label   string
}

type pinRule struct{ set, chain string }

// beSpec is the chain that sends a flow to one backend.
type beSpec struct {
	addr    netip.Addr
	port    uint16
	pin     string // set to refresh (persistence), or ""
	persist time.Duration
	netmask int
}

// content is everything halb's table holds. A chain spec of nil value
// (after a restart) is unknown and rewritten.
type content struct {
	base map[string]bool
	svcs map[string]*svcSpec
	bes  map[string]*beSpec
	sets map[string]setState
}

func emptyContent() content {
	return content{base: map[string]bool{}, svcs: map[string]*svcSpec{}, bes: map[string]*beSpec{}, sets: map[string]setState{}}
}

func (c content) add(set string, e elem) { c.sets[set].elems[e.id()] = e }

func (c content) newSet(name string, def setDef) {
	st := setState{def: def}
	if def.kind != kindPin {
		st.elems = map[string]elem{}
	}
	c.sets[name] = st
}

var protoNum = map[string]byte{"tcp": 6, "udp": 17, "sctp": 132}

// build computes the table content for a state. It is pure.
func build(st dataplane.State, mode Mode) (content, error) {
	c := emptyContent()
	c.base[chainMark] = true
	c.newSet(setMarks4, setDef{kindMarks, 4})
	c.newSet(setMarks6, setDef{kindMarks, 6})
	for _, r := range st.MarkRules {
		p, ok := protoNum[r.Protocol]
		if !ok {
			return content{}, fmt.Errorf("mark rule %d: unknown protocol %q", r.Mark, r.Protocol)
		}
		c.add(pick(r.VIP, setMarks4, setMarks6), elem{
			key:    tuple(r.VIP, p, r.PortLo),
			keyEnd: tuple(r.VIP, p, r.PortHi),
			val:    binary.BigEndian.AppendUint32(nil, r.Mark),
		})
	}
	if mode == MarksOnly {
		return c, nil
	}
	c.base[chainBalance] = true
	c.newSet(setSvc4, setDef{kindSvc, 4})
	c.newSet(setSvc6, setDef{kindSvc, 6})
	c.newSet(setSvcMark4, setDef{kindSvcMark, 4})
	c.newSet(setSvcMark6, setDef{kindSvcMark, 6})
	for _, vs := range st.Services {
		if err := c.addService(vs); err != nil {
			return content{}, fmt.Errorf("service %s (%s): %w", vs.Key, vs.Service, err)
		}
	}
	return c, nil
}

func (c content) addService(vs dataplane.VirtualService) error {
	h := shortHash(vs.Key.String(), 12)
	svcChain := svcPrefix + h
	if _, dup := c.svcs[svcChain]; dup {
		return fmt.Errorf("service hash %s collides with another service", h)
	}
	size := vs.MaglevSize
	if size == 0 {
		size = maglev.DefaultSize(len(vs.Reals))
	}
	spec := &svcSpec{
		family:  vs.Key.Family,
		maglev:  maglevPrefix + h,
		size:    size,
		seed:    Seed(vs.Key),
		persist: vs.Persistence,
		label:   fmt.Sprintf("%s %s", vs.Service, vs.Key),
	}
	if vs.Persistence > 0 {
		spec.netmask = vs.Netmask
		if spec.netmask == 0 {
			spec.netmask = 8 * addrLen(vs.Key.Family)
		}
	}
	var bs []maglev.Backend
	chainOf := map[string]string{}
	for _, r := range vs.Reals {
		if r.Forward != "nat" {
			return fmt.Errorf("real %s: forward %s is not supported by the nftables data plane, which forwards with nat", r.AddrPort(), r.Forward)
		}
		if family(r.Addr) != vs.Key.Family {
			return fmt.Errorf("real %s is not IPv%d", r.Addr, vs.Key.Family)
		}
		id := r.AddrPort().String()
		be := bePrefix + h + "-" + shortHash(id, 8)
		if _, dup := c.bes[be]; dup {
			return fmt.Errorf("backend hash of %s collides with another backend", id)
		}
		bs = append(bs, maglev.Backend{ID: id, Weight: r.Weight})
		chainOf[id] = be
		b := &beSpec{addr: r.Addr, port: r.Port}
		if spec.persist > 0 {
			b.pin, b.persist, b.netmask = pinPrefix+h+"-"+shortHash(id, 8), spec.persist, spec.netmask
			c.newSet(b.pin, setDef{kindPin, vs.Key.Family})
		}
		c.bes[be] = b
	}
	tab, err := maglev.New(bs, size)
	if err != nil {
		return err
	}
	if spec.persist > 0 {
		for _, b := range tab.Backends {
			be := chainOf[b.ID]
			spec.pins = append(spec.pins, pinRule{set: c.bes[be].pin, chain: be})
		}
	}
	c.svcs[svcChain] = spec
	c.newSet(spec.maglev, setDef{kindMaglev, vs.Key.Family})
	for slot, e := range tab.Entries {
		c.add(spec.maglev, elem{key: u32(uint32(slot)), jump: chainOf[tab.Backends[e].ID]})
	}
	switch {
	case vs.Key.Mark != 0:
		c.add(pickFam(vs.Key.Family, setSvcMark4, setSvcMark6), elem{key: u32(vs.Key.Mark), jump: svcChain})
	default:
		p, ok := protoNum[vs.Key.Protocol]
		if !ok {
			return fmt.Errorf("unknown protocol %q", vs.Key.Protocol)
		}
		c.add(pick(vs.Key.Addr, setSvc4, setSvc6), elem{key: tuple(vs.Key.Addr, p, vs.Key.Port), jump: svcChain})
	}
	return nil
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
