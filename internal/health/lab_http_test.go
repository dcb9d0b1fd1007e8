package health

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestLabHTTPAndTLSChecks runs http, https and tls checks against a real
// nginx: status codes and ranges, Host header, body regex and digest, SNI,
// certificate verification and client certificates. Every pool starts in
// the state opposite to the one expected, so each case is a transition.
func TestLabHTTPAndTLSChecks(t *testing.T) {
	r := newRig(t)
	n := r.startNginx()
	sum := sha256.Sum256([]byte("status: green\n"))
	bigSum := sha256.Sum256([]byte(bigBody))
	ca := n.dir + "/ca.pem"
	timing := "interval: 2s, timeout: 1500ms, rise: 1, fall: 1"
	cases := []struct {
		pool, check string
		up          bool
		reason      string
	}{
		{"ok", `{type: http, port: 80, path: /healthz}`, true, "HTTP 200 from 198.51.100.11:80 /healthz"},
		{"v6", `{type: http, port: 80, path: /healthz, connect_address: "2001:db8:1::11"}`, true, "HTTP 200 from [2001:db8:1::11]:80 /healthz"},
		{"missing", `{type: http, port: 80, path: /nope}`, false, "HTTP 404 from 198.51.100.11:80 /nope"},
		{"503", `{type: http, port: 80, path: /fail}`, false, "HTTP 503 from 198.51.100.11:80 /fail"},
		{"503ok", `{type: http, port: 80, path: /fail, expect_status: [200, "500-503"]}`, true, "HTTP 503 from"},
		{"host", `{type: http, port: 80, path: /api-only, host: api.example.org}`, true, "HTTP 200 from 198.51.100.11:80 /api-only"},
		{"nohost", `{type: http, port: 80, path: /api-only}`, false, "HTTP 404"},
		{"regex", `{type: http, port: 80, path: /body, body_regex: "status: (green|yellow)"}`, true, "HTTP 200"},
		{"regexbad", `{type: http, port: 80, path: /body, body_regex: "status: red"}`, false, `HTTP 200 from 198.51.100.11:80 /body, body does not match "status: red"`},
		{"digest", fmt.Sprintf(`{type: http, port: 80, path: /body, body_digest: "sha256:%s"}`, hex.EncodeToString(sum[:])), true, "HTTP 200"},
		{"chunked", fmt.Sprintf(`{type: http, port: 80, path: /ssi/body, body_regex: "^status: green\\n$", body_digest: "sha256:%s"}`, hex.EncodeToString(sum[:])), true, "HTTP 200 from 198.51.100.11:80 /ssi/body"},
		{"big", fmt.Sprintf(`{type: http, port: 80, path: /big, body_digest: "%s"}`, hex.EncodeToString(bigSum[:])), true, "HTTP 200 from 198.51.100.11:80 /big"},
		{"bigbad", `{type: http, port: 80, path: /big, body_regex: "fedcba"}`, false, `HTTP 200 from 198.51.100.11:80 /big, body does not match "fedcba"`},
		{"digestbad", `{type: http, port: 80, path: /body, body_digest: "md5:00000000000000000000000000000000"}`, false, "body md5 digest"},
		{"https", `{type: https, port: 443, path: /}`, true, "HTTPS 200 from 198.51.100.11:443 /"},
		{"sni", fmt.Sprintf(`{type: https, port: 443, path: /, sni: b.example.org, verify: true, ca_file: %q, body_regex: "tls b"}`, ca), true, "HTTPS 200"},
		{"verifyip", fmt.Sprintf(`{type: https, port: 443, path: /, verify: true, ca_file: %q}`, ca), true, "HTTPS 200"},
		{"badname", fmt.Sprintf(`{type: https, port: 443, path: /, sni: c.example.org, verify: true, ca_file: %q}`, ca), false, "certificate not accepted"},
		{"unknownca", `{type: https, port: 443, path: /, sni: a.example.org, verify: true}`, false, "certificate not accepted: x509: certificate signed by unknown authority"},
		{"clientcert", fmt.Sprintf(`{type: https, port: 8443, path: /, client_cert: %q, client_key: %q}`, n.dir+"/client.pem", n.dir+"/client.key"), true, "HTTPS 200 from 198.51.100.11:8443"},
		{"noclientcert", `{type: https, port: 8443, path: /}`, false, "HTTPS 400 from 198.51.100.11:8443"},
		{"tls", fmt.Sprintf(`{type: tls, port: 443, sni: a.example.org, verify: true, ca_file: %q}`, ca), true, "TLS handshake with 198.51.100.11:443 (TLS 1."},
		{"tlsbad", fmt.Sprintf(`{type: tls, port: 443, sni: b.example.org, verify: true, ca_file: %q, connect_address: 198.51.100.11}`, n.dir+"/client.pem"), false, "certificate not accepted"},
		{"tcp", `{type: tcp, port: 80}`, true, "TCP connect to 198.51.100.11:80"},
		{"refused", `{type: tcp, port: 81}`, false, "TCP 198.51.100.11:81: connection refused"},
	}
	var b strings.Builder
	b.WriteString("pools:\n")
	for _, c := range cases {
		initial := "down"
		if !c.up {
			initial = "up"
		}
		check := strings.TrimSuffix(c.check, "}") + ", " + timing + "}"
		fmt.Fprintf(&b, "  %s:\n    initial_state: %s\n    check: %s\n    servers: [{address: 198.51.100.11}]\n", c.pool, initial, check)
	}
	// The chunked case must be one: SSI output has no length.
	if head := rawGet(t, r, "198.51.100.11:80", "/ssi/body"); !strings.Contains(head, "Transfer-Encoding: chunked") {
		t.Fatalf("/ssi/body is not sent chunked:\n%s", head)
	}
	rec := r.check(parse(t, b.String()))
	start := time.Now()
	for _, c := range cases {
		ev, _ := rec.wait(0, c.pool, c.up, 8*time.Second)
		t.Logf("%-12s %s: %s", c.pool, upText(ev.Up), ev.Reason)
		if !strings.Contains(ev.Reason, c.reason) {
			t.Errorf("pool %s: reason %q does not contain %q", c.pool, ev.Reason, c.reason)
		}
		if ev.Latency <= 0 || ev.Latency > time.Second {
			t.Errorf("pool %s: latency %s", c.pool, ev.Latency)
		}
	}
	t.Logf("%d checks decided in %s", len(cases), time.Since(start))
}

// rawGet sends a GET from the load balancer namespace and returns the
// whole response.
func rawGet(t *testing.T, r *rig, addr, path string) string {
	t.Helper()
	var c net.Conn
	err := r.lb.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
