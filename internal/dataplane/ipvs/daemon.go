package ipvs

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// IPVS generic netlink numbers for the sync daemons (linux/ip_vs.h).
const (
	genlVersion = 1

	cmdNewDaemon = 9
	cmdDelDaemon = 10
	cmdGetDaemon = 11

	cmdAttrDaemon = 3

	daemonAttrState       = 1
	daemonAttrMcastIfn    = 2
	daemonAttrSyncID      = 3
	daemonAttrSyncMaxlen  = 4
	daemonAttrMcastGroup  = 5
	daemonAttrMcastGroup6 = 6
	daemonAttrMcastPort   = 7
	daemonAttrMcastTTL    = 8

	stateMaster = 1
	stateBackup = 2
)

// daemonConn starts, stops and lists the kernel's sync daemons; the
// cloudflare/ipvs client has no such commands.
type daemonConn struct {
	c      *genetlink.Conn
	family uint16
}

func newDaemonConn(c *genetlink.Conn) (*daemonConn, error) {
	f, err := c.GetFamily("IPVS")
	if err != nil {
		return nil, fmt.Errorf("find generic netlink family IPVS: %w", err)
	}
	return &daemonConn{c: c, family: f.ID}, nil
}

func (d *daemonConn) start(dm Daemon) error {
	b, err := encodeDaemon(dm, true)
	if err != nil {
		return fmt.Errorf("start %s sync daemon: %w", dm.Role(), err)
	}
	if _, err := d.c.Execute(daemonMsg(cmdNewDaemon, b), d.family, flagsDo); err != nil {
		return fmt.Errorf("start %s sync daemon on %s: %w", dm.Role(), dm.Interface, err)
	}
	return nil
}

func (d *daemonConn) stop(dm Daemon) error {
	b, err := encodeDaemon(dm, false)
	if err != nil {
		return fmt.Errorf("stop %s sync daemon: %w", dm.Role(), err)
	}
	if _, err := d.c.Execute(daemonMsg(cmdDelDaemon, b), d.family, flagsDo); err != nil {
		return fmt.Errorf("stop %s sync daemon: %w", dm.Role(), err)
	}
	return nil
}

func (d *daemonConn) list() ([]Daemon, error) {
	msgs, err := d.c.Execute(daemonMsg(cmdGetDaemon, nil), d.family, flagsDump)
	if err != nil {
		return nil, fmt.Errorf("list sync daemons: %w", err)
	}
	var out []Daemon
	for _, m := range msgs {
		dm, ok, err := decodeDaemon(m.Data)
		if err != nil {
			return nil, fmt.Errorf("list sync daemons: %w", err)
		}
		if ok {
			out = append(out, dm)
		}
	}
	return out, nil
}

func daemonMsg(cmd uint8, data []byte) genetlink.Message {
	return genetlink.Message{Header: genetlink.Header{Command: cmd, Version: genlVersion}, Data: data}
}

// encodeDaemon builds the IPVS_CMD_ATTR_DAEMON attribute; a stop request
// carries only the state.
func encodeDaemon(d Daemon, full bool) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrDaemon, func(n *netlink.AttributeEncoder) error {
		state := uint32(stateMaster)
		if d.Backup {
			state = stateBackup
		}
		n.Uint32(daemonAttrState, state)
		if !full {
			return nil
		}
		n.String(daemonAttrMcastIfn, d.Interface)
		n.Uint32(daemonAttrSyncID, uint32(d.SyncID))
		if d.MaxLen > 0 {
			n.Uint16(daemonAttrSyncMaxlen, uint16(d.MaxLen))
		}
		switch {
		case d.McastGroup.Is4():
			a := d.McastGroup.As4()
			n.Bytes(daemonAttrMcastGroup, a[:])
		case d.McastGroup.Is6():
			a := d.McastGroup.As16()
			n.Bytes(daemonAttrMcastGroup6, a[:])
		}
		if d.McastPort != 0 {
			n.Bytes(daemonAttrMcastPort, binary.BigEndian.AppendUint16(nil, d.McastPort))
		}
		if d.McastTTL > 0 {
			n.Uint8(daemonAttrMcastTTL, uint8(d.McastTTL))
		}
		return nil
	})
	return ae.Encode()
}

// decodeDaemon reads one daemon of a dump; ok is false when the message
// holds none.
func decodeDaemon(b []byte) (d Daemon, ok bool, err error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return d, false, err
	}
	for ad.Next() {
		if ad.Type() != cmdAttrDaemon {
			continue
		}
		ok = true
		ad.Nested(func(n *netlink.AttributeDecoder) error {
			for n.Next() {
				switch n.Type() {
				case daemonAttrState:
					d.Backup = n.Uint32() == stateBackup
				case daemonAttrMcastIfn:
					d.Interface = n.String()
				case daemonAttrSyncID:
					d.SyncID = int(n.Uint32())
				case daemonAttrSyncMaxlen:
					d.MaxLen = int(n.Uint16())
				case daemonAttrMcastGroup, daemonAttrMcastGroup6:
					d.McastGroup, _ = netip.AddrFromSlice(n.Bytes())
				case daemonAttrMcastPort:
					if p := n.Bytes(); len(p) == 2 {
						d.McastPort = binary.BigEndian.Uint16(p)
					}
				case daemonAttrMcastTTL:
					d.McastTTL = int(n.Uint8())
				}
			}
			return nil
		})
	}
	return d, ok, ad.Err()
}
