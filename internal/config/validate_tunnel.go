package config

import "fmt"

// tunnels checks each service's tunnel block: only with forward: tun, a
// type the kernel knows, GUE's port, and the checksum modes each type
// takes.
func (v *validator) tunnels() {
	for i, s := range v.c.Services {
		p := fmt.Sprintf("services[%d].tunnel", i)
		t := s.Tunnel
		if t == (Tunnel{}) {
			continue
		}
		if s.Forward != "tun" {
			v.errorf(p, "%s: a tunnel is set but service %q forwards with %s; tunnel goes with forward: tun", p, s.Name, s.Forward)
			continue
		}
		switch t.Type {
		case "", "ipip", "gre":
			if t.Port != 0 {
				v.errorf(p+".port", "%s.port: only a gue tunnel has a port", p)
			}
		case "gue":
			if t.Port == 0 {
				v.errorf(p+".port", "%s.port: a gue tunnel needs the UDP port the real servers decapsulate on", p)
			}
		default:
			v.errorf(p+".type", "%s.type: %q is not one of ipip, gue, gre", p, t.Type)
			continue
		}
		switch t.Checksum {
		case "", "none":
		case "csum":
			if t.Type == "" || t.Type == "ipip" {
				v.errorf(p+".checksum", "%s.checksum: an ipip tunnel has no checksum; use gue or gre", p)
			}
		case "remcsum":
			if t.Type != "gue" {
				v.errorf(p+".checksum", "%s.checksum: remcsum (remote checksum offload) needs a gue tunnel", p)
			}
		default:
			v.errorf(p+".checksum", "%s.checksum: %q is not one of none, csum, remcsum", p, t.Checksum)
		}
	}
}
