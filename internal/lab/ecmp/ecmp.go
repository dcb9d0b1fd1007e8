// Package ecmp builds the scale-out lab in network namespaces: a router
// running BIRD 2 that spreads the flows to a VIP over the halb nodes
// announcing it over BGP (ECMP with L4 hashing, BFD), a client behind the
// router, halb nodes in direct-routing mode with the nftables data plane,
// and three nginx backends that answer the client through the router.
package ecmp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"halb/internal/api"
	"halb/internal/lab/netns"
)

// Addresses of the lab: the router, nodes and backends share
// 192.0.2.0/24; the client is behind the router on 198.51.100.0/24.
const (
	VIP        = "203.0.113.10"
	RouterAddr = "192.0.2.1"
	ClientAddr = "198.51.100.100"
	RouterASN  = 65000
	NodeASN    = 65010
	// Nodes counts the node namespaces; the demo starts halb on the first
	// three and adds the last.
	Nodes = 4
)

// NodeAddr is node i's address (i from 0).
func NodeAddr(i int) string { return fmt.Sprintf("192.0.2.%d", 11+i) }

// BackendAddrs are the backends' addresses.
var BackendAddrs = []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"}

// Options say where the lab's files are and which halb runs it.
type Options struct {
	Prefix string // starts every namespace name
	Halb   string // the halb binary
	Dir    string // configurations, logs, sockets
	// Baseline runs halb on the nodes with the data plane none, for BGP
	// and health checks only; Lab.Baseline installs in its place a
	// stateless hash with a seed of each node's own, as a balancer
	// without consistent hashing would.
	Baseline bool
}

// Lab is a running ECMP lab.
type Lab struct {
	opts     Options
	Lab      *netns.Lab
	Router   *netns.Host
	Client   *netns.Host
	Nodes    []*Node
	Backends []*Backend
	bird     *exec.Cmd
	birdSock string
}

// Node is one halb node.
type Node struct {
	Name, Addr          string
	Host                *netns.Host
	Config, Socket, Log string
	cmd                 *exec.Cmd
	done                chan error
}

// Backend is one nginx backend.
type Backend struct {
	Name, Addr string
	Host       *netns.Host
	Dir        string
	cmd        *exec.Cmd
}

// Up builds the lab and starts BIRD, the backends and halb on the first
// starting nodes. On error everything built so far is removed.
func Up(ctx context.Context, opts Options, starting int) (l *Lab, err error) {
	l = &Lab{opts: opts, Lab: netns.New(opts.Prefix)}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Down())
			l = nil
		}
	}()
	sw, err := l.Lab.AddSwitch("sw")
	if err != nil {
		return nil, err
	}
	cl, err := l.Lab.AddSwitch("cl")
	if err != nil {
		return nil, err
	}
	if l.Router, err = l.host("router", sw, RouterAddr+"/24"); err != nil {
		return nil, err
	}
	if _, err := l.Lab.Connect(l.Router, cl, "eth1", "198.51.100.1/24"); err != nil {
		return nil, err
	}
	if l.Client, err = l.host("client", cl, ClientAddr+"/24"); err != nil {
		return nil, err
	}
	if err := l.Client.IP("route", "add", "default", "via", "198.51.100.1"); err != nil {
		return nil, err
	}
	for i, addr := range BackendAddrs {
		b, err := l.addBackend(fmt.Sprintf("web%d", i+1), addr, sw)
		if err != nil {
			return nil, err
		}
		l.Backends = append(l.Backends, b)
	}
	for i := range Nodes {
		n, err := l.addNode(i, sw)
		if err != nil {
			return nil, err
		}
		l.Nodes = append(l.Nodes, n)
	}
	if err := l.startBIRD(); err != nil {
		return nil, err
	}
	for _, b := range l.Backends {
		if err := b.Start(); err != nil {
			return nil, err
		}
	}
	for i := range starting {
		if err := l.StartNode(ctx, i); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Lab) host(name string, sw *netns.Host, addr string) (*netns.Host, error) {
	h, err := l.Lab.AddHost(name)
	if err != nil {
		return nil, err
	}
	if _, err := l.Lab.Connect(h, sw, "eth0", addr); err != nil {
		return nil, err
	}
	return h, nil
}

func sysctl(h *netns.Host, kvs ...string) error {
	for _, kv := range kvs {
		if out, err := h.Run("sysctl", "-qw", kv); err != nil {
			return fmt.Errorf("%s: sysctl %s: %v: %s", h.Name, kv, err, out)
		}
	}
	return nil
}

// birdConf is the router's BIRD configuration: every node a BGP neighbour
// with BFD, their routes merged into one multipath kernel route, and
// short retry timers so that a recovered node is back in seconds.
func birdConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, `router id %s;
protocol device { scan time 1; }
protocol kernel { ipv4 { import none; export all; }; merge paths on; }
protocol bfd { interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
template bgp lb {
	local %s as %d;
	hold time 3;
	connect retry time 1;
	error wait time 1, 2;
	bfd on;
	ipv4 { import all; export none; };
}
`, RouterAddr, RouterAddr, RouterASN)
	for i := range Nodes {
		fmt.Fprintf(&b, "protocol bgp lb%d from lb { neighbor %s as %d; }\n", i+1, NodeAddr(i), NodeASN)
	}
	return b.String()
}

