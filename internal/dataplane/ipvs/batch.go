package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"

	cfipvs "github.com/cloudflare/ipvs"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
)

// IPVS generic netlink commands and attributes that change virtual
// services and their real servers (linux/ip_vs.h).
const (
	cmdNewService = 1
	cmdSetService = 2
	cmdDelService = 3
	cmdNewDest    = 5
	cmdSetDest    = 6
	cmdDelDest    = 7

	cmdAttrService = 1
	cmdAttrDest    = 2

	svcAttrAF        = 1
	svcAttrProtocol  = 2
	svcAttrAddr      = 3
	svcAttrPort      = 4
	svcAttrFWMark    = 5
	svcAttrSchedName = 6
	svcAttrFlags     = 7
	svcAttrTimeout   = 8
	svcAttrNetmask   = 9

	destAttrAddr       = 1
	destAttrPort       = 2
	destAttrFwdMethod  = 3
	destAttrWeight     = 4
	destAttrUThresh    = 5
	destAttrLThresh    = 6
	destAttrAddrFamily = 11
	destAttrTunType    = 13
	destAttrTunPort    = 14
	destAttrTunFlags   = 15
)

// request is one IPVS change: a command on a virtual service and, for the
// real-server commands, one of its real servers.
type request struct {
	cmd  uint8
	svc  cfipvs.Service
	dest cfipvs.Destination
}

// hasDest reports whether the command names a real server.
func (r request) hasDest() bool { return r.cmd >= cmdNewDest }

// encode returns the request's generic netlink message: header and
// attributes exactly as github.com/cloudflare/ipvs encodes the same
// request (it exports no encoder).
func (r request) encode() ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Do(cmdAttrService, func() ([]byte, error) { return encodeService(r.svc) })
	if r.hasDest() {
		ae.Do(cmdAttrDest, func() ([]byte, error) { return encodeDest(r.dest) })
	}
	b, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	return genetlink.Message{Header: genetlink.Header{Command: r.cmd, Version: genlVersion}, Data: b}.MarshalBinary()
}

func encodeService(s cfipvs.Service) ([]byte, error) {
	// The flags attribute is struct ip_vs_flags: the flags, then the mask
	// of those to set (all).
	flags := binary.NativeEndian.AppendUint32(nil, uint32(s.Flags))
	flags = append(flags, 0xff, 0xff, 0xff, 0xff)
	ae := netlink.NewAttributeEncoder()
	ae.Uint16(svcAttrAF, uint16(s.Family))
	ae.String(svcAttrSchedName, s.Scheduler)
	ae.Bytes(svcAttrFlags, flags)
	ae.Uint32(svcAttrTimeout, s.Timeout)
	switch {
	case s.Netmask.Is4():
		ae.Bytes(svcAttrNetmask, s.Netmask.AsSlice())
	case s.Netmask.Is6():
		if ones := s.Netmask.Bits(); ones >= 0 {
			ae.Bytes(svcAttrNetmask, nlenc.Uint32Bytes(uint32(ones)))
		}
	}
	if s.FWMark != 0 {
		ae.Uint32(svcAttrFWMark, s.FWMark)
	} else {
		ae.Uint16(svcAttrProtocol, uint16(s.Protocol))
		ae.Bytes(svcAttrAddr, s.Address.AsSlice())
		ae.Bytes(svcAttrPort, binary.BigEndian.AppendUint16(nil, s.Port))
	}
	return ae.Encode()
}

func encodeDest(d cfipvs.Destination) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint16(destAttrAddrFamily, uint16(d.Family))
	ae.Bytes(destAttrAddr, d.Address.AsSlice())
	ae.Bytes(destAttrPort, binary.BigEndian.AppendUint16(nil, d.Port))
	ae.Uint32(destAttrFwdMethod, uint32(d.FwdMethod))
	ae.Uint32(destAttrWeight, d.Weight)
	ae.Uint32(destAttrUThresh, d.UpperThreshold)
	ae.Uint32(destAttrLThresh, d.LowerThreshold)
	ae.Uint8(destAttrTunType, uint8(d.TunnelType))
	ae.Bytes(destAttrTunPort, binary.BigEndian.AppendUint16(nil, d.TunnelPort))
	ae.Uint16(destAttrTunFlags, uint16(d.TunnelFlags))
	return ae.Encode()
}

