// Package site builds the reference site in network namespaces: a client,
// two halb load balancers and a web farm of real servers (nginx for HTTP
// and HTTPS, vsftpd for FTP), all on one switch, the load balancers
// configured from examples/site-lb-a.yaml and site-lb-b.yaml.
package site

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"halb/examples"
	"halb/internal/api"
	"halb/internal/lab/netns"
)

// Addresses of the site. VIPs and the load balancers' own addresses are on
// 192.0.2.0/24, the web farm on 198.51.100.0/24, all on one link.
var (
	VIPsA    = []string{"192.0.2.9", "192.0.2.49", "192.0.2.139"}  // lb-a is primary
	VIPsB    = []string{"192.0.2.10", "192.0.2.50", "192.0.2.140"} // lb-b is primary
	ClientIP = "192.0.2.100"
	LBAddrs  = [2][]string{{"192.0.2.11/24", "198.51.100.2/24"}, {"192.0.2.12/24", "198.51.100.3/24"}}
	LBNames  = [2]string{"lb-a", "lb-b"}
	Backends = []string{"198.51.100.11", "198.51.100.12", "198.51.100.13"}
)

// Dirs names the subdirectories a site writes in its work directory.
func Dirs() []string {
	out := append([]string{}, LBNames[:]...)
	for i := range Backends {
		out = append(out, fmt.Sprintf("web%d", i+1))
	}
	return out
}

// AllVIPs returns every VIP, lb-a's first.
func AllVIPs() []string { return append(append([]string{}, VIPsA...), VIPsB...) }

// Options say where the site's files are and which halb runs it.
type Options struct {
	// Prefix starts every namespace name ("halblab" for `halb lab`).
	Prefix string
	// Halb is the halb binary the load balancers run.
	Halb string
	// Dir holds configurations, logs, sockets and the backends' files.
	Dir string
	// Dataplane is passed to `halb run --dataplane` ("" = the config's).
	Dataplane string
	// ConfigEdit, when set, rewrites each load balancer's configuration
	// text before it is written (e.g. shorter intervals for tests).
	ConfigEdit func(lb int, yaml string) string
}

// Site is a running lab.
type Site struct {
	opts     Options
	Lab      *netns.Lab
	Switch   *netns.Host
	Client   *netns.Host
	LBs      [2]*LB
	Backends []*Backend
}

// LB is one load balancer namespace and its halb daemon.
type LB struct {
	Name   string
	Host   *netns.Host
	Config string
	Socket string
	Log    string
	// Port is the switch port of its link: set it down to cut the node off.
	Port string
	cmd  *exec.Cmd
	done chan error
}

// Backend is one real server namespace and its servers.
type Backend struct {
	Name  string
	Addr  string
	Host  *netns.Host
	Dir   string
	procs map[string]*exec.Cmd
}

// Up builds the site and starts every server and both load balancers.
// On error everything built so far is removed.
func Up(ctx context.Context, opts Options) (s *Site, err error) {
	s = &Site{opts: opts, Lab: netns.New(opts.Prefix)}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Down())
			s = nil
		}
	}()
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	if s.Switch, err = s.Lab.AddSwitch("sw"); err != nil {
		return nil, err
	}
	if s.Client, err = s.Lab.AddHost("client"); err != nil {
		return nil, err
	}
	if _, err = s.Lab.Connect(s.Client, s.Switch, "eth0", ClientIP+"/24"); err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, v := range AllVIPs() {
		ips = append(ips, net.ParseIP(v))
	}
	cert, key, err := selfSigned(ips)
	if err != nil {
		return nil, err
	}
	for i, addr := range Backends {
		b, err := s.addBackend(fmt.Sprintf("web%d", i+1), addr, cert, key)
		if err != nil {
			return nil, err
		}
		s.Backends = append(s.Backends, b)
	}
	for i := range s.LBs {
		lb, err := s.addLB(i)
		if err != nil {
			return nil, err
		}
		s.LBs[i] = lb
	}
	for _, b := range s.Backends {
		if err := b.StartServers(); err != nil {
			return nil, err
		}
	}
	for i := range s.LBs {
		if err := s.StartLB(ctx, i); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Site) addBackend(name, addr string, cert, key []byte) (*Backend, error) {
	h, err := s.Lab.AddHost(name)
	if err != nil {
		return nil, err
	}
	if _, err := s.Lab.Connect(h, s.Switch, "eth0", addr+"/24"); err != nil {
		return nil, err
	}
	// Direct routing: the backend holds every VIP on lo without answering
	// ARP for it, and answers the client directly.
	for _, kv := range []string{"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
		"net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2"} {
		if out, err := h.Run("sysctl", "-qw", kv); err != nil {
			return nil, fmt.Errorf("%s: sysctl %s: %v: %s", name, kv, err, out)
		}
	}
	for _, v := range AllVIPs() {
		if err := h.IP("addr", "add", v+"/32", "dev", "lo"); err != nil {
			return nil, err
		}
	}
	if err := h.IP("route", "add", "192.0.2.0/24", "dev", "eth0"); err != nil {
		return nil, err
	}
	dir := filepath.Join(s.opts.Dir, name)
	if err := writeBackendFiles(dir, name, cert, key); err != nil {
		return nil, err
	}
	return &Backend{Name: name, Addr: addr, Host: h, Dir: dir, procs: map[string]*exec.Cmd{}}, nil
}

