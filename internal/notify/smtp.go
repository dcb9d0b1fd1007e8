package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"os"
	"strings"
	"time"

	"halb/internal/config"
)

// Mailer sends messages through an SMTP relay, with STARTTLS and AUTH
// when the relay offers them.
type Mailer struct {
	cfg     config.SMTP
	helo    string
	timeout time.Duration
}

// NewMailer returns a mailer for cfg that greets the relay as cfg.Helo,
// else as node.
func NewMailer(cfg config.SMTP, node string) *Mailer {
	m := &Mailer{cfg: cfg, helo: cfg.Helo, timeout: cfg.Timeout.D()}
	if m.helo == "" {
		m.helo = node
	}
	if m.timeout <= 0 {
		m.timeout = 30 * time.Second
	}
	return m
}

// Name identifies the mailer in logs and metrics.
func (m *Mailer) Name() string { return "smtp " + m.cfg.Server }

// Send delivers msg to every recipient in one SMTP transaction.
func (m *Mailer) Send(ctx context.Context, msg Message) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(m.cfg.Server)
	if err != nil {
		return fmt.Errorf("smtp server %q: %w", m.cfg.Server, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.cfg.Server)
	if err != nil {
		return fmt.Errorf("smtp connect: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("smtp greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(m.helo); err != nil {
		return fmt.Errorf("smtp EHLO: %w", err)
	}
	if err := m.startTLS(c, host); err != nil {
		return err
	}
	if m.cfg.Username != "" {
		pw, err := os.ReadFile(m.cfg.PasswordFile)
		if err != nil {
			return fmt.Errorf("smtp password: %w", err)
		}
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("smtp AUTH: the server does not offer it")
		}
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, strings.TrimSpace(string(pw)), host)); err != nil {
			return fmt.Errorf("smtp AUTH: %w", err)
		}
	}
	if err := c.Mail(m.cfg.From); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	for _, to := range m.cfg.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("smtp RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(m.render(msg)); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("smtp QUIT: %w", err)
	}
	return nil
}

func (m *Mailer) startTLS(c *smtp.Client, host string) error {
	mode := m.cfg.StartTLS
	if mode == "never" {
		return nil
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		if mode == "required" {
			return errors.New("smtp STARTTLS: required, and the server does not offer it")
		}
		return nil
	}
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if m.cfg.CAFile != "" {
		pem, err := os.ReadFile(m.cfg.CAFile)
		if err != nil {
			return fmt.Errorf("smtp ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("smtp ca_file %s: no certificate in it", m.cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if err := c.StartTLS(tc); err != nil {
		return fmt.Errorf("smtp STARTTLS: %w", err)
	}
	return nil
}

// render formats msg as an RFC 5322 message with a quoted-printable
// UTF-8 body.
func (m *Mailer) render(msg Message) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", m.cfg.From)
	hdr("To", strings.Join(m.cfg.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", msg.Subject))
	hdr("Date", msg.At.Format(time.RFC1123Z))
	hdr("Message-ID", fmt.Sprintf("<%s.%d@%s>", strings.ReplaceAll(msg.ID, "/", "."), msg.At.UnixNano(), m.helo))
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	hdr("Auto-Submitted", "auto-generated")
	hdr("X-Halb-Node", msg.Node)
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(msg.Text, "\n", "\r\n"))) // into a buffer: cannot fail
	_ = qp.Close()
	return b.Bytes()
}
