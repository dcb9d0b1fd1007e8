package nft

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"halb/internal/clock/clocktest"
)

// nftMessage builds an nftables notification as the kernel sends it.
func nftMessage(t testing.TB, msg uint16, attrs func(*netlink.AttributeEncoder)) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	attrs(ae)
	data, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | int(msg))},
		Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, data...),
	}
}

func objectMessage(t testing.TB, msg uint16, table string) netlink.Message {
	return nftMessage(t, msg, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_TABLE_NAME, table)
		ae.String(2, "c") // the chain's or set's own name
	})
}

func genMessage(t testing.TB, gen, pid uint32, comm string) netlink.Message {
	return nftMessage(t, unix.NFT_MSG_NEWGEN, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_GEN_ID, gen)
		ae.Uint32(unix.NFTA_GEN_PROC_PID, pid)
		ae.String(unix.NFTA_GEN_PROC_NAME, comm)
	})
}

func TestDecodeNotice(t *testing.T) {
	n, err := decodeNotice(objectMessage(t, unix.NFT_MSG_DELTABLE, "halb"))
	if err != nil || n.msg != unix.NFT_MSG_DELTABLE || n.table != "halb" || n.end() {
		t.Errorf("table deleted: %+v, %v", n, err)
	}
	n, err = decodeNotice(genMessage(t, 77, 1234, "nft"))
	if err != nil || !n.end() || n.gen != 77 || n.pid != 1234 || n.comm != "nft" {
		t.Errorf("generation: %+v, %v", n, err)
	}
	other := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK << 8)}, Data: make([]byte, 4)}
	if _, err := decodeNotice(other); err != errNotNFTables {
		t.Errorf("a conntrack message: %v, want errNotNFTables", err)
	}
	short := objectMessage(t, unix.NFT_MSG_NEWRULE, "halb")
	short.Data = short.Data[:2]
	if _, err := decodeNotice(short); err == nil {
		t.Error("a message shorter than its header decodes")
	}
	bad := objectMessage(t, unix.NFT_MSG_NEWRULE, "halb")
	bad.Data = append(bad.Data, 9, 0) // an attribute cut short
	if _, err := decodeNotice(bad); err == nil {
		t.Error("a cut attribute decodes")
	}
}

// TestBatchFold: a batch of another process that touches halb's table asks
// for a look at its end; halb's own batches and others' tables do not.
func TestBatchFold(t *testing.T) {
	const self = 100
	f := &batchFold{tables: []string{"halb", "halb-counters"}, ours: func(pid uint32) bool { return pid == self }}
	feed := func(msgs ...netlink.Message) string {
		t.Helper()
		var reason string
		for _, m := range msgs {
			n, err := decodeNotice(m)
			if err != nil {
				t.Fatal(err)
			}
			if r := f.add(n); r != "" {
				reason = r
			}
		}
		return reason
	}
	if r := feed(objectMessage(t, unix.NFT_MSG_NEWSETELEM, "halb"), genMessage(t, 1, self, "halb")); r != "" {
		t.Errorf("halb's own batch: %q", r)
	}
	if r := feed(objectMessage(t, unix.NFT_MSG_NEWRULE, "filter"), genMessage(t, 2, 7, "nft")); r != "" {
		t.Errorf("another table's batch: %q", r)
	}
	want := "table halb-counters changed by nft (pid 7)"
	if r := feed(objectMessage(t, unix.NFT_MSG_NEWRULE, "filter"), objectMessage(t, unix.NFT_MSG_DELTABLE, "halb-counters"),
		objectMessage(t, unix.NFT_MSG_DELTABLE, "halb"), genMessage(t, 3, 7, "nft")); r != want {
		t.Errorf("a batch deleting halb's tables: %q, want %q", r, want)
	}
	// Notifications lost mid-batch: the batch's end says nothing more.
	feed(objectMessage(t, unix.NFT_MSG_DELCHAIN, "halb"))
	if r := f.lost(); r == "" {
		t.Error("lost notifications give no reason")
	}
	if r := feed(genMessage(t, 4, 7, "nft")); r != "" {
		t.Errorf("the end of a lost batch: %q", r)
	}
	if r := f.polled(4); r != "" {
		t.Errorf("the generation last notified: %q", r)
	}
	if r := f.polled(6); r == "" {
		t.Error("a generation moved unseen gives no reason")
	}
	if r := f.polled(6); r != "" {
		t.Errorf("the same generation polled again: %q", r)
	}
	if r := (&batchFold{}).polled(9); r != "" {
		t.Errorf("the first poll: %q", r)
	}
}

// TestDebounce: a burst of kicks is answered once, quiet after its last
// kick, with its first kick's reason; a burst that goes on is answered
// at most after its first kick.
func TestDebounce(t *testing.T) {
	clk := clocktest.New(time.Time{})
	b := &debouncer{clk: clk, quiet: 100 * time.Millisecond, most: time.Second}
	if b.C() != nil {
		t.Fatal("an idle debouncer fires")
	}
	fired := func() bool {
		select {
		case <-b.C():
			return true
		default:
			return false
		}
	}
	b.kick("first")
	clk.Advance(60 * time.Millisecond)
	b.kick("second")
	clk.Advance(60 * time.Millisecond)
	if fired() {
		t.Fatal("fired 60 ms after a kick, before the quiet time")
	}
	clk.Advance(40 * time.Millisecond)
	if !fired() {
		t.Fatal("not fired 100 ms after the last kick")
	}
	if r := b.fire(); r != "first" {
		t.Errorf("reason %q, want the first kick's", r)
	}
	if b.C() != nil {
		t.Error("still armed after firing")
	}
	// Kicks every 50 ms: answered once a second.
	start := clk.Now()
	for !fired() {
		if clk.Now().Sub(start) > 2*time.Second {
			t.Fatal("a steady burst is never answered")
		}
		b.kick("steady")
		clk.Advance(50 * time.Millisecond)
	}
	if took := clk.Now().Sub(start); took > time.Second+50*time.Millisecond || took < time.Second {
		t.Errorf("a steady burst answered after %v, want 1 s", took)
	}
	b.fire()
	b.stop()
}
