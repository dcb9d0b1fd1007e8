package netif

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// vmacTable is halb's nftables table that sends the IGMP messages of
// virtual MAC interfaces out of their parents.
const vmacTable = "halb_vmac"

// vmacParents is the table's map of virtual MAC interfaces to their
// parents, by index.
func vmacParents(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: "parents", IsMap: true,
		KeyType: nftables.TypeIFIndex, DataType: nftables.TypeIFIndex, KeyByteOrder: binaryutil.NativeEndian}
}

// igmpFromParent has the IGMP messages that leave the interface index
// vmac leave out of parent instead, with parent's MAC, as keepalived
// does: a membership report from the virtual MAC, which a backup sends
// when it joins the VRRP group there, would have the link's switches send
// the master's traffic to the backup.
func igmpFromParent(vmac, parent int) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("IGMP of interface %d out of %d: %w", vmac, parent, err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: vmacTable})
	m := vmacParents(t)
	if err := c.AddSet(m, []nftables.SetElement{{Key: ifIndex(vmac), Val: ifIndex(parent)}}); err != nil {
		return fmt.Errorf("IGMP of interface %d out of %d: %w", vmac, parent, err)
	}
	ch := c.AddChain(&nftables.Chain{Name: "igmp_out", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 1)})
	c.FlushChain(ch)
	// ip protocol igmp dup to ip daddr device oif map @parents drop
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_IGMP}},
		&expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, DestRegister: 2, IsDestRegSet: true},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Dup{RegAddr: 1, RegDev: 2, IsRegDevSet: true},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("IGMP of interface %d out of %d: %w", vmac, parent, err)
	}
	return nil
}

// igmpFromParentDone undoes igmpFromParent for the interface index vmac,
// and removes the table with the last interface.
func igmpFromParentDone(vmac int) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("IGMP of interface %d: %w", vmac, err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: vmacTable}
	m, err := c.GetSetByName(t, vmacParents(t).Name)
	if err != nil {
		return nil // no table: nothing to undo
	}
	elems, err := c.GetSetElements(m)
	if err != nil {
		return fmt.Errorf("IGMP of interface %d: %w", vmac, err)
	}
	key := ifIndex(vmac)
	var mine []nftables.SetElement
	for _, e := range elems {
		if string(e.Key) == string(key) {
			mine = append(mine, nftables.SetElement{Key: key})
		}
	}
	switch {
	case len(mine) == len(elems):
		c.DelTable(t)
	case len(mine) > 0:
		if err := c.SetDeleteElements(m, mine); err != nil {
			return fmt.Errorf("IGMP of interface %d: %w", vmac, err)
		}
	default:
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("IGMP of interface %d: %w", vmac, err)
	}
	return nil
}

// ifIndex is an interface index as nftables keys it.
func ifIndex(i int) []byte { return binaryutil.NativeEndian.PutUint32(uint32(i)) }
