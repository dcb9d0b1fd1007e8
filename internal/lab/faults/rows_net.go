package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/ipv4"

	"halb/internal/lab/netns"
	"halb/internal/lab/site"
	"halb/internal/vrrp"
	"halb/internal/vrrp/packet"
)

// The 50 % loss row: its window and the flaps it allows.
const (
	heavyLossWindow = 15 * time.Second
	heavyLossFlaps  = 4
)

// lossRuleAt counts the adverts a node receives and drops pct % of them,
// at random (lossReport renders its counters).
func lossRuleAt(pct int) string {
	return fmt.Sprintf("ip protocol vrrp counter\n  ip protocol vrrp numgen random mod 100 < %d counter drop", pct)
}

func heavyLoss(ctx context.Context, e *env) (string, bool, error) {
	from := time.Now()
	if err := addFault(e.s.LBs[1].Host, lossRuleAt(50)); err != nil {
		return "", false, err
	}
	if err := sleep(ctx, heavyLossWindow); err != nil {
		return "", false, err
	}
	dropped := dropFault(e.s.LBs[1].Host)
	trs, err := e.transitions(ctx, 1, "web-a", from)
	if err != nil {
		return "", false, err
	}
	flaps := 0
	for _, tr := range trs {
		if tr.New == "MASTER" && tr.Old != "MASTER" {
			flaps++
		}
	}
	return fmt.Sprintf("%d flaps of the backup in %v; %s", flaps, heavyLossWindow, lossReport(dropped)), flaps <= heavyLossFlaps, nil
}

// kaHeavyLoss loses 50 % of the adverts keepalived's backup receives.
func kaHeavyLoss(ctx context.Context, e *env) (string, error) {
	k := e.ka
	before := strings.Count(readFile(k.logs[1]), "Entering MASTER STATE")
	if err := addFault(k.hosts[1], lossRuleAt(50)); err != nil {
		return "", err
	}
	if err := sleep(ctx, heavyLossWindow); err != nil {
		return "", err
	}
	dropped := dropFault(k.hosts[1])
	flaps := strings.Count(readFile(k.logs[1]), "Entering MASTER STATE") - before
	return fmt.Sprintf("%d flaps of the backup in %v; %s", flaps, heavyLossWindow, lossReport(dropped)), nil
}

// speaker sends crafted adverts from a lab host: multicast out of its
// eth0, TTL 255.
type speaker struct {
	src netip.Addr
	c   net.PacketConn
	p   *ipv4.PacketConn
}

// newSpeaker opens a VRRP socket on host h, whose address is src.
func newSpeaker(h *netns.Host, src string) (*speaker, error) {
	s := &speaker{src: netip.MustParseAddr(src)}
	var ifi *net.Interface
	if err := h.Do(func() (err error) {
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		s.c, err = net.ListenPacket("ip4:112", "0.0.0.0")
		return err
	}); err != nil {
		return nil, fmt.Errorf("%s: open a VRRP socket: %w", h.Name, err)
	}
	s.p = ipv4.NewPacketConn(s.c)
	if err := errors.Join(s.p.SetTTL(255), s.p.SetMulticastTTL(255), s.p.SetMulticastInterface(ifi), s.p.SetMulticastLoopback(false)); err != nil {
		s.c.Close()
		return nil, fmt.Errorf("%s: set up the VRRP socket: %w", h.Name, err)
	}
	return s, nil
}

func (s *speaker) close() { _ = s.c.Close() }

// marshal encodes a from the speaker to dst.
func (s *speaker) marshal(a packet.Advert, dst netip.Addr) ([]byte, error) {
	return a.Marshal(s.src, dst, packet.ChecksumPseudoHeader)
}

// send sends a to dst n times, one every every.
func (s *speaker) send(ctx context.Context, a packet.Advert, dst netip.Addr, n int, every time.Duration) error {
	msg, err := s.marshal(a, dst)
	if err != nil {
		return err
	}
	for i := range n {
		if _, err := s.p.WriteTo(msg, nil, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("send an advert to %s: %w", dst, err)
		}
		if i < n-1 {
			if err := sleep(ctx, every); err != nil {
				return err
			}
		}
	}
	return nil
}

