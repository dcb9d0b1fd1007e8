package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"halb/internal/api"
)

// Retain forgets the counter series of servers and VRRP instances that st
// no longer has (a reload removed them), so that a scrape shows only what
// exists now. The gauges and kernel counters need no such care: they are
// read from the live state at every scrape.
func (m *Metrics) Retain(st api.Status) {
	servers := map[serverKey]bool{}
	for _, svc := range st.Services {
		for _, srv := range svc.Servers {
			servers[statusServer(svc.Pool, srv)] = true
		}
	}
	instances := map[string]bool{}
	for _, in := range st.VRRP {
		instances[in.Name] = true
	}
	server := func(l prometheus.Labels) bool { return servers[serverKey{l["pool"], l["address"], l["port"]}] }
	prune(m.healthTransitions, server)
	prune(m.checkRuns, server)
	prune(m.vrrpTransitions, func(l prometheus.Labels) bool { return instances[l["instance"]] })
	m.checkMu.Lock()
	defer m.checkMu.Unlock()
	for k := range m.checkCounters {
		addr, port := splitServer(k.server)
		if !servers[serverKey{k.pool, addr, port}] {
			delete(m.checkCounters, k)
		}
	}
}

// prune deletes the series of v whose labels keep rejects.
func prune(v *prometheus.CounterVec, keep func(prometheus.Labels) bool) {
	ch := make(chan prometheus.Metric)
	go func() {
		v.Collect(ch)
		close(ch)
	}()
	var gone []prometheus.Labels
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		l := prometheus.Labels{}
		for _, p := range d.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		if !keep(l) {
			gone = append(gone, l)
		}
	}
	for _, l := range gone {
		v.Delete(l)
	}
}
