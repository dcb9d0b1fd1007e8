package health

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"halb/internal/config"
)

// parseAll feeds resp to a parser in pieces of size n (all at once when
// n is 0), then the end of the connection if it is still reading.
func parseAll(p *respParser, resp string, n int) {
	p.reset()
	b := []byte(resp)
	for len(b) > 0 {
		k := len(b)
		if n > 0 {
			k = min(n, k)
		}
		if p.feed(b[:k]) {
			return
		}
		b = b[k:]
	}
	p.eof()
}

func TestRespParser(t *testing.T) {
	long := strings.Repeat("x", 3000)
	cases := []struct {
		name     string
		resp     string
		keepBody bool
		expect   []config.StatusRange
		status   int
		headers  bool
		body     string
		err      string
	}{
		{name: "status only", resp: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", status: 200, headers: true},
		{name: "no reason phrase", resp: "HTTP/1.1 204\r\n\r\n", status: 204, headers: true},
		{name: "bare LF", resp: "HTTP/1.0 503 Down\nServer: x\n\n", status: 503, headers: true},
		{name: "folded header", resp: "HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\n\r\n", status: 200, headers: true},
		{name: "content length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nstatus: green\nEXTRA", keepBody: true, status: 200, headers: true, body: "status: green\n"},
		{name: "chunked", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n7;ext=1\r\nstatus:\r\n7\r\n green\n\r\n0\r\nTrailer: x\r\n\r\n", keepBody: true, status: 200, headers: true, body: "status: green\n"},
		{name: "until close", resp: "HTTP/1.0 200 OK\r\n\r\n" + long, keepBody: true, status: 200, headers: true, body: long},
		{name: "long header line", resp: "HTTP/1.1 200 OK\r\nSet-Cookie: " + long + "\r\n\r\n", status: 200, headers: true},
		{name: "body not read for a failing status", resp: "HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\nshort", keepBody: true, status: 404, headers: true},
		{name: "body of an accepted status", resp: "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", keepBody: true,
			expect: []config.StatusRange{{Lo: 404, Hi: 404}}, status: 404, headers: true, body: "no"},
		{name: "no body for 304", resp: "HTTP/1.1 304 Not Modified\r\n\r\n", keepBody: true,
			expect: []config.StatusRange{{Lo: 300, Hi: 399}}, status: 304, headers: true},
		{name: "empty", resp: "", err: "connection closed early"},
		{name: "closed in headers", resp: "HTTP/1.1 200 OK\r\nServer: x", status: 200, err: "connection closed early"},
		{name: "closed in body", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", keepBody: true, status: 200, headers: true, body: "abc", err: "connection closed early"},
		{name: "closed in chunk", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", keepBody: true, status: 200, headers: true, body: "ab", err: "connection closed early"},
		{name: "not http", resp: "SSH-2.0-OpenSSH_9.2\r\n", err: `malformed status line "SSH-2.0-OpenSSH_9.2"`},
		{name: "http/2 preface", resp: "HTTP/2 200\r\n\r\n", err: `malformed status line "HTTP/2 200"`},
		{name: "short code", resp: "HTTP/1.1 20 OK\r\n\r\n", err: `malformed status line "HTTP/1.1 20 OK"`},
		{name: "letters in code", resp: "HTTP/1.1 2x0 OK\r\n\r\n", err: `malformed status line`},
		{name: "code 000", resp: "HTTP/1.1 000 OK\r\n\r\n", err: `malformed status line`},
		{name: "binary", resp: "\x00\x01\x02\n", err: `malformed status line "\x00\x01\x02"`},
		{name: "header without colon", resp: "HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", status: 200, err: `malformed header line "broken header"`},
		{name: "space in header name", resp: "HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n", status: 200, err: `malformed header line "X A: 1"`},
		{name: "bad length", resp: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", status: 200, err: `bad Content-Length "-1"`},
		{name: "two lengths", resp: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", status: 200, err: `bad Content-Length "2"`},
		{name: "bad chunk size", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", keepBody: true, status: 200, headers: true, err: `malformed chunk size "zz"`},
		{name: "bad chunk end", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n", keepBody: true, status: 200, headers: true, body: "ab", err: `malformed chunk end "cd"`},
		{name: "endless line", resp: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("y", maxHeaderLine), status: 200, err: "line longer than 16384 bytes"},
		{name: "endless headers", resp: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Filler: "+long+"\r\n", 100), status: 200, err: "headers longer than 262144 bytes"},
	}
	for _, c := range cases {
		for _, piece := range []int{0, 1, 7} {
			p := respParser{keepBody: c.keepBody, expect: c.expect}
			parseAll(&p, c.resp, piece)
			errText := ""
			if p.err != nil {
				errText = p.err.Error()
			}
			if p.status != c.status || p.headersRead() != c.headers || string(p.body) != c.body || !strings.Contains(errText, c.err) || (c.err == "") != (p.err == nil) {
				t.Errorf("%s (pieces of %d): status %d, headers %v, body %q, err %q; want %d, %v, %q, %q",
					c.name, piece, p.status, p.headersRead(), clip(p.body), errText, c.status, c.headers, clip([]byte(c.body)), c.err)
			}
		}
	}
}

func TestRespParserBodyLimitAndDigest(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", maxBody/16+100)
	p := respParser{keepBody: true, hash: sha256.New()}
	parseAll(&p, "HTTP/1.1 200 OK\r\n\r\n"+body, 4096)
	if p.err != nil || len(p.body) != maxBody {
		t.Fatalf("body of %d bytes, err %v; want the first %d bytes", len(p.body), p.err, maxBody)
	}
	want := sha256.Sum256([]byte(body[:maxBody]))
	if got := hex.EncodeToString(p.hash.Sum(nil)); got != hex.EncodeToString(want[:]) {
		t.Errorf("digest %s, want the first %d bytes' %x", got, maxBody, want)
	}
	// Reused: the state, body and digest start afresh.
	parseAll(&p, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 0)
	want = sha256.Sum256([]byte("abc"))
	if string(p.body) != "abc" || hex.EncodeToString(p.hash.Sum(nil)) != hex.EncodeToString(want[:]) {
		t.Errorf("after reset: body %q, digest %x", p.body, p.hash.Sum(nil))
	}
}

// FuzzRespParser checks that no input crashes the parser, that it
// decides every response by the end of the connection, and that piece
// sizes do not change what it reads.
func FuzzRespParser(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), uint8(1))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), uint8(2))
	f.Add([]byte("HTTP/1.0 200 OK\n\nbody"), uint8(0))
	f.Add([]byte("garbage\r\n\r\n"), uint8(3))
	f.Fuzz(func(t *testing.T, resp []byte, piece uint8) {
		whole := respParser{keepBody: true}
		parseAll(&whole, string(resp), 0)
		split := respParser{keepBody: true}
		parseAll(&split, string(resp), int(piece)+1)
		for _, p := range []*respParser{&whole, &split} {
			if p.state != rsDone {
				t.Fatalf("undecided after the end of the connection: state %d", p.state)
			}
		}
		if whole.status != split.status || string(whole.body) != string(split.body) || (whole.err == nil) != (split.err == nil) {
			t.Fatalf("whole: %d %q %v; in pieces of %d: %d %q %v", whole.status, whole.body, whole.err, int(piece)+1, split.status, split.body, split.err)
		}
	})
}
