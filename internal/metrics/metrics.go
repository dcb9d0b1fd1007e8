// Package metrics exposes halb's state to Prometheus on its own registry.
// Gauges are read from the live status at scrape time; counters come from
// the event stream, the data plane's reconcile calls and the optional
// sources (kernel counters, VRRP adverts, health checks, notifiers).
package metrics

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"halb/internal/api"
	"halb/internal/buildinfo"
	"halb/internal/dataplane"
	"halb/internal/event"
	"halb/internal/vrrp/fsm"
)

// StatusFunc reads the node's current status.
type StatusFunc func(ctx context.Context) (api.Status, error)

// scrapeTimeout bounds the reads made for one scrape.
const scrapeTimeout = 3 * time.Second

// Metrics is halb's metrics registry.
type Metrics struct {
	reg    *prometheus.Registry
	status StatusFunc

	mu       sync.Mutex
	counters []CounterSource
	vrrp     []VRRPSource
	checks   []CheckSource
	notifier []NotifierSource
	bgp      []BGPSource

	vrrpTransitions   *prometheus.CounterVec
	healthTransitions *prometheus.CounterVec
	events            *prometheus.CounterVec
	reconciles        prometheus.Counter
	reconcileErrors   prometheus.Counter
	reconcileDuration prometheus.Histogram
	checkRuns         *prometheus.CounterVec
	checkDuration     *prometheus.HistogramVec
	// checkCounters caches checkRuns' counters: a map lookup per check
	// result costs a fraction of WithLabelValues.
	checkMu       sync.Mutex
	checkCounters map[checkKey][2]prometheus.Counter // fail, ok
}

type checkKey struct{ pool, server, typ string }

// New returns the registry for a node whose status is read by status.
func New(status StatusFunc) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), status: status,
		vrrpTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "halb_vrrp_transitions_total",
			Help: "VRRP state transitions, by instance and new state."}, []string{"instance", "from", "to"}),
		healthTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "halb_server_transitions_total",
			Help: "Real server health transitions, by pool, server and new state."}, []string{"pool", "address", "port", "to"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "halb_events_total",
			Help: "Events recorded, by kind."}, []string{"kind"}),
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{Name: "halb_reconcile_runs_total",
			Help: "Data plane reconcile runs."}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "halb_reconcile_errors_total",
			Help: "Data plane reconcile runs that failed."}),
		reconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "halb_reconcile_duration_seconds",
			Help: "Duration of data plane reconcile runs.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
	}
	m.checkCounters = map[checkKey][2]prometheus.Counter{}
	m.checkRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "halb_server_checks_total",
		Help: "Health checks run, by pool, server, check type and result (ok or fail)."}, []string{"pool", "address", "port", "type", "result"})
	m.checkDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "halb_health_check_duration_seconds",
		Help:    "Duration of health checks, by check type.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"type"})
	m.reg.MustRegister(m.vrrpTransitions, m.healthTransitions, m.events, m.reconciles, m.reconcileErrors, m.reconcileDuration,
		m.checkRuns, m.checkDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), (*state)(m))
	return m
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// AddCounterSource adds a reader of the data plane's kernel counters.
func (m *Metrics) AddCounterSource(s CounterSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counters = append(m.counters, s)
}

// AddVRRPSource adds a reader of VRRP advert counters.
func (m *Metrics) AddVRRPSource(s VRRPSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vrrp = append(m.vrrp, s)
}

// AddCheckSource adds a reader of the health checks' last results. Without
// one, check latencies come from the status.
func (m *Metrics) AddCheckSource(s CheckSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checks = append(m.checks, s)
}

// AddBGPSource adds a reader of the BGP sessions and announced VIPs.
func (m *Metrics) AddBGPSource(s BGPSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bgp = append(m.bgp, s)
}

// AddNotifierSource adds a reader of the notifiers' outcomes.
func (m *Metrics) AddNotifierSource(s NotifierSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notifier = append(m.notifier, s)
}

// OnEvent counts an event; it is an engine event sink and never blocks.
func (m *Metrics) OnEvent(r event.Record) {
	m.events.WithLabelValues(r.Kind).Inc()
	switch {
	case r.VRRP != nil:
		m.vrrpTransitions.WithLabelValues(r.VRRP.Instance, r.VRRP.Old, r.VRRP.New).Inc()
	case r.Health != nil:
		to := "down"
		if r.Health.Up {
			to = "up"
		}
		addr, port := serverLabels(r.Health.Addr, r.Health.Port)
		m.healthTransitions.WithLabelValues(r.Health.Pool, addr, port, to).Inc()
	}
}