func (s *Site) addLB(i int) (*LB, error) {
	name := LBNames[i]
	h, err := s.Lab.AddHost(name)
	if err != nil {
		return nil, err
	}
	port, err := s.Lab.Connect(h, s.Switch, "eth0", LBAddrs[i]...)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.opts.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	src, err := fs.ReadFile(examples.Files, "site-"+name+".yaml")
	if err != nil {
		return nil, err
	}
	text := fmt.Sprintf("# Written by the lab from examples/site-%s.yaml.\nstate_dir: %s\n%s", name, filepath.Join(dir, "state"), src)
	if s.opts.ConfigEdit != nil {
		text = s.opts.ConfigEdit(i, text)
	}
	cfg := filepath.Join(dir, "halb.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return nil, err
	}
	return &LB{Name: name, Host: h, Config: cfg, Socket: filepath.Join(dir, "halb.sock"),
		Log: filepath.Join(dir, "halb.log"), Port: port}, nil
}

// StartServers starts nginx and vsftpd on the backend.
func (b *Backend) StartServers() error {
	if err := b.start("nginx", "nginx", "-c", filepath.Join(b.Dir, "nginx.conf"), "-p", b.Dir); err != nil {
		return err
	}
	return b.start("vsftpd", "vsftpd", filepath.Join(b.Dir, "vsftpd.conf"))
}

func (b *Backend) start(key, name string, args ...string) error {
	log, err := os.OpenFile(filepath.Join(b.Dir, key+".out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := b.Host.Command(context.Background(), name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = log.Close() // the start's error is the one to report
		return fmt.Errorf("%s: start %s: %w", b.Name, name, err)
	}
	b.procs[key] = cmd
	go func() {
		_ = cmd.Wait() // servers end killed (StopServers): no status to keep
		_ = log.Close()
	}()
	return nil
}

// StopServers kills the backend's servers, as a crash would.
func (b *Backend) StopServers() {
	for key, cmd := range b.procs {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		delete(b.procs, key)
	}
}

// StartLB starts halb on load balancer i and waits for its status socket.
func (s *Site) StartLB(ctx context.Context, i int) error {
	return s.StartLBWith(ctx, i, s.opts.Halb)
}

// StartLBWith is StartLB with another halb binary (another release), on
// the node's same configuration and state directory.
func (s *Site) StartLBWith(ctx context.Context, i int, halb string) error {
	lb := s.LBs[i]
	os.Remove(lb.Socket)
	log, err := os.OpenFile(lb.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{"run", "--config", lb.Config, "--socket", lb.Socket}
	if s.opts.Dataplane != "" {
		args = append(args, "--dataplane", s.opts.Dataplane)
	}
	cmd := lb.Host.Command(context.Background(), halb, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close() // the start's error is the one to report
		return fmt.Errorf("%s: start halb: %w", lb.Name, err)
	}
	lb.cmd, lb.done = cmd, make(chan error, 1)
	go func() { lb.done <- cmd.Wait(); _ = log.Close() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := lb.Status(ctx); err == nil {
			return nil
		}
		select {
		case err := <-lb.done:
			lb.done <- err
			return fmt.Errorf("%s: halb exited at start (%v); its log: %s", lb.Name, err, tail(lb.Log, 15))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: halb did not open its status socket; its log: %s", lb.Name, tail(lb.Log, 15))
		}
	}
}

// Status asks the load balancer's halb for its status.
func (lb *LB) Status(ctx context.Context) (api.Status, error) {
	return api.NewClient(lb.Socket).Status(ctx)
}

// Running reports whether halb runs on the load balancer.
func (lb *LB) Running() bool {
	if lb.cmd == nil {
		return false
	}
	select {
	case err := <-lb.done:
		lb.done <- err
		return false
	default:
		return true
	}
}

// Signal sends sig to halb; with SIGKILL it is a crash, with SIGTERM a
// graceful stop. It waits up to timeout for halb to exit.
func (lb *LB) Signal(sig syscall.Signal, timeout time.Duration) error {
	if !lb.Running() {
		return nil
	}
	// `ip netns exec` replaces itself with halb: the pid is halb's.
	if err := lb.cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case err := <-lb.done:
		lb.done <- err
		lb.cmd = nil
		var ee *exec.ExitError
		if err != nil && !(sig == syscall.SIGKILL && errors.As(err, &ee)) {
			return fmt.Errorf("%s: halb exited with %v", lb.Name, err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s: halb still running %v after signal %v", lb.Name, timeout, sig)
	}
}

// Down stops everything and removes the namespaces.
func (s *Site) Down() error {
	var errs []error
	for _, lb := range s.LBs {
		if lb != nil && lb.Running() {
			errs = append(errs, lb.Signal(syscall.SIGTERM, 5*time.Second))
		}
	}
	for _, b := range s.Backends {
		b.StopServers()
	}
	return errors.Join(append(errs, s.Lab.Close())...)
}

// Cut sets a load balancer's switch port down (split brain) or up again.
func (s *Site) Cut(i int, down bool) error {
	state := "up"
	if down {
		state = "down"
	}
	return s.Switch.IP("link", "set", s.LBs[i].Port, state)
}

func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n" + strings.Join(lines, "\n")
}

// Notify sends a signal to halb without waiting (SIGHUP: reload).
func (lb *LB) Notify(sig syscall.Signal) error {
	if !lb.Running() {
		return fmt.Errorf("%s: halb is not running", lb.Name)
	}
	return lb.cmd.Process.Signal(sig)
}
