// Package config turns halb's YAML configuration into a validated, immutable
// Config value. Parsing has no side effects; every problem is reported with
// its file, line and column, all at once.
package config

import (
	"net/netip"
	"time"
)

// Config is one node's complete, validated configuration.
type Config struct {
	// File is the path the configuration was read from.
	File string `yaml:"-"`

	Node     string `yaml:"node"`
	StateDir string `yaml:"state_dir"`
	// ScriptUser is the user halb runs configured programs as (exec
	// checks, tracking scripts, notify programs) when they name none of
	// their own; root only when written as such.
	ScriptUser string          `yaml:"script_user"`
	VRRP       VRRP            `yaml:"vrrp"`
	Services   []Service       `yaml:"services"`
	Pools      map[string]Pool `yaml:"pools"`
	Dataplane  string          `yaml:"dataplane"`
	NFTables   NFTables        `yaml:"nftables"`
	IPVSSync   *IPVSSync       `yaml:"ipvs_sync"`
	API        API             `yaml:"api"`
	Notify     Notify          `yaml:"notify"`
	BGP        BGP             `yaml:"bgp"`
	positions  map[string]Pos  `yaml:"-"`
	reused     *reuse          `yaml:"-"` // see ChangedSince

	// NetNamespace names the network namespace (/run/netns/NAME) halb
	// runs in: halb run enters it before it opens anything, as
	// keepalived's net_namespace does ("": the one it is started in).
	NetNamespace string `yaml:"net_namespace"`
}

// VRRP holds the virtual router instances, their sync groups and the
// tracking scripts they may use.
type VRRP struct {
	Instances  []Instance  `yaml:"instances"`
	SyncGroups []SyncGroup `yaml:"sync_groups"`
	Scripts    []Script    `yaml:"scripts"`
	// RealtimePriority, 1 to 99, runs halb with real-time scheduling
	// (SCHED_RR) at that priority, so that adverts are sent and heard on
	// time on a busy machine (0: off, the default).
	RealtimePriority int `yaml:"realtime_priority"`
	// LockMemory keeps halb's memory from being swapped out (mlockall).
	LockMemory bool `yaml:"lock_memory"`
	// Static holds addresses, routes and rules present while halb runs,
	// whatever the instances' states (keepalived's static_ipaddress,
	// static_routes and static_rules).
	Static Static `yaml:"static"`
	// MulticastGroup4 and 6 are the groups adverts go to (default the
	// RFC's 224.0.0.18 and ff02::12; keepalived's vrrp_mcast_group4/6).
	MulticastGroup4 netip.Addr `yaml:"multicast_group4"`
	MulticastGroup6 netip.Addr `yaml:"multicast_group6"`
	// Processes are the processes instances may track.
	Processes []Process `yaml:"processes"`
}

// Instance is one VRRP virtual router: a set of VIPs owned by one node.
type Instance struct {
	Name           string          `yaml:"name"`
	Interface      string          `yaml:"interface"`
	VRID           int             `yaml:"vrid"`
	Priority       int             `yaml:"priority"`
	Version        int             `yaml:"version"`
	AdvertInterval Duration        `yaml:"advert_interval"`
	Preempt        bool            `yaml:"preempt"`
	PreemptDelay   Duration        `yaml:"preempt_delay"`
	VIPs           []netip.Prefix  `yaml:"vips"`
	UnicastSource  netip.Addr      `yaml:"unicast_source"`
	UnicastPeers   []netip.Addr    `yaml:"unicast_peers"`
	TrackInterface []TrackedObject `yaml:"track_interfaces"`
	TrackScripts   []TrackedObject `yaml:"track_scripts"`
	GARP           GARP            `yaml:"garp"`
	// IPv4Checksum selects how a v3 IPv4 advert's checksum is computed on
	// send: "pseudo-header" (keepalived's default) or "message" (RFC 9568
	// routers). Both forms are accepted on receive.
	IPv4Checksum string `yaml:"ipv4_checksum"`
	// AuthPassword is VRRPv2's authentication key ("" = none), sent in
	// clear or, with AuthType "ah", keying IPsec AH's HMAC-MD5-96.
	AuthPassword string `yaml:"auth_password"`
	// AuthType is "pass" (simple password; also when empty) or "ah"
	// (keepalived's auth_type AH).
	AuthType string `yaml:"auth_type"`
	// Notify is an executable run on every state change of this
	// instance, as NotifyUser (or the top-level script_user).
	Notify     string `yaml:"notify"`
	NotifyUser string `yaml:"notify_user"`

	// VIPOptions holds what the vips entries written as mappings say
	// besides their address (vrrp_extras.go).
	VIPOptions []VIPOption `yaml:"-"`
	// IgnoreInterfaceDown keeps the instance out of FAULT when its own
	// interface goes down (keepalived's dont_track_primary).
	IgnoreInterfaceDown bool `yaml:"ignore_interface_down"`
	// Routes and Rules are added while the instance is master, removed
	// otherwise (keepalived's virtual_routes and virtual_rules).
	Routes []Route `yaml:"routes"`
	Rules  []Rule  `yaml:"rules"`
	// TrackProcesses name vrrp.processes, as TrackScripts do scripts.
	TrackProcesses []TrackedObject `yaml:"track_processes"`
	// VMAC puts the VIPs of the instance's interface on a macvlan
	// interface VMACName (default vrrp.VRID, vrrp6.VRID for IPv6) with the
	// virtual router MAC, and sends adverts from it unless VMACXmitBase
	// (keepalived's use_vmac and vmac_xmit_base).
	VMAC         bool   `yaml:"vmac"`
	VMACName     string `yaml:"vmac_name"`
	VMACXmitBase bool   `yaml:"vmac_xmit_base"`
	// NoAccept drops the packets addressed to the VIPs while master
	// (nftables), as keepalived's no_accept does.
	NoAccept bool `yaml:"no_accept"`
}

