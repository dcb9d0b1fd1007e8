package ipvs

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"halb/internal/dataplane"
)

// wantedSysctls lists the sysctls a state needs: IPVS expires the
// connections of removed servers and the persistence templates of
// inhibited ones (so clients move on), and NAT needs forwarding and
// conntrack (so nftables rules see IPVS's NATed connections). With
// sloppy, a TCP or SCTP packet of a flow IPVS has not seen (one the
// router's ECMP moved here mid-stream) creates a connection entry, so
// every node behind the same router forwards it.
func wantedSysctls(s dataplane.State, sloppy bool) map[string]string {
	want := map[string]string{
		"net/ipv4/vs/expire_nodest_conn":        "1",
		"net/ipv4/vs/expire_quiescent_template": "1",
	}
	if sloppy {
		want["net/ipv4/vs/sloppy_tcp"] = "1"
		want[sloppySCTP] = "1"
	}
	for _, vs := range s.Services {
		for _, r := range vs.Reals {
			if r.Forward != "nat" {
				continue
			}
			want["net/ipv4/vs/conntrack"] = "1"
			if vs.Key.Family == 6 {
				want["net/ipv6/conf/all/forwarding"] = "1"
			} else {
				want["net/ipv4/ip_forward"] = "1"
			}
		}
	}
	return want
}

// sloppySCTP exists only where IPVS has SCTP support.
const sloppySCTP = "net/ipv4/vs/sloppy_sctp"

// setSysctls sets the sysctls the state needs that are not yet set.
// Sysctls are never reset: a NAT service gone does not switch off
// forwarding that other software may rely on.
func (d *Dataplane) setSysctls(s dataplane.State) []error {
	if d.procSys == "" {
		return nil
	}
	var errs []error
	if err := inNetNS(d.netns, func() error { errs = d.writeSysctls(s); return nil }); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func (d *Dataplane) writeSysctls(s dataplane.State) []error {
	var errs []error
	for name, v := range wantedSysctls(s, d.sloppy) {
		if d.sysctl[name] == v {
			continue
		}
		path := filepath.Join(d.procSys, name)
		cur, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) && name == sloppySCTP {
			// A kernel without IPVS's SCTP support has no SCTP services
			// to be sloppy about: nothing to set.
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read sysctl %s: %w", dotted(name), err))
			continue
		}
		if strings.TrimSpace(string(cur)) != v {
			if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("set sysctl %s=%s: %w", dotted(name), v, err))
				continue
			}
			now, err := os.ReadFile(path)
			if err != nil {
				errs = append(errs, fmt.Errorf("read back sysctl %s: %w", dotted(name), err))
				continue
			}
			if got := strings.TrimSpace(string(now)); got != v {
				errs = append(errs, fmt.Errorf("set sysctl %s=%s: reads back %s", dotted(name), v, got))
				continue
			}
			d.log.Info("sysctl set", "name", dotted(name), "value", v, "was", strings.TrimSpace(string(cur)))
		}
		d.sysctl[name] = v
	}
	return errs
}

// Sysctls reports the sysctls halb set and their values ("net.ipv4.vs.conntrack": "1").
func (d *Dataplane) Sysctls() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]string, len(d.sysctl))
	for name, v := range maps.All(d.sysctl) {
		out[dotted(name)] = v
	}
	return out
}

func dotted(name string) string { return strings.ReplaceAll(name, "/", ".") }
