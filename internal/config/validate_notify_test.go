package config

import (
	"strings"
	"testing"
)

func TestNotifyDeliveryKeys(t *testing.T) {
	ok := base + `notify:
  smtp: {server: "127.0.0.1:25", from: a@example.org, to: [b@example.org], starttls: required,
         ca_file: /etc/ssl/ca.pem, username: halb, password_file: /etc/halb/pw}
  webhooks: [{url: "http://127.0.0.1:8080/h", retries: -1}]
  exec: /usr/local/sbin/halb-notify
  exec_user: nobody
  exec_timeout: 3s
  group_wait: 2s
  min_interval: 30s
`
	c, diags := Parse("n.yaml", []byte(ok), Options{})
	if c == nil || len(diags) != 0 {
		t.Fatalf("valid notify section refused: %v", diags)
	}
	if c.Notify.GroupWait.D().Seconds() != 2 || c.Notify.Webhooks[0].Retries != -1 || c.Notify.SMTP.StartTLS != "required" {
		t.Errorf("decoded %+v", c.Notify)
	}
	for _, tc := range []struct{ yaml, want string }{
		{`  smtp: {server: "m:25", from: a@x, to: [b@x], starttls: maybe}`, `starttls: "maybe" is not one of`},
		{`  smtp: {server: "m:25", from: a@x, to: [b@x], username: u}`, "username and password_file go together"},
		{`  smtp: {server: "m:25", from: a@x, to: [b@x], username: u, password_file: pw}`, "must be an absolute path"},
		{`  webhooks: [{url: "http://h/", retries: 11}]`, "is not from -1 (none) to 10"},
		{`  group_wait: 11m`, "at most 10m"},
		{`  min_interval: -1s`, "notify.min_interval: duration -1s is negative"},
	} {
		_, diags := Parse("n.yaml", []byte(base+"notify:\n"+tc.yaml+"\n"), Options{})
		if !strings.Contains(diags.String(), tc.want) {
			t.Errorf("%s: diagnostics %q, want %q", tc.yaml, diags, tc.want)
		}
	}
	_, diags = Parse("n.yaml", []byte(base+"notify:\n  exec_user: nobody\n"), Options{})
	if len(diags.Errors()) != 0 || !strings.Contains(diags.String(), "warning: notify.exec_user: set without notify.exec") {
		t.Errorf("exec_user alone: %q", diags)
	}
}