// ObserveCheck records the duration of one health check by its type.
func (m *Metrics) ObserveCheck(checkType string, d time.Duration) {
	m.checkDuration.WithLabelValues(checkType).Observe(d.Seconds())
}

// CountCheck counts one result of a check of type checkType (tcp, http,
// …) for one pool server, named "address" or "address:port".
func (m *Metrics) CountCheck(pool, server, checkType string, ok bool) {
	k := checkKey{pool, server, checkType}
	m.checkMu.Lock()
	c, found := m.checkCounters[k]
	if !found {
		addr, port := splitServer(server)
		c = [2]prometheus.Counter{m.checkRuns.WithLabelValues(pool, addr, port, checkType, "fail"),
			m.checkRuns.WithLabelValues(pool, addr, port, checkType, "ok")}
		m.checkCounters[k] = c
	}
	m.checkMu.Unlock()
	if ok {
		c[1].Inc()
	} else {
		c[0].Inc()
	}
}

// serverLabels are a server's address and port labels; the port is
// empty when the server has none of its own.
func serverLabels(a netip.Addr, port uint16) (string, string) {
	if port == 0 {
		return a.String(), ""
	}
	return a.String(), strconv.Itoa(int(port))
}

// splitServer splits a server named "address" or "address:port" into
// its address and port labels.
func splitServer(s string) (string, string) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return serverLabels(ap.Addr(), ap.Port())
	}
	return s, ""
}

// Instrument wraps a data plane so that its reconcile runs are counted
// and timed.
func (m *Metrics) Instrument(dp dataplane.Dataplane) dataplane.Dataplane {
	return &instrumented{Dataplane: dp, m: m}
}

type instrumented struct {
	dataplane.Dataplane
	m *Metrics
}

func (d *instrumented) Reconcile(ctx context.Context, want dataplane.State) error {
	start := time.Now()
	err := d.Dataplane.Reconcile(ctx, want)
	d.m.reconcileDuration.Observe(time.Since(start).Seconds())
	d.m.reconciles.Inc()
	if err != nil {
		d.m.reconcileErrors.Inc()
	}
	return err
}

// Unwrap returns the data plane instrumented.
func (d *instrumented) Unwrap() dataplane.Dataplane { return d.Dataplane }

