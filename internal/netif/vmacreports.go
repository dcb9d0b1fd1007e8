package netif

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// vmacTable is halb's nftables table, one of family ip and one of ip6,
// that sends the multicast membership reports of virtual MAC interfaces
// out of their parents.
const vmacTable = "halb_vmac"

// vmacFamilies are the families of vmacTable.
var vmacFamilies = []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6}

// vmacParents is a table's map of virtual MAC interfaces to their
// parents, by index.
func vmacParents(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: "parents", IsMap: true,
		KeyType: nftables.TypeIFIndex, DataType: nftables.TypeIFIndex, KeyByteOrder: binaryutil.NativeEndian}
}

// reportsFromParent has the IGMP and MLDv2 reports that leave the
// interface index vmac leave out of parent instead, with parent's MAC,
// and drops its router solicitations, as keepalived does: a report from
// the virtual MAC, which a backup sends when it joins the VRRP group
// there, would have the link's switches send the master's traffic to the
// backup.
func reportsFromParent(vmac, parent int) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("reports of interface %d out of %d: %w", vmac, parent, err)
	}
	for _, fam := range vmacFamilies {
		t := c.AddTable(&nftables.Table{Family: fam, Name: vmacTable})
		m := vmacParents(t)
		if err := c.AddSet(m, []nftables.SetElement{{Key: ifIndex(vmac), Val: ifIndex(parent)}}); err != nil {
			return fmt.Errorf("reports of interface %d out of %d: %w", vmac, parent, err)
		}
		ch := c.AddChain(&nftables.Chain{Name: "reports_out", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 1)})
		c.FlushChain(ch)
		for _, r := range reportRules(fam, m) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("reports of interface %d out of %d: %w", vmac, parent, err)
	}
	return nil
}

// reportRules are a family's rules of reportsFromParent:
//
//	ip protocol igmp dup to ip daddr device oif map @parents drop
//	icmpv6 type mld2-listener-report dup to ip6 daddr device oif map @parents drop
//	icmpv6 type nd-router-solicit oif @parents drop
func reportRules(fam nftables.TableFamily, m *nftables.Set) [][]expr.Any {
	toParent := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, DestRegister: 2, IsDestRegSet: true},
	}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	if fam == nftables.TableFamilyIPv4 {
		return [][]expr.Any{append(append([]expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_IGMP}},
		}, toParent...),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Dup{RegAddr: 1, RegDev: 2, IsRegDevSet: true},
			drop,
		)}
	}
	icmp6 := func(typ byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{typ}},
		}
	}
	const mld2Report, routerSolicit = 143, 133
	return [][]expr.Any{
		append(append(icmp6(mld2Report), toParent...),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			&expr.Dup{RegAddr: 1, RegDev: 2, IsRegDevSet: true},
			drop,
		),
		append(icmp6(routerSolicit),
			&expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID},
			drop,
		),
	}
}

// reportsFromParentDone undoes reportsFromParent for the interface index
// vmac, and removes the tables with the last interface.
func reportsFromParentDone(vmac int) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("reports of interface %d: %w", vmac, err)
	}
	key := ifIndex(vmac)
	for _, fam := range vmacFamilies {
		t := &nftables.Table{Family: fam, Name: vmacTable}
		m, err := c.GetSetByName(t, vmacParents(t).Name)
		if err != nil {
			continue // no table: nothing to undo
		}
		elems, err := c.GetSetElements(m)
		if err != nil {
			return fmt.Errorf("reports of interface %d: %w", vmac, err)
		}
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
				return fmt.Errorf("reports of interface %d: %w", vmac, err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("reports of interface %d: %w", vmac, err)
	}
	return nil
}

// ifIndex is an interface index as nftables keys it.
func ifIndex(i int) []byte { return binaryutil.NativeEndian.PutUint32(uint32(i)) }
