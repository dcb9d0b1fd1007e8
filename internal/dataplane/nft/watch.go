package nft

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"halb/internal/clock"
)

// Watch timing: a burst of changes by others is answered once it has been
// quiet for watchQuiet, or watchMost after its first change; the kernel's
// generation is compared every watchPoll, in case notifications were lost
// without the socket saying so.
const (
	watchQuiet = 100 * time.Millisecond
	watchMost  = time.Second
	watchPoll  = 10 * time.Second
)

// Watch follows nftables notifications until ctx is done. When another
// process changes halb's tables, when notifications are lost (the socket
// overran) or when the kernel's generation moved unseen, it forgets what
// it knew of the tables, so that the next Reconcile reads them in full,
// and calls changed with the reason: the caller reconciles. halb's own
// transactions are told apart by the pid the kernel names at each
// batch's end.
func (d *Dataplane) Watch(ctx context.Context, changed func(reason string)) error {
	lib, err := d.conn()
	if err != nil {
		return err
	}
	if lib.TestDial != nil {
		return errors.New("nftables watch: a test connection has no notifications")
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: lib.NetNS})
	if err != nil {
		return fmt.Errorf("nftables watch: %w", err)
	}
	defer c.Close()
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("nftables watch: join the nftables group: %w", err)
	}
	fold := &batchFold{tables: []string{d.table, d.countTable()}, ours: ownThread}
	// The generation now is the one the notifications go on from.
	if gen, err := d.generation(); err != nil {
		return err
	} else {
		fold.polled(gen)
	}
	type received struct {
		msgs []netlink.Message
		err  error
	}
	recv := make(chan received)
	go func() {
		for {
			msgs, err := c.Receive()
			select {
			case recv <- received{msgs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil && !errors.Is(err, unix.ENOBUFS) {
				return
			}
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() }) // ends Receive
	defer stop()
	poll := time.NewTicker(watchPoll)
	defer poll.Stop()
	b := &debouncer{clk: clock.Real{}, quiet: watchQuiet, most: watchMost}
	defer b.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-recv:
			switch {
			case errors.Is(r.err, unix.ENOBUFS):
				reason := fold.lost()
				d.log.Info("nftables watch: "+reason+"; the tables will be read in full", "table", d.table)
				b.kick(reason)
			case r.err != nil:
				return fmt.Errorf("nftables watch: receive: %w", r.err)
			}
			for _, m := range r.msgs {
				n, err := decodeNotice(m)
				if err != nil {
					continue // another subsystem's message, or one this reader does not know
				}
				if reason := fold.add(n); reason != "" {
					b.kick(reason)
				}
			}
		case <-poll.C:
			gen, err := d.generation()
			if err != nil {
				d.log.Warn("nftables watch: read the generation", "err", err)
				continue
			}
			if reason := fold.polled(gen); reason != "" {
				b.kick(reason)
			}
		case <-b.C():
			d.forget()
			changed(b.fire())
		}
	}
}

// ownThread tells whether pid is a thread of this process.
func ownThread(pid uint32) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", pid))
	return err == nil
}

// forget drops what the data plane knows of its tables: the next
// Reconcile reads them from the kernel.
func (d *Dataplane) forget() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.have, d.drKnown, d.counted = nil, false, nil
}

// generation reads the kernel's nftables generation (NFT_MSG_GETGEN).
func (d *Dataplane) generation() (uint32, error) {
	nl, err := d.dial()
	if err != nil {
		return 0, err
	}
	defer nl.Close()
	msgs, err := nl.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("nftables: read the generation: %w", err)
	}
	for _, m := range msgs {
		if n, err := decodeNotice(m); err == nil && n.end() {
			return n.gen, nil
		}
	}
	return 0, errors.New("nftables: read the generation: no generation in the answer")
}

// debouncer answers a burst of kicks once: C fires when no kick came for
// quiet, or most after the burst's first kick, whichever is sooner.
type debouncer struct {
	clk         clock.Clock
	quiet, most time.Duration
	reason      string // the burst's first kick's ("": no burst)
	first       time.Time
	t           clock.Timer
}

// kick starts a burst or extends it.
func (b *debouncer) kick(reason string) {
	now := b.clk.Now()
	if b.reason == "" {
		b.reason, b.first = reason, now
	}
	wait := min(b.quiet, b.first.Add(b.most).Sub(now))
	if b.t == nil {
		b.t = b.clk.NewTimer(wait)
		return
	}
	b.t.Reset(wait)
}

// C fires when the burst is to be answered; nil without a burst.
func (b *debouncer) C() <-chan time.Time {
	if b.reason == "" {
		return nil
	}
	return b.t.C()
}

// fire ends the burst and returns its reason.
func (b *debouncer) fire() string {
	r := b.reason
	b.reason = ""
	return r
}

func (b *debouncer) stop() {
	if b.t != nil {
		b.t.Stop()
	}
}