func (l *Lab) startBIRD() error {
	if err := sysctl(l.Router, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.fib_multipath_hash_policy=1"); err != nil {
		return err
	}
	dir := filepath.Join(l.opts.Dir, "router")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConf()), 0o644); err != nil {
		return err
	}
	l.birdSock = filepath.Join(dir, "bird.ctl")
	log, err := os.Create(filepath.Join(dir, "bird.log"))
	if err != nil {
		return err
	}
	l.bird = l.Router.Command(context.Background(), "bird", "-f", "-c", conf, "-s", l.birdSock)
	l.bird.Stdout, l.bird.Stderr = log, log
	if err := l.bird.Start(); err != nil {
		_ = log.Close() // the start's error is the one to report
		return fmt.Errorf("router: start bird: %w", err)
	}
	go func() {
		_ = l.bird.Wait() // BIRD ends killed with the lab
		_ = log.Close()
	}()
	return nil
}

// nodeConfig is node i's halb configuration.
func nodeConfig(i int, dir string) string {
	var servers []string
	for _, a := range BackendAddrs {
		servers = append(servers, "{address: "+a+"}")
	}
	return fmt.Sprintf(`# Written by halb lab --topology ecmp.
node: lb%d
dataplane: nftables
state_dir: %s
services:
  - {name: http, protocol: tcp, vips: [%s], ports: [80], mark: shared, forward: dr, pool: www}
pools:
  www:
    check: {type: http, port: 80, path: /healthz, expect_status: [200], interval: 500ms, timeout: 300ms, rise: 1, fall: 2}
    servers: [%s]
bgp:
  asn: %d
  router_id: %s
  drain_time: 2s
  peers: [{address: %s, asn: %d, hold_time: 3s, bfd: {interval: 100ms, multiplier: 3}}]
  announce: [{vips: [%s], communities: ["%d:100"]}]
api: {socket: %s}
`, i+1, filepath.Join(dir, "state"), VIP, strings.Join(servers, ", "), NodeASN, NodeAddr(i), RouterAddr, RouterASN, VIP,
		NodeASN, filepath.Join(dir, "halb.sock"))
}

func (l *Lab) addNode(i int, sw *netns.Host) (*Node, error) {
	name := fmt.Sprintf("lb%d", i+1)
	h, err := l.host(name, sw, NodeAddr(i)+"/24")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(l.opts.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "halb.yaml")
	text := nodeConfig(i, dir)
	if l.opts.Baseline {
		text = strings.Replace(text, "dataplane: nftables", "dataplane: none", 1)
	}
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return nil, err
	}
	return &Node{Name: name, Addr: NodeAddr(i), Host: h, Config: cfg, Socket: filepath.Join(dir, "halb.sock"),
		Log: filepath.Join(dir, "halb.log")}, nil
}

// nginxConf answers /healthz with "ok" and / with the backend's name.
const nginxConf = `worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp;
    proxy_temp_path %[1]s/tmp;
    fastcgi_temp_path %[1]s/tmp;
    uwsgi_temp_path %[1]s/tmp;
    scgi_temp_path %[1]s/tmp;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    server {
        listen 80 default_server;
        location = /healthz { default_type text/plain; return 200 "ok\n"; }
        location / { default_type text/plain; return 200 "%[2]s\n"; }
    }
}
`

func (l *Lab) addBackend(name, addr string, sw *netns.Host) (*Backend, error) {
	h, err := l.host(name, sw, addr+"/24")
	if err != nil {
		return nil, err
	}
	// Direct routing: the VIP on lo, not answered in ARP; replies go to
	// the client through the router.
	if err := sysctl(h, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
		"net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2"); err != nil {
		return nil, err
	}
	if err := h.IP("addr", "add", VIP+"/32", "dev", "lo"); err != nil {
		return nil, err
	}
	if err := h.IP("route", "add", "default", "via", RouterAddr); err != nil {
		return nil, err
	}
	dir := filepath.Join(l.opts.Dir, name)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(fmt.Sprintf(nginxConf, dir, name)), 0o644); err != nil {
		return nil, err
	}
	return &Backend{Name: name, Addr: addr, Host: h, Dir: dir}, nil
}

