package notify

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"halb/internal/api"
	"halb/internal/event"
	"halb/internal/vrrp/fsm"
)

// Message is one notification: what a mail says and what a webhook
// receives as JSON.
type Message struct {
	// ID identifies the message (node and event sequence numbers), so a
	// receiver can drop a retried duplicate.
	ID string `json:"id"`
	// SchemaVersion is event.SchemaVersion.
	SchemaVersion int            `json:"schema_version"`
	Node          string         `json:"node"`
	At            time.Time      `json:"at"`
	Subject       string         `json:"subject"`
	Text          string         `json:"text"`
	Events        []event.Record `json:"events"`
	Omitted       int            `json:"omitted,omitempty"`
	// Pools are the affected pools with every server's state now.
	Pools []PoolState `json:"pools"`
	// Instances are all VRRP instances of the node as they are now.
	Instances []api.Instance `json:"instances"`
	// Timeline is the node's recent event history, oldest first.
	Timeline []event.Record `json:"timeline"`
}

// PoolState is one pool as the status shows it now.
type PoolState struct {
	api.Pool
	Up       int          `json:"up"`
	Total    int          `json:"total"`
	Servers  []api.Server `json:"servers"`
	Services []string     `json:"services"`
}

// timelineSize is how many recent events a message carries.
const timelineSize = 15

// Compose turns a batch into a message, describing the affected pools and
// instances from st (the status read when the batch is sent; a zero
// Status when it could not be read).
func Compose(node string, b Batch, st api.Status, now time.Time) Message {
	m := Message{SchemaVersion: event.SchemaVersion, Node: node, At: now, Events: b.Events, Omitted: b.Omitted,
		Pools: []PoolState{}, Instances: st.VRRP, Timeline: st.Events}
	if m.Instances == nil {
		m.Instances = []api.Instance{}
	}
	if len(m.Timeline) > timelineSize {
		m.Timeline = m.Timeline[len(m.Timeline)-timelineSize:]
	}
	if m.Timeline == nil {
		m.Timeline = []event.Record{}
	}
	if len(b.Events) > 0 {
		m.ID = fmt.Sprintf("%s/%d-%d", node, b.Events[0].Seq, b.Events[len(b.Events)-1].Seq)
	}
	pools := poolStates(st)
	for _, name := range affectedPools(b.Events) {
		if p, ok := pools[name]; ok {
			m.Pools = append(m.Pools, p)
		}
	}
	m.Subject = node + ": " + headline(b, pools)
	m.Text = body(m, st)
	return m
}

// poolStates gathers each pool's servers (once each) from the services.
func poolStates(st api.Status) map[string]PoolState {
	out := map[string]PoolState{}
	for _, p := range st.Pools {
		out[p.Name] = PoolState{Pool: p, Servers: []api.Server{}, Services: []string{}}
	}
	for _, s := range st.Services {
		p, ok := out[s.Pool]
		if !ok {
			continue
		}
		p.Services = append(p.Services, serviceLine(s))
		for _, srv := range s.Servers {
			if !slices.ContainsFunc(p.Servers, func(o api.Server) bool { return o.Address == srv.Address && o.Port == srv.Port }) {
				p.Servers = append(p.Servers, srv)
				p.Total++
				if srv.Healthy {
					p.Up++
				}
			}
		}
		out[s.Pool] = p
	}
	return out
}

func serviceLine(s api.Service) string {
	port := fmt.Sprint(s.Port)
	if s.PortEnd != 0 {
		port += fmt.Sprintf("-%d", s.PortEnd)
	}
	l := fmt.Sprintf("%s %s %s", s.Name, s.Protocol, hostPort(s.VIP, port))
	switch {
	case s.VIP == "":
		l = fmt.Sprintf("%s fwmark %d ipv%d", s.Name, s.Mark, s.Family)
	case s.Mark != 0:
		l += fmt.Sprintf(" fwmark %d", s.Mark)
	}
	return l + fmt.Sprintf(" (%s, %s)", s.Scheduler, s.Forward)
}

