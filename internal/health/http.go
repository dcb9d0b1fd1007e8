package health

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"halb/internal/config"
)

// maxBody bounds the body read for body_regex and body_digest.
const maxBody = 1 << 20

// httpProber sends one GET per check (no keep-alive) and judges the
// status code and, when asked, the body.
type httpProber struct {
	spec   probeSpec
	net    netEnv
	tls    *tls.Config // nil for plain http
	re     *regexp.Regexp
	digest digestSpec
	name   string // "HTTP" or "HTTPS"
}

func newHTTPProber(spec probeSpec, env netEnv) prober {
	ch := spec.check
	p := &httpProber{spec: spec, net: env, name: "HTTP"}
	if ch.Type == "https" {
		conf, err := tlsConfig(spec)
		if err != nil {
			return brokenProber(fmt.Sprintf("https %s: %v", spec.target, err))
		}
		p.tls, p.name = conf, "HTTPS"
	}
	if ch.BodyRegex != "" {
		re, err := regexp.Compile(ch.BodyRegex)
		if err != nil {
			return brokenProber(fmt.Sprintf("body_regex: %v", err))
		}
		p.re = re
	}
	if ch.BodyDigest != "" {
		d, err := parseDigest(ch.BodyDigest)
		if err != nil {
			return brokenProber(fmt.Sprintf("body_digest: %v", err))
		}
		p.digest = d
	}
	return onGoroutine{p}
}

func (p *httpProber) probe(ctx context.Context) Result {
	ch, target := p.spec.check, p.spec.target
	timeout := ch.Timeout.D()
	where := fmt.Sprintf("%s %s", target, ch.Path)
	conn, err := p.net.dial(ctx, ch, "tcp", target.String())
	if err != nil {
		return fail("%s %s: %s", p.name, where, errText("connect", err, timeout))
	}
	defer conn.Close()
	if p.tls != nil {
		tc := tls.Client(conn, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail("%s %s: %s", p.name, where, handshakeText(err, timeout))
		}
		conn = tc
	}
	host := ch.Host
	if host == "" && p.tls != nil {
		host = ch.SNI
	}
	if host == "" {
		host = target.String()
	}
	req := "GET " + ch.Path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: halb-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return fail("%s %s: %s", p.name, where, errText("request", err, timeout))
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fail("%s %s: connection closed without a response", p.name, where)
		}
		return fail("%s %s: %s", p.name, where, errText("response", err, timeout))
	}
	defer resp.Body.Close()
	got := fmt.Sprintf("%s %d from %s", p.name, resp.StatusCode, where)
	if !statusOK(ch.ExpectStatus, resp.StatusCode) {
		return fail("%s", got)
	}
	if p.re == nil && p.digest.h == nil {
		return pass("%s", got)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fail("%s, body: %s", got, errText("body", err, timeout))
	}
	if p.re != nil && !p.re.Match(body) {
		return fail("%s, body does not match %q", got, ch.BodyRegex)
	}
	if p.digest.h != nil {
		h := p.digest.h()
		h.Write(body)
		if sum := hex.EncodeToString(h.Sum(nil)); sum != p.digest.sum {
			return fail("%s, body %s digest %s, expected %s", got, p.digest.alg, sum, p.digest.sum)
		}
	}
	return pass("%s", got)
}

func statusOK(ranges []config.StatusRange, code int) bool {
	if len(ranges) == 0 {
		return code >= 200 && code <= 299
	}
	for _, r := range ranges {
		if r.Contains(code) {
			return true
		}
	}
	return false
}

// tlsProber passes when a TLS handshake completes (and verifies, when
// asked).
type tlsProber struct {
	spec probeSpec
	net  netEnv
	tls  *tls.Config
}

func newTLSProber(spec probeSpec, env netEnv) prober {
	conf, err := tlsConfig(spec)
	if err != nil {
		return brokenProber(fmt.Sprintf("tls %s: %v", spec.target, err))
	}
	return onGoroutine{tlsProber{spec: spec, net: env, tls: conf}}
}

func (p tlsProber) probe(ctx context.Context) Result {
	ch, target := p.spec.check, p.spec.target
	conn, err := p.net.dial(ctx, ch, "tcp", target.String())
	if err != nil {
		return fail("TLS %s: %s", target, errText("connect", err, ch.Timeout.D()))
	}
	defer conn.Close()
	tc := tls.Client(conn, p.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail("TLS %s: %s", target, handshakeText(err, ch.Timeout.D()))
	}
	st := tc.ConnectionState()
	return pass("TLS handshake with %s (%s)", target, tls.VersionName(st.Version))
}

func handshakeText(err error, timeout time.Duration) string {
	if isTimeout(err) || strings.Contains(err.Error(), "deadline exceeded") {
		return "TLS handshake timeout after " + timeout.String()
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return "certificate not accepted: " + cv.Err.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return "TLS handshake failed: " + op.Err.Error()
	}
	return "TLS handshake failed: " + err.Error()
}

// tlsConfig builds the client TLS configuration of an https or tls check.
func tlsConfig(spec probeSpec) (*tls.Config, error) {
	ch := spec.check
	conf := &tls.Config{ServerName: ch.SNI, InsecureSkipVerify: !ch.Verify}
	if conf.ServerName == "" {
		conf.ServerName = ch.Host
	}
	if conf.ServerName == "" && ch.Verify {
		conf.ServerName = spec.target.Addr().String()
	}
	if ch.CAFile != "" {
		pem, err := os.ReadFile(ch.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", ch.CAFile)
		}
		conf.RootCAs = pool
	}
	if ch.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(ch.ClientCert, ch.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// digestSpec is an expected body digest.
type digestSpec struct {
	alg string
	sum string
	h   func() hash.Hash
}

// parseDigest reads "md5:HEX", "sha1:HEX", "sha256:HEX" or bare HEX
// (the algorithm told by its length).
func parseDigest(s string) (digestSpec, error) {
	alg, sum, found := strings.Cut(strings.ToLower(s), ":")
	if !found {
		sum = alg
		switch len(sum) {
		case 32:
			alg = "md5"
		case 40:
			alg = "sha1"
		case 64:
			alg = "sha256"
		}
	}
	algs := map[string]struct {
		h    func() hash.Hash
		size int
	}{"md5": {md5.New, md5.Size}, "sha1": {sha1.New, sha1.Size}, "sha256": {sha256.New, sha256.Size}}
	a, ok := algs[alg]
	if !ok {
		return digestSpec{}, fmt.Errorf("%q is not md5:HEX, sha1:HEX or sha256:HEX", s)
	}
	if b, err := hex.DecodeString(sum); err != nil || len(b) != a.size {
		return digestSpec{}, fmt.Errorf("%q is not a %s digest in hex", s, alg)
	}
	return digestSpec{alg: alg, sum: sum, h: a.h}, nil
}
