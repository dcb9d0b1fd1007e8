package ipvs

import (
	"cmp"
	"fmt"
	"time"

	cfipvs "github.com/cloudflare/ipvs"
	"github.com/cloudflare/ipvs/netmask"

	"halb/internal/dataplane"
)

// Scheduler flag names, as ipvsadm spells them, and their kernel bits.
// The meaning of the three scheduler bits depends on the scheduler; the
// generic names flag-1..3 work for any.
var schedFlags = map[string]cfipvs.Flags{
	"flag-1": cfipvs.ServiceSchedulerOpt1, "flag-2": cfipvs.ServiceSchedulerOpt2, "flag-3": cfipvs.ServiceSchedulerOpt3,
	"sh-fallback": cfipvs.ServiceSchedulerOpt1, "sh-port": cfipvs.ServiceSchedulerOpt2,
	"mh-fallback": cfipvs.ServiceSchedulerOpt1, "mh-port": cfipvs.ServiceSchedulerOpt2,
}

// flagNames names the scheduler bits of a service the way the
// configuration does for its scheduler.
func flagNames(sched string, f cfipvs.Flags) []string {
	var out []string
	for i, bit := range []cfipvs.Flags{cfipvs.ServiceSchedulerOpt1, cfipvs.ServiceSchedulerOpt2, cfipvs.ServiceSchedulerOpt3} {
		if f&bit == 0 {
			continue
		}
		name := fmt.Sprintf("flag-%d", i+1)
		if (sched == "sh" || sched == "mh") && i < 2 {
			name = sched + []string{"-fallback", "-port"}[i]
		}
		out = append(out, name)
	}
	return out
}

var protocols = map[string]cfipvs.Protocol{"tcp": cfipvs.TCP, "udp": cfipvs.UDP, "sctp": cfipvs.SCTP}

// knownProtocol reports whether IPVS balances a protocol (without a map
// lookup: it is asked for every service of every state).
func knownProtocol(name string) bool { return name == "tcp" || name == "udp" || name == "sctp" }

// forwardMethod is the kernel's forwarding method of a configuration name.
func forwardMethod(name string) (cfipvs.ForwardType, bool) {
	switch name {
	case "dr":
		return cfipvs.DirectRoute, true
	case "nat":
		return cfipvs.Masquerade, true
	case "tun":
		return cfipvs.Tunnel, true
	}
	return 0, false
}

var tunnelTypes = map[dataplane.TunnelType]cfipvs.TunnelType{dataplane.IPIP: cfipvs.IPIP, dataplane.GUE: cfipvs.GUE, dataplane.GRE: cfipvs.GRE}

var tunnelChecksums = map[dataplane.TunnelChecksum]cfipvs.TunnelFlags{
	dataplane.NoChecksum: cfipvs.TunnelEncapNoChecksum, dataplane.Checksum: cfipvs.TunnelEncapChecksum,
	dataplane.RemoteChecksum: cfipvs.TunnelEncapRemoteChecksum,
}

// normalizeTunnel spells out a real's tunnel as the kernel reports it
// (ipip without checksum unless said otherwise; nothing for the other
// forwarding methods) and checks that the kernel knows it.
func normalizeTunnel(r *dataplane.Real) error {
	if r.Forward != "tun" {
		r.Tunnel = dataplane.Tunnel{}
		return nil
	}
	r.Tunnel.Type = cmp.Or(r.Tunnel.Type, dataplane.IPIP)
	r.Tunnel.Checksum = cmp.Or(r.Tunnel.Checksum, dataplane.NoChecksum)
	if r.Tunnel.Type != dataplane.GUE {
		r.Tunnel.Port = 0
	}
	if _, ok := tunnelTypes[r.Tunnel.Type]; !ok {
		return fmt.Errorf("real %s: unknown tunnel type %s", r.AddrPort(), r.Tunnel.Type)
	}
	if _, ok := tunnelChecksums[r.Tunnel.Checksum]; !ok {
		return fmt.Errorf("real %s: unknown tunnel checksum %s", r.AddrPort(), r.Tunnel.Checksum)
	}
	return nil
}

// tunnelFromKernel reads a kernel tunnel; what halb has no name for reads
// as unset, so that it differs from anything wanted.
func tunnelFromKernel(d cfipvs.Destination) dataplane.Tunnel {
	var t dataplane.Tunnel
	for typ, k := range tunnelTypes {
		if k == d.TunnelType {
			t.Type = typ
		}
	}
	for c, f := range tunnelChecksums {
		if f == d.TunnelFlags {
			t.Checksum = c
		}
	}
	if t.Type == dataplane.GUE {
		t.Port = d.TunnelPort
	}
	return t
}

