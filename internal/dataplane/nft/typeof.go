package nft

import "encoding/binary"

// A Maglev map's key is a hash, which nft types as a plain integer; nft
// reads such a map back from its text form only when the map says, in
// its userdata, which expression its key and data are the type of
// ("typeof"). Written here the way nft 1.0 writes them. nft 1.0.6 cannot
// print a typeof of jhash, so the key is described as `numgen inc mod M`:
// the same 32-bit host-order integer.

// Userdata types (libnftnl's NFTNL_UDATA_SET_*) and nft's expression
// types and protocol descriptions used in a typeof.
const (
	udKeyByteOrder  = 0
	udDataByteOrder = 1
	udKeyTypeof     = 3
	udDataTypeof    = 4
	udDataInterval  = 6

	exprValue   = 1
	exprPayload = 7
	exprConcat  = 13
	exprNumgen  = 23

	protoTH    = 11 // th: field 2 is dport
	protoIP    = 12 // ip: field 12 is daddr
	protoIP6   = 13 // ip6: field 9 is daddr
	byteHost   = 1
	byteBig    = 2
	typeofSelf = 0 // NFTNL_UDATA_SET_TYPEOF_EXPR
	typeofData = 1 // NFTNL_UDATA_SET_TYPEOF_DATA
)

func tlv(t byte, v ...[]byte) []byte {
	var n int
	for _, p := range v {
		n += len(p)
	}
	out := append(make([]byte, 0, 2+n), t, byte(n))
	for _, p := range v {
		out = append(out, p...)
	}
	return out
}

func hu32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// typeofExpr is one expression of a typeof: its type and its own data.
func typeofExpr(typ uint32, data ...[]byte) []byte {
	return append(tlv(typeofSelf, hu32(typ)), tlv(typeofData, data...)...)
}

func payloadOf(desc, field uint32) []byte {
	return typeofExpr(exprPayload, tlv(0, hu32(desc)), tlv(1, hu32(field)))
}

func daddrOf(fam int) []byte {
	if fam == 6 {
		return payloadOf(protoIP6, 9)
	}
	return payloadOf(protoIP, 12)
}

// slotMapUserData describes a Maglev map of size slots: typeof numgen inc
// mod size : verdict, ip daddr . th dport, or ip daddr (ip6 alike).
func slotMapUserData(kind setKind, fam, size int) []byte {
	var data []byte
	dataOrder := uint32(0)
	switch kind {
	case kindMaglev:
		data = typeofExpr(exprValue)
	case kindMaglevNAT:
		data = typeofExpr(exprConcat, tlv(0, daddrOf(fam)), tlv(1, payloadOf(protoTH, 2)))
	default:
		data, dataOrder = daddrOf(fam), byteBig
	}
	key := typeofExpr(exprNumgen, tlv(0, hu32(0)), tlv(1, hu32(uint32(size))), tlv(2, hu32(0)))
	return append(append(append(append(
		tlv(udKeyByteOrder, hu32(byteHost)),
		tlv(udDataByteOrder, hu32(dataOrder))...),
		tlv(udKeyTypeof, key)...),
		tlv(udDataTypeof, data)...),
		tlv(udDataInterval, hu32(0))...)
}