// state is the collector that reads the live state at scrape time.
type state Metrics

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dUp            = desc("halb_status_up", "1 when the engine answered the status request of this scrape.")
	dInfo          = desc("halb_info", "Node, version, VCS revision, Go version and data plane of this halb.", "node", "version", "dataplane", "revision", "go_version")
	dStart         = desc("halb_start_time_seconds", "When halb started, Unix time.")
	dReloadOK      = desc("halb_config_last_reload_successful", "1 when the last configuration reload was applied (or none was tried), 0 when it was refused.")
	dReloadOKAt    = desc("halb_config_last_reload_success_timestamp_seconds", "When a configuration was last loaded successfully (the start, or an applied reload), Unix time.")
	dReconcileAt   = desc("halb_reconcile_last_timestamp_seconds", "When the data plane was last reconciled, Unix time.")
	dReconcileOK   = desc("halb_reconcile_last_successful", "1 when the last reconcile succeeded.")
	dVRRPState     = desc("halb_vrrp_state", "1 for the VRRP instance's current state.", "instance", "state")
	dVRRPPrio      = desc("halb_vrrp_priority", "Configured VRRP priority.", "instance")
	dVRRPEffPrio   = desc("halb_vrrp_effective_priority", "Advertised VRRP priority after tracking.", "instance")
	dVRRPSince     = desc("halb_vrrp_state_since_timestamp_seconds", "When the instance entered its state, Unix time.", "instance")
	dServerUp      = desc("halb_server_up", "1 when the real server is healthy.", "pool", "address", "port")
	dServerWeight  = desc("halb_server_weight", "Configured weight of the real server.", "pool", "address", "port")
	dServerEff     = desc("halb_server_effective_weight", "Weight the data plane gives the real server now.", "pool", "address", "port")
	dCheckLatency  = desc("halb_server_check_latency_seconds", "Duration of the server's last health check.", "pool", "address", "port")
	dPoolQuorumUp  = desc("halb_pool_quorum_up", "1 when the pool has its quorum.", "pool")
	dPoolHealthy   = desc("halb_pool_healthy_weight", "Sum of the healthy servers' weights.", "pool")
	dPoolQuorum    = desc("halb_pool_quorum", "The pool's quorum.", "pool")
	dPoolSorry     = desc("halb_pool_sorry_active", "1 when the sorry server takes the pool's traffic.", "pool")
	dPoolServers   = desc("halb_pool_servers", "Real servers of the pool, by health.", "pool", "state")
	dSvcConns      = desc("halb_service_connections_total", "Connections scheduled by the virtual service (kernel counter).", "service", "vs")
	dSvcPackets    = desc("halb_service_packets_total", "Packets through the virtual service (kernel counter).", "service", "vs", "direction")
	dSvcBytes      = desc("halb_service_bytes_total", "Bytes through the virtual service (kernel counter).", "service", "vs", "direction")
	dRealConns     = desc("halb_server_connections_total", "Connections scheduled to the real server (kernel counter).", "vs", "address", "port")
	dRealActive    = desc("halb_server_active_connections", "Active connections to the real server.", "vs", "address", "port")
	dRealInactive  = desc("halb_server_inactive_connections", "Inactive connections to the real server.", "vs", "address", "port")
	dRealBytes     = desc("halb_server_bytes_total", "Bytes to and from the real server (kernel counter).", "vs", "address", "port", "direction")
	dRealPackets   = desc("halb_server_packets_total", "Packets to and from the real server (kernel counter).", "vs", "address", "port", "direction")
	dCountersUp    = desc("halb_kernel_counters_up", "1 when the data plane's counters could be read.")
	dAdvertsSent   = desc("halb_vrrp_adverts_sent_total", "VRRP advertisements sent.", "instance")
	dAdvertsRecv   = desc("halb_vrrp_adverts_received_total", "VRRP advertisements received.", "instance")
	dAdvertsReject = desc("halb_vrrp_adverts_rejected_total", "VRRP advertisements received and dropped, by reason.", "instance", "reason")
	dNotifySent    = desc("halb_notifications_sent_total", "Notifications delivered, by notifier.", "notifier")
	dNotifyFailed  = desc("halb_notifications_failed_total", "Notifications that failed, by notifier.", "notifier")
	dNotifyDropped = desc("halb_notifications_dropped_total", "Notifications dropped because the notifier was busy.", "notifier")
	dBGPSessionUp  = desc("halb_bgp_session_up", "1 when the BGP session with the peer is established.", "peer")
	dBGPAnnounced  = desc("halb_bgp_announced", "1 when the VIP is announced to the routers.", "vip")
)

// Describe sends nothing: the collector is unchecked, since pools and
// instances come and go with the configuration.
func (s *state) Describe(chan<- *prometheus.Desc) {}

// Collect reads the status and the sources.
func (s *state) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	st, err := s.status(ctx)
	if err != nil {
		gauge(dUp, 0)
	} else {
		gauge(dUp, 1)
		collectStatus(st, gauge)
	}
	s.mu.Lock()
	counters, vrrp, checks, notifier, bgp := s.counters, s.vrrp, s.checks, s.notifier, s.bgp
	s.mu.Unlock()
	if len(counters) > 0 {
		collectCounters(ctx, counters, gauge, counter)
	}
	for _, src := range vrrp {
		for _, c := range src.VRRPCounters() {
			counter(dAdvertsSent, c.AdvertsSent, c.Instance)
			counter(dAdvertsRecv, c.AdvertsReceived, c.Instance)
			for reason, n := range c.Rejected {
				counter(dAdvertsReject, n, c.Instance, reason)
			}
		}
	}
	for _, src := range checks {
		for _, c := range src.CheckResults() {
			addr, port := splitServer(c.Server)
			gauge(dCheckLatency, c.Latency.Seconds(), c.Pool, addr, port)
		}
	}
	if len(checks) == 0 && err == nil {
		seen := map[serverKey]bool{}
		for _, svc := range st.Services {
			for _, srv := range svc.Servers {
				k := statusServer(svc.Pool, srv)
				if !seen[k] && srv.LatencyMS > 0 {
					seen[k] = true
					gauge(dCheckLatency, srv.LatencyMS/1000, k.pool, k.addr, k.port)
				}
			}
		}
	}
	for _, src := range bgp {
		sessions, vips := src.BGPState()
		for _, p := range sessions {
			gauge(dBGPSessionUp, b2f(p.Established), p.Peer)
		}
		for _, v := range vips {
			gauge(dBGPAnnounced, b2f(v.Announced), v.VIP)
		}
	}
	for _, src := range notifier {
		for _, n := range src.NotifierCounts() {
			counter(dNotifySent, n.Sent, n.Name)
			counter(dNotifyFailed, n.Failed, n.Name)
			counter(dNotifyDropped, n.Dropped, n.Name)
		}
	}
}

