package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"halb/internal/api"
	"halb/internal/config"
)

func init() {
	register(&command{name: "status", summary: "show the running daemon's state", setup: statusFlags})
}

func statusFlags(fs *flag.FlagSet) runFunc {
	socket := fs.String("socket", config.DefaultSocket, "status socket `PATH`")
	asJSON := fs.Bool("json", false, "print the status document as JSON (docs/schema/status.schema.json)")
	wide := fs.Bool("wide", false, fmt.Sprintf("do not cut lines at %d columns", statusWidth))
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) != 0 {
			fmt.Fprintln(stderr, "halb status: takes no arguments; see halb status --help")
			return 2
		}
		width := statusWidth
		if *wide {
			width = 0
		}
		return runStatus(*socket, *asJSON, width, stdout, stderr)
	}
}

// statusWidth is how wide halb status's lines are, unless --wide.
const statusWidth = 120

func runStatus(socket string, asJSON bool, width int, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := api.NewClient(socket).Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "halb status: %v\n", err)
		return 1
	}
	if asJSON {
		if err := api.WriteJSON(stdout, st); err != nil {
			fmt.Fprintf(stderr, "halb status: %v\n", err)
			return 1
		}
		return 0
	}
	writeStatus(stdout, st, time.Now(), width)
	return 0
}

// writeStatus renders the status for people, its lines cut at width
// columns (0: not cut) and lists of addresses wrapped there.
func writeStatus(w io.Writer, st api.Status, now time.Time, width int) {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s  halb %s  dataplane %s  config %s\n", st.Node, st.Version, st.Dataplane, st.Config)
	if len(st.Sysctls) > 0 {
		b.WriteString("sysctls")
		for _, k := range slices.Sorted(maps.Keys(st.Sysctls)) {
			fmt.Fprintf(&b, " %s=%s", k, st.Sysctls[k])
		}
		b.WriteString("\n")
	}
	if st.LastReconcile.Error != "" {
		fmt.Fprintf(&b, "DATA PLANE ERROR: %s\n", st.LastReconcile.Error)
	}
	if r := st.LastReload; !r.Applied && len(r.Errors) > 0 {
		fmt.Fprintf(&b, "LAST RELOAD REFUSED %s; the running configuration stays:\n", ago(r.At, now))
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	if len(st.VRRP) > 0 {
		b.WriteString("\nVRRP instances\n")
		var t strings.Builder
		tw := tabwriter.NewWriter(&t, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tIF\tVRID\tSTATE\tPRIO\tEFFECTIVE\tMASTER\tSINCE\tREASON")
		for _, in := range st.VRRP {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", in.Name, in.Interface, in.VRID, in.State,
				in.Priority, in.EffectivePriority, cmp.Or(in.Master, "-"), ago(in.Since, now), in.Reason)
		}
		tw.Flush()
		rows := strings.SplitAfter(t.String(), "\n")
		b.WriteString(rows[0])
		for i, in := range st.VRRP {
			b.WriteString(rows[i+1])
			wrap(&b, "      VIPs ", in.VIPs, width)
		}
	}
	pools := map[string]api.Pool{}
	for _, p := range st.Pools {
		pools[p.Name] = p
	}
	if len(st.Services) > 0 {
		b.WriteString("\nServices\n")
	}
	for _, g := range groupServices(st.Services) {
		s := g.entries[0]
		fmt.Fprintf(&b, "  %s %s  %s %s  %s  pool %s%s\n", s.Name, s.Protocol, s.Scheduler, s.Forward, g.marks(), poolLine(s, pools), g.conns())
		wrap(&b, "      VIPs ", g.endpoints, width)
		if len(s.Servers) == 0 {
			b.WriteString("      (no servers)\n")
			continue
		}
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "      SERVER\tWEIGHT\tHEALTH\tCONNS\tLAST CHECK\tREASON")
		for _, srv := range s.Servers {
			health := "down"
			if srv.Healthy {
				health = "up"
			}
			addr := srv.Address
			if srv.Port != 0 {
				addr = netip.AddrPortFrom(netip.MustParseAddr(srv.Address), srv.Port).String()
			}
			check := "-"
			if srv.LastCheck != "" {
				check = fmt.Sprintf("%s %.1fms", srv.LastCheck, srv.LastCheckMS)
			}
			fmt.Fprintf(tw, "      %s%s\t%d/%d\t%s\t%s\t%s\t%s\n", addr, serverOptions(srv), srv.EffectiveWeight, srv.Weight, health, conns(g, srv), check, srv.Reason)
		}
		tw.Flush()
	}
	if st.BGP != nil {
		writeBGP(&b, *st.BGP, now)
	}
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		io.WriteString(w, cut(line, width))
	}
}

// poolLine says a service's pool: its name, servers up and quorum.
func poolLine(s api.Service, pools map[string]api.Pool) string {
	up := 0
	for _, srv := range s.Servers {
		if srv.Healthy {
			up++
		}
	}
	out := fmt.Sprintf("%s (%d/%d up", s.Pool, up, len(s.Servers))
	if p, ok := pools[s.Pool]; ok && p.Quorum > 0 {
		if p.QuorumUp {
			out += fmt.Sprintf(", quorum %d met", p.Quorum)
		} else {
			out += fmt.Sprintf(", QUORUM LOST: healthy weight %d < %d", p.HealthyWeight, p.Quorum)
		}
		if p.SorryActive {
			out += ", sorry server serving"
		}
	}
	return out + ")"
}

