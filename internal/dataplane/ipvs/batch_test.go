package ipvs

import (
	"errors"
	"iter"
	"net/netip"
	"reflect"
	"syscall"
	"testing"

	cfipvs "github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
	"github.com/mdlayher/netlink/nltest"
)

// ackSocket is a netlink socket whose peer answers as the kernel does: the
// messages of one sendmsg in order, an ack for each failing message and
// for each that asks, one datagram per ack, the request not echoed
// (NETLINK_CAP_ACK).
type ackSocket struct {
	// fail returns the errno of a request, 0 for success.
	fail    func(m netlink.Message) int
	sends   [][]netlink.Message
	queue   []netlink.Message
	recvErr error // returned once the queue is empty
	drop    bool  // lose the acks
}

func (s *ackSocket) Close() error                 { return nil }
func (s *ackSocket) Send(m netlink.Message) error { return s.SendMessages([]netlink.Message{m}) }

func (s *ackSocket) SendMessages(msgs []netlink.Message) error {
	s.sends = append(s.sends, msgs)
	for _, m := range msgs {
		if s.drop {
			break
		}
		errno := s.fail(m)
		if errno == 0 && m.Header.Flags&netlink.Acknowledge == 0 {
			continue
		}
		h := m.Header
		h.Length = nlmsgHeaderLen
		ack := netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID},
			Data: append(nlenc.Int32Bytes(int32(-errno)), headerBytes(h)...)}
		if errno != 0 {
			ack.Header.Flags = netlink.Capped
		}
		s.queue = append(s.queue, ack)
	}
	return nil
}

func headerBytes(h netlink.Header) []byte {
	b, err := netlink.Message{Header: h}.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b[:nlmsgHeaderLen]
}

