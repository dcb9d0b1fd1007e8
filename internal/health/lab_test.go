package health

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/lab/labtest"
	ns "halb/internal/lab/netns"
)

// rig is a lab with a load balancer namespace (198.51.100.1, 2001:db8:1::1)
// and a backend namespace (198.51.100.11, 2001:db8:1::11) on one link.
type rig struct {
	t      *testing.T
	lb, be *ns.Host
	bePort string // the switch port of the backend's link
}

func newRig(t *testing.T) *rig {
	l := labtest.NewLab(t)
	sw, err := l.AddSwitch("sw")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := l.AddHost("lb")
	if err != nil {
		t.Fatal(err)
	}
	be, err := l.AddHost("be")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Connect(lb, sw, "eth0", "198.51.100.1/24", "2001:db8:1::1/64"); err != nil {
		t.Fatal(err)
	}
	port, err := l.Connect(be, sw, "eth0", "198.51.100.11/24", "2001:db8:1::11/64")
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, lb: lb, be: be, bePort: port}
}

// run runs a command in a namespace and fails the test if it fails.
func (r *rig) run(h *ns.Host, name string, args ...string) {
	r.t.Helper()
	if out, err := h.Run(name, args...); err != nil {
		r.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// recorder runs a Checker from the lb namespace and keeps its events.
type recorder struct {
	t      *testing.T
	c      *Checker
	mu     sync.Mutex
	events []event.Health
	stamps []time.Time
}

func (r *rig) check(cfg *config.Config, opts ...Option) *recorder {
	rec := &recorder{t: r.t}
	rec.c = New(cfg, append([]Option{WithSocketHook(r.lb.Do)}, opts...)...)
	ctx, cancel := context.WithCancel(context.Background())
	evc := make(chan event.Health, 64)
	done := make(chan error, 1)
	go func() { done <- rec.c.Run(ctx, evc); close(evc) }()
	go func() {
		for ev := range evc {
			rec.mu.Lock()
			rec.events = append(rec.events, ev)
			rec.stamps = append(rec.stamps, time.Now())
			rec.mu.Unlock()
		}
	}()
	r.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				r.t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			r.t.Errorf("Run did not return 10s after cancel")
		}
	})
	return rec
}

// mark returns a position in the event stream.
func (rec *recorder) mark() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.events)
}

