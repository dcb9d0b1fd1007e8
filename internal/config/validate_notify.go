package config

import (
	"fmt"
	"time"
)

// notifyDelivery checks the keys that shape how notifications are
// delivered: TLS mode, credentials, timeouts and grouping.
func (v *validator) notifyDelivery() {
	n := v.c.Notify
	if s := n.SMTP; s != nil {
		switch s.StartTLS {
		case "", "auto", "required", "never":
		default:
			v.errorf("notify.smtp.starttls", "notify.smtp.starttls: %q is not one of auto, required, never", s.StartTLS)
		}
		if (s.Username == "") != (s.PasswordFile == "") {
			v.errorf("notify.smtp", "notify.smtp: username and password_file go together")
		}
		if s.PasswordFile != "" && s.PasswordFile[0] != '/' {
			v.errorf("notify.smtp.password_file", "notify.smtp.password_file: %q must be an absolute path", s.PasswordFile)
		}
		if s.CAFile != "" && s.CAFile[0] != '/' {
			v.errorf("notify.smtp.ca_file", "notify.smtp.ca_file: %q must be an absolute path", s.CAFile)
		}
		if s.Timeout.D() < 0 || s.Timeout.D() > 10*time.Minute {
			v.errorf("notify.smtp.timeout", "notify.smtp.timeout: %v is not from 0 (30s) to 10m", s.Timeout)
		}
		if s.Username != "" && s.StartTLS == "never" {
			v.warnf("notify.smtp.starttls", "notify.smtp.starttls: never with a username: halb sends a password unencrypted only to a relay on localhost")
		}
	}
	for i, w := range n.Webhooks {
		p := fmt.Sprintf("notify.webhooks[%d]", i)
		if w.Retries < -1 || w.Retries > 10 {
			v.errorf(p+".retries", "%s.retries: %d is not from -1 (none) to 10", p, w.Retries)
		}
	}
	if n.ExecUser != "" && n.Exec == "" {
		v.warnf("notify.exec_user", "notify.exec_user: set without notify.exec")
	}
	if n.GroupWait.D() > 10*time.Minute {
		v.errorf("notify.group_wait", "notify.group_wait: %s delays every notification; at most 10m", n.GroupWait)
	}
}