func (s *ackSocket) Receive() ([]netlink.Message, error) {
	var out []netlink.Message
	for m, err := range s.ReceiveIter() {
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (s *ackSocket) ReceiveIter() iter.Seq2[netlink.Message, error] {
	return func(yield func(netlink.Message, error) bool) {
		if len(s.queue) == 0 {
			err := s.recvErr
			if err == nil {
				err = syscall.EAGAIN // a real socket would block forever
			}
			yield(netlink.Message{}, err)
			return
		}
		m := s.queue[0]
		s.queue = s.queue[1:]
		yield(m, nil)
	}
}

func testBatcher(s *ackSocket, maxBytes, maxMsgs int) *batcher {
	return &batcher{c: netlink.NewConn(s, nltest.PID), family: 42, maxBytes: maxBytes, maxMsgs: maxMsgs}
}

var (
	httpSvc = cfipvs.Service{Family: cfipvs.INET, Protocol: cfipvs.TCP, Address: vip4, Port: 80, Scheduler: "wlc",
		Netmask: netmask.MaskFrom(32, 32)}
	markSvc = cfipvs.Service{Family: cfipvs.INET6, FWMark: 7, Scheduler: "mh", Flags: cfipvs.ServicePersistent | cfipvs.ServiceSchedulerOpt2,
		Timeout: 300, Netmask: netmask.MaskFrom(64, 128)}
	drDest  = cfipvs.Destination{Family: cfipvs.INET, Address: rs1, Port: 80, Weight: 3, FwdMethod: cfipvs.DirectRoute}
	gueDest = cfipvs.Destination{Family: cfipvs.INET6, Address: rs6, Port: 443, Weight: 1, FwdMethod: cfipvs.Tunnel,
		UpperThreshold: 100, LowerThreshold: 50, TunnelType: cfipvs.GUE, TunnelPort: 6080, TunnelFlags: cfipvs.TunnelEncapChecksum}
)

func attrs(as ...netlink.Attribute) []byte { return nltest.MustMarshalAttributes(as) }

// TestRequestEncoding checks each request byte for byte against the
// layout github.com/cloudflare/ipvs sends (its packService and packDest,
// in their order, nested attributes without the nested flag);
// TestGuestBatchBytes compares with what it really sends.
func TestRequestEncoding(t *testing.T) {
	svc4 := attrs(
		netlink.Attribute{Type: svcAttrAF, Data: []byte{2, 0}},
		netlink.Attribute{Type: svcAttrSchedName, Data: []byte("wlc\x00")},
		netlink.Attribute{Type: svcAttrFlags, Data: []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}},
		netlink.Attribute{Type: svcAttrTimeout, Data: []byte{0, 0, 0, 0}},
		netlink.Attribute{Type: svcAttrNetmask, Data: []byte{0xff, 0xff, 0xff, 0xff}},
		netlink.Attribute{Type: svcAttrProtocol, Data: []byte{6, 0}},
		netlink.Attribute{Type: svcAttrAddr, Data: vip4.AsSlice()},
		netlink.Attribute{Type: svcAttrPort, Data: []byte{0, 80}},
	)
	svcMark := attrs(
		netlink.Attribute{Type: svcAttrAF, Data: []byte{10, 0}},
		netlink.Attribute{Type: svcAttrSchedName, Data: []byte("mh\x00")},
		netlink.Attribute{Type: svcAttrFlags, Data: []byte{0x11, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}},
		netlink.Attribute{Type: svcAttrTimeout, Data: []byte{44, 1, 0, 0}},
		netlink.Attribute{Type: svcAttrNetmask, Data: []byte{64, 0, 0, 0}},
		netlink.Attribute{Type: svcAttrFWMark, Data: []byte{7, 0, 0, 0}},
	)
	dr := attrs(
		netlink.Attribute{Type: destAttrAddrFamily, Data: []byte{2, 0}},
		netlink.Attribute{Type: destAttrAddr, Data: rs1.AsSlice()},
		netlink.Attribute{Type: destAttrPort, Data: []byte{0, 80}},
		netlink.Attribute{Type: destAttrFwdMethod, Data: []byte{3, 0, 0, 0}},
		netlink.Attribute{Type: destAttrWeight, Data: []byte{3, 0, 0, 0}},
		netlink.Attribute{Type: destAttrUThresh, Data: []byte{0, 0, 0, 0}},
		netlink.Attribute{Type: destAttrLThresh, Data: []byte{0, 0, 0, 0}},
		netlink.Attribute{Type: destAttrTunType, Data: []byte{0}},
		netlink.Attribute{Type: destAttrTunPort, Data: []byte{0, 0}},
		netlink.Attribute{Type: destAttrTunFlags, Data: []byte{0, 0}},
	)
	gue := attrs(
		netlink.Attribute{Type: destAttrAddrFamily, Data: []byte{10, 0}},
		netlink.Attribute{Type: destAttrAddr, Data: rs6.AsSlice()},
		netlink.Attribute{Type: destAttrPort, Data: []byte{1, 0xbb}},
		netlink.Attribute{Type: destAttrFwdMethod, Data: []byte{2, 0, 0, 0}},
		netlink.Attribute{Type: destAttrWeight, Data: []byte{1, 0, 0, 0}},
		netlink.Attribute{Type: destAttrUThresh, Data: []byte{100, 0, 0, 0}},
		netlink.Attribute{Type: destAttrLThresh, Data: []byte{50, 0, 0, 0}},
		netlink.Attribute{Type: destAttrTunType, Data: []byte{1}},
		netlink.Attribute{Type: destAttrTunPort, Data: []byte{0x17, 0xc0}},
		netlink.Attribute{Type: destAttrTunFlags, Data: []byte{1, 0}},
	)
	genl := func(cmd uint8, as ...netlink.Attribute) []byte { return append([]byte{cmd, 1, 0, 0}, attrs(as...)...) }
	for _, tc := range []struct {
		req  request
		want []byte
	}{
		{request{cmd: cmdNewService, svc: httpSvc}, genl(cmdNewService, netlink.Attribute{Type: cmdAttrService, Data: svc4})},
		{request{cmd: cmdSetService, svc: markSvc}, genl(cmdSetService, netlink.Attribute{Type: cmdAttrService, Data: svcMark})},
		{request{cmd: cmdDelService, svc: httpSvc}, genl(cmdDelService, netlink.Attribute{Type: cmdAttrService, Data: svc4})},
		{request{cmd: cmdNewDest, svc: httpSvc, dest: drDest},
			genl(cmdNewDest, netlink.Attribute{Type: cmdAttrService, Data: svc4}, netlink.Attribute{Type: cmdAttrDest, Data: dr})},
		{request{cmd: cmdSetDest, svc: markSvc, dest: gueDest},
			genl(cmdSetDest, netlink.Attribute{Type: cmdAttrService, Data: svcMark}, netlink.Attribute{Type: cmdAttrDest, Data: gue})},
		{request{cmd: cmdDelDest, svc: httpSvc, dest: drDest},
			genl(cmdDelDest, netlink.Attribute{Type: cmdAttrService, Data: svc4}, netlink.Attribute{Type: cmdAttrDest, Data: dr})},
	} {
		got, err := tc.req.encode()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("command %d:\n got %x\nwant %x", tc.req.cmd, got, tc.want)
		}
	}
}

// siteRequests are n requests on distinct real servers of the http service.
func siteRequests(n int) []request {
	reqs := make([]request, n)
	for i := range reqs {
		d := drDest
		d.Address = netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		reqs[i] = request{cmd: cmdNewDest, svc: httpSvc, dest: d}
	}
	return reqs
}

