package ipvs

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"testing"

	cfipvs "github.com/cloudflare/ipvs"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestGuestBatchBytes captures on an nlmon device what
// github.com/cloudflare/ipvs sends for each kind of change, and what a
// batch of the same changes sends: the batch is one sendmsg, and its
// messages carry the same bytes, only the last asking for an ack.
func TestGuestBatchBytes(t *testing.T) {
	lb := routedLB(t)
	must(t, lb.IP("link", "add", "nlmon0", "type", "nlmon"))
	must(t, lb.IP("link", "set", "nlmon0", "up"))
	httpW5 := drDest
	httpW5.Weight = 5
	reqs := []request{
		{cmd: cmdNewService, svc: httpSvc},
		{cmd: cmdNewService, svc: markSvc},
		{cmd: cmdNewDest, svc: httpSvc, dest: drDest},
		{cmd: cmdNewDest, svc: markSvc, dest: gueDest},
		{cmd: cmdSetDest, svc: httpSvc, dest: httpW5},
		{cmd: cmdSetService, svc: markSvc},
		{cmd: cmdDelDest, svc: httpSvc, dest: httpW5},
		{cmd: cmdDelService, svc: httpSvc},
		{cmd: cmdDelService, svc: markSvc},
	}
	var cf, batch [][]netlink.Message // the IPVS messages of each sendmsg
	must(t, inNetNS(nsFD(t, lb), func() error {
		capture, err := tap("nlmon0")
		if err != nil {
			return err
		}
		defer func() { _ = unix.Close(capture) }() // only read

		c, err := cfipvs.New()
		if err != nil {
			return err
		}
		defer func() { _ = closeClient(c) }() // only read
		for i, r := range reqs {
			if err := cfCall(c, r); err != nil {
				return fmt.Errorf("request %d through cloudflare/ipvs: %w", i, err)
			}
		}
		gc, err := genetlink.Dial(nil)
		if err != nil {
			return err
		}
		defer gc.Close()
		family, err := gc.GetFamily("IPVS")
		if err != nil {
			return err
		}
		if cf, err = captured(capture, family.ID); err != nil {
			return err
		}

		conn, err := netlink.Dial(unix.NETLINK_GENERIC, nil)
		if err != nil {
			return err
		}
		defer conn.Close()
		b, err := newBatcher(conn, family.ID)
		if err != nil {
			return err
		}
		if err := errors.Join(b.apply(reqs)...); err != nil {
			return fmt.Errorf("the batch: %w", err)
		}
		batch, err = captured(capture, family.ID)
		return err
	}))
	if len(cf) != len(reqs) {
		t.Fatalf("cloudflare/ipvs sent %d IPVS messages, want one per request (%d)", len(cf), len(reqs))
	}
	if len(batch) != 1 || len(batch[0]) != len(reqs) {
		t.Fatalf("the batch took %d sendmsg, want one with %d messages", len(batch), len(reqs))
	}
	for i, m := range batch[0] {
		want := cf[i][0]
		if !reflect.DeepEqual(m.Data, want.Data) {
			t.Errorf("request %d (command %d):\nbatch         %x\ncloudflare/ipvs %x", i, reqs[i].cmd, m.Data, want.Data)
		}
		flags := netlink.Request
		if i == len(reqs)-1 {
			flags |= netlink.Acknowledge
		}
		if m.Header.Flags != flags || want.Header.Flags != netlink.Request|netlink.Acknowledge {
			t.Errorf("request %d: flags %s in the batch (want %s), %s alone", i, m.Header.Flags, flags, want.Header.Flags)
		}
	}
}

// cfCall makes a request through github.com/cloudflare/ipvs.
func cfCall(c cfipvs.Client, r request) error {
	switch r.cmd {
	case cmdNewService:
		return c.CreateService(r.svc)
	case cmdSetService:
		return c.UpdateService(r.svc)
	case cmdDelService:
		return c.RemoveService(r.svc)
	case cmdNewDest:
		return c.CreateDestination(r.svc, r.dest)
	case cmdSetDest:
		return c.UpdateDestination(r.svc, r.dest)
	case cmdDelDest:
		return c.RemoveDestination(r.svc, r.dest)
	}
	return fmt.Errorf("unknown command %d", r.cmd)
}

// tap opens a packet socket on a netlink monitor device.
func tap(dev string) (int, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return -1, err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind to %s: %w", dev, err)
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// captured reads what the tap holds, and returns, for each sendmsg to
// the family, its requests.
func captured(fd int, family uint16) ([][]netlink.Message, error) {
	var out [][]netlink.Message
	buf := make([]byte, 1<<20)
	for {
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the netlink tap: %w", err)
		}
		var msgs []netlink.Message
		for b := buf[:n]; len(b) >= nlmsgHeaderLen; {
			var m netlink.Message
			if err := m.UnmarshalBinary(b); err != nil {
				return nil, fmt.Errorf("captured message: %w", err)
			}
			if m.Header.Type == netlink.HeaderType(family) && m.Header.Flags&netlink.Request != 0 {
				m.Data = slices.Clone(m.Data)
				msgs = append(msgs, m)
			}
			b = b[nlmsgAlign(int(m.Header.Length)):]
		}
		if len(msgs) > 0 {
			out = append(out, msgs)
		}
	}
}