// wrap writes items after prefix, continuing on indented lines so that
// none is longer than width (0: one line).
func wrap(b *strings.Builder, prefix string, items []string, width int) {
	if len(items) == 0 {
		return
	}
	indent := strings.Repeat(" ", len(prefix))
	line := prefix + items[0]
	for _, it := range items[1:] {
		if width > 0 && len(line)+1+len(it) > width {
			b.WriteString(line + "\n")
			line = indent + it
			continue
		}
		line += " " + it
	}
	b.WriteString(line + "\n")
}

// cut shortens a line to width columns (0: as it is), ending it with "…",
// and drops its trailing blanks.
func cut(line string, width int) string {
	text, nl := strings.CutSuffix(line, "\n")
	text = strings.TrimRight(text, " ")
	if width > 0 && utf8.RuneCountInString(text) > width {
		text = string([]rune(text)[:width-1]) + "…"
	}
	if nl {
		text += "\n"
	}
	return text
}

// writeBGP renders the BGP sessions and announced VIPs.
func writeBGP(w io.Writer, b api.BGP, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nBGP sessions")
	fmt.Fprintln(tw, "  PEER\tASN\tSTATE\tSINCE\tLAST ERROR")
	for _, s := range b.Sessions {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\n", s.Peer, s.ASN, s.State, ago(s.Since, now), cmp.Or(s.LastError, "-"))
	}
	tw.Flush()
	title := "\nBGP VIPs"
	if b.Draining {
		title += " (DRAINING: every route withdrawn)"
	}
	fmt.Fprintln(w, title)
	fmt.Fprintln(tw, "  VIP\tROUTE\tREASON")
	for _, v := range b.Announced {
		route := "withdrawn"
		if v.Announced {
			route = "announced"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.VIP, route, v.Reason)
	}
	tw.Flush()
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

// serviceGroup is every status entry of one configured service; they share
// their servers.
type serviceGroup struct {
	entries   []api.Service
	endpoints []string
}

// marks says the service's firewall marks, in hex: one shared by every
// VIP, one per VIP (then each endpoint names its own), or none.
func (g serviceGroup) marks() string {
	seen := map[uint32]bool{}
	for _, e := range g.entries {
		seen[e.Mark] = true
	}
	switch {
	case len(seen) == 1 && seen[0]:
		return "no mark"
	case len(seen) == 1:
		return "mark " + hexMark(g.entries[0].Mark)
	default:
		return "a mark per VIP"
	}
}

// conns totals the connections of the group's entries, when counted.
func (g serviceGroup) conns() string {
	var n uint64
	counted := false
	for _, e := range g.entries {
		if e.Connections != nil {
			n, counted = n+*e.Connections, true
		}
	}
	if !counted {
		return ""
	}
	return fmt.Sprintf("  %d connections", n)
}

// conns says a server's connections over the group's entries: active/
// inactive now (IPVS), or so far (nftables); "-" when not counted.
func conns(g serviceGroup, srv api.Server) string {
	var act, inact, total uint64
	ipvs, nft := false, false
	for _, e := range g.entries {
		for _, s := range e.Servers {
			if s.Address != srv.Address || s.Port != srv.Port {
				continue
			}
			if s.ActiveConnections != nil {
				act, inact, ipvs = act+*s.ActiveConnections, inact+*s.InactiveConnections, true
			}
			if s.Connections != nil {
				total, nft = total+*s.Connections, true
			}
		}
	}
	switch {
	case ipvs:
		return fmt.Sprintf("%d/%d", act, inact)
	case nft:
		return strconv.FormatUint(total, 10)
	}
	return "-"
}

func hexMark(m uint32) string { return fmt.Sprintf("%#x", m) }

func groupServices(entries []api.Service) []serviceGroup {
	var groups []serviceGroup
	index := map[string]int{}
	for _, e := range entries {
		i, ok := index[e.Name]
		if !ok {
			i = len(groups)
			index[e.Name] = i
			groups = append(groups, serviceGroup{})
		}
		groups[i].entries = append(groups[i].entries, e)
	}
	for i, g := range groups {
		perVIP := g.marks() == "a mark per VIP"
		for _, e := range g.entries {
			port := strconv.Itoa(int(e.Port))
			if e.PortEnd != 0 {
				port += "-" + strconv.Itoa(int(e.PortEnd))
			}
			endpoint := net.JoinHostPort(e.VIP, port)
			switch {
			case e.VIP == "":
				endpoint = fmt.Sprintf("fwmark %s ipv%d", hexMark(e.Mark), e.Family)
			case perVIP:
				endpoint += " (" + hexMark(e.Mark) + ")"
			}
			groups[i].endpoints = append(groups[i].endpoints, endpoint)
		}
	}
	return groups
}

// serverOptions notes, after its address, what a server has of its own:
// checks and connection thresholds ("" when nothing).
func serverOptions(srv api.Server) string {
	var notes []string
	if len(srv.Checks) > 0 {
		notes = append(notes, "checks "+strings.Join(srv.Checks, ","))
	}
	if srv.MaxConnections != 0 {
		notes = append(notes, fmt.Sprintf("conns %d..%d", srv.MinConnections, srv.MaxConnections))
	}
	if len(notes) == 0 {
		return ""
	}
	return " [" + strings.Join(notes, "; ") + "]"
}
