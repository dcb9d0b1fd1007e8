package health

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsReply builds a reply to a question for www.example.org. of qtype,
// with rcode and answer records.
func dnsReply(t testing.TB, rcode dnsmessage.RCode, qtype dnsmessage.Type, answers ...dnsmessage.Resource) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, Response: true, RCode: rcode})
	b.EnableCompression()
	name := dnsmessage.MustNewName("www.example.org.")
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	if err := b.StartAnswers(); err != nil {
		t.Fatal(err)
	}
	for _, a := range answers {
		a.Header.Name, a.Header.Class = name, dnsmessage.ClassINET
		var err error
		switch body := a.Body.(type) {
		case *dnsmessage.AResource:
			err = b.AResource(a.Header, *body)
		case *dnsmessage.CNAMEResource:
			err = b.CNAMEResource(a.Header, *body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func aRecord(addr string) dnsmessage.Resource {
	return dnsmessage.Resource{Body: &dnsmessage.AResource{A: netip.MustParseAddr(addr).As4()}}
}

// TestJudgeDNS: a reply passes with a record of the type asked for (the
// expected one when set); an error code, a reply without such a record
// and a cut reply fail, saying why.
func TestJudgeDNS(t *testing.T) {
	cname := dnsmessage.Resource{Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("web.example.org.")}}
	ok := dnsReply(t, dnsmessage.RCodeSuccess, dnsmessage.TypeA, cname, aRecord("198.51.100.11"), aRecord("198.51.100.12"))
	for _, tc := range []struct {
		name, expect string
		resp         []byte
		pass         bool
		detail       string
	}{
		{"records", "", ok, true, "DNS x: 198.51.100.11, 198.51.100.12"},
		{"expected record", "198.51.100.12", ok, true, "DNS x: 198.51.100.11, 198.51.100.12"},
		{"other record", "198.51.100.13", ok, false, "answer 198.51.100.11, 198.51.100.12, expected 198.51.100.13"},
		{"NXDOMAIN", "", dnsReply(t, dnsmessage.RCodeNameError, dnsmessage.TypeA), false, "DNS x: NXDOMAIN"},
		{"no record", "", dnsReply(t, dnsmessage.RCodeSuccess, dnsmessage.TypeA, cname), false, "no A record in the answer"},
		{"cut", "", ok[:len(ok)-3], false, "bad answer"},
		{"header only", "", ok[:5], false, "bad answer"},
	} {
		r := judgeDNS("DNS x", tc.resp, dnsmessage.TypeA, "a", tc.expect)
		if r.OK != tc.pass || !strings.Contains(r.Detail, tc.detail) {
			t.Errorf("%s: %+v, want ok %v and %q", tc.name, r, tc.pass, tc.detail)
		}
	}
}

// FuzzJudgeDNS: any reply is judged without a panic, and one that passes
// names a record of the type asked for, the expected one among them.
func FuzzJudgeDNS(f *testing.F) {
	f.Add(dnsReply(f, dnsmessage.RCodeSuccess, dnsmessage.TypeA, aRecord("198.51.100.11")))
	f.Add(dnsReply(f, dnsmessage.RCodeServerFailure, dnsmessage.TypeA))
	f.Fuzz(func(t *testing.T, resp []byte) {
		r := judgeDNS("DNS x", resp, dnsmessage.TypeA, "a", "")
		if r.OK && !strings.HasPrefix(r.Detail, "DNS x: ") {
			t.Errorf("passed with %q", r.Detail)
		}
		if e := judgeDNS("DNS x", resp, dnsmessage.TypeA, "a", "198.51.100.11"); e.OK && !strings.Contains(e.Detail, "198.51.100.11") {
			t.Errorf("passed the expected record with %q", e.Detail)
		}
	})
}
