package nfbatch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"halb/internal/lab/labtest"
)

var table = &nftables.Table{Name: "t", Family: nftables.TableFamilyNetdev}

// fill queues a table, a chain, a slot map and a rule that forwards by
// the hash's slot, then one that forwards to an address (fwd ip to
// 192.0.2.5 device with index dev).
func fill(b *Batch, dev byte) {
	b.Conn().AddTable(table)
	b.Conn().AddChain(&nftables.Chain{Table: table, Name: "be"})
	b.Conn().AddChain(&nftables.Chain{Table: table, Name: "c"})
	m := b.AddSlotMap(table, []string{"be", "be"})
	b.AddRule(Rule{Table: table, Chain: "c", Exprs: append(Libs(
		&expr.Meta{Key: expr.MetaKeyPRANDOM, Register: 1},
		&expr.Hash{SourceRegister: 1, DestRegister: 1, Length: 4, Modulus: 2, Seed: 1, Type: expr.HashTypeJenkins}),
		Lib{&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: m.Name, SetID: m.ID}})})
	b.AddRule(Rule{Table: table, Chain: "be", Exprs: []Expr{
		Lib{&expr.Immediate{Register: 1, Data: []byte{dev, 0, 0, 0}}},
		Lib{&expr.Immediate{Register: 2, Data: []byte{192, 0, 2, 5}}},
		&Fwd{DevReg: 1, AddrReg: 2, NFProto: unix.NFPROTO_IPV4},
	}})
}

// TestSendIsOneBatchInOrder: the library's messages and the batch's own
// go in one batch, in the order they were queued, and an error the
// kernel answers with comes back from Send.
func TestSendIsOneBatchInOrder(t *testing.T) {
	var sent []netlink.Message
	fail := false
	c := nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			return nil, nil
		}
		sent = req
		var acks []netlink.Message
		for _, m := range req[1 : len(req)-1] {
			ack := netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence}, Data: make([]byte, 20)}
			if fail && netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWRULE) == m.Header.Type {
				copy(ack.Data, []byte{0xfe, 0xff, 0xff, 0xff}) // -ENOENT
				fail = false
			}
			acks = append(acks, ack)
		}
		return acks, nil
	})
	defer c.Close()
	b := New()
	fill(b, 1)
	if err := b.Send(c); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range sent {
		got = append(got, msgName(m))
	}
	want := "begin NEWTABLE NEWCHAIN NEWCHAIN NEWSET NEWSETELEM NEWRULE NEWRULE end"
	if strings.Join(got, " ") != want {
		t.Errorf("sent %v, want %s", got, want)
	}
	b = New()
	fill(b, 1)
	fail = true
	if err := b.Send(c); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("a rule the kernel refused: Send returned %v", err)
	}
}

func msgName(m netlink.Message) string {
	switch uint16(m.Header.Type) {
	case unix.NFNL_MSG_BATCH_BEGIN:
		return "begin"
	case unix.NFNL_MSG_BATCH_END:
		return "end"
	}
	return map[uint16]string{unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_NEWSET: "NEWSET",
		unix.NFT_MSG_NEWSETELEM: "NEWSETELEM", unix.NFT_MSG_NEWRULE: "NEWRULE"}[uint16(m.Header.Type)&0xff]
}

// TestKernel: the kernel takes the batch's own expressions as nft's, and
// a batch it refuses changes nothing.
func TestKernel(t *testing.T) {
	lab := labtest.NewLab(t)
	labtest.RequireTool(t, "nft")
	h, err := lab.AddHost("h")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := os.Open(filepath.Join("/var/run/netns", h.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	b := New()
	fill(b, 1) // lo
	inet := b.Conn().AddTable(&nftables.Table{Name: "ti", Family: nftables.TableFamilyINet})
	b.Conn().AddChain(&nftables.Chain{Table: inet, Name: "c"})
	b.AddRule(Rule{Table: inet, Chain: "c", Exprs: []Expr{
		&CtDir{Key: unix.NFT_CT_SRC_IP, Direction: CtReply, Register: 8},
		Lib{&expr.Cmp{Op: expr.CmpOpEq, Register: 8, Data: []byte{192, 0, 2, 5}}},
	}})
	if err := b.Send(c); err != nil {
		t.Fatal(err)
	}
	out, err := h.Run("nft", "list", "table", "netdev", "t")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, want := range []string{`fwd ip to 192.0.2.5 device "lo"`, "jhash meta random mod 2 seed 0x1 vmap { 0 : goto be, 1 : goto be }"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if out, err := h.Run("nft", "list", "table", "inet", "ti"); !strings.Contains(string(out), "ct reply ip saddr 192.0.2.5") {
		t.Errorf("table ti lacks the ct rule: %v:\n%s", err, out)
	}

	b = New()
	b.Conn().AddChain(&nftables.Chain{Table: table, Name: "more"})
	b.AddRule(Rule{Table: table, Chain: "missing", Exprs: Libs(&expr.Counter{})})
	if err := b.Send(c); err == nil {
		t.Fatal("a rule in a missing chain was accepted")
	}
	if out, err := h.Run("nft", "list", "chain", "netdev", "t", "more"); err == nil {
		t.Errorf("a refused batch left its chain:\n%s", out)
	}
}
