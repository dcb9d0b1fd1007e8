package notify

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/notify/notifytest"
)

// TestMailThroughExim sends a notification through a real Exim with
// STARTTLS and AUTH, reads it back from the delivered mailbox and checks
// what an on-call person needs is in it.
func TestMailThroughExim(t *testing.T) {
	e := notifytest.Start(t, "")
	cfg := config.SMTP{Server: "127.0.0.1:" + e.Port, From: "halb@lb-a.example.org", To: []string{"ops@example.org", "oncall@example.org"},
		Username: "halb", PasswordFile: e.PasswordFile, StartTLS: "required", CAFile: e.CA}
	msg := Compose("lb-a", Batch{Events: []event.Record{healthEvent(7, t0, 12, false)}}, siteStatus(), t0)
	if err := NewMailer(cfg, "lb-a.example.org").Send(t.Context(), msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	for _, box := range []string{"ops", "oncall"} {
		mails := e.Wait(t, box, 1, 20e9)
		if len(mails) != 1 {
			t.Fatalf("%s: %d mails, want 1", box, len(mails))
		}
		m := mails[0]
		if want := "lb-a: 198.51.100.12 DOWN in pool www (HTTP 503 /healthz), 2/3 up"; m.Subject != want {
			t.Errorf("%s: subject %q, want %q", box, m.Subject, want)
		}
		for _, s := range []string{"HTTP 503 from 198.51.100.12:80 /healthz, 3rd failure in a row", "Pool www now: 2/3 servers up",
			"198.51.100.12:80  DOWN", "198.51.100.11:80  UP", "web-a", "Recent events on lb-a"} {
			if !strings.Contains(m.Body, s) {
				t.Errorf("%s: body lacks %q:\n%s", box, s, m.Body)
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
	e := notifytest.Start(t, "")
	pw := filepath.Join(e.Dir, "bad-password")
	os.WriteFile(pw, []byte("wrong"), 0o600)
	msg := Compose("lb-a", Batch{Events: []event.Record{healthEvent(7, t0, 12, false)}}, siteStatus(), t0)
	cfg := config.SMTP{Server: "127.0.0.1:" + e.Port, From: "halb@lb-a.example.org", To: []string{"ops@example.org"},
		Username: "halb", PasswordFile: pw, CAFile: e.CA}
	if err := NewMailer(cfg, "lb-a").Send(t.Context(), msg); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("wrong password: err %v", err)
	}
	cfg = config.SMTP{Server: "127.0.0.1:" + e.Port, From: "halb@lb-a.example.org", To: []string{"ops@example.org"}, StartTLS: "never"}
	if err := NewMailer(cfg, "lb-a").Send(t.Context(), msg); err == nil || !strings.Contains(err.Error(), "RCPT") {
		t.Errorf("no TLS, no AUTH: err %v, want the relay to refuse the recipient", err)
	}
	cfg.StartTLS = "required"
	cfg.Server = "127.0.0.1:1" // nothing listens: a connection error, quickly
	if err := NewMailer(cfg, "lb-a").Send(t.Context(), msg); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("no server: err %v", err)
	}
}

// A relay that accepts the connection and never greets is given up at
// notify.smtp.timeout, and the greeting names the configured helo.
func TestMailTimeoutAndHelo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the listener closes
		}
	}()
	m := NewMailer(config.SMTP{Server: ln.Addr().String(), From: "a@example.org", To: []string{"b@example.org"},
		Timeout: config.Duration(300 * time.Millisecond), Helo: "lb1.example.org"}, "node")
	if m.helo != "lb1.example.org" {
		t.Errorf("helo %q, want the configured lb1.example.org", m.helo)
	}
	start := time.Now()
	err = m.Send(context.Background(), Message{Subject: "s"})
	if err == nil {
		t.Fatal("a silent relay: no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v, want about the 300ms timeout", d)
	}
	if d := NewMailer(config.SMTP{Server: "x:25"}, "node"); d.timeout != 30*time.Second || d.helo != "node" {
		t.Errorf("defaults: timeout %v helo %q, want 30s and the node's name", d.timeout, d.helo)
	}
}