// serverKey is a pool server by its labels.
type serverKey struct{ pool, addr, port string }

// statusServer is the key of a server of pool in the status.
func statusServer(pool string, s api.Server) serverKey {
	k := serverKey{pool: pool, addr: s.Address}
	if s.Port != 0 {
		k.port = strconv.Itoa(int(s.Port))
	}
	return k
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func collectStatus(st api.Status, gauge func(*prometheus.Desc, float64, ...string)) {
	build := buildinfo.Get()
	gauge(dInfo, 1, st.Node, st.Version, st.Dataplane, build.Revision, build.GoVersion)
	gauge(dStart, unix(st.Started))
	gauge(dReloadOK, b2f(st.LastReload.Applied))
	gauge(dReloadOKAt, unix(st.Reloaded))
	if !st.LastReconcile.At.IsZero() {
		gauge(dReconcileAt, unix(st.LastReconcile.At))
		gauge(dReconcileOK, b2f(st.LastReconcile.Error == ""))
	}
	for _, in := range st.VRRP {
		for _, s := range fsm.States {
			gauge(dVRRPState, b2f(in.State == s.String()), in.Name, s.String())
		}
		gauge(dVRRPPrio, float64(in.Priority), in.Name)
		gauge(dVRRPEffPrio, float64(in.EffectivePriority), in.Name)
		gauge(dVRRPSince, unix(in.Since), in.Name)
	}
	seen := map[serverKey]bool{}
	up, down := map[string]int{}, map[string]int{}
	for _, svc := range st.Services {
		for _, srv := range svc.Servers {
			k := statusServer(svc.Pool, srv)
			if seen[k] {
				continue
			}
			seen[k] = true
			if srv.Healthy {
				up[svc.Pool]++
			} else {
				down[svc.Pool]++
			}
			gauge(dServerUp, b2f(srv.Healthy), k.pool, k.addr, k.port)
			gauge(dServerWeight, float64(srv.Weight), k.pool, k.addr, k.port)
			gauge(dServerEff, float64(srv.EffectiveWeight), k.pool, k.addr, k.port)
		}
	}
	for _, p := range st.Pools {
		gauge(dPoolQuorumUp, b2f(p.QuorumUp), p.Name)
		gauge(dPoolHealthy, float64(p.HealthyWeight), p.Name)
		gauge(dPoolQuorum, float64(p.Quorum), p.Name)
		gauge(dPoolSorry, b2f(p.SorryActive), p.Name)
		gauge(dPoolServers, float64(up[p.Name]), p.Name, "up")
		gauge(dPoolServers, float64(down[p.Name]), p.Name, "down")
	}
}

// collectCounters reads every counter source; the counters are up when
// all of them could be read.
func collectCounters(ctx context.Context, srcs []CounterSource, gauge func(*prometheus.Desc, float64, ...string), counter func(*prometheus.Desc, uint64, ...string)) {
	var svcs []ServiceCounters
	for _, src := range srcs {
		s, err := src.Counters(ctx)
		if err != nil {
			gauge(dCountersUp, 0)
			return
		}
		svcs = append(svcs, s...)
	}
	gauge(dCountersUp, 1)
	for _, s := range svcs {
		vs := s.Key.String()
		counter(dSvcConns, s.Connections, s.Service, vs)
		counter(dSvcBytes, s.BytesIn, s.Service, vs, "in")
		counter(dSvcBytes, s.BytesOut, s.Service, vs, "out")
		if s.HasPackets {
			counter(dSvcPackets, s.PacketsIn, s.Service, vs, "in")
			counter(dSvcPackets, s.PacketsOut, s.Service, vs, "out")
		}
		for _, r := range s.Reals {
			addr, port := serverLabels(r.Addr, r.Port)
			counter(dRealConns, r.Connections, vs, addr, port)
			gauge(dRealActive, float64(r.ActiveConns), vs, addr, port)
			gauge(dRealInactive, float64(r.InactiveConns), vs, addr, port)
			counter(dRealBytes, r.BytesIn, vs, addr, port, "in")
			counter(dRealBytes, r.BytesOut, vs, addr, port, "out")
			if s.HasPackets {
				counter(dRealPackets, r.PacketsIn, vs, addr, port, "in")
				counter(dRealPackets, r.PacketsOut, vs, addr, port, "out")
			}
		}
	}
}
