package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"golang.org/x/net/dns/dnsmessage"
)

var dnsTypes = map[string]dnsmessage.Type{
	"A": dnsmessage.TypeA, "AAAA": dnsmessage.TypeAAAA, "CNAME": dnsmessage.TypeCNAME,
	"MX": dnsmessage.TypeMX, "NS": dnsmessage.TypeNS, "PTR": dnsmessage.TypePTR,
	"SOA": dnsmessage.TypeSOA, "SRV": dnsmessage.TypeSRV, "TXT": dnsmessage.TypeTXT,
	// DNSSEC records, which keepalived also asks for; dnsmessage has no
	// names for them.
	"RRSIG": 46, "DNSKEY": 48,
}

var rcodeNames = map[dnsmessage.RCode]string{
	dnsmessage.RCodeFormatError: "FORMERR", dnsmessage.RCodeServerFailure: "SERVFAIL",
	dnsmessage.RCodeNameError: "NXDOMAIN", dnsmessage.RCodeNotImplemented: "NOTIMP",
	dnsmessage.RCodeRefused: "REFUSED",
}

// dnsProber asks one question over UDP or TCP and wants NOERROR with an
// answer of the asked type (matching expect, when set).
type dnsProber struct {
	spec  probeSpec
	net   netEnv
	name  dnsmessage.Name
	qtype dnsmessage.Type
	what  string // "A www.example.org"
}

func newDNSProber(spec probeSpec, env netEnv) prober {
	ch := spec.check
	q := ch.Query
	if !strings.HasSuffix(q, ".") {
		q += "."
	}
	name, err := dnsmessage.NewName(q)
	if err != nil {
		return brokenProber(fmt.Sprintf("dns query %q: %v", ch.Query, err))
	}
	qt, ok := dnsTypes[strings.ToUpper(ch.QueryType)]
	if !ok {
		return brokenProber(fmt.Sprintf("dns query_type %q is not supported", ch.QueryType))
	}
	return onGoroutine{dnsProber{spec: spec, net: env, name: name, qtype: qt, what: strings.ToUpper(ch.QueryType) + " " + ch.Query}}
}

// dnsQuery builds a recursive query for one name and type.
func dnsQuery(id uint16, name dnsmessage.Name, qtype dnsmessage.Type) ([]byte, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, fmt.Errorf("building query: %w", err)
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		return nil, fmt.Errorf("building query: %w", err)
	}
	query, err := b.Finish()
	if err != nil {
		return nil, fmt.Errorf("building query: %w", err)
	}
	return query, nil
}

func (p dnsProber) probe(ctx context.Context) Result {
	ch, target := p.spec.check, p.spec.target
	timeout := ch.Timeout.D()
	proto := "udp"
	if ch.DNSOverTCP {
		proto = "tcp"
	}
	id := uint16(rand.Uint32())
	query, err := dnsQuery(id, p.name, p.qtype)
	if err != nil {
		return fail("DNS %s: %v", p.what, err)
	}
	where := fmt.Sprintf("DNS %s from %s/%s", p.what, target, proto)
	conn, err := p.net.dial(ctx, ch, proto, target.String())
	if err != nil {
		return fail("%s: %s", where, errText("connect", err, timeout))
	}
	defer conn.Close()
	resp, err := exchange(conn, query, id, ch.DNSOverTCP)
	if err != nil && !ch.DNSOverTCP && errors.Is(err, syscall.ECONNREFUSED) {
		return fail("%s: ICMP port unreachable", where)
	}
	if err != nil {
		return fail("%s: %s", where, errText("answer", err, timeout))
	}
	return judgeDNS(where, resp, p.qtype, ch.QueryType, ch.Expect)
}

// judgeDNS reads a DNS response: it passes when the rcode is NOERROR and
// the answer holds records of qtype (named queryType in the check), one
// of them expect's when expect is set.
func judgeDNS(where string, resp []byte, qtype dnsmessage.Type, queryType, expect string) Result {
	var parser dnsmessage.Parser
	h, err := parser.Start(resp)
	if err != nil {
		return fail("%s: bad answer: %v", where, err)
	}
	if h.RCode != dnsmessage.RCodeSuccess {
		name, ok := rcodeNames[h.RCode]
		if !ok {
			name = h.RCode.String()
		}
		return fail("%s: %s", where, name)
	}
	if err := parser.SkipAllQuestions(); err != nil {
		return fail("%s: bad answer: %v", where, err)
	}
	answers, err := parser.AllAnswers()
	if err != nil {
		return fail("%s: bad answer: %v", where, err)
	}
	var got []string
	for _, a := range answers {
		if a.Header.Type == qtype {
			got = append(got, rrText(a.Body))
		}
	}
	if len(got) == 0 {
		return fail("%s: no %s record in the answer", where, strings.ToUpper(queryType))
	}
	if expect != "" && !matchAnswer(got, expect) {
		return fail("%s: answer %s, expected %s", where, strings.Join(got, ", "), expect)
	}
	return pass("%s: %s", where, strings.Join(got, ", "))
}

// exchange sends a query and returns the response with the same ID.
func exchange(conn net.Conn, query []byte, id uint16, tcp bool) ([]byte, error) {
	if tcp {
		msg := binary.BigEndian.AppendUint16(nil, uint16(len(query)))
		if _, err := conn.Write(append(msg, query...)); err != nil {
			return nil, err
		}
		var n [2]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return nil, err
		}
		resp := make([]byte, binary.BigEndian.Uint16(n[:]))
		_, err := io.ReadFull(conn, resp)
		return resp, err
	}
	if _, err := conn.Write(query); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		if n >= 2 && binary.BigEndian.Uint16(buf) == id {
			return buf[:n], nil
		}
	}
}

// rrText renders a record's data as an operator writes it.
func rrText(body dnsmessage.ResourceBody) string {
	switch r := body.(type) {
	case *dnsmessage.AResource:
		return netip.AddrFrom4(r.A).String()
	case *dnsmessage.AAAAResource:
		return netip.AddrFrom16(r.AAAA).String()
	case *dnsmessage.CNAMEResource:
		return r.CNAME.String()
	case *dnsmessage.NSResource:
		return r.NS.String()
	case *dnsmessage.PTRResource:
		return r.PTR.String()
	case *dnsmessage.MXResource:
		return r.MX.String()
	case *dnsmessage.SRVResource:
		return r.Target.String()
	case *dnsmessage.TXTResource:
		return strings.Join(r.TXT, "")
	case *dnsmessage.SOAResource:
		return r.NS.String()
	}
	return body.GoString()
}

// matchAnswer reports whether one answer is expect (names compared
// without the trailing dot and case, addresses in canonical form).
func matchAnswer(got []string, expect string) bool {
	want := strings.TrimSuffix(strings.ToLower(expect), ".")
	if a, err := netip.ParseAddr(expect); err == nil {
		want = a.String()
	}
	for _, g := range got {
		if strings.TrimSuffix(strings.ToLower(g), ".") == want {
			return true
		}
	}
	return false
}
