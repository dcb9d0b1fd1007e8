package nft

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The decoders of what the kernel sends halb's nftables data plane:
// notifications (decodeNotice), rule dumps (ruleDigests) and verdicts in
// map data (verdictChain).

// FuzzDecodeNotice: any message decodes or is refused without a panic;
// an object notification names no generation, a batch's end no table;
// folding it never asks for a look at a batch that touched no table.
func FuzzDecodeNotice(f *testing.F) {
	for _, m := range []netlink.Message{
		objectMessage(f, unix.NFT_MSG_DELTABLE, "halb"),
		objectMessage(f, unix.NFT_MSG_NEWSETELEM, "other"),
		genMessage(f, 9, 4242, "nft"),
	} {
		f.Add(uint16(m.Header.Type), m.Data)
	}
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		n, err := decodeNotice(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: data})
		if err != nil {
			return
		}
		if n.end() && n.table != "" || !n.end() && (n.gen != 0 || n.pid != 0 || n.comm != "") {
			t.Errorf("message %#x decoded as %+v", typ, n)
		}
		fold := &batchFold{tables: []string{"halb"}, ours: func(uint32) bool { return false }}
		if r := fold.add(n); r != "" {
			t.Errorf("a batch's end with no table touched before: %q", r)
		}
	})
}

// ruleMessage is a rule of a dump: its chain, and userdata with digest.
func ruleMessage(t testing.TB, chain string, digest []byte) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_RULE_TABLE, "halb")
	ae.String(unix.NFTA_RULE_CHAIN, chain)
	ae.Bytes(unix.NFTA_RULE_USERDATA, userdata.Append(userdata.AppendString(nil, userdata.TypeComment, "c"), udDigest, digest))
	data, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, data...)}
}

// FuzzRuleDigests: a rule's chain and digest read back as written, and
// any message after it is read or refused without a panic.
func FuzzRuleDigests(f *testing.F) {
	f.Add("balance", []byte(digestOf(baseSpec{chainBalance})), []byte{})
	f.Add("svc-0123", []byte{1, 2, 3}, ruleMessage(f, "marking", nil).Data)
	f.Fuzz(func(t *testing.T, chain string, digest, raw []byte) {
		if chain == "" || strings.ContainsRune(chain, 0) || len(digest) > 255 {
			return // not what a chain name or a userdata value can be
		}
		got, err := ruleDigests([]netlink.Message{ruleMessage(t, chain, digest)})
		if err != nil || len(got) != 1 || got[chain] != string(digest) {
			t.Errorf("chain %q, digest %x: read %q, %v", chain, digest, got, err)
		}
		_, _ = ruleDigests([]netlink.Message{ruleMessage(t, chain, digest), {Data: raw}})
	})
}

// FuzzVerdictChain: a jump's chain reads back, and any data is read
// without a panic.
func FuzzVerdictChain(f *testing.F) {
	f.Add("svc-0123", []byte{})
	f.Add("x", []byte{8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfd})
	f.Fuzz(func(t *testing.T, chain string, raw []byte) {
		_ = verdictChain(raw)
		if chain == "" || strings.ContainsRune(chain, 0) {
			return
		}
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		ae.Int32(unix.NFTA_VERDICT_CODE, unix.NFT_JUMP)
		ae.String(unix.NFTA_VERDICT_CHAIN, chain)
		b, err := ae.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if got := verdictChain(b); got != chain && !bytes.HasSuffix([]byte(chain), []byte{0}) {
			t.Errorf("chain %q read as %q", chain, got)
		}
	})
}
