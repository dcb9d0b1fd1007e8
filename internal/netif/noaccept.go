package netif

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// noAcceptTable is the nftables table (inet) that drops packets to the
// VIPs of instances with no_accept.
const noAcceptTable = "halb_vrrp"

// SetDropped makes the kernel drop the IP packets addressed to addrs
// that arrive for this host, replacing the previous list (keepalived's
// no_accept); an empty list removes the table.
func SetDropped(addrs []netip.Addr) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("drop packets to VIPs: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: noAcceptTable}
	// Adding the table first makes deleting it valid when it is absent.
	c.AddTable(t)
	c.DelTable(t)
	if len(addrs) > 0 {
		if err := dropRules(c, addrs); err != nil {
			return fmt.Errorf("drop packets to VIPs: %w", err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("drop packets to VIPs: %w", err)
	}
	return nil
}

func dropRules(c *nftables.Conn, addrs []netip.Addr) error {
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: noAcceptTable})
	ch := c.AddChain(&nftables.Chain{Name: "no_accept", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	for _, fam := range []struct {
		name          string
		typ           nftables.SetDatatype
		proto         byte
		offset, bytes uint32
		is4           bool
	}{{"vips4", nftables.TypeIPAddr, unix.NFPROTO_IPV4, 16, 4, true}, {"vips6", nftables.TypeIP6Addr, unix.NFPROTO_IPV6, 24, 16, false}} {
		var elems []nftables.SetElement
		for _, a := range addrs {
			if a.Is4() == fam.is4 {
				elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
			}
		}
		if len(elems) == 0 {
			continue
		}
		set := &nftables.Set{Table: t, Name: fam.name, KeyType: fam.typ}
		if err := c.AddSet(set, elems); err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.offset, Len: fam.bytes},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	return nil
}
