package ipvs

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
	"halb/internal/lab/vm"
)

// siteWithNAT is the seed's site plus a NAT service without a mark, with
// a scheduler flag and a real-server port of its own.
func siteWithNAT(t testing.TB) *config.Config {
	return siteConfig(t, "\npools:\n", `
  - name: dns
    protocol: udp
    vips: [192.0.2.9, 192.0.2.10]
    ports: [53]
    mark: none
    scheduler: sh
    scheduler_flags: [sh-port]
    forward: nat
    pool: dns

pools:
  dns:
    servers:
      - {address: 198.51.100.21, port: 5353, weight: 2}
      - {address: 198.51.100.22, port: 5353, weight: 1}
`)
}

// keepalivedConf writes a configuration as keepalived.conf: the same
// virtual services, marks, schedulers, persistence and real servers.
func keepalivedConf(cfg *config.Config) string {
	var b strings.Builder
	b.WriteString("global_defs {\n  router_id " + cfg.Node + "\n}\n")
	kinds := map[string]string{"dr": "DR", "nat": "NAT", "tun": "TUN"}
	for _, s := range cfg.Services {
		var heads []string
		switch s.Mark.Mode {
		case config.MarkShared:
			heads = append(heads, fmt.Sprintf("fwmark %d", config.DeriveMark(s.Name, netip.Addr{})))
		case config.MarkExternal:
			heads = append(heads, fmt.Sprintf("fwmark %d", s.Mark.Value))
		case config.MarkPerVIP:
			for _, v := range s.VIPs {
				heads = append(heads, fmt.Sprintf("fwmark %d", config.DeriveMark(s.Name, v)))
			}
		default:
			for _, v := range s.VIPs {
				for _, p := range s.Ports {
					heads = append(heads, fmt.Sprintf("%s %d", v, p.Lo))
				}
			}
		}
		for _, h := range heads {
			fmt.Fprintf(&b, "virtual_server %s {\n  lb_algo %s\n  lb_kind %s\n", h, s.Scheduler, kinds[s.Forward])
			if strings.HasPrefix(h, "fwmark") {
				fam := "inet"
				if s.VIPs[0].Is6() {
					fam = "inet6"
				}
				fmt.Fprintf(&b, "  ip_family %s\n", fam)
			} else {
				fmt.Fprintf(&b, "  protocol %s\n", strings.ToUpper(s.Protocol))
			}
			for _, f := range s.SchedulerFlags {
				fmt.Fprintf(&b, "  %s\n", f)
			}
			if t := s.Persistence.Timeout.D(); t > 0 {
				fmt.Fprintf(&b, "  persistence_timeout %d\n", int(t/time.Second))
				// Written out even when it is the default: keepalived
				// 2.2.7 gives an IPv4 fwmark service the netmask
				// 0.0.0.32 when none is written.
				if s.VIPs[0].Is4() {
					bits := cmp.Or(s.Persistence.Netmask, 32)
					fmt.Fprintf(&b, "  persistence_granularity %s\n", net.IP(net.CIDRMask(bits, 32)))
				} else if s.Persistence.Netmask != 0 {
					fmt.Fprintf(&b, "  persistence_granularity %d\n", s.Persistence.Netmask)
				}
			}
			for _, srv := range cfg.Pools[s.Pool].Servers {
				port := ""
				if srv.Port != 0 {
					port = fmt.Sprint(srv.Port)
				} else if !strings.HasPrefix(h, "fwmark") {
					port = h[strings.LastIndex(h, " ")+1:]
				}
				fmt.Fprintf(&b, "  real_server %s %s {\n    weight %d\n  }\n", srv.Address, port, srv.Weight)
			}
			b.WriteString("}\n")
		}
	}
	return b.String()
}

// TestGuestSameAsKeepalived feeds the same site to halb and to keepalived,
// each in a namespace of its own, and compares the kernel states.
func TestGuestSameAsKeepalived(t *testing.T) {
	vm.RequireGuest(t)
	cfg := siteWithNAT(t)
	lab := labtest.NewLab(t)
	hosts := map[string]*netns.Host{}
	for _, name := range []string{"halb", "ka"} {
		h, err := lab.AddHost(name)
		must(t, err)
		must(t, h.IP("link", "add", "d0", "up", "type", "dummy"))
		must(t, h.IP("addr", "add", "198.51.100.1/24", "dev", "d0"))
		hosts[name] = h
	}
	d, err := New(WithNetNS(nsFD(t, hosts["halb"])), WithStateDir(t.TempDir()))
	must(t, err)
	defer d.Close()
	st := desired(cfg, nil)
	must(t, d.Reconcile(context.Background(), st))
	want := sortedLines(ipvsadm(t, hosts["halb"], "-Sn"))

	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	must(t, os.WriteFile(conf, []byte(keepalivedConf(cfg)), 0o644))
	got := runKeepalived(t, hosts["ka"], conf, len(want))
	if !slices.Equal(got, want) {
		t.Fatalf("kernel states differ\nhalb:\n%s\nkeepalived:\n%s\nkeepalived.conf:\n%s", strings.Join(want, "\n"),
			strings.Join(got, "\n"), keepalivedConf(cfg))
	}
	t.Logf("identical: %d lines of ipvsadm -Sn (%d services)", len(want), len(st.Services))
}

// runKeepalived starts keepalived's checker in h and waits until the
// kernel holds lines lines of `ipvsadm -Sn` that stay the same for a
// second; it returns them sorted and stops keepalived.
func runKeepalived(t testing.TB, h *netns.Host, conf string, lines int) []string {
	t.Helper()
	dir := filepath.Dir(conf)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := h.Command(ctx, "keepalived", "-n", "-l", "-D", "-C", "-f", conf,
		"-p", filepath.Join(dir, "ka.pid"), "-c", filepath.Join(dir, "checker.pid"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	defer func() {
		cancel()
		cmd.Wait()
	}()
	deadline := time.Now().Add(time.Minute)
	var prev []string
	for {
		cur := sortedLines(ipvsadm(t, h, "-Sn"))
		if len(cur) >= lines && slices.Equal(cur, prev) {
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepalived did not program %d lines in time (has %d)\n%s", lines, len(cur), out.String())
		}
		prev = cur
		time.Sleep(time.Second)
	}
}

func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return lines
}
