package health

import (
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
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"halb/internal/config"
)

// maxBody bounds the body read for body_regex and body_digest.
const maxBody = 1 << 20

// httpProber sends one GET per check (no keep-alive) and judges the
// status code and, when asked, the body. Plain HTTP runs on the
// connector's loop, which keeps its timeout; HTTPS on a goroutine of its
// own.
type httpProber struct {
	spec   probeSpec
	net    netEnv
	tls    *tls.Config // nil for plain http
	re     *regexp.Regexp
	digest digestSpec
	name   string // "HTTP" or "HTTPS"
	where  string // "198.51.100.12:80 /healthz"
	req    []byte

	// State of the check in flight (one at a time per probe).
	resp respParser
	done func(Result)
	// The last pass or status text, kept: most checks see the same.
	lastCode int
	lastText string
}

func newHTTPProber(spec probeSpec, env netEnv) prober {
	ch := spec.check
	p := &httpProber{spec: spec, net: env, name: "HTTP", where: spec.target.String() + " " + ch.Path}
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
		p.resp.hash = d.h()
	}
	p.resp.expect, p.resp.keepBody = ch.ExpectStatus, p.re != nil
	host := ch.Host
	if host == "" && p.tls != nil {
		host = ch.SNI
	}
	if host == "" {
		host = spec.target.String()
	}
	p.req = []byte("GET " + ch.Path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: halb-health\r\nAccept: */*\r\nConnection: close\r\n\r\n")
	if p.tls != nil {
		return onGoroutine{p}
	}
	return p
}

// start runs a plain HTTP check on the connector.
func (p *httpProber) start(_ context.Context, done func(Result)) {
	c, err := p.net.tcp.get()
	if err != nil {
		done(fail("%s %s: %v", p.name, p.where, err))
		return
	}
	p.done = done
	p.resp.reset()
	c.start(p.net, p.spec.check, p.spec.target, p)
}

func (p *httpProber) request() []byte { return p.req }

func (p *httpProber) received(b []byte, eof bool) bool {
	if eof {
		p.resp.eof()
		return true
	}
	return p.resp.feed(b)
}

func (p *httpProber) finish(err error, ph phase, latency time.Duration) {
	var r Result
	switch {
	case err == nil:
		r = p.judge()
	case ph == phaseConnect:
		r = fail("%s %s: %s", p.name, p.where, errText("connect", err, p.spec.check.Timeout.D()))
	case ph == phaseRequest:
		r = fail("%s %s: %s", p.name, p.where, errText("request", err, p.spec.check.Timeout.D()))
	default:
		r = p.readFailure(err)
	}
	r.Latency = latency
	p.done(r)
}

// probe runs an HTTPS check.
func (p *httpProber) probe(ctx context.Context) Result {
	ch := p.spec.check
	timeout := ch.Timeout.D()
	conn, err := p.net.dial(ctx, ch, "tcp", p.spec.target.String())
	if err != nil {
		return fail("%s %s: %s", p.name, p.where, errText("connect", err, timeout))
	}
	defer conn.Close()
	tc := tls.Client(conn, p.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail("%s %s: %s", p.name, p.where, handshakeText(err, timeout))
	}
	if _, err := tc.Write(p.req); err != nil {
		return fail("%s %s: %s", p.name, p.where, errText("request", err, timeout))
	}
	p.resp.reset()
	buf := make([]byte, 4096)
	for {
		n, err := tc.Read(buf)
		if n > 0 && p.resp.feed(buf[:n]) {
			break
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			p.resp.eof()
			break
		}
		if err != nil {
			return p.readFailure(err)
		}
	}
	return p.judge()
}

// readFailure is a check whose response could not be read to its end.
func (p *httpProber) readFailure(err error) Result {
	timeout := p.spec.check.Timeout.D()
	if p.resp.headersRead() {
		return fail("%s, body: %s", p.statusText(), errText("body", err, timeout))
	}
	return fail("%s %s: %s", p.name, p.where, errText("response", err, timeout))
}

// judge decides a check on the response read.
func (p *httpProber) judge() Result {
	ch := p.spec.check
	resp := &p.resp
	if !resp.headersRead() {
		if resp.err == errEarlyClose {
			return fail("%s %s: connection closed without a response", p.name, p.where)
		}
		return fail("%s %s: response: %v", p.name, p.where, resp.err)
	}
	got := p.statusText()
	if !statusOK(ch.ExpectStatus, resp.status) || !resp.wantsBody() {
		return Result{OK: statusOK(ch.ExpectStatus, resp.status), Detail: got, Weight: -1}
	}
	if resp.err != nil {
		return fail("%s, body: %v", got, resp.err)
	}
	if p.re != nil && !p.re.Match(resp.body) {
		return fail("%s, body does not match %q", got, ch.BodyRegex)
	}
	if p.digest.h != nil {
		if sum := hex.EncodeToString(resp.hash.Sum(nil)); sum != p.digest.sum {
			return fail("%s, body %s digest %s, expected %s", got, p.digest.alg, sum, p.digest.sum)
		}
	}
	return Result{OK: true, Detail: got, Weight: -1}
}

// statusText says which status came from where: "HTTP 200 from
// 198.51.100.12:80 /healthz".
func (p *httpProber) statusText() string {
	if p.resp.status != p.lastCode || p.lastText == "" {
		p.lastCode = p.resp.status
		p.lastText = p.name + " " + strconv.Itoa(p.resp.status) + " from " + p.where
	}
	return p.lastText
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