func hostPort(addr, port string) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + port
	}
	return addr + ":" + port
}

func affectedPools(evs []event.Record) []string {
	var out []string
	for _, r := range evs {
		var p string
		switch {
		case r.Health != nil:
			p = r.Health.Pool
		case r.Quorum != nil:
			p = r.Quorum.Pool
		}
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// serverName is how events and messages name a server.
func serverName(a netip.Addr, port uint16) string {
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

func upDown(up bool) string {
	if up {
		return "UP"
	}
	return "DOWN"
}

// shortReason trims a health reason for a subject line: the first clause,
// without the server's own address ("HTTP 503 from 198.51.100.12:80
// /healthz, 3rd failure in a row" → "HTTP 503 /healthz"; "HTTP
// 198.51.100.12:80 /: connection refused" → "HTTP /: connection refused").
func shortReason(h *event.Health) string {
	r, _, _ := strings.Cut(h.Reason, ", ")
	own := func(w string) bool { return strings.HasPrefix(strings.Trim(w, "[]:"), h.Addr.String()) }
	var out []string
	f := strings.Fields(r)
	for i := 0; i < len(f); i++ {
		switch {
		case f[i] == "from" && i+1 < len(f) && own(f[i+1]):
			i++
		case !own(f[i]):
			out = append(out, f[i])
		}
	}
	return strings.Join(out, " ")
}

func poolCount(pools map[string]PoolState, name string) string {
	p, ok := pools[name]
	if !ok || p.Total == 0 {
		return ""
	}
	return fmt.Sprintf(", %d/%d up", p.Up, p.Total)
}

// headline says the batch in one line, without the node.
func headline(b Batch, pools map[string]PoolState) string {
	evs := b.Events
	if len(evs) == 0 {
		return "no events"
	}
	var h string
	switch {
	case allKind(evs, "health"):
		h = healthHeadline(evs, pools)
	case allKind(evs, "vrrp"):
		h = vrrpHeadline(evs)
	default:
		worst := slices.MaxFunc(evs, func(a, b event.Record) int { return cmp.Compare(severity(a), severity(b)) })
		h = worst.Summary
		if worst.Health != nil {
			h = healthHeadline([]event.Record{worst}, pools)
		}
		if n := len(evs) - 1 + b.Omitted; n > 0 {
			h += fmt.Sprintf(" (+%d more events)", n)
		}
		return h
	}
	if b.Omitted > 0 {
		h += fmt.Sprintf(" (+%d more events)", b.Omitted)
	}
	return h
}

func allKind(evs []event.Record, kind string) bool {
	for _, r := range evs {
		if r.Kind != kind {
			return false
		}
	}
	return true
}

// severity orders events for a mixed batch's headline.
func severity(r event.Record) int {
	switch {
	case r.Dataplane != nil:
		return 5
	case r.Quorum != nil && !r.Quorum.Up:
		return 5
	case r.VRRP != nil && r.VRRP.New == fsm.Fault.String():
		return 4
	case r.Health != nil && !r.Health.Up, r.Reload != nil && !r.Reload.Applied:
		return 3
	case r.VRRP != nil, r.Quorum != nil:
		return 2
	}
	return 1
}

type serverKey struct {
	pool string
	addr netip.Addr
	port uint16
}

func healthHeadline(evs []event.Record, pools map[string]PoolState) string {
	// The last event of each server says where it stands now.
	var order []serverKey
	last := map[serverKey]*event.Health{}
	changes := map[serverKey]int{}
	for _, r := range evs {
		k := serverKey{r.Health.Pool, r.Health.Addr, r.Health.Port}
		if _, ok := last[k]; !ok {
			order = append(order, k)
		}
		last[k] = r.Health
		changes[k]++
	}
	if len(order) == 1 {
		k, h := order[0], last[order[0]]
		name := serverName(k.addr, k.port)
		reason := ""
		if s := shortReason(h); s != "" {
			reason = " (" + s + ")"
		}
		if n := changes[k]; n > 1 {
			return fmt.Sprintf("%s flapping in pool %s: %d changes, now %s%s%s", name, k.pool, n, upDown(h.Up), reason, poolCount(pools, k.pool))
		}
		return fmt.Sprintf("%s %s in pool %s%s%s", name, upDown(h.Up), k.pool, reason, poolCount(pools, k.pool))
	}
	var parts []string
	var poolNames []string
	for _, up := range []bool{false, true} {
		byPool := map[string][]string{}
		var ps []string
		for _, k := range order {
			if last[k].Up == up {
				if _, ok := byPool[k.pool]; !ok {
					ps = append(ps, k.pool)
				}
				byPool[k.pool] = append(byPool[k.pool], serverName(k.addr, k.port))
			}
		}
		for _, p := range ps {
			parts = append(parts, fmt.Sprintf("%s %s in pool %s", list(byPool[p], 3), upDown(up), p))
			if !slices.Contains(poolNames, p) {
				poolNames = append(poolNames, p)
			}
		}
	}
	h := strings.Join(parts, "; ")
	if len(poolNames) == 1 {
		h += poolCount(pools, poolNames[0])
	}
	return h
}

func vrrpHeadline(evs []event.Record) string {
	var order []string
	last := map[string]*event.VRRP{}
	for _, r := range evs {
		if _, ok := last[r.VRRP.Instance]; !ok {
			order = append(order, r.VRRP.Instance)
		}
		last[r.VRRP.Instance] = r.VRRP
	}
	if len(order) == 1 && len(evs) == 1 {
		v := last[order[0]]
		h := fmt.Sprintf("%s now %s (was %s", v.Instance, v.New, v.Old)
		if v.Reason != "" {
			h += ": " + v.Reason
		}
		return h + ")"
	}
	var states []string
	byState := map[string][]string{}
	reasons := map[string]map[string]bool{}
	for _, name := range order {
		v := last[name]
		if _, ok := byState[v.New]; !ok {
			states = append(states, v.New)
			reasons[v.New] = map[string]bool{}
		}
		byState[v.New] = append(byState[v.New], name)
		reasons[v.New][v.Reason] = true
	}
	var parts []string
	for _, s := range states {
		p := fmt.Sprintf("%s now %s", list(byState[s], 3), s)
		if len(reasons[s]) == 1 {
			for r := range reasons[s] {
				if r != "" {
					p += " (" + r + ")"
				}
			}
		}
		parts = append(parts, p)
	}
	h := strings.Join(parts, "; ")
	if len(evs) > len(order) {
		h += fmt.Sprintf(" after %d transitions", len(evs))
	}
	return h
}

// list names up to n items and counts the rest.
func list(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s +%d", strings.Join(items[:n], ", "), len(items)-n)
}

const timeOfDay = "15:04:05"

func body(m Message, st api.Status) string {
	var b strings.Builder
	b.WriteString(m.Subject + "\n\n")
	if n := len(m.Events) + m.Omitted; n == 1 {
		b.WriteString("What happened:\n")
	} else {
		fmt.Fprintf(&b, "What happened (%d events):\n", n)
	}
	for _, r := range m.Events {
		fmt.Fprintf(&b, "  %s  %s\n", r.At.UTC().Format(timeOfDay), r.Summary)
		for _, d := range details(r) {
			fmt.Fprintf(&b, "            %s\n", d)
		}
	}
	if m.Omitted > 0 {
		fmt.Fprintf(&b, "  … and %d more events (see halb events)\n", m.Omitted)
	}
	b.WriteString("\n")
	if st.Node != "" {
		fmt.Fprintf(&b, "Node %s: halb %s, data plane %s, running since %s, config %s\n",
			st.Node, st.Version, st.Dataplane, st.Started.UTC().Format(time.RFC3339), st.Config)
		if st.LastReconcile.Error != "" {
			fmt.Fprintf(&b, "Last data plane update FAILED at %s: %s\n", st.LastReconcile.At.UTC().Format(timeOfDay), st.LastReconcile.Error)
		}
	} else {
		fmt.Fprintf(&b, "Node %s: its current state could not be read.\n", m.Node)
	}
	for _, p := range m.Pools {
		b.WriteString("\n")
		writePool(&b, p)
	}
	if len(m.Instances) > 0 {
		b.WriteString("\nVRRP instances now:\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tVRID\tSTATE\tPRIORITY\tMASTER\tSINCE\tVIPS\tREASON")
		for _, in := range m.Instances {
			master := cmp.Or(in.Master, "?")
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", in.Name, in.VRID, in.State, in.EffectivePriority, in.Priority,
				master, in.Since.UTC().Format(time.DateTime), strings.Join(in.VIPs, " "), in.Reason)
		}
		tw.Flush()
	}
	if len(m.Timeline) > 0 {
		b.WriteString("\nRecent events on " + m.Node + " (oldest first):\n")
		for _, r := range m.Timeline {
			fmt.Fprintf(&b, "  %s  %s\n", r.At.UTC().Format(time.DateTime), r.Summary)
		}
	}
	b.WriteString("\n-- \nhalb on " + m.Node + "; more with: halb status, halb events\n")
	return b.String()
}

// details are the lines under an event that say more than its summary.
func details(r event.Record) []string {
	switch {
	case r.Health != nil:
		h := r.Health
		d := fmt.Sprintf("check %s: %d results in a row", h.Check, h.Consecutive)
		if h.Latency > 0 {
			d += fmt.Sprintf(", last took %s", h.Latency.Round(time.Microsecond))
		}
		return []string{d}
	case r.VRRP != nil:
		v := r.VRRP
		master := "unknown"
		if v.Master.IsValid() {
			master = v.Master.String()
		}
		return []string{fmt.Sprintf("VRID %d on %s, priority %d (configured %d), master %s", v.VRID, v.Interface, v.EffectivePriority, v.Priority, master)}
	case r.Quorum != nil:
		q := r.Quorum
		return []string{fmt.Sprintf("healthy weight %d, quorum %d, sorry server active: %t", q.HealthyWeight, q.Quorum, q.SorryActive)}
	case r.Reload != nil:
		var out []string
		for _, c := range r.Reload.Changes {
			out = append(out, "change: "+c)
		}
		for _, e := range r.Reload.Errors {
			out = append(out, "error: "+e)
		}
		return out
	}
	return nil
}

func writePool(b *strings.Builder, p PoolState) {
	quorum := "met"
	if !p.QuorumUp {
		quorum = "LOST"
	}
	fmt.Fprintf(b, "Pool %s now: %d/%d servers up, healthy weight %d, quorum %d %s", p.Name, p.Up, p.Total, p.HealthyWeight, p.Quorum, quorum)
	if p.SorryActive {
		b.WriteString(", sorry server ACTIVE")
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVER\tSTATE\tWEIGHT\tEFFECTIVE\tLAST CHECK\tCHANGED\tREASON")
	for _, s := range p.Servers {
		changed := "-"
		if !s.LastChange.IsZero() {
			changed = s.LastChange.UTC().Format(timeOfDay)
		}
		latency := "-"
		if s.LatencyMS > 0 {
			latency = fmt.Sprintf("%.1fms", s.LatencyMS)
		}
		addr, _ := netip.ParseAddr(s.Address)
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%s\t%s\n", serverName(addr, s.Port), upDown(s.Healthy), s.Weight, s.EffectiveWeight, latency, changed, s.Reason)
	}
	tw.Flush()
	if len(p.Services) > 0 {
		fmt.Fprintf(b, "  Services: %s\n", strings.Join(p.Services, "; "))
	}
}
