package config

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// DNSQueryTypes are the record types a dns check may ask for: keepalived's
// (its DNSSEC types RRSIG and DNSKEY included) and PTR and SRV.
var DNSQueryTypes = []string{"A", "AAAA", "CNAME", "DNSKEY", "MX", "NS", "PTR", "RRSIG", "SOA", "SRV", "TXT"}

// health checks what the health checkers need of each check beyond the
// common keys.
func (v *validator) health() {
	names := make([]string, 0, len(v.c.Pools))
	for name := range v.c.Pools {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pool := v.c.Pools[name]
		if pool.SlowStart < 0 {
			v.errorf("pools."+name+".slow_start", "pools.%s.slow_start: must not be negative", name)
		}
		for i, ch := range pool.Checks {
			v.healthCheck(fmt.Sprintf("pools.%s.check[%d]", name, i), ch)
		}
		for i, srv := range pool.Servers {
			for j, ch := range srv.Checks {
				v.healthCheck(fmt.Sprintf("pools.%s.servers[%d].check[%d]", name, i, j), ch)
			}
		}
	}
}

func (v *validator) healthCheck(p string, ch Check) {
	for i, r := range ch.ExpectStatus {
		if r.Lo < 100 || r.Hi > 599 || r.Lo > r.Hi {
			v.errorf(fmt.Sprintf("%s.expect_status[%d]", p, i), "%s.expect_status[%d]: %d-%d is not a range of HTTP status codes (100-599)", p, i, r.Lo, r.Hi)
		}
	}
	if ch.BodyDigest != "" && !validDigest(ch.BodyDigest) {
		v.errorf(p+".body_digest", "%s.body_digest: %q is not md5:HEX, sha1:HEX or sha256:HEX", p, ch.BodyDigest)
	}
	if ch.Source != "" {
		if _, err := netip.ParseAddr(ch.Source); err != nil && !validIfName(ch.Source) {
			v.errorf(p+".source", "%s.source: %q is neither an IP address nor an interface name", p, ch.Source)
		}
	}
	if ch.Type == "dns" && !slices.Contains(DNSQueryTypes, strings.ToUpper(ch.QueryType)) {
		v.errorf(p+".query_type", "%s.query_type: %q is not one of %s", p, ch.QueryType, strings.Join(DNSQueryTypes, ", "))
	}
	tlsKeys := ch.SNI != "" || ch.Verify || ch.CAFile != "" || ch.ClientCert != ""
	if tlsKeys && ch.Type != "https" && ch.Type != "tls" {
		v.warnf(p, "%s: sni, verify, ca_file and client_cert only apply to https and tls checks, not %s", p, ch.Type)
	}
	if ch.NoICMPUnreach && ch.ExpectReply != "" {
		v.errorf(p+".no_icmp_unreachable", "%s.no_icmp_unreachable: a udp check either expects a reply or no ICMP unreachable, not both", p)
	}
}

func validDigest(s string) bool {
	sizes := map[string]int{"md5": 16, "sha1": 20, "sha256": 32}
	alg, sum, found := strings.Cut(strings.ToLower(s), ":")
	if !found {
		sum = alg
	}
	b, err := hex.DecodeString(sum)
	if err != nil {
		return false
	}
	if !found {
		return len(b) == 16 || len(b) == 20 || len(b) == 32
	}
	return sizes[alg] == len(b)
}

func validIfName(s string) bool {
	return len(s) > 0 && len(s) < 16 && !strings.ContainsAny(s, "/ \t:")
}
