package health

import (
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// TestDNSQuery: the query carries the id, asks for recursion and holds the
// one question; a name the builder refuses is an error, not a query.
func TestDNSQuery(t *testing.T) {
	q, err := dnsQuery(0x1234, dnsmessage.MustNewName("www.example.org."), dnsmessage.TypeAAAA)
	if err != nil {
		t.Fatal(err)
	}
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := p.AllQuestions()
	if err != nil {
		t.Fatal(err)
	}
	if h.ID != 0x1234 || !h.RecursionDesired || len(qs) != 1 || qs[0].Name.String() != "www.example.org." ||
		qs[0].Type != dnsmessage.TypeAAAA || qs[0].Class != dnsmessage.ClassINET {
		t.Errorf("query: header %+v, questions %+v", h, qs)
	}
	if q, err := dnsQuery(1, dnsmessage.MustNewName("no-final-dot"), dnsmessage.TypeA); err == nil {
		t.Errorf("a non-canonical name built a query: %x", q)
	}
}
