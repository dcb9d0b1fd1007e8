package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Registers: 16-byte registers 1-4, or 32-bit registers 8-23 (register 1
// is 8-11). Concatenations are laid out field by field, each padded to 32
// bits. The layouts below are the ones nft itself generates, so that
// `nft list ruleset` shows halb's rules as readable text.
const (
	// pinSetSize bounds the clients pinned to one backend at a time;
	// beyond it new clients are balanced without being pinned.
	pinSetSize = 1 << 20

	regVerdict = 0
	reg1       = 1
	reg2       = 2
	reg32      = 8 // first 32-bit register
)

// nftSet returns the set to create for a definition.
func (d setDef) nftSet(t *nftables.Table, name string) *nftables.Set {
	addr := nftables.TypeIPAddr
	if d.family == 6 {
		addr = nftables.TypeIP6Addr
	}
	tuple := nftables.MustConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService)
	s := &nftables.Set{Table: t, Name: name}
	switch d.kind {
	case kindMarks:
		s.KeyType, s.DataType, s.IsMap, s.Interval, s.Concatenation = tuple, nftables.TypeVerdict, true, true, true
	case kindSvc:
		s.KeyType, s.DataType, s.IsMap, s.Concatenation = tuple, nftables.TypeVerdict, true, true
	case kindSvcMark:
		s.KeyType, s.DataType, s.IsMap = nftables.TypeMark, nftables.TypeVerdict, true
	case kindMaglev:
		s.KeyType, s.DataType, s.IsMap, s.KeyByteOrder = nftables.TypeInteger, nftables.TypeVerdict, true, binaryutil.NativeEndian
	case kindMaglevNAT:
		s.KeyType, s.DataType, s.IsMap, s.KeyByteOrder = nftables.TypeInteger, nftables.MustConcatSetType(addr, nftables.TypeInetService), true, binaryutil.NativeEndian
	case kindMaglevAddr:
		s.KeyType, s.DataType, s.IsMap, s.KeyByteOrder = nftables.TypeInteger, addr, true, binaryutil.NativeEndian
	case kindPin:
		s.KeyType, s.Dynamic, s.HasTimeout, s.Size = addr, true, true, pinSetSize
	case kindAddr:
		s.KeyType = addr
	}
	return s
}

// famInfo holds the header offsets of one address family.
type famInfo struct {
	nfproto      byte
	saddr, daddr uint32 // offsets in the network header
	alen         uint32 // address length
	marks, svc   string
	svcMark      string
}

var fams = map[int]famInfo{
	4: {unix.NFPROTO_IPV4, 12, 16, 4, setMarks4, setSvc4, setSvcMark4},
	6: {unix.NFPROTO_IPV6, 8, 24, 16, setMarks6, setSvc6, setSvcMark6},
}

// regs returns how many 32-bit registers n bytes take.
func regs(n uint32) uint32 { return (n + 3) / 4 }

func isFamily(f famInfo) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{f.nfproto}},
	}
}

// loadTuple loads daddr . l4proto . dport from the first 32-bit register.
func loadTuple(f famInfo) []expr.Any {
	r := uint32(reg32)
	return []expr.Any{
		&expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddr, Len: f.alen},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r + regs(f.alen)},
		&expr.Payload{DestRegister: r + regs(f.alen) + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// markRules: <daddr . l4proto . dport> vmap @markvN, whose elements go to
// a setmark chain of their mark.
func markRules(t *nftables.Table, c *nftables.Chain) []*nftables.Rule {
	var out []*nftables.Rule
	for _, fam := range []int{4, 6} {
		f := fams[fam]
		ex := append(isFamily(f), loadTuple(f)...)
		ex = append(ex, &expr.Lookup{SourceRegister: reg32, DestRegister: regVerdict, IsDestRegSet: true, SetName: f.marks})
		out = append(out, &nftables.Rule{Table: t, Chain: c, Exprs: ex})
	}
	return out
}

// setMarkRules: meta mark set meta mark & ~mask | mark. The kernel has no
// OR of two registers for a mark from a map, hence a chain per mark, whose
// constant goes in the bitwise expression; the mark fits the mask, so XOR
// is OR.
func setMarkRules(t *nftables.Table, c *nftables.Chain, mark, mask uint32) []*nftables.Rule {
	return []*nftables.Rule{{Table: t, Chain: c, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: u32(^mask), Xor: u32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}}}
}

// markSpec is what a setmark chain is made from.
type markSpec struct{ mark, mask uint32 }

// balanceRules dispatch new connections to the service chains: by
// address, protocol and port, then by mark. First they drop a TCP segment
// from a NAT backend that is neither SYN nor RST and has no conntrack
// entry: after a failover, a backend's retransmission reaching the new
// node before the client's next packet would otherwise create the entry
// backwards, and the client's packet would then clash with it. Dropped,
// it is retransmitted once the client's packet has set the entry up.
func balanceRules(t *nftables.Table, c *nftables.Chain) []*nftables.Rule {
	var out []*nftables.Rule
	for _, fam := range []int{4, 6} {
		f := fams[fam]
		ex := append(isFamily(f),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{0x06}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddr, Len: f.alen},
			&expr.Lookup{SourceRegister: reg1, SetName: pickFam(fam, setNATSrc4, setNATSrc6)},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		)
		out = append(out, &nftables.Rule{Table: t, Chain: c, Exprs: ex})
	}
	for _, fam := range []int{4, 6} {
		f := fams[fam]
		ex := append(isFamily(f), loadTuple(f)...)
		ex = append(ex, &expr.Lookup{SourceRegister: reg32, DestRegister: regVerdict, IsDestRegSet: true, SetName: f.svc})
		out = append(out, &nftables.Rule{Table: t, Chain: c, Exprs: ex})
	}
	for _, fam := range []int{4, 6} {
		f := fams[fam]
		ex := append(isFamily(f),
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, DestRegister: regVerdict, IsDestRegSet: true, SetName: f.svcMark},
		)
		out = append(out, &nftables.Rule{Table: t, Chain: c, Exprs: ex})
	}
	return out
}

