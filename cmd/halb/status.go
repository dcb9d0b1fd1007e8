package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"text/tabwriter"
	"time"

	"halb/internal/api"
	"halb/internal/config"
)

func init() {
	register("status", "show the running daemon's state", runStatus)
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", config.DefaultSocket, "status socket `PATH`")
	asJSON := fs.Bool("json", false, "print the status document as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := api.NewClient(*socket).Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "halb status: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			fmt.Fprintf(stderr, "halb status: %v\n", err)
			return 1
		}
		return 0
	}
	writeStatus(stdout, st, time.Now())
	return 0
}

// writeStatus renders the status as tables for people.
func writeStatus(w io.Writer, st api.Status, now time.Time) {
	fmt.Fprintf(w, "node %s  halb %s  dataplane %s  config %s\n", st.Node, st.Version, st.Dataplane, st.Config)
	if st.LastReconcile.Error != "" {
		fmt.Fprintf(w, "DATA PLANE ERROR: %s\n", st.LastReconcile.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(st.VRRP) > 0 {
		fmt.Fprintln(w, "\nVRRP instances")
		fmt.Fprintln(tw, "  NAME\tIF\tVRID\tSTATE\tPRIO\tEFFECTIVE\tMASTER\tSINCE\tVIPS")
		for _, in := range st.VRRP {
			master := in.Master
			if master == "" {
				master = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", in.Name, in.Interface, in.VRID, in.State,
				in.Priority, in.EffectivePriority, master, ago(in.Since, now), joinN(in.VIPs, 3))
		}
		tw.Flush()
	}
	if len(st.Services) > 0 {
		fmt.Fprintln(w, "\nServices")
		fmt.Fprintln(tw, "  SERVICE\tVIPS:PORTS\tMARKS\tSCHED\tFWD\tSERVER\tWEIGHT\tHEALTH\tREASON")
		for _, g := range groupServices(st.Services) {
			s := g.entries[0]
			head := fmt.Sprintf("  %s %s\t%s\t%s\t%s\t%s", s.Name, s.Protocol, joinN(g.endpoints, 2), g.marks(), s.Scheduler, s.Forward)
			if len(s.Servers) == 0 {
				fmt.Fprintf(tw, "%s\t(no servers)\t\t\t\n", head)
			}
			for i, srv := range s.Servers {
				if i > 0 {
					head = "\t\t\t\t"
				}
				health := "down"
				if srv.Healthy {
					health = "up"
				}
				addr := srv.Address
				if srv.Port != 0 {
					addr = netip.AddrPortFrom(netip.MustParseAddr(srv.Address), srv.Port).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", head, addr, srv.EffectiveWeight, srv.Weight, health, srv.Reason)
			}
		}
		tw.Flush()
	}
	if st.BGP != nil {
		writeBGP(w, tw, *st.BGP, now)
	}
	for _, p := range st.Pools {
		if !p.QuorumUp {
			fmt.Fprintf(w, "\npool %s: QUORUM LOST (healthy weight %d < %d)", p.Name, p.HealthyWeight, p.Quorum)
			if p.SorryActive {
				fmt.Fprint(w, ", sorry server serving")
			}
			fmt.Fprintln(w)
		}
	}
}

// writeBGP renders the BGP sessions and announced VIPs.
func writeBGP(w io.Writer, tw *tabwriter.Writer, b api.BGP, now time.Time) {
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

func joinN(items []string, n int) string {
	out := ""
	for i, s := range items {
		if i == n {
			return out + fmt.Sprintf(" +%d", len(items)-n)
		}
		if i > 0 {
			out += " "
		}
		out += s
	}
	return out
}

// serviceGroup is every status entry of one configured service; they share
// their servers.
type serviceGroup struct {
	entries   []api.Service
	endpoints []string
}

func (g serviceGroup) marks() string {
	seen := map[uint32]bool{}
	for _, e := range g.entries {
		seen[e.Mark] = true
	}
	switch {
	case len(seen) == 1 && seen[0]:
		return "-"
	case len(seen) == 1:
		return strconv.FormatUint(uint64(g.entries[0].Mark), 10)
	default:
		return fmt.Sprintf("%d (one per VIP)", len(seen))
	}
}

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
		port := strconv.Itoa(int(e.Port))
		if e.PortEnd != 0 {
			port += "-" + strconv.Itoa(int(e.PortEnd))
		}
		vip := e.VIP
		if a, err := netip.ParseAddr(e.VIP); err == nil && a.Is6() {
			vip = "[" + e.VIP + "]"
		}
		endpoint := vip + ":" + port
		if e.VIP == "" {
			endpoint = fmt.Sprintf("fwmark %d ipv%d", e.Mark, e.Family)
		}
		groups[i].entries = append(groups[i].entries, e)
		groups[i].endpoints = append(groups[i].endpoints, endpoint)
	}
	return groups
}
