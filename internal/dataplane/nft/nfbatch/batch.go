// Package nfbatch sends one nftables transaction made of google/nftables'
// messages and of rules that may hold expressions the library lacks.
// google/nftables v0.3.0 cannot carry a foreign expression (expr.Any has
// unexported methods) nor send a message of its own making, so a Batch
// records what the library marshals, builds the rules itself (expressions
// marshalled by the library where it has them, by this package where it
// has not) and sends both, in order, as one NFNL batch.
package nfbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Batch is one nftables transaction being built.
type Batch struct {
	lib  *nftables.Conn    // records the library's messages
	rec  []netlink.Message // recorded, not yet in msgs
	msgs []netlink.Message
	ids  uint32 // set IDs given
	err  error
}

// New returns an empty batch.
func New() *Batch {
	b := &Batch{}
	b.lib, b.err = nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		acks := make([]netlink.Message, 0, len(req))
		for _, m := range req {
			switch m.Header.Type {
			case netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), netlink.HeaderType(unix.NFNL_MSG_BATCH_END):
				continue
			}
			m.Header.Length, m.Header.Sequence, m.Header.PID = 0, 0, 0 // the sending connection sets them
			b.rec = append(b.rec, m)
			if m.Header.Flags&netlink.Acknowledge != 0 {
				acks = append(acks, netlink.Message{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)})
			}
		}
		return acks, nil
	}))
	return b
}

// Conn is where the library's operations of the batch are queued (tables,
// chains, elements, objects, deletions); its Flush must not be called.
// Sets go through AddSet, rules through AddRule.
func (b *Batch) Conn() *nftables.Conn { return b.lib }

// AddSet queues a set, with an ID of the batch's own: the library's
// come from a counter of the process, so that the same batch would not
// be the same bytes twice. An anonymous set comes with its elements.
func (b *Batch) AddSet(s *nftables.Set, vals ...nftables.SetElement) error {
	b.ids++
	s.ID = b.ids
	return b.lib.AddSet(s, vals)
}

// AddSetUserData queues a set as AddSet does, with ud as its userdata
// instead of the library's, which knows only byte orders and comments:
// nft's description of the set's key and data (typeof), for instance.
func (b *Batch) AddSetUserData(s *nftables.Set, ud []byte) error {
	if err := b.AddSet(s); err != nil {
		return err
	}
	b.drain()
	if b.err != nil {
		return b.err
	}
	m := &b.msgs[len(b.msgs)-1]
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	attrs = slices.DeleteFunc(attrs, func(a netlink.Attribute) bool { return a.Type == unix.NFTA_SET_USERDATA })
	attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_SET_USERDATA, Data: ud})
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	m.Data = append(m.Data[:4:4], data...)
	return nil
}

// Rule is a rule to append to a chain.
type Rule struct {
	Table    *nftables.Table
	Chain    string
	Exprs    []Expr
	UserData []byte // nft's comment, as userdata.AppendString makes it
}

// AddRule appends a rule to its chain, after what was queued before.
func (b *Batch) AddRule(r Rule) {
	b.drain()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_RULE_TABLE, r.Table.Name)
	ae.String(unix.NFTA_RULE_CHAIN, r.Chain)
	ae.Nested(unix.NFTA_RULE_EXPRESSIONS, func(list *netlink.AttributeEncoder) error {
		for _, e := range r.Exprs {
			list.Do(unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM, func() ([]byte, error) { return e.Marshal(byte(r.Table.Family)) })
		}
		return nil
	})
	if r.UserData != nil {
		ae.Bytes(unix.NFTA_RULE_USERDATA, r.UserData)
	}
	data, err := ae.Encode()
	if err != nil {
		b.err = errors.Join(b.err, fmt.Errorf("rule of chain %s: %w", r.Chain, err))
		return
	}
	b.msgs = append(b.msgs, netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create | unix.NLM_F_APPEND,
		},
		Data: append(genHeader(byte(r.Table.Family)), data...),
	})
}

// genHeader is the nfgenmsg that starts every nftables message.
func genHeader(family byte) []byte { return []byte{family, unix.NFNETLINK_V0, 0, 0} }

