package health

import (
	"slices"
	"testing"

	"halb/internal/config"
)

// TestDNSTypesMatchConfig: the dns checker can ask every query type the
// configuration accepts, and no other.
func TestDNSTypesMatchConfig(t *testing.T) {
	var have []string
	for name := range dnsTypes {
		have = append(have, name)
	}
	slices.Sort(have)
	want := slices.Sorted(slices.Values(config.DNSQueryTypes))
	if !slices.Equal(have, want) {
		t.Errorf("checker types %v, configuration types %v", have, want)
	}
	if dnsTypes["RRSIG"] != 46 || dnsTypes["DNSKEY"] != 48 {
		t.Errorf("RRSIG, DNSKEY are types %d, %d; want 46, 48", dnsTypes["RRSIG"], dnsTypes["DNSKEY"])
	}
}