// Family returns 4 or 6, the address family of the instance's VIPs.
func (in Instance) Family() int {
	if len(in.VIPs) > 0 && in.VIPs[0].Addr().Is6() {
		return 6
	}
	return 4
}

// Unicast reports whether the instance sends adverts to unicast peers.
func (in Instance) Unicast() bool { return len(in.UnicastPeers) > 0 }

// TrackedObject names an interface or script that affects an instance.
// Weight 0 means "FAULT when it fails"; otherwise the weight is added to
// the priority while the object is up (positive) or subtracted when it is
// down (negative), as keepalived does.
type TrackedObject struct {
	Name   string `yaml:"name"`
	Weight int    `yaml:"weight"`
}

// GARP controls the gratuitous ARP / unsolicited NA sent on becoming master.
type GARP struct {
	Count       int      `yaml:"count"`
	SecondBurst Duration `yaml:"second_burst"`
	Refresh     Duration `yaml:"refresh"`
	// LowerPriorityCount announcements are sent when a master hears a
	// lower-priority master (a healed split brain), and again after
	// LowerPriorityDelay (0: not again); they default to Count and
	// SecondBurst, as keepalived's garp_lower_prio_repeat and _delay.
	LowerPriorityCount int      `yaml:"lower_priority_count"`
	LowerPriorityDelay Duration `yaml:"lower_priority_delay"`
}

// SyncGroup is a set of instances that always share one state.
type SyncGroup struct {
	Name      string   `yaml:"name"`
	Instances []string `yaml:"instances"`
}