// serviceRules are the rules of one service chain, without persistence:
//
//	dnat ip addr . port to jhash <flow> mod M seed S map @slots-H
//	counter drop                             (no live backend)
//
// and with persistence (a backend chain pins the client and DNATs):
//
//	ip saddr & MASK @pin-H-B goto be-H-B     (per live backend)
//	jhash ip saddr & MASK mod M seed S vmap @slots-H-p
//	counter drop
//
// A DNAT to a port follows a match of the transport protocol (see l4Match).
func serviceRules(t *nftables.Table, c *nftables.Chain, s *svcSpec, anyL4 func() *nftables.Set) []*nftables.Rule {
	f := fams[s.family]
	var rules [][]expr.Any
	for _, p := range s.pins {
		ex := append(isFamily(f), loadPrefix(f, reg1, s.netmask)...)
		ex = append(ex,
			&expr.Lookup{SourceRegister: reg1, SetName: p.set},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: p.chain})
		rules = append(rules, ex)
	}
	hash := isFamily(f)
	if s.nat == kindMaglevNAT {
		hash = append(hash, l4Match(s.proto, anyL4)...)
	}
	if s.persist > 0 {
		hash = append(append(hash, loadPrefix(f, reg1, s.netmask)...),
			&expr.Hash{SourceRegister: reg1, DestRegister: reg1, Length: f.alen, Modulus: uint32(s.size), Seed: s.seed, Type: expr.HashTypeJenkins})
	} else {
		ar := regs(f.alen)
		r := uint32(reg32)
		hash = append(hash,
			&expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddr, Len: f.alen},
			&expr.Payload{DestRegister: r + ar, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Payload{DestRegister: r + ar + 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddr, Len: f.alen},
			&expr.Payload{DestRegister: r + 2*ar + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Hash{SourceRegister: r, DestRegister: reg1, Length: 4 * (2*ar + 2), Modulus: uint32(s.size), Seed: s.seed, Type: expr.HashTypeJenkins},
		)
	}
	if s.nat == kindMaglev {
		hash = append(hash, &expr.Lookup{SourceRegister: reg1, DestRegister: regVerdict, IsDestRegSet: true, SetName: s.maglev})
	} else {
		// The backend's address lands in register 1, its port right after.
		nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(f.nfproto), RegAddrMin: reg1}
		if s.nat == kindMaglevNAT {
			nat.RegProtoMin = reg32 + regs(f.alen)
		}
		hash = append(hash, &expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: s.maglev}, nat)
	}
	rules = append(rules, hash, []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})
	return ruleList(t, c, rules, s.label)
}

// backendRules pin the client (persistence) and DNAT to the backend; a
// port 0 keeps the destination port. The pin is a rule of its own: when
// the pin set is full the update fails, and the DNAT must still happen.
func backendRules(t *nftables.Table, c *nftables.Chain, b *beSpec, anyL4 func() *nftables.Set) []*nftables.Rule {
	f := fams[family(b.addr)]
	var rules [][]expr.Any
	if b.pin != "" {
		pin := append(isFamily(f), loadPrefix(f, reg1, b.netmask)...)
		rules = append(rules, append(pin, &expr.Dynset{SrcRegKey: reg1, SetName: b.pin, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: b.persist}))
	}
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(f.nfproto), RegAddrMin: reg1}
	ex := []expr.Any{&expr.Immediate{Register: reg1, Data: b.addr.AsSlice()}}
	if b.port != 0 {
		ex = append(l4Match(b.proto, anyL4), ex...)
		ex = append(ex, &expr.Immediate{Register: reg2, Data: []byte{byte(b.port >> 8), byte(b.port)}})
		nat.RegProtoMin = reg2
	}
	rules = append(rules, append(ex, nat))
	return ruleList(t, c, rules, "")
}

// l4Match matches the transport protocol: nft reads a DNAT to a port
// back from its text form only after such a match. A service by mark may
// carry any protocol with ports: meta l4proto { tcp, udp, sctp }, a set
// that anyL4 makes for the rule.
func l4Match(proto byte, anyL4 func() *nftables.Set) []expr.Any {
	ex := []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1}}
	if proto != 0 {
		return append(ex, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}})
	}
	s := anyL4()
	return append(ex, &expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID})
}

func ruleList(t *nftables.Table, c *nftables.Chain, rules [][]expr.Any, comment string) []*nftables.Rule {
	var ud []byte
	if comment != "" {
		ud = userdata.AppendString(nil, userdata.TypeComment, comment)
	}
	out := make([]*nftables.Rule, len(rules))
	for i, ex := range rules {
		out[i] = &nftables.Rule{Table: t, Chain: c, Exprs: ex}
		if i == len(rules)-1 {
			out[i].UserData = ud
		}
	}
	return out
}

// loadPrefix loads the source address masked to a prefix length.
func loadPrefix(f famInfo, reg uint32, bits int) []expr.Any {
	ex := []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddr, Len: f.alen}}
	if bits >= int(8*f.alen) {
		return ex
	}
	mask := make([]byte, f.alen)
	for i := range mask {
		switch {
		case bits >= 8*(i+1):
			mask[i] = 0xff
		case bits > 8*i:
			mask[i] = byte(0xff << (8*(i+1) - bits))
		}
	}
	return append(ex, &expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: f.alen, Mask: mask, Xor: make([]byte, f.alen)})
}
