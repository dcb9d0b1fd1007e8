package nfbatch

import (
	"encoding/binary"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Expr is an expression of a rule: its list element (name and data) in
// the table's family.
type Expr interface {
	Marshal(fam byte) ([]byte, error)
}

// Lib is one of google/nftables' expressions.
type Lib struct{ expr.Any }

// Marshal marshals the expression as the library does.
func (e Lib) Marshal(fam byte) ([]byte, error) { return expr.Marshal(fam, e.Any) }

// Libs wraps library expressions.
func Libs(es ...expr.Any) []Expr {
	out := make([]Expr, len(es))
	for i, e := range es {
		out[i] = Lib{e}
	}
	return out
}

// Fwd sends the packet out of the device whose index is in DevReg; with
// an address in AddrReg (NFProto IPv4 or IPv6), to that neighbour, IP
// header untouched (nft's "fwd ip to ADDR device DEV"). Netdev family only.
type Fwd struct {
	DevReg, AddrReg uint32
	NFProto         uint8
}

// Attributes of fwd that golang.org/x/sys/unix lacks (linux/netfilter/nf_tables.h).
const (
	nftaFwdSregAddr = 2 // NFTA_FWD_SREG_ADDR
	nftaFwdNFProto  = 3 // NFTA_FWD_NFPROTO
)

// Marshal marshals the fwd expression.
func (e *Fwd) Marshal(byte) ([]byte, error) {
	return marshal("fwd", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_FWD_SREG_DEV, e.DevReg)
		if e.AddrReg != 0 {
			ae.Uint32(nftaFwdSregAddr, e.AddrReg)
			ae.Uint32(nftaFwdNFProto, uint32(e.NFProto))
		}
	})
}

// CtDir loads a conntrack key of one direction of the connection into
// Register. The library's expr.Ct sends a direction only for the generic
// address and port keys; the family's own keys (NFT_CT_SRC_IP, …,
// nft's "ct original ip daddr") need one too.
type CtDir struct {
	Key       expr.CtKey
	Direction uint8 // CtOriginal or CtReply
	Register  uint32
}

// Directions of a connection (the kernel's IP_CT_DIR_*).
const (
	CtOriginal = 0
	CtReply    = 1
)

// Marshal marshals the ct expression.
func (e *CtDir) Marshal(byte) ([]byte, error) {
	return marshal("ct", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_CT_DREG, e.Register)
		ae.Uint32(unix.NFTA_CT_KEY, uint32(e.Key))
		ae.Uint8(unix.NFTA_CT_DIRECTION, e.Direction)
	})
}

// marshal encodes an expression's list element; the data's numbers are
// big-endian, as everything nftables sends.
func marshal(name string, data func(*netlink.AttributeEncoder)) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_EXPR_NAME, name)
	ae.Nested(unix.NFTA_EXPR_DATA, func(nae *netlink.AttributeEncoder) error {
		data(nae)
		return nil
	})
	return ae.Encode()
}