// Script is a tracking script run periodically as User (or the
// top-level script_user); its exit code says up/down.
type Script struct {
	Name     string   `yaml:"name"`
	Command  []string `yaml:"command"`
	User     string   `yaml:"user"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Rise     int      `yaml:"rise"`
	Fall     int      `yaml:"fall"`
	Weight   int      `yaml:"weight"`
}

// Service is a unit of load balancing: VIPs × ports of one protocol sent to
// one pool, grouped into firewall marks as Mark says.
type Service struct {
	Name           string       `yaml:"name"`
	Protocol       string       `yaml:"protocol"`
	VIPs           []netip.Addr `yaml:"vips"`
	Ports          []PortRange  `yaml:"ports"`
	Mark           Mark         `yaml:"mark"`
	Scheduler      string       `yaml:"scheduler"`
	SchedulerFlags []string     `yaml:"scheduler_flags"`
	Forward        string       `yaml:"forward"`
	Persistence    Persistence  `yaml:"persistence"`
	Pool           string       `yaml:"pool"`
	// MaglevSize is the lookup-table size of the nftables data plane
	// (a prime); 0 picks one suited to the pool size.
	MaglevSize int `yaml:"maglev_size"`
	// Tunnel is the encapsulation of forward: tun.
	Tunnel Tunnel `yaml:"tunnel"`
}

// Tunnel is how IPVS encapsulates packets to the real servers of a
// forward: tun service.
type Tunnel struct {
	Type string `yaml:"type"` // ipip (default) | gue | gre
	// Port is the UDP destination port of GUE.
	Port uint16 `yaml:"port"`
	// Checksum is none (default), csum, or remcsum (GUE only).
	Checksum string `yaml:"checksum"`
}

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct {
	Lo, Hi uint16
}

// Single reports whether the range is one port.
func (p PortRange) Single() bool { return p.Lo == p.Hi }

// MarkMode says how a service's packets are grouped into firewall marks.
type MarkMode string

// Mark modes.
const (
	MarkShared   MarkMode = "shared"
	MarkPerVIP   MarkMode = "per-vip"
	MarkNone     MarkMode = "none"
	MarkExternal MarkMode = "external" // an explicit number set by rules outside halb
)

// Mark is a service's mark setting: a mode, and the number for MarkExternal.
type Mark struct {
	Mode  MarkMode
	Value uint32
}

// Persistence pins a client to one real server for Timeout.
type Persistence struct {
	Timeout Duration `yaml:"timeout"`
	// Netmask is a prefix length applied to the client address; 0 means
	// the default, 32 for IPv4 and 128 for IPv6.
	Netmask int `yaml:"netmask"`
}

// Pool is a set of real servers with their health checks.
type Pool struct {
	Name         string   `yaml:"-"`
	Quorum       int      `yaml:"quorum"`
	Hysteresis   int      `yaml:"hysteresis"`
	SorryServer  string   `yaml:"sorry_server"`
	OnFailure    string   `yaml:"on_failure"`
	InitialState string   `yaml:"initial_state"`
	SlowStart    Duration `yaml:"slow_start"`
	Checks       Checks   `yaml:"check"`
	Servers      []Server `yaml:"servers"`
}

// Sorry returns the sorry server's address and port (0 = keep the port).
func (p Pool) Sorry() (netip.AddrPort, bool) {
	if p.SorryServer == "" {
		return netip.AddrPort{}, false
	}
	ap, err := parseHostPort(p.SorryServer)
	return ap, err == nil
}

// Server is one real server of a pool.
type Server struct {
	Address netip.Addr `yaml:"address"`
	// Port 0 keeps the destination port of the packet.
	Port   uint16 `yaml:"port"`
	Weight int    `yaml:"weight"`
	// Checks, when set, replace the pool's checks for this server.
	Checks Checks `yaml:"check"`
	// OnFailure, when set, replaces the pool's on_failure for this server.
	OnFailure string `yaml:"on_failure"`
	// MaxConnections and MinConnections are IPVS's upper and lower
	// connection thresholds (0: none): the server takes no new connections
	// above the upper until its count falls below the lower.
	MaxConnections uint32 `yaml:"max_connections"`
	MinConnections uint32 `yaml:"min_connections"`
}

// ServerOnFailure returns what becomes of a failed server of the pool:
// its own on_failure when set, else the pool's.
func (p Pool) ServerOnFailure(s Server) string {
	if s.OnFailure != "" {
		return s.OnFailure
	}
	return p.OnFailure
}

// ServerChecks returns the checks run on a server of the pool: its own
// when it has any, else the pool's.
func (p Pool) ServerChecks(s Server) Checks {
	if s.Checks != nil {
		return s.Checks
	}
	return p.Checks
}

// Checks is the list of checks of a pool; all must pass.
type Checks []Check

// Check describes one health check applied to each server of a pool.
type Check struct {
	Type     string   `yaml:"type"`
	Port     uint16   `yaml:"port"`
	Address  string   `yaml:"connect_address"`
	Source   string   `yaml:"source"`
	Mark     uint32   `yaml:"fwmark"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Rise     int      `yaml:"rise"`
	Fall     int      `yaml:"fall"`

	// http, https
	Path         string        `yaml:"path"`
	Host         string        `yaml:"host"`
	ExpectStatus []StatusRange `yaml:"expect_status"`
	BodyRegex    string        `yaml:"body_regex"`
	BodyDigest   string        `yaml:"body_digest"`
	// https, tls
	SNI        string `yaml:"sni"`
	Verify     bool   `yaml:"verify"`
	CAFile     string `yaml:"ca_file"`
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// smtp
	HELOName string `yaml:"helo_name"`
	// dns
	Query      string `yaml:"query"`
	QueryType  string `yaml:"query_type"`
	Expect     string `yaml:"expect"`
	DNSOverTCP bool   `yaml:"tcp"`
	// udp
	Payload       string `yaml:"payload"`
	ExpectReply   string `yaml:"expect_reply"`
	NoICMPUnreach bool   `yaml:"no_icmp_unreachable"`
	// exec
	Command []string `yaml:"command"`
	User    string   `yaml:"user"`
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct {
	Lo, Hi int
}

// NFTables configures halb's nftables table.
type NFTables struct {
	Table            string `yaml:"table"`
	RemoveOnShutdown bool   `yaml:"remove_on_shutdown"`
	// MarkMask are the bits of the packet mark halb sets; it keeps the
	// others, which other software on the host may use.
	MarkMask uint32 `yaml:"mark_mask"`
}

// IPVSSync runs the kernel's IPVS connection sync daemons following the
// VRRP state of one instance.
type IPVSSync struct {
	Instance   string     `yaml:"instance"`
	Interface  string     `yaml:"interface"`
	SyncID     int        `yaml:"sync_id"`
	Mode       string     `yaml:"mode"` // follow | both
	McastGroup netip.Addr `yaml:"mcast_group"`
	McastPort  uint16     `yaml:"mcast_port"`
	McastTTL   int        `yaml:"mcast_ttl"`
	MaxLen     int        `yaml:"max_len"`
}

// API configures the status socket and the metrics listener.
type API struct {
	Socket string `yaml:"socket"`
	// SocketGroup, when set, owns the status socket, mode 0660 (else
	// 0600, root's only).
	SocketGroup string `yaml:"socket_group"`
	Metrics     string `yaml:"metrics"`
}

// Notify configures where events are sent.
type Notify struct {
	SMTP     *SMTP     `yaml:"smtp"`
	Webhooks []Webhook `yaml:"webhooks"`
	// Exec is a program run for every event, as ExecUser (or the
	// top-level script_user).
	Exec     string `yaml:"exec"`
	ExecUser string `yaml:"exec_user"`
	// ExecTimeout bounds one run of Exec (0: 10s).
	ExecTimeout Duration `yaml:"exec_timeout"`
	// GroupWait is how long a notification waits for more events to
	// join it (0: 5s); MinInterval is the least time between two mails
	// or webhook posts (0: 60s). Events in between are sent together.
	GroupWait   Duration `yaml:"group_wait"`
	MinInterval Duration `yaml:"min_interval"`
}

// SMTP is a mail relay and the addresses of notification mails.
type SMTP struct {
	Server       string   `yaml:"server"`
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	// StartTLS is "auto" (when offered; the default), "required" or
	// "never"; CAFile adds trusted roots for the server's certificate.
	StartTLS string `yaml:"starttls"`
	CAFile   string `yaml:"ca_file"`
	// Helo is the name halb greets the relay with (default: the node's
	// name); Timeout bounds one mail's whole dialog (0: 30s).
	Helo    string   `yaml:"helo"`
	Timeout Duration `yaml:"timeout"`
}

// Webhook is an HTTP endpoint that receives events as JSON.
type Webhook struct {
	URL     string   `yaml:"url"`
	Timeout Duration `yaml:"timeout"`
	// Retries is how many times a failed post is retried, with doubling
	// backoff (0: 3; -1: none).
	Retries int `yaml:"retries"`
}

// Duration is a time.Duration written with a unit in YAML ("1s", "300ms").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// PositionOf returns where the value at a path ("services[0].ports[1]")
// was written, and whether it was written at all.
func (c *Config) PositionOf(path string) (Pos, bool) {
	p, ok := c.positions[path]
	return p, ok
}

// Instance returns the VRRP instance with the given name.
func (c *Config) Instance(name string) (Instance, bool) {
	for _, in := range c.VRRP.Instances {
		if in.Name == name {
			return in, true
		}
	}
	return Instance{}, false
}

// HasServer reports whether pool has a server with this address and port.
func (c *Config) HasServer(pool string, addr netip.Addr, port uint16) bool {
	for _, s := range c.Pools[pool].Servers {
		if s.Address == addr && s.Port == port {
			return true
		}
	}
	return false
}