// Start starts the backend's nginx.
func (b *Backend) Start() error {
	log, err := os.OpenFile(filepath.Join(b.Dir, "nginx.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := b.Host.Command(context.Background(), "nginx", "-c", filepath.Join(b.Dir, "nginx.conf"), "-p", b.Dir)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = log.Close() // the start's error is the one to report
		return fmt.Errorf("%s: start nginx: %w", b.Name, err)
	}
	b.cmd = cmd
	go func() {
		_ = cmd.Wait() // nginx ends killed: no status to keep
		_ = log.Close()
	}()
	return nil
}

// Kill kills the backend's nginx, as a crash would.
func (b *Backend) Kill() {
	if b.cmd != nil {
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		b.cmd = nil
	}
}

// StartNode starts halb on node i and waits for its status socket.
func (l *Lab) StartNode(ctx context.Context, i int) error {
	n := l.Nodes[i]
	os.Remove(n.Socket)
	log, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := n.Host.Command(context.Background(), l.opts.Halb, "run", "--config", n.Config)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close() // the start's error is the one to report
		return fmt.Errorf("%s: start halb: %w", n.Name, err)
	}
	n.cmd, n.done = cmd, make(chan error, 1)
	go func() { n.done <- cmd.Wait(); _ = log.Close() }()
	for deadline := time.Now().Add(15 * time.Second); ; {
		if _, err := n.Status(ctx); err == nil {
			return nil
		}
		select {
		case err := <-n.done:
			n.done <- err
			return fmt.Errorf("%s: halb exited at start (%v); see %s", n.Name, err, n.Log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: halb did not open its status socket; see %s", n.Name, n.Log)
		}
	}
}

// Status asks the node's halb for its status.
func (n *Node) Status(ctx context.Context) (api.Status, error) {
	return api.NewClient(n.Socket).Status(ctx)
}

// Running reports whether halb runs on the node.
func (n *Node) Running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case err := <-n.done:
		n.done <- err
		return false
	default:
		return true
	}
}

// Kill kills the node's halb (kill -9) and waits for it to exit; an
// error says it could not be waited for (its exit status is the kill's).
func (n *Node) Kill() error {
	if !n.Running() {
		return nil
	}
	// `ip netns exec` replaces itself with halb: the pid is halb's.
	_ = n.cmd.Process.Kill() // it may have exited meanwhile
	err := <-n.done
	n.cmd = nil
	if exit := (*exec.ExitError)(nil); err != nil && !errors.As(err, &exit) {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	return nil
}

// RxPackets reads how many packets the node's link has received.
func (n *Node) RxPackets() (uint64, error) {
	out, err := n.Host.Run("cat", "/sys/class/net/eth0/statistics/rx_packets")
	if err != nil {
		return 0, fmt.Errorf("%s: rx packets: %v: %s", n.Name, err, out)
	}
	return strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
}

// NextHops returns the next hops of the router's kernel route to the VIP.
func (l *Lab) NextHops() ([]string, error) {
	out, err := l.Router.Run("ip", "-4", "route", "show", VIP)
	if err != nil {
		return nil, fmt.Errorf("router: ip route: %v: %s", err, out)
	}
	var hops []string
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			hops = append(hops, f[i+1])
		}
	}
	return hops, nil
}

// baselineTable is the baseline's forwarding: a flow goes to the backend
// its hash picks, with a seed of the node's own, so that nodes disagree.
const baselineTable = `table netdev halbbase
delete table netdev halbbase
table netdev halbbase {
	chain in {
		type filter hook ingress device "eth0" priority 0; policy accept;
		ip daddr %s tcp dport 80 fwd ip to jhash ip saddr . tcp sport mod %d seed %#x map { %s } device "eth0"
	}
}
`

// Baseline installs the baseline's forwarding to backends on node i
// (Options.Baseline).
func (l *Lab) Baseline(i int, backends []string) error {
	var m []string
	for j, b := range backends {
		m = append(m, fmt.Sprintf("%d : %s", j, b))
	}
	n := l.Nodes[i]
	file := filepath.Join(l.opts.Dir, n.Name, "baseline.nft")
	text := fmt.Sprintf(baselineTable, VIP, len(backends), 0x9e3779b9*(i+1)&0xffffffff, strings.Join(m, ", "))
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		return err
	}
	if out, err := n.Host.Run("nft", "-f", file); err != nil {
		return fmt.Errorf("%s: nft -f %s: %v: %s", n.Name, file, err, out)
	}
	return nil
}

// Down stops everything and removes the namespaces.
func (l *Lab) Down() error {
	var errs []error
	var stopping []*Node
	for _, n := range l.Nodes {
		if n.Running() {
			_ = n.cmd.Process.Signal(syscall.SIGTERM) // it may have exited meanwhile
			stopping = append(stopping, n)
		}
	}
	for _, n := range stopping { // each withdraws and drains for bgp.drain_time
		select {
		case err := <-n.done:
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
			}
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("%s: halb still running 10s after SIGTERM", n.Name))
		}
	}
	for _, b := range l.Backends {
		b.Kill()
	}
	return errors.Join(append(errs, l.Lab.Close())...)
}

// Dirs names the subdirectories a lab writes in its work directory.
func Dirs() []string {
	out := []string{"router"}
	for i := range Nodes {
		out = append(out, fmt.Sprintf("lb%d", i+1))
	}
	for i := range BackendAddrs {
		out = append(out, fmt.Sprintf("web%d", i+1))
	}
	return out
}