// addrs parses addresses.
func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// stateChanges counts node i's changes of state of instance since from
// (events that only name a new master or a notice are not changes).
func (e *env) stateChanges(ctx context.Context, i int, instance string, from time.Time) (int, error) {
	trs, err := e.transitions(ctx, i, instance, from)
	n := 0
	for _, tr := range trs {
		if tr.Old != tr.New {
			n++
		}
	}
	return n, err
}

// otherListAdverts is how many adverts of another list the client sends.
const otherListAdverts = 20

func otherAddressList(ctx context.Context, e *env) (string, bool, error) {
	sp, err := newSpeaker(e.s.Client, site.ClientIP)
	if err != nil {
		return "", false, err
	}
	defer sp.close()
	var before [2]int
	for i := range before {
		if before[i], err = e.rejected(ctx, i, "web-a", vrrp.RejectAddressList); err != nil {
			return "", false, err
		}
	}
	g, stop := e.traffic(ctx)
	defer stop()
	if err := sleep(ctx, time.Second); err != nil {
		return "", false, err
	}
	from := time.Now()
	// web-a's VRID, one of its VIPs missing and one of web-b's instead.
	other := packet.Advert{Version: 3, VRID: 9, Priority: 254, Interval: advert, Addrs: addrs(site.VIPsA[0], site.VIPsB[0])}
	if err := sp.send(ctx, other, packet.GroupIPv4, otherListAdverts, 100*time.Millisecond); err != nil {
		return "", false, err
	}
	if err := sleep(ctx, advert); err != nil {
		return "", false, err
	}
	var counted, changes [2]int
	for i := range counted {
		n, err := e.rejected(ctx, i, "web-a", vrrp.RejectAddressList)
		if err != nil {
			return "", false, err
		}
		counted[i] = n - before[i]
		if changes[i], err = e.stateChanges(ctx, i, "web-a", from); err != nil {
			return "", false, err
		}
	}
	reach, reached := trafficReport(g, from)
	stop()
	// The address owner may list what it likes: lb-a obeys it.
	owner := other
	owner.Priority = 255
	ownerFrom := time.Now()
	if err := sp.send(ctx, owner, packet.GroupIPv4, 3, 100*time.Millisecond); err != nil {
		return "", false, err
	}
	obeyed := "lb-a stays master at priority 255 (not obeyed)"
	_, err = e.waitState(ctx, 0, "web-a", "BACKUP", ownerFrom, advert)
	if err == nil {
		obeyed = "at priority 255 lb-a steps down (obeyed)"
	}
	kept := counted == [2]int{otherListAdverts, otherListAdverts} && changes == [2]int{} && reached && err == nil
	return fmt.Sprintf("%d adverts of priority 254: counted as address list %d on lb-a, %d on lb-b; state changes %d, %d; %s; %s",
		otherListAdverts, counted[0], counted[1], changes[0], changes[1], reach, obeyed), kept, nil
}

// kaOtherAddressList sends keepalived's master the same adverts (to its
// unicast address) and says whether it stepped down.
func kaOtherAddressList(ctx context.Context, e *env) (string, error) {
	k := e.ka
	sp, err := newSpeaker(e.s.Client, site.ClientIP)
	if err != nil {
		return "", err
	}
	defer sp.close()
	before := strings.Count(readFile(k.logs[0]), "Entering BACKUP STATE")
	dst := netip.MustParseAddr(kaAddrs[0])
	other := packet.Advert{Version: 3, VRID: kaVRID, Priority: 254, Interval: advert, Addrs: addrs(kaVIP, site.VIPsB[0])}
	if err := sp.send(ctx, other, dst, otherListAdverts, 100*time.Millisecond); err != nil {
		return "", err
	}
	if err := sleep(ctx, advert); err != nil {
		return "", err
	}
	stepped := strings.Count(readFile(k.logs[0]), "Entering BACKUP STATE") > before
	text := "priority 254: ignored"
	if stepped {
		text = "priority 254: the master stepped down"
	}
	if err := k.settle(ctx); err != nil {
		return "", err
	}
	before = strings.Count(readFile(k.logs[0]), "Entering BACKUP STATE")
	owner := other
	owner.Priority = 255
	if err := sp.send(ctx, owner, dst, 3, 100*time.Millisecond); err != nil {
		return "", err
	}
	if err := sleep(ctx, advert); err != nil {
		return "", err
	}
	if strings.Count(readFile(k.logs[0]), "Entering BACKUP STATE") > before {
		return text + "; priority 255: the master stepped down", nil
	}
	return text + "; priority 255: ignored", nil
}
