package health

import (
	"context"
	"errors"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
)

// smtpProber reads the banner, says EHLO (HELO if refused) and QUIT.
type smtpProber struct {
	spec probeSpec
	net  netEnv
	helo string
}

func newSMTPProber(spec probeSpec, env netEnv) prober {
	helo := spec.check.HELOName
	if helo == "" {
		helo, _ = os.Hostname()
	}
	if helo == "" {
		helo = "localhost"
	}
	return onGoroutine{smtpProber{spec: spec, net: env, helo: helo}}
}

func (p smtpProber) probe(ctx context.Context) Result {
	ch, target := p.spec.check, p.spec.target
	conn, err := p.net.dial(ctx, ch, "tcp", target.String())
	if err != nil {
		return fail("SMTP %s: %s", target, errText("connect", err, ch.Timeout.D()))
	}
	defer conn.Close()
	c, err := smtp.NewClient(conn, target.Addr().String())
	if err != nil {
		return fail("SMTP %s: %s", target, smtpText("banner", err, ch.Timeout.D().String()))
	}
	if err := c.Hello(p.helo); err != nil {
		return fail("SMTP %s: %s", target, smtpText("EHLO "+p.helo, err, ch.Timeout.D().String()))
	}
	// The server answered EHLO: QUIT politely, whatever it says to that.
	_ = c.Quit()
	return pass("SMTP %s: banner and EHLO %s accepted", target, p.helo)
}

// smtpText describes an SMTP failure at step: the server's reply code and
// text when it refused, else the network error.
func smtpText(step string, err error, timeout string) string {
	var te *textproto.Error
	if errors.As(err, &te) {
		return step + " refused: " + strings.TrimSpace(te.Error())
	}
	if isTimeout(err) {
		return step + ": no answer within " + timeout
	}
	return step + ": " + err.Error()
}