// batcher sends IPVS change requests many to a sendmsg, on a netlink
// socket of its own. Only the last request of a batch asks for an ack; the
// kernel acks a failing request anyway, and handles a batch's requests in
// order, so every error before the last ack names its request by sequence
// number.
type batcher struct {
	c      *netlink.Conn
	family uint16
	// maxBytes bounds a batch's size (the send buffer), maxMsgs its
	// number of requests: should each fail, their error acks must fit in
	// the receive buffer.
	maxBytes, maxMsgs int
}

// Socket buffers asked for (root may exceed the sysctl limits; the kernel
// doubles the figure), and the receive buffer space an error ack takes:
// a small skb (the request is not echoed: NETLINK_CAP_ACK).
const (
	batchBuffer = 4 << 20
	ackCost     = 1024
)

// newBatcher sizes batches to c's socket buffers, enlarged first.
func newBatcher(c *netlink.Conn, family uint16) (*batcher, error) {
	if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
		return nil, fmt.Errorf("ipvs batches: %w", err)
	}
	if err := errors.Join(c.SetWriteBuffer(batchBuffer), c.SetReadBuffer(batchBuffer)); err != nil {
		return nil, fmt.Errorf("ipvs batches: %w", err)
	}
	wb, werr := c.WriteBuffer()
	rb, rerr := c.ReadBuffer()
	if err := errors.Join(werr, rerr); err != nil {
		return nil, fmt.Errorf("ipvs batches: %w", err)
	}
	maxBytes, maxMsgs := batchLimits(wb, rb)
	return &batcher{c: c, family: family, maxBytes: maxBytes, maxMsgs: maxMsgs}, nil
}

// batchLimits derives the batch bounds from the socket buffers: half the
// send buffer (the kernel refuses a message near its size), and as many
// requests as error acks fit in half the receive buffer.
func batchLimits(writeBuf, readBuf int) (maxBytes, maxMsgs int) {
	return max(writeBuf/2, 4096), max(readBuf/2/ackCost, 1)
}

// apply sends the requests in batches and returns each one's error (nil:
// done).
func (b *batcher) apply(reqs []request) []error {
	errs := make([]error, len(reqs))
	var msgs []netlink.Message
	var idx []int // request of each message
	size := 0
	for i, r := range reqs {
		data, err := r.encode()
		if err != nil {
			errs[i] = fmt.Errorf("encode: %w", err)
			continue
		}
		n := nlmsgAlign(nlmsgHeaderLen + len(data))
		if len(msgs) > 0 && (size+n > b.maxBytes || len(msgs) == b.maxMsgs) {
			b.send(msgs, idx, errs)
			msgs, idx, size = msgs[:0], idx[:0], 0
		}
		msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(b.family), Flags: netlink.Request}, Data: data})
		idx = append(idx, i)
		size += n
	}
	if len(msgs) > 0 {
		b.send(msgs, idx, errs)
	}
	return errs
}

const nlmsgHeaderLen = 16

func nlmsgAlign(n int) int { return (n + 3) &^ 3 }

// send writes one batch and reads its acks until the last request's.
func (b *batcher) send(msgs []netlink.Message, idx []int, errs []error) {
	msgs[len(msgs)-1].Header.Flags |= netlink.Acknowledge
	sent, err := b.c.SendMessages(msgs)
	if err != nil {
		for _, i := range idx {
			errs[i] = err
		}
		return
	}
	first, last := sent[0].Header.Sequence, sent[len(sent)-1].Header.Sequence
	for {
		replies, err := b.c.Receive()
		var oe *netlink.OpError
		if errors.As(err, &oe) && oe.Sequence != 0 {
			// An error ack; one for another batch (seq outside) is stale.
			if k := oe.Sequence - first; k < uint32(len(sent)) {
				errs[idx[k]] = err
			}
			if oe.Sequence == last {
				return
			}
			continue
		}
		if err != nil {
			// The socket failed (acks lost): what became of the requests
			// not yet answered is unknown.
			for _, i := range idx {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("no ack: %w", err)
				}
			}
			return
		}
		for _, m := range replies {
			if m.Header.Type == netlink.Error && m.Header.Sequence == last {
				return
			}
		}
	}
}
