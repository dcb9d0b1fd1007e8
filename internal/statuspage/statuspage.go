// Package statuspage renders halb's status as a read-only web page that
// refreshes itself: VRRP instances and who is master, services with their
// servers' health, weight and connections, pools and the recent events.
package statuspage

import (
	"context"
	_ "embed"
	"html/template"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"halb/internal/api"
	"halb/internal/dataplane"
	"halb/internal/metrics"
)

// StatusFunc reads the node's current status.
type StatusFunc func(ctx context.Context) (api.Status, error)

// Page serves the status page.
type Page struct {
	status   StatusFunc
	counters func() metrics.CounterSource
	refresh  time.Duration
	now      func() time.Time
}

// New returns the page for status; counters, when it returns a source,
// adds connection counts. The page reloads itself every refresh.
func New(status StatusFunc, counters func() metrics.CounterSource, refresh time.Duration, now func() time.Time) *Page {
	return &Page{status: status, counters: counters, refresh: refresh, now: now}
}

//go:embed page.html
var pageHTML string

var tmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"since": func(now, t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
	"clock": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"ms":    formatMS,
	"vip": func(addr string, port uint16) string {
		if strings.Contains(addr, ":") {
			return "[" + addr + "]:" + strconv.Itoa(int(port))
		}
		return addr + ":" + strconv.Itoa(int(port))
	},
}).Parse(pageHTML))

func formatMS(v float64) string {
	if v <= 0 {
		return "-"
	}
	return time.Duration(v * float64(time.Millisecond)).Round(10 * time.Microsecond).String()
}

// view is what the template renders.
type view struct {
	api.Status
	Now      time.Time
	Refresh  int
	Services []serviceView
	Error    string
}

type serviceView struct {
	api.Service
	Conns   string
	Servers []serverView
}

type serverView struct {
	api.Server
	Name        string
	ActiveConns string
}

// ServeHTTP renders the page (GET and HEAD only: it changes nothing).
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the status page is read-only", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	v := view{Now: p.now(), Refresh: max(int(p.refresh.Seconds()), 1)}
	st, err := p.status(ctx)
	if err != nil {
		v.Error = "halb's engine did not answer: " + err.Error()
	} else {
		v.Status = st
		v.Services = p.services(ctx, st)
		// Newest first on the page.
		v.Status.Events = slices.Clone(st.Events)
		slices.Reverse(v.Status.Events)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = tmpl.Execute(w, v) // fails only when the client is gone, with no one to tell
}

// services joins the status with the data plane's counters, when any.
func (p *Page) services(ctx context.Context, st api.Status) []serviceView {
	byKey := map[dataplane.ServiceKey]metrics.ServiceCounters{}
	if p.counters != nil {
		if src := p.counters(); src != nil {
			if cs, err := src.Counters(ctx); err == nil {
				for _, c := range cs {
					byKey[c.Key] = c
				}
			}
		}
	}
	out := make([]serviceView, 0, len(st.Services))
	for _, s := range st.Services {
		c, have := byKey[s.Key()]
		sv := serviceView{Service: s, Conns: "-"}
		if have {
			sv.Conns = strconv.FormatUint(c.Connections, 10)
		}
		for _, srv := range s.Servers {
			a, _ := netip.ParseAddr(srv.Address)
			name := srv.Address
			if srv.Port != 0 {
				name = netip.AddrPortFrom(a, srv.Port).String()
			}
			x := serverView{Server: srv, Name: name, ActiveConns: "-"}
			if have {
				for _, r := range c.Reals {
					if r.Addr == a && (r.Port == srv.Port || srv.Port == 0) {
						x.ActiveConns = strconv.FormatUint(r.ActiveConns, 10)
					}
				}
			}
			sv.Servers = append(sv.Servers, x)
		}
		out = append(out, sv)
	}
	return out
}