// wait returns the first event of pool after position from, which must
// say up, within limit, and when it came. Any other state for the pool in
// between fails the test (a flap).
func (rec *recorder) wait(from int, pool string, up bool, limit time.Duration) (event.Health, time.Time) {
	rec.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		rec.mu.Lock()
		for i := from; i < len(rec.events); i++ {
			ev := rec.events[i]
			if ev.Pool != pool {
				continue
			}
			rec.mu.Unlock()
			if ev.Up != up {
				rec.t.Fatalf("pool %s: got %s (%s), waiting for up=%v", pool, upText(ev.Up), ev.Reason, up)
			}
			return ev, rec.stamps[i]
		}
		rec.mu.Unlock()
		if time.Now().After(deadline) {
			rec.t.Fatalf("pool %s: no up=%v event within %s; status %+v", pool, up, limit, rec.c.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func upText(up bool) string {
	if up {
		return "UP"
	}
	return "DOWN"
}

// nginx is a real nginx serving the backend namespace.
type nginx struct {
	t    *testing.T
	dir  string
	be   *ns.Host
	cmd  *exec.Cmd
	done chan struct{}
}

const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path DIR/tmp/body;
  proxy_temp_path DIR/tmp/proxy;
  fastcgi_temp_path DIR/tmp/fcgi;
  uwsgi_temp_path DIR/tmp/uwsgi;
  scgi_temp_path DIR/tmp/scgi;
  default_type text/plain;
  server {
    listen 198.51.100.11:80 default_server;
    listen [2001:db8:1::11]:80 default_server;
    root DIR/www;
    location = /fail { return 503 "down\n"; }
    location /ssi/ { ssi on; ssi_types text/plain; }
  }
  server {
    listen 198.51.100.11:80;
    server_name api.example.org;
    root DIR/www-api;
  }
  server {
    listen 198.51.100.11:443 ssl default_server;
    server_name a.example.org;
    ssl_certificate DIR/a.pem;
    ssl_certificate_key DIR/a.key;
    location / { return 200 "tls a\n"; }
  }
  server {
    listen 198.51.100.11:443 ssl;
    server_name b.example.org;
    ssl_certificate DIR/b.pem;
    ssl_certificate_key DIR/b.key;
    location / { return 200 "tls b\n"; }
  }
  server {
    listen 198.51.100.11:8443 ssl;
    ssl_certificate DIR/a.pem;
    ssl_certificate_key DIR/a.key;
    ssl_client_certificate DIR/ca.pem;
    ssl_verify_client on;
    location / { return 200 "client ok\n"; }
  }
}
`

// bigBody is a response body that takes many reads.
var bigBody = strings.Repeat("0123456789abcdef", 20000)

// startNginx writes certificates, content and configuration to a fresh
// directory and starts nginx in the backend namespace.
func (r *rig) startNginx() *nginx {
	labtest.RequireTool(r.t, "nginx")
	dir := r.t.TempDir()
	for _, d := range []string{"tmp", "www", "www/ssi", "www-api"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			r.t.Fatal(err)
		}
	}
	writeCerts(r.t, dir)
	files := map[string]string{
		"www/healthz":      "ok\n",
		"www/body":         "status: green\n",
		"www/ssi/body":     "status: <!--# echo var=\"none\" default=\"green\" -->\n", // sent chunked
		"www/big":          bigBody,
		"www-api/api-only": "api\n",
		"nginx.conf":       strings.ReplaceAll(nginxConf, "DIR", dir),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	n := &nginx{t: r.t, dir: dir, be: r.be}
	n.start()
	r.t.Cleanup(n.stop)
	return n
}

func (n *nginx) start() {
	n.t.Helper()
	n.cmd = n.be.Command(context.Background(), "nginx", "-p", n.dir, "-c", filepath.Join(n.dir, "nginx.conf"), "-e", filepath.Join(n.dir, "error.log"))
	out := &strings.Builder{}
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		n.t.Fatalf("starting nginx: %v", err)
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.done) }()
	waitListening(n.t, n.be, "198.51.100.11:80", n.done, func() string {
		log, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
		return out.String() + string(log)
	})
}

// signal sends sig to nginx.
func (n *nginx) signal(sig os.Signal) {
	n.t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("signalling nginx: %v", err)
	}
}

// stop kills nginx (as a crash would) and waits for it.
func (n *nginx) stop() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Kill()
	n.cmd.Process.Signal(syscall.SIGCONT)
	<-n.done
	n.cmd = nil
}

// waitListening waits until addr accepts connections inside h.
func waitListening(t *testing.T, h *ns.Host, addr string, exited <-chan struct{}, logs func() string) {
	t.Helper()
	hook := h.Do
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("server exited before listening on %s: %s", addr, logs())
		default:
		}
		var c net.Conn
		err := hook(func() error {
			var err error
			c, err = net.DialTimeout("tcp", addr, time.Second)
			return err
		})
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after 10s: %s", addr, logs())
}

// writeCerts writes a CA (ca.pem), server certificates for a.example.org
// (also valid for 198.51.100.11) and b.example.org, and a client
// certificate, all freshly generated.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "halb test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, dns []string, ips ...string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			DNSNames: dns, ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		for _, ip := range ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		base := strings.SplitN(name, ".", 2)[0]
		writePEM(t, filepath.Join(dir, base+".pem"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(dir, base+".key"), "PRIVATE KEY", kder)
	}
	leaf("a.example.org", 2, x509.ExtKeyUsageServerAuth, []string{"a.example.org"}, "198.51.100.11")
	leaf("b.example.org", 3, x509.ExtKeyUsageServerAuth, []string{"b.example.org"})
	leaf("client.example.org", 4, x509.ExtKeyUsageClientAuth, nil)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
