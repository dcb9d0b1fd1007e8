package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Registers: the 32-bit registers are numbered 8 to 23; 16-byte register
// 1 is 32-bit registers 8-11. Concatenated keys are laid out field by
// field, each padded to 32 bits.
const (
	regVerdict = 0
	regMark    = 1
	regKey     = 8  // first register of a lookup key
	regData    = 16 // where a backend (address . port) lands
)

// setDefs returns the definitions of the table's sets for a mode.
func setDefs(t *nftables.Table, mode Mode) []*nftables.Set {
	tuple4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	tuple6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	defs := []*nftables.Set{
		{Table: t, Name: setMarks4, KeyType: tuple4, DataType: nftables.TypeMark, IsMap: true, Interval: true, Concatenation: true},
		{Table: t, Name: setMarks6, KeyType: tuple6, DataType: nftables.TypeMark, IsMap: true, Interval: true, Concatenation: true},
	}
	if mode == MarksOnly {
		return defs
	}
	slot := nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeMark)
	be4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	be6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
	return append(defs,
		&nftables.Set{Table: t, Name: setSvc4, KeyType: tuple4, DataType: nftables.TypeVerdict, IsMap: true, Concatenation: true},
		&nftables.Set{Table: t, Name: setSvc6, KeyType: tuple6, DataType: nftables.TypeVerdict, IsMap: true, Concatenation: true},
		&nftables.Set{Table: t, Name: setSvcMark4, KeyType: nftables.TypeMark, DataType: nftables.TypeVerdict, IsMap: true},
		&nftables.Set{Table: t, Name: setSvcMark6, KeyType: nftables.TypeMark, DataType: nftables.TypeVerdict, IsMap: true},
		&nftables.Set{Table: t, Name: setLB4, KeyType: slot, DataType: be4, IsMap: true, Concatenation: true},
		&nftables.Set{Table: t, Name: setLB6, KeyType: slot, DataType: be6, IsMap: true, Concatenation: true},
		&nftables.Set{Table: t, Name: setLive4, KeyType: nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIPAddr, nftables.TypeInetService), Concatenation: true},
		&nftables.Set{Table: t, Name: setLive6, KeyType: nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIP6Addr, nftables.TypeInetService), Concatenation: true},
		&nftables.Set{Table: t, Name: setPersist4, KeyType: nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIPAddr), DataType: be4,
			IsMap: true, Concatenation: true, Dynamic: true, HasTimeout: true},
		&nftables.Set{Table: t, Name: setPersist6, KeyType: nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIP6Addr), DataType: be6,
			IsMap: true, Concatenation: true, Dynamic: true, HasTimeout: true},
	)
}

// famInfo holds the header offsets of one address family.
type famInfo struct {
	nfproto        byte
	saddr, daddr   uint32 // offsets in the network header
	alen           uint32 // address length
	natFamily      uint32
	marks, svc     string
	svcMark        string
	lb, live, pers string
}

var fams = map[int]famInfo{
	4: {unix.NFPROTO_IPV4, 12, 16, 4, unix.NFPROTO_IPV4, setMarks4, setSvc4, setSvcMark4, setLB4, setLive4, setPersist4},
	6: {unix.NFPROTO_IPV6, 8, 24, 16, unix.NFPROTO_IPV6, setMarks6, setSvc6, setSvcMark6, setLB6, setLive6, setPersist6},
}

// regs returns how many 32-bit registers n bytes take.
func regs(n uint32) uint32 { return (n + 3) / 4 }

func isFamily(f famInfo) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: regMark},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regMark, Data: []byte{f.nfproto}},
	}
}

// loadTuple loads daddr . l4proto . dport into the key registers.
func loadTuple(f famInfo) []expr.Any {
	r := uint32(regKey)
	return []expr.Any{
		&expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddr, Len: f.alen},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r + regs(f.alen)},
		&expr.Payload{DestRegister: r + regs(f.alen) + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// markRules: meta mark set <daddr . l4proto . dport> map @marksN.
func markRules(t *nftables.Table, c *nftables.Chain) []*nftables.Rule {
	var out []*nftables.Rule
	for _, fam := range []int{4, 6} {
		f := fams[fam]
		ex := append(isFamily(f), loadTuple(f)...)
		ex = append(ex,
			&expr.Lookup{SourceRegister: regKey, DestRegister: regMark, IsDestRegSet: true, SetName: f.marks},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: regMark},
		)
		out = append(out, &nftables.Rule{Table: t, Chain: c, Exprs: ex})
	}
	return out
}

