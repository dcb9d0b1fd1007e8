package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"halb/internal/lab/netns"
	"halb/internal/lab/site"
	"halb/internal/vrrp"
	"halb/internal/vrrp/packet"
)

// heavyLossFlaps is how many flaps the 50 % loss row allows.
const heavyLossFlaps = 4

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

// send sends a to each of dsts n times, one round every every.
func (s *speaker) send(ctx context.Context, a packet.Advert, n int, every time.Duration, dsts ...netip.Addr) error {
	msgs := make([][]byte, len(dsts))
	for i, dst := range dsts {
		var err error
		if msgs[i], err = s.marshal(a, dst); err != nil {
			return err
		}
	}
	for i := range n {
		for j, dst := range dsts {
			if _, err := s.p.WriteTo(msgs[j], nil, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
				return fmt.Errorf("send an advert to %s: %w", dst, err)
			}
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

// allStateChanges counts the state changes of both instances on each
// node since from.
func (e *env) allStateChanges(ctx context.Context, from time.Time) ([2]int, error) {
	var changes [2]int
	for i := range changes {
		for _, instance := range []string{"web-a", "web-b"} {
			n, err := e.stateChanges(ctx, i, instance, from)
			if err != nil {
				return changes, err
			}
			changes[i] += n
		}
	}
	return changes, nil
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
	if err := sp.send(ctx, other, otherListAdverts, 100*time.Millisecond, packet.GroupIPv4); err != nil {
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
	if err := sp.send(ctx, owner, 3, 100*time.Millisecond, packet.GroupIPv4); err != nil {
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
	if err := sp.send(ctx, other, otherListAdverts, 100*time.Millisecond, dst); err != nil {
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
	if err := sp.send(ctx, owner, 3, 100*time.Millisecond, dst); err != nil {
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

// foreignAdverts are what the third speaker sends for web-a's VRID, at a
// priority below both nodes': VRRPv3 adverts every 2 s, then VRRPv2
// adverts.
func foreignAdverts(vrid uint8, vips []netip.Addr) [2]packet.Advert {
	return [2]packet.Advert{
		{Version: 3, VRID: vrid, Priority: 50, Interval: 2 * time.Second, Addrs: vips},
		{Version: 2, VRID: vrid, Priority: 50, Interval: advert, Addrs: vips},
	}
}

// foreignRounds is how many adverts of each kind the speaker sends, one a
// second.
const foreignRounds = 4

// The warnings halb logs once for a foreign speaker's adverts.
const (
	intervalWarning = "adverts with another interval (logged once)"
	versionWarning  = "adverts of another VRRP version (logged once)"
)

func foreignSpeaker(ctx context.Context, e *env) (string, bool, error) {
	sp, err := newSpeaker(e.s.Client, site.ClientIP)
	if err != nil {
		return "", false, err
	}
	defer sp.close()
	from := time.Now()
	// The masters are sampled while the speaker speaks.
	var samples, notOne int
	sampled := make(chan error, 1)
	sctx, stopSampling := context.WithCancel(ctx)
	go func() {
		for sctx.Err() == nil {
			m, err := e.masters(sctx)
			if sctx.Err() != nil {
				break // the sampling ended during this read: no sample
			}
			if err != nil {
				sampled <- err
				return
			}
			samples++
			if len(m["web-a"]) != 1 {
				notOne++
			}
			_ = sleep(sctx, 200*time.Millisecond) // ends with the sampling
		}
		sampled <- nil
	}()
	var serr error
	for _, a := range foreignAdverts(9, addrs(site.VIPsA...)) {
		if serr = sp.send(ctx, a, foreignRounds, advert, packet.GroupIPv4); serr != nil {
			break
		}
	}
	if serr == nil {
		serr = sleep(ctx, advert)
	}
	stopSampling()
	if err := errors.Join(serr, <-sampled); err != nil {
		return "", false, err
	}
	var parts []string
	kept := notOne == 0
	for i, lb := range e.s.LBs {
		changes, err := e.stateChanges(ctx, i, "web-a", from)
		if err != nil {
			return "", false, err
		}
		// Once in halb's life, whichever row set it off first.
		log, started := sinceStart(readFile(lb.Log))
		trs, err := e.transitions(ctx, i, "web-a", started)
		if err != nil {
			return "", false, err
		}
		var interval, version int
		for _, tr := range trs {
			interval += boolInt(tr.Notice && strings.Contains(tr.Reason, " but sends every "))
			version += boolInt(tr.Notice && strings.Contains(tr.Reason, " but speaks VRRPv"))
		}
		warned := [2]int{strings.Count(log, intervalWarning), strings.Count(log, versionWarning)}
		parts = append(parts, fmt.Sprintf("%s: %d state changes; since it started, warned of the interval %d time(s) and the version %d time(s), notices %d and %d",
			lb.Name, changes, warned[0], warned[1], interval, version))
		kept = kept && changes == 0 && warned == [2]int{1, 1} && interval == 1 && version == 1
	}
	return fmt.Sprintf("%d v3 adverts every 2s then %d v2 adverts at priority 50; one master in %d/%d samples; %s",
		foreignRounds, foreignRounds, samples-notOne, samples, strings.Join(parts, "; ")), kept, nil
}

// sinceStart returns the part of a node's log since halb last started,
// and when that was (zero if the log does not say).
func sinceStart(log string) (string, time.Time) {
	i := strings.LastIndex(log, `msg="halb running"`)
	if i < 0 {
		return log, time.Time{}
	}
	log = log[strings.LastIndexByte(log[:i], '\n')+1:]
	// "time=2026-12-06T02:24:26.051Z level=INFO msg=…"
	stamp, _, _ := strings.Cut(strings.TrimPrefix(log, "time="), " ")
	at, _ := time.Parse(time.RFC3339Nano, stamp) // zero if not a time
	return log, at
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// kaForeignSpeaker sends keepalived's pair the same adverts and counts
// its state changes and what it logged.
func kaForeignSpeaker(ctx context.Context, e *env) (string, error) {
	k := e.ka
	sp, err := newSpeaker(e.s.Client, site.ClientIP)
	if err != nil {
		return "", err
	}
	defer sp.close()
	var logged [2]int
	for i := range logged {
		logged[i] = len(readFile(k.logs[i]))
	}
	for _, a := range foreignAdverts(kaVRID, addrs(kaVIP)) {
		if err := sp.send(ctx, a, foreignRounds, advert, addrs(kaAddrs[:]...)...); err != nil {
			return "", err
		}
	}
	if err := sleep(ctx, advert); err != nil {
		return "", err
	}
	var parts []string
	for i := range logged {
		log := readFile(k.logs[i])[logged[i]:]
		parts = append(parts, fmt.Sprintf("ka%d: %d state changes, %d interval and %d version lines logged", i+1,
			strings.Count(log, "Entering "), strings.Count(log, "interval mismatch"), strings.Count(log, "version")))
	}
	return strings.Join(parts, "; "), nil
}

// The advert flood: how fast, how long (three of lb-b's adverts of web-b
// fall in it: were all three lost in the flood, lb-a would take web-b
// over), and the CPU halb may use meanwhile.
const (
	floodRate   = 100_000
	floodWindow = 3 * time.Second
	floodCores  = 1.0
)

// floodAdverts are adverts for web-a's VRID that lb-a must drop, each for
// another reason: a bad checksum, another version, another address list,
// and a message too short to be one.
func floodAdverts(sp *speaker, dst netip.Addr) ([][]byte, error) {
	vips := addrs(site.VIPsA...)
	v3 := packet.Advert{Version: 3, VRID: 9, Priority: 200, Interval: advert, Addrs: vips}
	v2 := packet.Advert{Version: 2, VRID: 9, Priority: 200, Interval: advert, Addrs: vips}
	other := packet.Advert{Version: 3, VRID: 9, Priority: 254, Interval: advert, Addrs: addrs(site.VIPsB[0])}
	var out [][]byte
	for _, a := range []packet.Advert{v3, v2, other} {
		b, err := sp.marshal(a, dst)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	out[0][6] ^= 0xff // the checksum
	return append(out, []byte{0x31, 9}), nil
}

// flood sends msgs to dst in turn, rate a second, for d (sendmmsg in
// batches), and returns how many it sent.
func (s *speaker) flood(ctx context.Context, msgs [][]byte, dst netip.Addr, rate int, d time.Duration) (int, error) {
	const batch = 64
	to := &net.IPAddr{IP: dst.AsSlice()}
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i] = ipv4.Message{Buffers: [][]byte{msgs[i%len(msgs)]}, Addr: to}
	}
	start, sent := time.Now(), 0
	for {
		elapsed := time.Since(start)
		if elapsed >= d {
			return sent, nil
		}
		if int(elapsed.Seconds()*float64(rate))-sent < batch {
			if err := sleep(ctx, time.Millisecond); err != nil {
				return sent, err
			}
			continue
		}
		n, err := s.p.WriteBatch(ms, 0)
		sent += n
		if err != nil && !errors.Is(err, syscall.ENOBUFS) {
			return sent, fmt.Errorf("send the flood to %s: %w", dst, err)
		}
	}
}

// cpuTicks reads the CPU time a process has used, user and system, in
// clock ticks (USER_HZ, 100 a second).
func cpuTicks(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command's closing parenthesis, from the state
	// (field 3): utime and stime are fields 14 and 15.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, uerr := strconv.Atoi(f[11])
	s, serr := strconv.Atoi(f[12])
	return u + s, errors.Join(uerr, serr)
}

// rejectedAll sums halb_vrrp_adverts_rejected_total of an instance over
// its reasons on node i.
func (e *env) rejectedAll(ctx context.Context, i int, instance string) (int, error) {
	sum := 0
	for _, reason := range []string{vrrp.RejectChecksum, vrrp.RejectVersion, vrrp.RejectAddressList, vrrp.RejectLength} {
		n, err := e.rejected(ctx, i, instance, reason)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// sentAdverts reads halb_vrrp_adverts_sent_total of an instance on node
// i.
func (e *env) sentAdverts(ctx context.Context, i int, instance string) (int, error) {
	return e.metric(ctx, i, `halb_vrrp_adverts_sent_total{instance="`+instance+`"}`)
}

// arrivals reads, on host h, the packets its eth0 received and the VRRP
// packets its raw sockets dropped (their receive buffers full).
func arrivals(h *netns.Host) (received, dropped int, err error) {
	out, err := h.Run("cat", "/sys/class/net/eth0/statistics/rx_packets", "/proc/net/raw")
	if err != nil {
		return 0, 0, fmt.Errorf("%s: read its packet counters: %v: %s", h.Name, err, out)
	}
	lines := strings.Split(string(out), "\n")
	if received, err = strconv.Atoi(strings.TrimSpace(lines[0])); err != nil {
		return 0, 0, fmt.Errorf("%s: eth0's received packets: %w", h.Name, err)
	}
	for _, line := range lines[1:] {
		// "sl local_address rem_address … ref pointer drops": protocol
		// 112 is the local port, 0070.
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasSuffix(f[1], ":0070") {
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return 0, 0, fmt.Errorf("%s: /proc/net/raw: %w", h.Name, err)
			}
			dropped += n
		}
	}
	return received, dropped, nil
}

func advertFlood(ctx context.Context, e *env) (string, bool, error) {
	pid, err := e.halbPid(0)
	if err != nil {
		return "", false, err
	}
	sp, err := newSpeaker(e.s.Client, site.ClientIP)
	if err != nil {
		return "", false, err
	}
	defer sp.close()
	dst := netip.MustParseAddr(strings.Split(site.LBAddrs[0][0], "/")[0])
	msgs, err := floodAdverts(sp, dst)
	if err != nil {
		return "", false, err
	}
	before, err := e.rejectedAll(ctx, 0, "web-a")
	if err != nil {
		return "", false, err
	}
	peer0, err := e.received(ctx, 0, "web-b")
	if err != nil {
		return "", false, err
	}
	master0, err := e.sentAdverts(ctx, 1, "web-b")
	if err != nil {
		return "", false, err
	}
	rx0, drop0, err := arrivals(e.s.LBs[0].Host)
	if err != nil {
		return "", false, err
	}
	ticks0, err := cpuTicks(pid)
	if err != nil {
		return "", false, err
	}
	from := time.Now()
	sent, ferr := sp.flood(ctx, msgs, dst, floodRate, floodWindow)
	ticks1, err := cpuTicks(pid)
	window := time.Since(from)
	peer1, perr := e.received(ctx, 0, "web-b")
	master1, merr := e.sentAdverts(ctx, 1, "web-b")
	if err := errors.Join(ferr, err, perr, merr); err != nil {
		return "", false, err
	}
	cores := float64(ticks1-ticks0) / 100 / window.Seconds()
	if err := sleep(ctx, advert); err != nil {
		return "", false, err
	}
	after, err := e.rejectedAll(ctx, 0, "web-a")
	if err != nil {
		return "", false, err
	}
	rx1, drop1, err := arrivals(e.s.LBs[0].Host)
	if err != nil {
		return "", false, err
	}
	// The flooded socket also carries web-b's adverts from lb-b: lb-a
	// must keep hearing enough of them.
	changes, err := e.allStateChanges(ctx, from)
	if err != nil {
		return "", false, err
	}
	counted := after - before
	return fmt.Sprintf("%d adverts sent in %s (%.0f/s), %d packets arrived at lb-a, its VRRP sockets dropped %d: lb-a used %.2f cores, counted %d as rejected and heard %d/%d of the master's (lb-b's) adverts; state changes lb-a %d, lb-b %d",
			sent, secs(window), float64(sent)/window.Seconds(), rx1-rx0, drop1-drop0, cores, counted, peer1-peer0, master1-master0, changes[0], changes[1]),
		cores < floodCores && changes == [2]int{} && counted > 0 && peer1 > peer0, nil
}

// relayWindow is how long the adverts are duplicated and reordered;
// relayDelay is how late the second copy of each advert comes: after the
// next advert.
const (
	relayWindow = 8 * time.Second
	relayDelay  = 1500 * time.Millisecond
)

// relay sends, from host h, a copy of every advert the nodes multicast at
// once and another relayDelay later, with the sender's own source
// address, until ctx is done. It returns how many copies it sent.
func relay(ctx context.Context, h *netns.Host) (int, error) {
	var c net.PacketConn
	var ifi *net.Interface
	if err := h.Do(func() (err error) {
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		c, err = net.ListenPacket("ip4:112", "0.0.0.0")
		return err
	}); err != nil {
		return 0, fmt.Errorf("%s: open a VRRP socket: %w", h.Name, err)
	}
	defer c.Close()
	r, err := ipv4.NewRawConn(c)
	if err != nil {
		return 0, fmt.Errorf("%s: a raw VRRP socket: %w", h.Name, err)
	}
	group := &net.IPAddr{IP: packet.GroupIPv4.AsSlice()}
	if err := errors.Join(r.JoinGroup(ifi, group), r.SetMulticastInterface(ifi), r.SetMulticastLoopback(false)); err != nil {
		return 0, fmt.Errorf("%s: set up the relay: %w", h.Name, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() }) // ends the reads below
	defer stop()
	nodes := map[string]bool{}
	for _, a := range site.LBAddrs {
		nodes[strings.Split(a[0], "/")[0]] = true
	}
	var copies atomic.Int64
	var late sync.WaitGroup
	defer late.Wait()
	buf := make([]byte, 1500)
	for {
		hdr, p, _, err := r.ReadFrom(buf)
		if err != nil {
			return int(copies.Load()), nil // closed: the window is over
		}
		if !nodes[hdr.Src.String()] || !hdr.Dst.Equal(group.IP) {
			continue
		}
		msg := slices.Clone(p)
		dup := &ipv4.Header{Version: ipv4.Version, Len: ipv4.HeaderLen, TOS: hdr.TOS, TotalLen: ipv4.HeaderLen + len(msg),
			TTL: 255, Protocol: packet.Protocol, Src: hdr.Src, Dst: hdr.Dst}
		if r.WriteTo(dup, msg, nil) == nil {
			copies.Add(1)
		}
		late.Go(func() {
			if sleep(ctx, relayDelay) == nil && r.WriteTo(dup, msg, nil) == nil {
				copies.Add(1)
			}
		})
	}
}

// received reads halb_vrrp_adverts_received_total of an instance from
// node i's metrics.
func (e *env) received(ctx context.Context, i int, instance string) (int, error) {
	return e.metric(ctx, i, `halb_vrrp_adverts_received_total{instance="`+instance+`"}`)
}

func duplicatedAdverts(ctx context.Context, e *env) (string, bool, error) {
	before, err := e.received(ctx, 1, "web-a")
	if err != nil {
		return "", false, err
	}
	rctx, cancel := context.WithTimeout(ctx, relayWindow)
	defer cancel()
	from := time.Now()
	type result struct {
		n   int
		err error
	}
	relayed := make(chan result, 1)
	go func() {
		n, err := relay(rctx, e.s.Client)
		relayed <- result{n, err}
	}()
	var samples, notOne int
	for rctx.Err() == nil {
		m, err := e.masters(ctx)
		if err != nil {
			cancel()
			<-relayed
			return "", false, err
		}
		samples++
		for _, nodes := range m {
			if len(nodes) != 1 {
				notOne++
				break
			}
		}
		_ = sleep(rctx, 200*time.Millisecond) // ends with the window
	}
	res := <-relayed
	if res.err != nil {
		return "", false, res.err
	}
	after, err := e.received(ctx, 1, "web-a")
	if err != nil {
		return "", false, err
	}
	changes, err := e.allStateChanges(ctx, from)
	if err != nil {
		return "", false, err
	}
	// lb-a adverts web-a once a second: lb-b hears about three times that.
	heard := after - before
	return fmt.Sprintf("%d copies of adverts sent in %v (each at once and %v late); lb-b heard %d adverts of web-a; one master per instance in %d/%d samples; state changes lb-a %d, lb-b %d",
			res.n, relayWindow, relayDelay, heard, samples-notOne, samples, changes[0], changes[1]),
		heard >= 2*int(relayWindow/advert) && notOne == 0 && changes == [2]int{}, nil
}

// metric reads one series of node i's metrics, named with its labels
// (`halb_x_total{a="b"}`); an absent series reads as 0.
func (e *env) metric(ctx context.Context, i int, series string) (int, error) {
	body, err := e.metrics(ctx, i)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, nil
}

// staller accepts connections on host h and never answers them; greeting,
// when set, is written first (an SMTP server that hangs after its 220).
// It records how long each connection stayed open from its side.
type staller struct {
	ln       net.Listener
	greeting string
	mu       sync.Mutex
	conns    []net.Conn
	held     []time.Duration // of the connections the client closed
	wg       sync.WaitGroup
}

func newStaller(h *netns.Host, addr, greeting string) (*staller, error) {
	ln, err := h.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", h.Name, addr, err)
	}
	s := &staller{ln: ln, greeting: greeting}
	s.wg.Go(s.accept)
	return s, nil
}

func (s *staller) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Go(func() {
			start := time.Now()
			if s.greeting != "" {
				_, _ = io.WriteString(c, s.greeting) // a client gone reads as closed below
			}
			_, _ = io.Copy(io.Discard, c) // until the client, or close, ends it
			s.mu.Lock()
			s.held = append(s.held, time.Since(start))
			s.mu.Unlock()
		})
	}
}

// status returns how many connections were accepted and how long those
// the client closed were held.
func (s *staller) status() (accepted int, held []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), slices.Clone(s.held)
}

// close closes the listener and every connection.
func (s *staller) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// The stalled notifiers: a webhook that never answers and an SMTP server
// that stops after its greeting, on the client; the webhook gives up
// after webhookTimeout, without retries.
var (
	stallWebhook = net.JoinHostPort(site.ClientIP, "8080")
	stallSMTP    = net.JoinHostPort(site.ClientIP, "2525")
)

const (
	webhookTimeout = 2 * time.Second
	// stallReloads are the reloads that make messages while the
	// notifiers hang: more than a notifier's queue holds (8).
	stallReloads = 12
)

// notifyConfig adds the stalled notifiers to a configuration: every event
// makes its own message.
func notifyConfig(config []byte) []byte {
	return fmt.Appendf(slices.Clone(config), `
notify:
  group_wait: 50ms
  min_interval: 50ms
  webhooks:
    - {url: "http://%s/hook", timeout: %v, retries: -1}
  smtp: {server: "%s", from: halb@example.org, to: [ops@example.org], starttls: never}
`, stallWebhook, webhookTimeout, stallSMTP)
}

func stalledNotifiers(ctx context.Context, e *env) (string, bool, error) {
	hook, err := newStaller(e.s.Client, stallWebhook, "")
	if err != nil {
		return "", false, err
	}
	defer hook.close()
	mail, err := newStaller(e.s.Client, stallSMTP, "220 stall.example.org ESMTP\r\n")
	if err != nil {
		return "", false, err
	}
	defer mail.close()
	lb := e.s.LBs[1]
	const old, new = "{address: 198.51.100.13, weight: 1}", "{address: 198.51.100.13, weight: 2}"
	conf := [2][]byte{notifyConfig(e.config[1]), notifyConfig([]byte(strings.Replace(string(e.config[1]), old, new, 1)))}
	replaced := strings.Count(readFile(lb.Log), "notifiers replaced")
	if err := os.WriteFile(lb.Config, conf[0], 0o644); err != nil {
		return "", false, err
	}
	if err := lb.Notify(syscall.SIGHUP); err != nil {
		return "", false, err
	}
	for strings.Count(readFile(lb.Log), "notifiers replaced") == replaced {
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", false, err
		}
	}
	gor0, err := e.goroutines(ctx, 1)
	if err != nil {
		return "", false, err
	}
	// Reloads make more messages than the notifiers' queues hold, and
	// then, with both notifiers hanging, the master dies.
	for n := range stallReloads {
		if err := os.WriteFile(lb.Config, conf[(n+1)%2], 0o644); err != nil {
			return "", false, err
		}
		if err := lb.Notify(syscall.SIGHUP); err != nil {
			return "", false, err
		}
		if err := sleep(ctx, 150*time.Millisecond); err != nil {
			return "", false, err
		}
	}
	from := time.Now()
	if err := e.s.LBs[0].Signal(syscall.SIGKILL, 5*time.Second); err != nil {
		return "", false, err
	}
	at, err := e.waitState(ctx, 1, "web-a", "MASTER", from, bound+5*time.Second)
	if err != nil {
		return "", false, err
	}
	took := at.Sub(from)
	if err := sleep(ctx, time.Second); err != nil {
		return "", false, err
	}
	statusErr := statusOnce(ctx, lb.Socket, time.Second)
	gor1, err := e.goroutines(ctx, 1)
	if err != nil {
		return "", false, err
	}
	var failed, dropped [2]int
	for j, name := range []string{"webhook http://" + stallWebhook + "/hook", "smtp " + stallSMTP} {
		label := `{notifier="` + name + `"}`
		if failed[j], err = e.metric(ctx, 1, "halb_notifications_failed_total"+label); err != nil {
			return "", false, err
		}
		if dropped[j], err = e.metric(ctx, 1, "halb_notifications_dropped_total"+label); err != nil {
			return "", false, err
		}
	}
	hooks, hookHeld := hook.status()
	mails, mailHeld := mail.status()
	gaveUp := len(hookHeld) > 0
	for _, d := range hookHeld {
		gaveUp = gaveUp && d >= webhookTimeout-slack && d <= webhookTimeout+slack
	}
	status := "status answered within 1 s"
	if statusErr != nil {
		status = "status did not answer: " + statusErr.Error()
	}
	text := fmt.Sprintf("lb-b master after %s; webhook: %d posts, %d given up after %v, %d failed, %d dropped; SMTP: %d connections, %d ended, %d dropped; goroutines %d→%d; %s",
		secs(took), hooks, len(hookHeld), roundAll(hookHeld), failed[0], dropped[0], mails, len(mailHeld), dropped[1], gor0, gor1, status)
	return text, took <= bound+slack && gaveUp && failed[0] > 0 && dropped[0]+dropped[1] > 0 && dropped[1] > 0 &&
		gor1 <= gor0+20 && statusErr == nil, nil
}

// roundAll rounds durations to 100 ms, for reading.
func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond)
	}
	return out
}
