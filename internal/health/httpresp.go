package health

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"strconv"

	"halb/internal/config"
)

// Bounds of what a response may send before its body.
const (
	maxHeaderLine  = 16 << 10
	maxHeaderBytes = 256 << 10
)

// respState is where a respParser is in the response.
type respState uint8

const (
	rsStatus    respState = iota // reading the status line
	rsHeaders                    // reading header lines
	rsBody                       // reading a body of known length
	rsBodyEOF                    // reading a body that ends with the connection
	rsChunkSize                  // reading a chunk-size line
	rsChunkData                  // reading a chunk's data
	rsChunkEnd                   // reading the line end after a chunk's data
	rsDone                       // decided
)

// respParser reads an HTTP/1.x response as it arrives, in pieces of any
// size, and keeps only what a check judges: the status code and, when
// the status is one the check accepts and the check looks at the body,
// the body (up to maxBody) or its digest. It is reused from check to
// check: reset clears it and keeps its buffers.
type respParser struct {
	expect []config.StatusRange
	// keepBody keeps the body's bytes (body_regex); hash, when set, is
	// fed the body as it arrives (body_digest).
	keepBody bool
	hash     hash.Hash

	state     respState
	headers   bool   // the status line and headers were read
	line      []byte // a line not complete yet
	headerLen int
	status    int
	length    int64 // Content-Length, -1 when none
	chunked   bool
	left      int64 // bytes left in the body or chunk
	body      []byte
	bodyLen   int64
	err       error
}

// errEarlyClose is a response cut short by the peer's close.
var errEarlyClose = errors.New("connection closed early")

func (p *respParser) reset() {
	p.state, p.headers, p.headerLen, p.status, p.length, p.chunked, p.left, p.bodyLen, p.err = rsStatus, false, 0, 0, -1, false, 0, 0, nil
	if cap(p.line) > 4<<10 {
		p.line = nil
	}
	p.line = p.line[:0]
	if cap(p.body) > 64<<10 {
		p.body = nil
	}
	p.body = p.body[:0]
	if p.hash != nil {
		p.hash.Reset()
	}
}

// wantsBody reports whether the check looks at the body.
func (p *respParser) wantsBody() bool { return p.keepBody || p.hash != nil }

// headersRead reports whether the status line and headers were read.
func (p *respParser) headersRead() bool { return p.headers }

// feed takes the next bytes of the response. It reports whether the
// response is decided: read as far as the check needs, or malformed
// (then p.err says how).
func (p *respParser) feed(b []byte) bool {
	for len(b) > 0 && p.state != rsDone {
		switch p.state {
		case rsStatus, rsHeaders, rsChunkSize, rsChunkEnd:
			line, rest, ok := p.nextLine(b)
			b = rest
			if !ok {
				return p.state == rsDone
			}
			p.onLine(line)
		case rsBody, rsChunkData:
			n := int64(len(b))
			if n > p.left {
				n = p.left
			}
			p.addBody(b[:n])
			b = b[n:]
			p.left -= n
			if p.left == 0 && p.state != rsDone {
				if p.state == rsBody {
					p.state = rsDone
				} else {
					p.state = rsChunkEnd
				}
			}
		case rsBodyEOF:
			p.addBody(b)
			b = nil
		}
	}
	return p.state == rsDone
}

// eof tells the parser that the peer closed the connection; the response
// is then decided.
func (p *respParser) eof() {
	if p.state != rsDone && p.state != rsBodyEOF {
		p.err = errEarlyClose
	}
	p.state = rsDone
}

// nextLine returns the next complete line of b (without its line end,
// joined with what earlier pieces left) and the bytes after it; ok is
// false when b ends inside the line, which is then kept.
func (p *respParser) nextLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(p.line)+len(b) > maxHeaderLine {
			p.fail("line longer than %d bytes", maxHeaderLine)
			return nil, nil, false
		}
		p.line = append(p.line, b...)
		return nil, nil, false
	}
	line, rest = b[:i], b[i+1:]
	if len(p.line) > 0 {
		if len(p.line)+len(line) > maxHeaderLine {
			p.fail("line longer than %d bytes", maxHeaderLine)
			return nil, nil, false
		}
		p.line = append(p.line, line...)
		line = p.line
		p.line = p.line[:0]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if p.state <= rsHeaders {
		p.headerLen += len(line) + 2
		if p.headerLen > maxHeaderBytes {
			p.fail("headers longer than %d bytes", maxHeaderBytes)
			return nil, nil, false
		}
	}
	return line, rest, true
}

func (p *respParser) fail(format string, args ...any) {
	p.err = fmt.Errorf(format, args...)
	p.state = rsDone
}

func (p *respParser) onLine(line []byte) {
	switch p.state {
	case rsStatus:
		p.statusLine(line)
	case rsHeaders:
		if len(line) == 0 {
			p.endHeaders()
			return
		}
		p.header(line)
	case rsChunkSize:
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			p.fail("malformed chunk size %q", clip(line))
			return
		}
		if n == 0 {
			p.state = rsDone // trailers say nothing a check judges
			return
		}
		p.state, p.left = rsChunkData, n
	case rsChunkEnd:
		if len(line) != 0 {
			p.fail("malformed chunk end %q", clip(line))
			return
		}
		p.state = rsChunkSize
	}
}

// statusLine reads "HTTP/1.1 200 OK".
func (p *respParser) statusLine(line []byte) {
	proto, rest, _ := bytes.Cut(line, []byte(" "))
	code := rest
	if i := bytes.IndexByte(rest, ' '); i >= 0 {
		code = rest[:i]
	}
	if !bytes.HasPrefix(proto, []byte("HTTP/1.")) || len(code) != 3 ||
		code[0] < '1' || code[0] > '9' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' {
		p.fail("malformed status line %q", clip(line))
		return
	}
	p.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	p.state = rsHeaders
}

// header reads one header line, keeping what frames the body.
func (p *respParser) header(line []byte) {
	if line[0] == ' ' || line[0] == '\t' {
		return // a continuation of the previous line
	}
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
		p.fail("malformed header line %q", clip(line))
		return
	}
	value = bytes.TrimSpace(value)
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		n, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil || n < 0 || (p.length >= 0 && p.length != n) {
			p.fail("bad Content-Length %q", clip(value))
			return
		}
		p.length = n
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		codings := bytes.Split(value, []byte(","))
		p.chunked = bytes.EqualFold(bytes.TrimSpace(codings[len(codings)-1]), []byte("chunked"))
	}
}

// endHeaders decides whether and how the body is read.
func (p *respParser) endHeaders() {
	p.headers = true
	switch {
	case !p.wantsBody() || !statusOK(p.expect, p.status):
		p.state = rsDone
	case p.status < 200 || p.status == 204 || p.status == 304:
		p.state = rsDone // no body
	case p.chunked:
		p.state = rsChunkSize
	case p.length >= 0:
		p.state, p.left = rsBody, p.length
		if p.length == 0 {
			p.state = rsDone
		}
	default:
		p.state = rsBodyEOF
	}
}

// addBody keeps or hashes body bytes up to maxBody; the response is
// decided once maxBody bytes were seen.
func (p *respParser) addBody(b []byte) {
	if room := maxBody - p.bodyLen; int64(len(b)) >= room {
		b = b[:room]
		p.state = rsDone
	}
	p.bodyLen += int64(len(b))
	if p.keepBody {
		p.body = append(p.body, b...)
	}
	if p.hash != nil {
		p.hash.Write(b)
	}
}

// clip shortens what a reason quotes from a response.
func clip(b []byte) string {
	const n = 40
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