// balanceRules dispatch new connections to the service chains: by
// address, protocol and port, then by mark.
func balanceRules(t *nftables.Table, c *nftables.Chain) []*nftables.Rule {
	var out []*nftables.Rule
	for _, fam := range []int{4, 6} {
		f := fams[fam]
		ex := append(isFamily(f), loadTuple(f)...)
		ex = append(ex, &expr.Lookup{SourceRegister: regKey, DestRegister: regVerdict, IsDestRegSet: true, SetName: f.svc})
		out = append(out, &nftables.Rule{Table: t, Chain: c, Exprs: ex})
	}
	for _, fam := range []int{4, 6} {
		f := fams[fam]
		ex := append(isFamily(f),
			&expr.Meta{Key: expr.MetaKeyMARK, Register: regMark},
			&expr.Lookup{SourceRegister: regMark, DestRegister: regVerdict, IsDestRegSet: true, SetName: f.svcMark},
		)
		out = append(out, &nftables.Rule{Table: t, Chain: c, Exprs: ex})
	}
	return out
}

// serviceRules are the rules of one service chain:
//
//	persistence: a live pinned backend of the client's prefix → DNAT to it
//	jhash(flow, or client prefix with persistence) mod M → @lbN slot → DNAT
//	no backend → drop
func serviceRules(t *nftables.Table, c *nftables.Chain, s svcChain) []*nftables.Rule {
	f := fams[s.family]
	ar := regs(f.alen)
	id := u32(s.id)
	comment := userdata.AppendString(nil, userdata.TypeComment, s.label)
	dnat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: f.natFamily, RegAddrMin: regData}
	if s.withPort {
		dnat.RegProtoMin = regData + ar
	}
	var rules [][]expr.Any
	if s.persist > 0 {
		// Key id . prefix at 8; the pinned backend lands at 16; id . backend
		// at 15 must be in @liveN.
		pin := []expr.Any{&expr.Immediate{Register: regKey, Data: id}}
		pin = append(pin, loadPrefix(f, regKey+1, s.netmask)...)
		pin = append(pin,
			&expr.Lookup{SourceRegister: regKey, DestRegister: regData, IsDestRegSet: true, SetName: f.pers},
			&expr.Immediate{Register: regData - 1, Data: id},
			&expr.Lookup{SourceRegister: regData - 1, SetName: f.live},
			&expr.Dynset{SrcRegKey: regKey, SrcRegData: regData, SetName: f.pers, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: s.persist},
			dnat,
		)
		rules = append(rules, pin)
		// Hash the prefix (at 10) into the slot (at 9); after the lookup, id
		// at 9 makes id . prefix the key that pins the client.
		pick := loadPrefix(f, regKey+2, s.netmask)
		pick = append(pick,
			&expr.Hash{SourceRegister: regKey + 2, DestRegister: regKey + 1, Length: f.alen, Modulus: uint32(s.size), Seed: s.seed, Type: expr.HashTypeJenkins},
			&expr.Immediate{Register: regKey, Data: id},
			&expr.Lookup{SourceRegister: regKey, DestRegister: regData, IsDestRegSet: true, SetName: f.lb},
			&expr.Immediate{Register: regKey + 1, Data: id},
			&expr.Dynset{SrcRegKey: regKey + 1, SrcRegData: regData, SetName: f.pers, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: s.persist},
			dnat,
		)
		rules = append(rules, pick)
	} else {
		// saddr . sport . daddr . dport from 9 on, hashed into the slot at 9.
		r := uint32(regKey + 1)
		pick := []expr.Any{
			&expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddr, Len: f.alen},
			&expr.Payload{DestRegister: r + ar, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Payload{DestRegister: r + ar + 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddr, Len: f.alen},
			&expr.Payload{DestRegister: r + 2*ar + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Hash{SourceRegister: r, DestRegister: r, Length: 4 * (2*ar + 2), Modulus: uint32(s.size), Seed: s.seed, Type: expr.HashTypeJenkins},
			&expr.Immediate{Register: regKey, Data: id},
			&expr.Lookup{SourceRegister: regKey, DestRegister: regData, IsDestRegSet: true, SetName: f.lb},
			dnat,
		}
		rules = append(rules, pick)
	}
	rules = append(rules, []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})
	out := make([]*nftables.Rule, len(rules))
	for i, ex := range rules {
		out[i] = &nftables.Rule{Table: t, Chain: c, Exprs: ex, UserData: comment}
	}
	return out
}

// loadPrefix loads the source address masked to the persistence netmask.
func loadPrefix(f famInfo, reg uint32, bits int) []expr.Any {
	mask := make([]byte, f.alen)
	for i := range mask {
		switch {
		case bits >= 8*(i+1):
			mask[i] = 0xff
		case bits > 8*i:
			mask[i] = byte(0xff << (8*(i+1) - bits))
		}
	}
	return []expr.Any{
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddr, Len: f.alen},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: f.alen, Mask: mask, Xor: make([]byte, f.alen)},
	}
}
