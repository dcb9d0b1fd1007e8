package faults

import (
	"slices"
	"strings"
	"testing"
)

func TestAdoptionsReadFromTheLog(t *testing.T) {
	log := `time=2026-12-06T02:40:00Z level=INFO msg="halb running" node=lb-a
time=2026-12-06T02:40:00Z level=INFO msg="nftables: adopted the table found in the kernel" table=halb changes=0
time=2026-12-06T02:40:09Z level=INFO msg="nftables: adopted the table found in the kernel" table=halb changes=17 rewritten="[balance marking]" why="their rules differ"
`
	got := adoptions(log)
	if len(got) != 2 || got[0].changes != 0 || got[0].said != "" || got[0].rewritten != nil ||
		got[1].changes != 17 || got[1].said != `rewritten="[balance marking]" why="their rules differ"` ||
		!slices.Equal(got[1].rewritten, []string{"balance", "marking"}) {
		t.Errorf("adoptions = %+v", got)
	}
	if got := adoptions(`level=INFO msg="halb running"`); len(got) != 0 {
		t.Errorf("a log without adoption: %v", got)
	}
}

func TestRewrittenNamesWhereHandlesChanged(t *testing.T) {
	const before = `table inet halb { # handle 7
	set natsrc4 { # handle 3
		type ipv4_addr
	}
	chain balance { # handle 1
		type filter hook prerouting priority dstnat; policy accept;
		ip daddr . th dport vmap @svc4 # handle 10
	}
	chain be-1 { # handle 2
		dnat ip to 198.51.100.11 # handle 11
	}
}
table netdev halb { # handle 8
	chain ingress { # handle 1
		meta mark 0x1 drop # handle 4
	}
}
`
	same := handled(before)
	if len(same) != 9 || same[0] != "inet halb: table inet halb { # handle 7" || same[3] != "inet halb/balance: ip daddr . th dport vmap @svc4 # handle 10" {
		t.Fatalf("handled lines %q", same)
	}
	if got := rewritten(same, handled(before)); len(got) != 0 {
		t.Errorf("the same listing: %v written again", got)
	}
	after := strings.Replace(before, "dnat ip to 198.51.100.11 # handle 11", "dnat ip to 198.51.100.11 # handle 12", 1)
	after = strings.Replace(after, "meta mark 0x1 drop # handle 4", "meta mark 0x1 drop # handle 5", 1)
	if got := rewritten(same, handled(after)); !slices.Equal(got, []string{"inet halb/be-1", "netdev halb/ingress"}) {
		t.Errorf("written again: %v", got)
	}
	if !keptChain(same, handled(after), "inet halb/be-1") {
		t.Error("be-1, filled again, is not the same chain")
	}
	created := strings.Replace(before, "chain be-1 { # handle 2", "chain be-1 { # handle 9", 1)
	if keptChain(same, handled(created), "inet halb/be-1") || keptChain(same, same, "inet halb/be-2") {
		t.Error("a chain created again, or absent, is the same chain")
	}
}
