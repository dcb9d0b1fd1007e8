package nfttest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// Recorder is a fake nf_tables that records the messages it is sent. It
// keeps the tables, chains, sets and objects they declare (not rules or
// elements), so that dumps of them answer as the kernel would and a
// second reconcile sees what the first one made.
type Recorder struct {
	mu    sync.Mutex
	sent  []netlink.Message
	kept  map[object]netlink.Message
	order []object
}

// object names a declared table, chain, set or object.
type object struct {
	typ         uint16 // NFT_MSG_NEW…
	family      byte
	table, name string
}

var _ nltest.Func = (*Recorder)(nil).Dial

// Dial is the function to pass to nftables.WithTestDial.
func (r *Recorder) Dial(req []netlink.Message) ([]netlink.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var replies []netlink.Message
	for _, m := range req {
		typ := uint16(m.Header.Type) & 0xff
		switch uint16(m.Header.Type) {
		case unix.NFNL_MSG_BATCH_BEGIN, unix.NFNL_MSG_BATCH_END:
			continue
		}
		if gets[typ] {
			dump := append(r.dump(typ-1, m), netlink.Message{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi}, Data: make([]byte, 4)}) // the NEW… of the GET…
			for i := range dump {
				dump[i].Header.Sequence, dump[i].Header.PID = m.Header.Sequence, m.Header.PID
			}
			replies = append(replies, dump...)
			continue
		}
		r.sent = append(r.sent, m)
		r.keep(typ, m)
		if m.Header.Flags&netlink.Acknowledge != 0 {
			replies = append(replies, netlink.Message{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)})
		}
	}
	return replies, nil
}

// gets are the requests that read; all answer as dumps.
var gets = map[uint16]bool{unix.NFT_MSG_GETTABLE: true, unix.NFT_MSG_GETCHAIN: true, unix.NFT_MSG_GETRULE: true,
	unix.NFT_MSG_GETSET: true, unix.NFT_MSG_GETSETELEM: true, unix.NFT_MSG_GETOBJ: true}

// keep updates the kept objects with a change.
func (r *Recorder) keep(typ uint16, m netlink.Message) {
	if r.kept == nil {
		r.kept = map[object]netlink.Message{}
	}
	o, ok := objectOf(typ, m)
	switch {
	case !ok:
	case typ == unix.NFT_MSG_DELTABLE:
		for k := range r.kept {
			if k.family == o.family && k.table == o.table {
				delete(r.kept, k)
			}
		}
	case typ == unix.NFT_MSG_DELCHAIN || typ == unix.NFT_MSG_DELSET || typ == unix.NFT_MSG_DELOBJ:
		o.typ -= 2 // the NEW… of the DEL…
		delete(r.kept, o)
	case strings.Contains(o.name, "%"): // an anonymous set: goes with its rule
	default:
		if _, had := r.kept[o]; !had {
			r.order = append(r.order, o)
		}
		r.kept[o] = m
	}
}

// objectOf names what a message declares or deletes.
func objectOf(typ uint16, m netlink.Message) (object, bool) {
	o := object{typ: typ, family: m.Data[0]}
	tableAttr, nameAttr := uint16(1), uint16(0)
	switch typ {
	case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE:
		tableAttr = unix.NFTA_TABLE_NAME
	case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN:
		nameAttr = unix.NFTA_CHAIN_NAME
	case unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET:
		nameAttr = unix.NFTA_SET_NAME
	case unix.NFT_MSG_NEWOBJ, unix.NFT_MSG_DELOBJ:
		nameAttr = unix.NFTA_OBJ_NAME
	default:
		return o, false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return o, false
	}
	for ad.Next() {
		switch ad.Type() {
		case tableAttr:
			o.table = ad.String()
		case nameAttr:
			o.name = ad.String()
		}
	}
	return o, true
}

// dump answers a dump of the objects of one kind, of the request's
// family (all for AF_UNSPEC) and table (if it names one).
func (r *Recorder) dump(typ uint16, req netlink.Message) []netlink.Message {
	want, _ := objectOf(typ, req)
	var out []netlink.Message
	for _, o := range r.order {
		m, ok := r.kept[o]
		if !ok || o.typ != typ || (want.family != unix.AF_UNSPEC && o.family != want.family) ||
			(typ != unix.NFT_MSG_NEWTABLE && want.table != "" && o.table != want.table) {
			continue
		}
		m.Header.Flags |= netlink.Multi
		out = append(out, m)
	}
	return out
}

// Take returns the changes sent since the last Take, in order, without
// the batches' begin and end.
func (r *Recorder) Take() []netlink.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sent
	r.sent = nil
	return out
}

// msgNames names the messages a data plane sends.
var msgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_DELTABLE: "DELTABLE",
	unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_DELCHAIN: "DELCHAIN",
	unix.NFT_MSG_NEWRULE: "NEWRULE", unix.NFT_MSG_DELRULE: "DELRULE",
	unix.NFT_MSG_NEWSET: "NEWSET", unix.NFT_MSG_DELSET: "DELSET",
	unix.NFT_MSG_NEWSETELEM: "NEWSETELEM", unix.NFT_MSG_DELSETELEM: "DELSETELEM",
	unix.NFT_MSG_NEWOBJ: "NEWOBJ", unix.NFT_MSG_DELOBJ: "DELOBJ",
}

// Render renders messages byte for byte, one attribute a line: the
// message's type, flags and family, then its attributes by number,
// nested ones indented, NUL-terminated text quoted, the rest in hex.
// keep selects the messages to render (nil: all).
func Render(msgs []netlink.Message, keep func(netlink.Message) bool) string {
	var b strings.Builder
	for _, m := range msgs {
		if keep != nil && !keep(m) {
			continue
		}
		typ := uint16(m.Header.Type) & 0xff
		name := msgNames[typ]
		if name == "" {
			name = fmt.Sprintf("msg %d", typ)
		}
		fmt.Fprintf(&b, "%s flags %#x family %d % x\n", name, uint16(m.Header.Flags), m.Data[0], m.Data[1:4])
		renderAttrs(&b, m.Data[4:], "\t")
	}
	return b.String()
}

func renderAttrs(b *strings.Builder, data []byte, indent string) {
	for len(data) >= 4 {
		n := int(binary.NativeEndian.Uint16(data))
		typ := binary.NativeEndian.Uint16(data[2:])
		if n < 4 || n > len(data) {
			fmt.Fprintf(b, "%sbad attribute: % x\n", indent, data)
			return
		}
		v := data[4:n]
		switch {
		case typ&unix.NLA_F_NESTED != 0:
			fmt.Fprintf(b, "%s%d:\n", indent, typ&^unix.NLA_F_NESTED)
			renderAttrs(b, v, indent+"\t")
		case isText(v):
			fmt.Fprintf(b, "%s%d: %q\n", indent, typ, v[:len(v)-1])
		default:
			fmt.Fprintf(b, "%s%d: % x\n", indent, typ, v)
		}
		data = data[min((n+3)&^3, len(data)):]
	}
	if len(data) > 0 {
		fmt.Fprintf(b, "%strailing bytes: % x\n", indent, data)
	}
}

// isText tells NUL-terminated printable text.
func isText(v []byte) bool {
	if len(v) < 2 || v[len(v)-1] != 0 {
		return false
	}
	return !bytes.ContainsFunc(v[:len(v)-1], func(r rune) bool { return r < ' ' || r > '~' })
}
