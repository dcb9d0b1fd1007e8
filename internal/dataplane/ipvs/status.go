package ipvs

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	cfipvs "github.com/cloudflare/ipvs"

	"halb/internal/dataplane"
)

// ServiceStatus is what the kernel has for one virtual service.
type ServiceStatus struct {
	Key         dataplane.ServiceKey `json:"key"`
	Scheduler   string               `json:"scheduler"`
	Flags       []string             `json:"flags,omitempty"`
	Persistence time.Duration        `json:"persistence,omitempty"`
	Netmask     int                  `json:"netmask,omitempty"`
	// Managed is true for services halb created or took over.
	Managed     bool         `json:"managed"`
	Connections uint64       `json:"connections"`
	InBytes     uint64       `json:"in_bytes"`
	OutBytes    uint64       `json:"out_bytes"`
	Reals       []RealStatus `json:"reals"`
}

// RealStatus is what the kernel has for one real server.
type RealStatus struct {
	dataplane.Real
	ActiveConns     uint32 `json:"active_conns"`
	InactiveConns   uint32 `json:"inactive_conns"`
	PersistentConns uint32 `json:"persistent_conns"`
}

// Status reads every virtual service of the kernel with its counters.
func (d *Dataplane) Status() ([]ServiceStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.connect(); err != nil {
		return nil, err
	}
	all, err := d.k.Services()
	if err != nil {
		return nil, fmt.Errorf("ipvs status: list services: %w", err)
	}
	svcs := make([]cfipvs.Service, len(all))
	for i, ks := range all {
		svcs[i] = ks.Service
	}
	dests, err := d.k.Destinations(svcs)
	if err != nil {
		return nil, fmt.Errorf("ipvs status: %w", err)
	}
	out := make([]ServiceStatus, 0, len(all))
	for i, ks := range all {
		vs := fromKernel(ks.Service)
		st := ServiceStatus{Key: vs.Key, Scheduler: vs.Scheduler, Flags: vs.Flags, Persistence: vs.Persistence,
			Netmask: vs.Netmask, Managed: d.owned.has(vs.Key), Connections: ks.Stats64.Connections,
			InBytes: ks.Stats64.IncomingBytes, OutBytes: ks.Stats64.OutgoingBytes, Reals: []RealStatus{}}
		for _, dst := range dests[i] {
			st.Reals = append(st.Reals, RealStatus{Real: realFromKernel(dst.Destination), ActiveConns: dst.ActiveConnections,
				InactiveConns: dst.InactiveConnections, PersistentConns: dst.PersistentConnections})
		}
		out = append(out, st)
	}
	return out, nil
}

// SyncDaemons lists the kernel's running sync daemons.
func (d *Dataplane) SyncDaemons() ([]Daemon, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.connect(); err != nil {
		return nil, err
	}
	return d.k.Daemons()
}

// Conn is one entry of the kernel's IPVS connection table.
type Conn struct {
	Protocol string         `json:"protocol"`
	Client   netip.AddrPort `json:"client"`
	Virtual  netip.AddrPort `json:"virtual"`
	Real     netip.AddrPort `json:"real"`
	State    string         `json:"state"`
	Expires  time.Duration  `json:"expires"`
}

// Template reports whether the entry is a persistence template rather
// than a connection (a connection never has client port 0). A fwmark
// service's template has protocol "ip" and the mark in Virtual's address.
func (c Conn) Template() bool { return c.Client.Port() == 0 }

// ConnTablePath is the kernel's IPVS connection table (/proc/net/ip_vs_conn)
// of the reading thread's network namespace.
const ConnTablePath = "/proc/thread-self/net/ip_vs_conn"

// Conns reads the kernel's connection table of the data plane's
// namespace.
func (d *Dataplane) Conns() ([]Conn, error) {
	var f *os.File
	if err := inNetNS(d.netns, func() (err error) { f, err = os.Open(ConnTablePath); return err }); err != nil {
		return nil, fmt.Errorf("read ipvs connections: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	return ParseConns(f)
}

// ParseConns parses the text of /proc/net/ip_vs_conn.
func ParseConns(r io.Reader) ([]Conn, error) {
	var out []Conn
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || f[0] == "Pro" {
			continue
		}
		var c Conn
		c.Protocol, c.State = strings.ToLower(f[0]), f[7]
		var err error
		for i, ap := range []*netip.AddrPort{&c.Client, &c.Virtual, &c.Real} {
			if *ap, err = parseConnAddr(f[1+2*i], f[2+2*i]); err != nil {
				return nil, fmt.Errorf("parse ipvs connection %q: %w", sc.Text(), err)
			}
		}
		secs, err := strconv.Atoi(f[8])
		if err != nil {
			return nil, fmt.Errorf("parse ipvs connection %q: %w", sc.Text(), err)
		}
		c.Expires = time.Duration(secs) * time.Second
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read ipvs connections: %w", err)
	}
	return out, nil
}

// parseConnAddr reads an address (8 hex digits for IPv4, written IPv6
// otherwise) and a port in hex.
func parseConnAddr(addr, port string) (netip.AddrPort, error) {
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(addr) == 8 && !strings.Contains(addr, ":") {
		b, err := hex.DecodeString(addr)
		if err != nil {
			return netip.AddrPort{}, err
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), uint16(p)), nil
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}
