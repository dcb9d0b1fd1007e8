package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// notice is what one nftables notification (group NFNLGRP_NFTABLES) says:
// an object of a table added or deleted, or the end of a committed batch.
type notice struct {
	msg uint16 // NFT_MSG_*
	// table is the table an object notification names.
	table string
	// gen, pid and comm come with NFT_MSG_NEWGEN, the end of a batch: the
	// new generation and the process that committed the batch.
	gen  uint32
	pid  uint32
	comm string
}

// end reports whether n ends a committed batch.
func (n notice) end() bool { return n.msg == unix.NFT_MSG_NEWGEN }

var errNotNFTables = errors.New("not an nftables message")

// decodeNotice reads a notification: the nfgenmsg header, then the
// attributes. Every object message of nf_tables carries its table's name
// as attribute 1 (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, …).
func decodeNotice(m netlink.Message) (notice, error) {
	if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return notice{}, errNotNFTables
	}
	n := notice{msg: uint16(m.Header.Type & 0xff)}
	if len(m.Data) < 4 {
		return n, fmt.Errorf("nftables message %d: %d bytes, shorter than its header", n.msg, len(m.Data))
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return n, fmt.Errorf("nftables message %d: %w", n.msg, err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch {
		case n.end() && ad.Type() == unix.NFTA_GEN_ID:
			n.gen = ad.Uint32()
		case n.end() && ad.Type() == unix.NFTA_GEN_PROC_PID:
			n.pid = ad.Uint32()
		case n.end() && ad.Type() == unix.NFTA_GEN_PROC_NAME:
			n.comm = ad.String()
		case !n.end() && ad.Type() == unix.NFTA_TABLE_NAME:
			n.table = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return n, fmt.Errorf("nftables message %d: %w", n.msg, err)
	}
	return n, nil
}

// batchFold follows the notifications of committed batches and tells, at
// the end of each, whether a process other than halb changed one of
// halb's tables in it.
type batchFold struct {
	tables []string // halb's tables
	// ours tells whether a pid is one of halb's threads (the kernel names
	// the thread that committed).
	ours func(pid uint32) bool
	// touched is a table of halb's the batch being read changed ("": none).
	touched string
	// gen is the last generation a notification ended (known: one did).
	gen   uint32
	known bool
}

// add folds n and returns why halb's tables need a look ("": they do not).
func (f *batchFold) add(n notice) string {
	if !n.end() {
		if f.touched == "" && slices.Contains(f.tables, n.table) {
			f.touched = n.table
		}
		return ""
	}
	f.gen, f.known = n.gen, true
	touched := f.touched
	f.touched = ""
	if touched == "" || f.ours(n.pid) {
		return ""
	}
	return fmt.Sprintf("table %s changed by %s (pid %d)", touched, n.comm, n.pid)
}

// lost forgets the batch being read: its notifications were dropped.
func (f *batchFold) lost() string {
	f.touched = ""
	return "nftables notifications lost (the socket's buffer overran)"
}

// polled compares the kernel's generation, read now, with the last one a
// notification ended: another means a batch was committed unseen.
func (f *batchFold) polled(gen uint32) string {
	known, was := f.known, f.gen
	f.gen, f.known = gen, true
	if !known || gen == was {
		return ""
	}
	return fmt.Sprintf("nftables generation %d, the last notified was %d", gen, was)
}
