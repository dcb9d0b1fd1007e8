package nft

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A restart adopts the table it finds: every chain halb writes carries, in
// the userdata of its last rule, a digest of what its rules were made
// from; a chain whose digest is the one halb would write, and a Maglev map
// whose slots are the ones it would write, are kept as they are, with the
// pins and counters around them.

// rulesVersion is part of every digest: change it whenever the rules made
// from the same spec change, so that a restart rewrites the chains an
// older version wrote.
const rulesVersion = "halb-rules-v3"

// udDigest is the userdata type of the digest: nft shows only the comment
// (type 0) and skips the others.
const udDigest userdata.Type = 0x48

// digestOf is the digest of the rules made from spec, which must print
// the same in every process (no pointers: see beSpec.String).
func digestOf(spec any) []byte {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%T%+v", rulesVersion, spec, spec))
	return sum[:8]
}

// withDigest puts the digest on the last rule of a chain.
func withDigest(rules []*nftables.Rule, digest []byte) []*nftables.Rule {
	if len(rules) > 0 {
		last := rules[len(rules)-1]
		last.UserData = userdata.Append(slices.Clip(last.UserData), udDigest, digest)
	}
	return rules
}

// baseSpec is what a base chain's rules are made from.
type baseSpec struct{ name string }

// readDigests returns the digest on the last rule of each chain of an
// inet table, read in one dump.
func (d *Dataplane) readDigests(table string) (map[string]string, error) {
	return d.readDigestsOf(unix.NFPROTO_INET, table)
}

// readDigestsOf is readDigests for a table of any family.
func (d *Dataplane) readDigestsOf(family byte, table string) (map[string]string, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_RULE_TABLE, table)
	data, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	msgs, err := d.dump(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
		Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, data...),
	})
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return ruleDigests(msgs)
}

// ruleDigests reads a rule dump: the digest in the userdata of each
// chain's last rule.
func ruleDigests(msgs []netlink.Message) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		var chain string
		var digest []byte
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_CHAIN:
				chain = ad.String()
			case unix.NFTA_RULE_USERDATA:
				digest = userdataValue(ad.Bytes(), udDigest)
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		out[chain] = string(digest) // the last rule's, as the dump goes in order
	}
	return out, nil
}

// userdataValue returns the value of the first TLV of type typ in
// userdata, nil if there is none. Unlike userdata.Get it stops at a TLV
// cut short, which another program may write into a rule.
func userdataValue(b []byte, typ userdata.Type) []byte {
	for len(b) >= 2 {
		n := 2 + int(b[1])
		if n > len(b) {
			return nil
		}
		if userdata.Type(b[0]) == typ {
			return b[2:n]
		}
		b = b[n:]
	}
	return nil
}

// dump sends a dump request where the data plane's connections go.
func (d *Dataplane) dump(req netlink.Message) ([]netlink.Message, error) {
	nl, err := d.dial()
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	return nl.Execute(req)
}

// adopt takes into have what of want the kernel already holds as want
// has it (after a restart): the Maglev maps that hold want's slots, the
// chains that carry the digests of want's, and the services whose sets
// exist and whose map and chain are adopted. Those are left untouched; the rest is
// rewritten.
func (d *Dataplane) adopt(c *nftables.Conn, have *content, want *content) error {
	for name, m := range want.maps {
		if !have.sets[name] {
			continue
		}
		same, err := d.sameSlots(c, m)
		if err != nil {
			return err
		}
		if same {
			have.maps[name] = m
			delete(have.sets, name)
		}
	}
	for name, mark := range want.markChains {
		if have.digests[name] == string(digestOf(markSpec{mark, d.markMask})) {
			have.markChains[name] = mark
			delete(have.chains, name)
		}
	}
	for name, spec := range want.svcChains {
		if have.digests[name] == string(digestOf(spec)) {
			have.svcChains[name] = spec
			delete(have.chains, name)
		}
	}
	for h, s := range want.svcs {
		if _, ok := have.svcChains[s.chain]; !ok || have.maps[s.slots.name] != s.slots {
			continue
		}
		ok := true
		for name, spec := range s.bes {
			ok = ok && have.digests[name] == string(digestOf(spec))
		}
		for _, p := range s.pins {
			ok = ok && have.sets[p]
		}
		if !ok {
			continue
		}
		have.svcs[h], have.byKey[s.vs.Key] = s, s
		for name := range s.bes {
			delete(have.chains, name)
		}
		for _, p := range s.pins {
			delete(have.sets, p)
		}
	}
	return nil
}

// sameSlots says whether the kernel's map of m's name holds its slots.
func (d *Dataplane) sameSlots(c *nftables.Conn, m *slotMap) (bool, error) {
	els, err := c.GetSetElements(m.def().nftSet(d.tableRef(), m.name))
	if err != nil {
		return false, fmt.Errorf("elements of %s: %w", m.name, err)
	}
	if len(els) != len(m.slots) {
		return false, nil
	}
	for _, e := range els {
		if len(e.Key) != 4 {
			return false, nil
		}
		want := m.slot(int(binary.NativeEndian.Uint32(e.Key)))
		if want == "" {
			return false, nil
		}
		if m.kind == kindMaglev {
			if verdictChain(e.Val) != want {
				return false, nil
			}
		} else if !bytes.Equal(e.Val, []byte(want)) {
			return false, nil
		}
	}
	return true, nil
}

// verdictChain is the chain of a verdict as the library reads map data:
// the nested verdict attributes.
func verdictChain(b []byte) string {
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return ""
	}
	for _, a := range attrs {
		if a.Type&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER) == unix.NFTA_VERDICT_CHAIN {
			return string(bytes.TrimRight(a.Data, "\x00"))
		}
	}
	return ""
}
