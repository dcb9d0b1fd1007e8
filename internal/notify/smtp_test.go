package notify

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

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/lab/labtest"
)

// exim is a real Exim MTA listening on loopback, offering STARTTLS and
// AUTH PLAIN (after TLS), delivering mail for example.org into files.
type exim struct {
	dir, port, ca string
}

const eximConf = `primary_hostname = mail.example.org
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

// startExim runs exim in the foreground for the test's duration.
func startExim(t *testing.T) *exim {
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
	os.Chmod(dir, 0o755)
	for _, d := range []string{"spool", "log", "mail"} {
		os.Mkdir(filepath.Join(dir, d), 0o750)
		os.Chown(filepath.Join(dir, d), uid, gid)
	}
	certPEM, keyPEM := selfSigned(t)
	os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644)
	os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600)
	os.Chown(filepath.Join(dir, "key.pem"), uid, gid)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	conf := strings.NewReplacer("DIR", dir, "PORT", port).Replace(eximConf)
	os.WriteFile(filepath.Join(dir, "exim.conf"), []byte(conf), 0o644)
	cmd := exec.Command("exim4", "-C", filepath.Join(dir, "exim.conf"), "-bdf", "-oX", port)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting exim: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "log", "mainlog"))
			t.Logf("exim stderr:\n%s\nexim mainlog:\n%s", stderr.String(), b)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exim did not listen on %s: %v\n%s", port, err, stderr.String())
		}
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), certPEM, 0o644)
	return &exim{dir: dir, port: port, ca: filepath.Join(dir, "ca.pem")}
}

// mailbox waits for the mailbox of local part to hold n messages and
// returns its content.
func (e *exim) mailbox(t *testing.T, local string, n int) string {
	t.Helper()
	path := filepath.Join(e.dir, "mail", local)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if strings.Count("\n"+string(b), "\nFrom ") >= n {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailbox %s holds %q after 20s, want %d messages", path, b, n)
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

// TestMailThroughExim sends a notification through a real Exim with
// STARTTLS and AUTH, reads it back from the delivered mailbox and checks
// what an on-call person needs is in it.
func TestMailThroughExim(t *testing.T) {
	e := startExim(t)
	pw := filepath.Join(e.dir, "smtp-password")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	cfg := config.SMTP{Server: "127.0.0.1:" + e.port, From: "halb@lb-a.example.org", To: []string{"ops@example.org", "oncall@example.org"},
		Username: "halb", PasswordFile: pw, StartTLS: "required", CAFile: e.ca}
	batch := Batch{Events: []event.Record{healthEvent(7, t0, 12, false)}}
	msg := Compose("lb-a", batch, siteStatus(), t0)
	if err := NewMailer(cfg, "lb-a.example.org").Send(t.Context(), msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	for _, box := range []string{"ops", "oncall"} {
		raw := e.mailbox(t, box, 1)
		_, after, _ := strings.Cut(raw, "\n") // the mbox "From " line
		m, err := mail.ReadMessage(strings.NewReader(after))
		if err != nil {
			t.Fatalf("%s: parsing the delivered mail: %v\n%s", box, err, raw)
		}
		subj, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		if want := "lb-a: 198.51.100.12 DOWN in pool www (HTTP 503 /healthz), 2/3 up"; subj != want {
			t.Errorf("%s: subject %q, want %q", box, subj, want)
		}
		body, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
		for _, s := range []string{"HTTP 503 from 198.51.100.12:80 /healthz, 3rd failure in a row", "Pool www now: 2/3 servers up",
			"198.51.100.12:80  DOWN", "198.51.100.11:80  UP", "web-a", "Recent events on lb-a"} {
			if !strings.Contains(string(body), s) {
				t.Errorf("%s: body lacks %q:\n%s", box, s, body)
			}
		}
		// Exim records TLS and the authenticated sender in Received.
		if rcv := m.Header.Get("Received"); !strings.Contains(rcv, "TLS") || !strings.Contains(rcv, "halb") {
			t.Errorf("%s: Received %q does not show TLS and AUTH", box, rcv)
		}
	}
}

// TestMailRefusals: a wrong password and a missing STARTTLS are errors.
func TestMailRefusals(t *testing.T) {
	e := startExim(t)
	pw := filepath.Join(e.dir, "bad-password")
	os.WriteFile(pw, []byte("wrong"), 0o600)
	msg := Compose("lb-a", Batch{Events: []event.Record{healthEvent(7, t0, 12, false)}}, siteStatus(), t0)
	cfg := config.SMTP{Server: "127.0.0.1:" + e.port, From: "halb@lb-a.example.org", To: []string{"ops@example.org"},
		Username: "halb", PasswordFile: pw, CAFile: e.ca}
	if err := NewMailer(cfg, "lb-a").Send(t.Context(), msg); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("wrong password: err %v", err)
	}
	cfg = config.SMTP{Server: "127.0.0.1:" + e.port, From: "halb@lb-a.example.org", To: []string{"ops@example.org"}, StartTLS: "never"}
	if err := NewMailer(cfg, "lb-a").Send(t.Context(), msg); err == nil || !strings.Contains(err.Error(), "RCPT") {
		t.Errorf("no TLS, no AUTH: err %v, want the relay to refuse the recipient", err)
	}
}