// drain moves what the library queued to the batch.
func (b *Batch) drain() {
	if b.err != nil {
		return
	}
	if err := b.lib.Flush(); err != nil {
		b.err = fmt.Errorf("marshal: %w", err)
	}
	b.msgs, b.rec = append(b.msgs, b.rec...), b.rec[:0]
}

// Messages returns the batch's messages, without the batch's begin and
// end.
func (b *Batch) Messages() ([]netlink.Message, error) {
	b.drain()
	return b.msgs, b.err
}

// Send sends the batch on c (a NETLINK_NETFILTER connection) and waits
// for the kernel's answer to each message. An empty batch sends nothing.
func (b *Batch) Send(c *netlink.Conn) error {
	msgs, err := b.Messages()
	if err != nil || len(msgs) == 0 {
		return err
	}
	frame := func(typ uint16) netlink.Message {
		return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request}, Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}}
	}
	all := make([]netlink.Message, 0, len(msgs)+2)
	all = append(append(append(all, frame(unix.NFNL_MSG_BATCH_BEGIN)), msgs...), frame(unix.NFNL_MSG_BATCH_END))
	if _, err := c.SendMessages(all); err != nil {
		return fmt.Errorf("send %d messages: %w", len(msgs), err)
	}
	acks := 0
	for _, m := range msgs {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			acks++
		}
	}
	// Each acknowledged message gets one answer: an NLMSG_ERROR, with
	// errno 0 when it succeeded.
	var errs error
	for acks > 0 {
		replies, err := c.Receive()
		if err != nil {
			if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.ENOBUFS) {
				return err // the kernel sends no more
			}
			errs = errors.Join(errs, err)
			acks--
			continue
		}
		if len(replies) == 0 {
			break // a test connection answered everything at once
		}
		for _, r := range replies {
			if r.Header.Type == netlink.Error {
				acks--
			}
		}
	}
	return errs
}

// AddSlotMap adds an anonymous constant verdict map from the slots of a
// hash (host-order integers 0 … len(chains)-1) to the chains to go to,
// for one rule of the batch to look its hash up in (by the returned set's
// name and ID). The library marks an anonymous set's keys big-endian,
// which would make nft show the slots byte-swapped, so this set is
// declared here.
func (b *Batch) AddSlotMap(t *nftables.Table, chains []string) *nftables.Set {
	b.drain()
	b.ids++
	s := &nftables.Set{Table: t, Name: "__map%d", ID: b.ids, IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_SET_TABLE, t.Name)
	ae.String(unix.NFTA_SET_NAME, s.Name)
	ae.Uint32(unix.NFTA_SET_FLAGS, unix.NFT_SET_ANONYMOUS|unix.NFT_SET_CONSTANT|unix.NFT_SET_MAP)
	ae.Uint32(unix.NFTA_SET_KEY_TYPE, integerType)
	ae.Uint32(unix.NFTA_SET_KEY_LEN, 4)
	ae.Uint32(unix.NFTA_SET_ID, s.ID)
	ae.Uint32(unix.NFTA_SET_DATA_TYPE, unix.NFT_DATA_VERDICT)
	ae.Uint32(unix.NFTA_SET_DATA_LEN, 0)
	ae.Nested(unix.NFTA_SET_DESC, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(unix.NFTA_SET_DESC_SIZE, uint32(len(chains)))
		return nil
	})
	ae.Bytes(unix.NFTA_SET_USERDATA, userdata.AppendUint32(nil, userdata.NFTNL_UDATA_SET_KEYBYTEORDER, hostByteOrder))
	data, err := ae.Encode()
	if err != nil {
		b.err = errors.Join(b.err, fmt.Errorf("slot map: %w", err))
		return s
	}
	b.msgs = append(b.msgs, netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSET),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create,
		},
		Data: append(genHeader(byte(t.Family)), data...),
	})
	els := make([]nftables.SetElement, len(chains))
	for i, c := range chains {
		els[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: c}}
	}
	if err := b.lib.SetAddElements(s, els); err != nil {
		b.err = errors.Join(b.err, fmt.Errorf("slot map: %w", err))
	}
	return s
}

const (
	integerType   = 4 // nft's "integer" data type
	hostByteOrder = 1 // nft's BYTEORDER_HOST_ENDIAN
)
