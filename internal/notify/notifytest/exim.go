// Package notifytest runs a real mail server (Exim) for tests of
// notifications: it listens on loopback, offers STARTTLS and AUTH PLAIN
// (user "halb", password "s3cret"), and delivers mail for ops@ and
// oncall@example.org into mbox files the test reads.
package notifytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"halb/internal/lab/labtest"
)

// Exim is a running Exim daemon.
type Exim struct {
	Dir  string
	Port string
	// CA is the PEM file of the server's self-signed certificate.
	CA string
	// PasswordFile holds the AUTH password.
	PasswordFile string
}

const conf = `primary_hostname = mail.example.org
spool_directory = DIR/spool
log_file_path = DIR/log/%slog
pid_file_path = DIR/exim.pid
exim_user = Debian-exim
exim_group = Debian-exim
daemon_smtp_ports = PORT
local_interfaces = 127.0.0.1
tls_advertise_hosts = *
tls_certificate = DIR/cert.pem
tls_privatekey = DIR/key.pem
auth_advertise_hosts = ${if def:tls_in_cipher {*}{}}
acl_smtp_rcpt = acl_rcpt
domainlist local_domains = example.org
begin acl
acl_rcpt:
  accept authenticated = *
         domains = +local_domains
  deny message = authentication required
begin routers
mailbox:
  driver = accept
  domains = +local_domains
  local_parts = ops : oncall
  transport = mailbox
begin transports
mailbox:
  driver = appendfile
  file = DIR/mail/$local_part_data
  user = Debian-exim
  mode = 0644
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and {{eq{$auth2}{halb}}{eq{$auth3}{s3cret}}}}
  server_set_id = $auth2
`

// Start runs Exim until the test ends. With netns == "" it listens on
// this namespace's loopback on a free port; otherwise inside the named
// network namespace, on port 2525.
func Start(t *testing.T, netns string) *Exim {
	t.Helper()
	labtest.RequireRoot(t)
	labtest.RequireTool(t, "exim4")
	u, err := user.Lookup("Debian-exim")
	if err != nil {
		t.Fatalf("exim's user: %v (package exim4-daemon-light creates it)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "halb-exim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("exim's directory: %v", err)
		}
	}
	must(os.Chmod(dir, 0o755))
	for _, d := range []string{"spool", "log", "mail"} {
		must(os.Mkdir(filepath.Join(dir, d), 0o750))
		must(os.Chown(filepath.Join(dir, d), uid, gid))
	}
	certPEM, keyPEM := selfSigned(t)
	must(os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644))
	must(os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600))
	must(os.Chown(filepath.Join(dir, "key.pem"), uid, gid))
	must(os.WriteFile(filepath.Join(dir, "ca.pem"), certPEM, 0o644))
	must(os.WriteFile(filepath.Join(dir, "smtp-password"), []byte("s3cret\n"), 0o600))

	port := "2525"
	if netns == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	}
	must(os.WriteFile(filepath.Join(dir, "exim.conf"), []byte(strings.NewReplacer("DIR", dir, "PORT", port).Replace(conf)), 0o644))
	args := []string{"exim4", "-C", filepath.Join(dir, "exim.conf"), "-bdf", "-oX", port}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting exim: %v", err)
	}
	e := &Exim{Dir: dir, Port: port, CA: filepath.Join(dir, "ca.pem"), PasswordFile: filepath.Join(dir, "smtp-password")}
	t.Cleanup(func() {
		cmd.Process.Kill()
		_ = cmd.Wait() // killed: its exit status says so
		if t.Failed() {
			t.Logf("exim stderr:\n%s\nexim mainlog:\n%s", stderr.String(), e.log())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.log(), "listening for SMTP"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("exim did not start:\n%s\n%s", stderr.String(), e.log())
		}
	}
	return e
}

func (e *Exim) log() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "log", "mainlog"))
	return string(b)
}

// Mail is one delivered message, decoded.
type Mail struct {
	Header  mail.Header
	Subject string
	Body    string
}

// Mailbox returns the messages delivered to local part so far.
func (e *Exim) Mailbox(t *testing.T, local string) []Mail {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(e.Dir, "mail", local))
	var out []Mail
	// An mbox: each message starts with a "From " line.
	for _, raw := range strings.Split("\n"+string(b), "\nFrom ")[1:] {
		_, msg, _ := strings.Cut(raw, "\n")
		m, err := mail.ReadMessage(strings.NewReader(msg))
		if err != nil {
			t.Fatalf("mailbox %s: %v", local, err)
		}
		subj, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		var body []byte
		if m.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
			body, _ = io.ReadAll(quotedprintable.NewReader(m.Body))
		} else {
			body, _ = io.ReadAll(m.Body)
		}
		out = append(out, Mail{Header: m.Header, Subject: subj, Body: strings.ReplaceAll(string(body), "\r\n", "\n")})
	}
	return out
}

// Wait waits up to timeout for local part to hold at least n messages.
func (e *Exim) Wait(t *testing.T, local string, n int, timeout time.Duration) []Mail {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		if m := e.Mailbox(t, local); len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailbox %s: fewer than %d messages after %s\nexim log:\n%s", local, n, timeout, e.log())
		}
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
