package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// recorder logs what each layer is asked to hold.
type recorder struct {
	name string
	log  *[]string
}

func (r recorder) Reconcile(_ context.Context, s State) error {
	var parts []string
	for _, m := range s.MarkRules {
		parts = append(parts, fmt.Sprint("rule", m.Mark))
	}
	for _, v := range s.Services {
		parts = append(parts, fmt.Sprint("svc", v.Key.Mark))
	}
	*r.log = append(*r.log, r.name+":"+strings.Join(parts, ","))
	return nil
}

func (recorder) Close() error { return nil }

func TestLayeredOrdersMarksAroundServices(t *testing.T) {
	var log []string
	l := &Layered{Marks: recorder{"marks", &log}, Services: recorder{"ipvs", &log}}
	vip := netip.MustParseAddr("192.0.2.9")
	state := func(marks ...uint32) State {
		var s State
		for _, m := range marks {
			s.MarkRules = append(s.MarkRules, MarkRule{Mark: m, Protocol: "tcp", VIP: vip, PortLo: uint16(m), PortHi: uint16(m)})
			s.Services = append(s.Services, VirtualService{Key: ServiceKey{Family: 4, Mark: m}})
		}
		return s
	}
	ctx := context.Background()
	l.Reconcile(ctx, state(1))
	l.Reconcile(ctx, state(2))
	want := []string{
		"marks:rule1", "ipvs:svc1", "marks:rule1",
		// mark 2 appears before its service; mark 1 goes after its service.
		"marks:rule1,rule2", "ipvs:svc2", "marks:rule2",
	}
	if strings.Join(log, " ") != strings.Join(want, " ") {
		t.Fatalf("order:\n got %v\nwant %v", log, want)
	}
}