// destOf decodes the real server's address of a request (test helper).
func destOf(t *testing.T, m netlink.Message) netip.Addr {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	var a netip.Addr
	for ad.Next() {
		if ad.Type() == cmdAttrDest {
			ad.Nested(func(n *netlink.AttributeDecoder) error {
				for n.Next() {
					if n.Type() == destAttrAddr {
						a, _ = netip.AddrFromSlice(n.Bytes())
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		t.Fatal(err)
	}
	return a
}

// A batch is one sendmsg; only its last request asks for an ack; each
// error the kernel acks lands on its own request.
func TestBatchAttributesErrors(t *testing.T) {
	reqs := siteRequests(5)
	failing := map[netip.Addr]int{reqs[1].dest.Address: int(syscall.EEXIST), reqs[3].dest.Address: int(syscall.ESRCH)}
	s := &ackSocket{}
	s.fail = func(m netlink.Message) int { return failing[destOf(t, m)] }
	errs := testBatcher(s, 1<<20, 100).apply(reqs)
	if len(s.sends) != 1 || len(s.sends[0]) != 5 {
		t.Fatalf("%d sends, want the 5 requests in one", len(s.sends))
	}
	for i, m := range s.sends[0] {
		want := netlink.Request
		if i == 4 {
			want |= netlink.Acknowledge
		}
		if m.Header.Flags != want || m.Header.Type != 42 {
			t.Errorf("message %d: type %d flags %s, want 42 %s", i, m.Header.Type, m.Header.Flags, want)
		}
		if enc, _ := reqs[i].encode(); !reflect.DeepEqual(m.Data, enc) {
			t.Errorf("message %d carries %x, want request %d %x", i, m.Data, i, enc)
		}
	}
	for i, err := range errs {
		switch i {
		case 1:
			if !errors.Is(err, syscall.EEXIST) {
				t.Errorf("request 1: %v, want EEXIST", err)
			}
		case 3:
			if !errors.Is(err, syscall.ESRCH) {
				t.Errorf("request 3: %v, want ESRCH", err)
			}
		default:
			if err != nil {
				t.Errorf("request %d: %v, want success", i, err)
			}
		}
	}
	if len(s.queue) != 0 {
		t.Errorf("%d acks left unread", len(s.queue))
	}

	// The last request failing ends the batch too.
	failing = map[netip.Addr]int{reqs[4].dest.Address: int(syscall.ENOENT)}
	errs = testBatcher(s, 1<<20, 100).apply(reqs)
	if !errors.Is(errs[4], syscall.ENOENT) || errs[0] != nil || len(s.queue) != 0 {
		t.Errorf("last request failing: %v, %d acks unread", errs, len(s.queue))
	}
}

// Batches are split at the request and byte bounds; each ends with a
// request asking for an ack.
func TestBatchSplitsAtLimits(t *testing.T) {
	s := &ackSocket{fail: func(netlink.Message) int { return 0 }}
	reqs := siteRequests(7)
	if errs := testBatcher(s, 1<<20, 3).apply(reqs); !reflect.DeepEqual(errs, make([]error, 7)) {
		t.Fatal(errs)
	}
	sizes := func() []int {
		var out []int
		for _, b := range s.sends {
			out = append(out, len(b))
			if b[len(b)-1].Header.Flags&netlink.Acknowledge == 0 {
				t.Errorf("a batch of %d ends without an ack request", len(b))
			}
		}
		s.sends = nil
		return out
	}
	if got := sizes(); !reflect.DeepEqual(got, []int{3, 3, 1}) {
		t.Errorf("batches of at most 3: %v", got)
	}
	enc, _ := reqs[0].encode()
	one := nlmsgAlign(nlmsgHeaderLen + len(enc))
	testBatcher(s, 2*one+one/2, 100).apply(reqs)
	if got := sizes(); !reflect.DeepEqual(got, []int{2, 2, 2, 1}) {
		t.Errorf("batches of at most %d bytes (2.5 requests): %v", 2*one+one/2, got)
	}
}

// An ack of an earlier batch is not taken for one of this batch; acks
// lost (the socket reports ENOBUFS) leave every unanswered request failed.
func TestBatchStaleAndLostAcks(t *testing.T) {
	s := &ackSocket{fail: func(netlink.Message) int { return int(syscall.EEXIST) }}
	b := testBatcher(s, 1<<20, 100)
	s.queue = []netlink.Message{{Header: netlink.Header{Type: netlink.Error, Sequence: 1},
		Data: append(nlenc.Int32Bytes(-int32(syscall.EPERM)), headerBytes(netlink.Header{Length: nlmsgHeaderLen, Sequence: 1})...)}}
	for i, err := range b.apply(siteRequests(3)) {
		if !errors.Is(err, syscall.EEXIST) {
			t.Errorf("request %d: %v, want EEXIST (not the stale EPERM)", i, err)
		}
	}

	s.fail = func(netlink.Message) int { return 0 }
	s.drop, s.recvErr = true, syscall.ENOBUFS
	for i, err := range b.apply(siteRequests(3)) {
		if !errors.Is(err, syscall.ENOBUFS) {
			t.Errorf("request %d: %v, want ENOBUFS", i, err)
		}
	}
}
