package nft

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"halb/internal/dataplane"
	"halb/internal/maglev"
)

// Direct routing runs in a netdev table of the same name: an ingress
// chain on each device that leads to DR backends sends a service's
// packets, IP header untouched, to the backend at slot jhash(flow) mod M
// of its Maglev table ("fwd ip to … device"). No conntrack is involved:
// two nodes with the same table agree on every packet. google/nftables
// has no fwd expression, so this table is written with the nft tool, as
// one transaction that replaces it whole when it changes. DR assumes the
// one-armed layout: clients' packets for a VIP arrive on the device that
// leads to its backends.

// drServices splits the DR services off a state.
func drServices(st dataplane.State) (dr []dataplane.VirtualService, rest []dataplane.VirtualService, err error) {
	for _, vs := range st.Services {
		n := 0
		for _, r := range vs.Reals {
			if r.Forward == "dr" {
				n++
			}
		}
		switch {
		case n == 0:
			rest = append(rest, vs)
		case n == len(vs.Reals):
			dr = append(dr, vs)
		default:
			return nil, nil, fmt.Errorf("service %s (%s) mixes dr with other forwarding methods", vs.Key, vs.Service)
		}
	}
	return dr, rest, nil
}

// drScript renders the nft script that replaces the netdev table with the
// DR services' rules ("" when there are none). device returns the device
// that leads to a backend.
func drScript(table string, dr []dataplane.VirtualService, marks []dataplane.MarkRule, device func(netip.Addr) (string, error)) (string, error) {
	if len(dr) == 0 {
		return "", nil
	}
	var chains, dispatch4, dispatch6 []string
	devices := map[string]bool{}
	for _, vs := range dr {
		h := shortHash(vs.Key.String(), 12)
		chain := "dr-" + h
		body, dev, err := drChain(vs, device)
		if err != nil {
			return "", fmt.Errorf("service %s (%s): %w", vs.Key, vs.Service, err)
		}
		if dev != "" {
			devices[dev] = true
		}
		chains = append(chains, fmt.Sprintf("\tchain %s {\n\t\t%s comment %q\n\t}\n", chain, body, vs.Service+" "+vs.Key.String()))
		add := func(vip netip.Addr, proto string, lo, hi uint16) {
			ports := fmt.Sprint(lo)
			if hi != lo {
				ports = fmt.Sprintf("%d-%d", lo, hi)
			}
			e := fmt.Sprintf("%s . %s . %s : goto %s", vip, proto, ports, chain)
			if vip.Is4() {
				dispatch4 = append(dispatch4, e)
			} else {
				dispatch6 = append(dispatch6, e)
			}
		}
		if vs.Key.Mark == 0 {
			add(vs.Key.Addr, vs.Key.Protocol, vs.Key.Port, vs.Key.Port)
			continue
		}
		for _, m := range marks {
			if m.Mark == vs.Key.Mark && family(m.VIP) == vs.Key.Family {
				add(m.VIP, m.Protocol, m.PortLo, m.PortHi)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table netdev %s {}\ndelete table netdev %s\ntable netdev %s {\n", table, table, table)
	for _, m := range []struct {
		name, addr string
		elems      []string
	}{{"dr4", "ipv4_addr", dispatch4}, {"dr6", "ipv6_addr", dispatch6}} {
		fmt.Fprintf(&b, "\tmap %s {\n\t\ttype %s . inet_proto . inet_service : verdict\n\t\tflags interval\n", m.name, m.addr)
		if len(m.elems) > 0 {
			slices.Sort(m.elems)
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(m.elems, ",\n\t\t\t"))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range chains {
		b.WriteString(c)
	}
	for _, dev := range slices.Sorted(func(yield func(string) bool) {
		for d := range devices {
			if !yield(d) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "\tchain in-%s {\n\t\ttype filter hook ingress device %q priority filter; policy accept;\n", dev, dev)
		b.WriteString("\t\tmeta protocol ip ip daddr . meta l4proto . th dport vmap @dr4\n")
		b.WriteString("\t\tmeta protocol ip6 ip6 daddr . meta l4proto . th dport vmap @dr6\n\t}\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// drChain renders the rule of one DR service and the device it sends on.
func drChain(vs dataplane.VirtualService, device func(netip.Addr) (string, error)) (string, string, error) {
	size := vs.MaglevSize
	if size == 0 {
		size = maglev.DefaultSize(len(vs.Reals))
	}
	var bs []maglev.Backend
	addrOf := map[string]netip.Addr{}
	for _, r := range vs.Reals {
		id := r.AddrPort().String()
		bs = append(bs, maglev.Backend{ID: id, Weight: r.Weight})
		addrOf[id] = r.Addr
	}
	tab, err := maglev.New(bs, size)
	if err != nil {
		return "", "", err
	}
	if len(tab.Entries) == 0 {
		return "counter drop", "", nil
	}
	dev := ""
	for _, b := range tab.Backends {
		d, err := device(addrOf[b.ID])
		if err != nil {
			return "", "", err
		}
		if dev != "" && d != dev {
			return "", "", fmt.Errorf("backends behind two devices (%s, %s); direct routing sends from one", dev, d)
		}
		dev = d
	}
	ip := "ip"
	if vs.Key.Family == 6 {
		ip = "ip6"
	}
	key := fmt.Sprintf("%s saddr . th sport . %s daddr . th dport", ip, ip)
	if vs.Persistence > 0 {
		key = fmt.Sprintf("%s saddr & %s", ip, prefixMask(vs.Key.Family, vs.Netmask))
	}
	var slots bytes.Buffer
	for slot, e := range tab.Entries {
		if slot > 0 {
			slots.WriteString(", ")
		}
		fmt.Fprintf(&slots, "%d : %s", slot, addrOf[tab.Backends[e].ID])
	}
	return fmt.Sprintf("fwd %s to jhash %s mod %d seed %#x map { %s } device %q", ip, key, size, Seed(vs.Key), slots.String(), dev), dev, nil
}

// prefixMask renders a prefix length as an address mask (0: the whole
// address).
func prefixMask(fam, bits int) string {
	n := 8 * addrLen(fam)
	if bits == 0 || bits > n {
		bits = n
	}
	a, _ := netip.AddrFromSlice(net.CIDRMask(bits, n))
	return a.String()
}

// routeDevice returns the device that leads to an address in the data
// plane's namespace.
func (d *Dataplane) routeDevice(a netip.Addr) (string, error) {
	ns := netns.None()
	if d.netns != 0 {
		ns = netns.NsHandle(d.netns)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return "", fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	routes, err := h.RouteGet(a.AsSlice())
	if err != nil || len(routes) == 0 {
		return "", fmt.Errorf("no route to DR backend %s: %v", a, err)
	}
	link, err := h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("device of the route to %s: %w", a, err)
	}
	if link.Attrs().Flags&net.FlagLoopback != 0 {
		return "", fmt.Errorf("DR backend %s is an address of this node", a)
	}
	return link.Attrs().Name, nil
}

// applyDR brings the netdev table to the script ("": no table) with the
// nft tool, in the data plane's namespace; c removes a table no longer
// wanted without the tool.
func (d *Dataplane) applyDR(ctx context.Context, c *nftables.Conn, script string) error {
	if d.drKnown && script == d.drApplied {
		return nil
	}
	if script == "" {
		t, err := c.ListTableOfFamily(d.table, nftables.TableFamilyNetdev)
		if err == nil && t != nil {
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("delete direct routing table: %w", err)
			}
		}
		d.drApplied, d.drKnown = "", true
		return nil
	}
	args := []string{"nft", "-f", "-"}
	if d.netns != 0 {
		args = append([]string{"nsenter", fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), d.netns)}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		d.drKnown = false
		return fmt.Errorf("nft -f (direct routing table): %w: %s", err, bytes.TrimSpace(out))
	}
	d.drApplied, d.drKnown = script, true
	return nil
}