// forwardName names a kernel forwarding method the way the configuration
// does ("fwd-<kernel name>" for one it has no name for).
func forwardName(f cfipvs.ForwardType) string {
	switch f {
	case cfipvs.DirectRoute:
		return "dr"
	case cfipvs.Masquerade:
		return "nat"
	case cfipvs.Tunnel:
		return "tun"
	}
	return "fwd-" + f.String()
}

// normalize puts a wanted service in the form the kernel reports it:
// default netmask spelled out, flags named for the scheduler and sorted.
// The reals are checked, not copied.
func normalize(s dataplane.VirtualService) (dataplane.VirtualService, error) {
	var bits cfipvs.Flags
	for _, f := range s.Flags {
		b, ok := schedFlags[f]
		if !ok {
			return s, fmt.Errorf("service %s: unknown scheduler flag %q", s.Key, f)
		}
		bits |= b
	}
	s.Flags = flagNames(s.Scheduler, bits)
	if s.Persistence > 0 {
		s.Persistence = s.Persistence.Round(time.Second)
		if s.Netmask == 0 {
			s.Netmask = maxBits(s.Key.Family)
		}
	} else {
		s.Netmask = 0
	}
	if s.Key.Mark == 0 && !knownProtocol(s.Key.Protocol) {
		return s, fmt.Errorf("service %s: unknown protocol %q", s.Key, s.Key.Protocol)
	}
	for _, r := range s.Reals {
		if _, ok := forwardMethod(r.Forward); !ok {
			return s, fmt.Errorf("service %s: real %s: unknown forwarding method %q", s.Key, r.AddrPort(), r.Forward)
		}
	}
	return s, nil
}

func maxBits(family int) int {
	if family == 6 {
		return 128
	}
	return 32
}

func addressFamily(family int) cfipvs.AddressFamily {
	if family == 6 {
		return cfipvs.INET6
	}
	return cfipvs.INET
}

// toKernel converts a normalized service (without its reals).
func toKernel(s dataplane.VirtualService) cfipvs.Service {
	k := cfipvs.Service{
		Family:    addressFamily(s.Key.Family),
		Scheduler: s.Scheduler,
		FWMark:    s.Key.Mark,
		Netmask:   netmask.MaskFrom(maxBits(s.Key.Family), maxBits(s.Key.Family)),
	}
	if s.Key.Mark == 0 {
		k.Protocol = protocols[s.Key.Protocol]
		k.Address = s.Key.Addr
		k.Port = s.Key.Port
	}
	for _, f := range s.Flags {
		k.Flags |= schedFlags[f]
	}
	if s.Persistence > 0 {
		k.Flags |= cfipvs.ServicePersistent
		k.Timeout = uint32(s.Persistence / time.Second)
		k.Netmask = netmask.MaskFrom(s.Netmask, maxBits(s.Key.Family))
	}
	return k
}

// keyOf identifies a kernel service.
func keyOf(k cfipvs.Service) dataplane.ServiceKey {
	key := dataplane.ServiceKey{Family: 4, Mark: k.FWMark}
	if k.Family == cfipvs.INET6 {
		key.Family = 6
	}
	if k.FWMark == 0 {
		key.Addr, key.Port = k.Address, k.Port
		for name, p := range protocols {
			if p == k.Protocol {
				key.Protocol = name
			}
		}
	}
	return key
}

// fromKernel converts a kernel service (without its reals) to the
// normalized form.
func fromKernel(k cfipvs.Service) dataplane.VirtualService {
	s := dataplane.VirtualService{Key: keyOf(k), Scheduler: k.Scheduler, Flags: flagNames(k.Scheduler, k.Flags)}
	if k.Flags&cfipvs.ServicePersistent != 0 {
		s.Persistence = time.Duration(k.Timeout) * time.Second
		s.Netmask = k.Netmask.Bits()
	}
	return s
}

func realToKernel(r dataplane.Real) cfipvs.Destination {
	fam := cfipvs.INET
	if r.Addr.Is6() {
		fam = cfipvs.INET6
	}
	fwd, _ := forwardMethod(r.Forward)
	d := cfipvs.Destination{Address: r.Addr, Port: r.Port, Family: fam, Weight: uint32(r.Weight), FwdMethod: fwd,
		UpperThreshold: r.MaxConns, LowerThreshold: r.MinConns}
	if fwd == cfipvs.Tunnel {
		d.TunnelType, d.TunnelPort, d.TunnelFlags = tunnelTypes[r.Tunnel.Type], r.Tunnel.Port, tunnelChecksums[r.Tunnel.Checksum]
	}
	return d
}

func realFromKernel(d cfipvs.Destination) dataplane.Real {
	r := dataplane.Real{Addr: d.Address, Port: d.Port, Weight: int(d.Weight), Forward: forwardName(d.FwdMethod),
		MaxConns: d.UpperThreshold, MinConns: d.LowerThreshold}
	if d.FwdMethod == cfipvs.Tunnel {
		r.Tunnel = tunnelFromKernel(d)
	}
	return r
}
