package notify

import (
	"strings"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/event"
)

func TestComposeSingleServerDown(t *testing.T) {
	m := Compose("lb-a", Batch{Events: []event.Record{healthEvent(7, t0, 12, false)}}, siteStatus(), t0)
	t.Log("\n" + m.Text)
	want := "lb-a: 198.51.100.12 DOWN in pool www (HTTP 503 /healthz), 2/3 up"
	if m.Subject != want {
		t.Errorf("subject = %q\nwant      %q", m.Subject, want)
	}
	for _, s := range []string{
		"HTTP 503 from 198.51.100.12:80 /healthz, 3rd failure in a row", // the reason in full
		"check http :80 /healthz: 3 results in a row",
		"Node lb-a: halb 1.0, data plane none",
		"Pool www now: 2/3 servers up, healthy weight 2, quorum 1 met",
		"198.51.100.11:80  UP",
		"198.51.100.12:80  DOWN",
		"Services: https tcp 192.0.2.9:443 (wlc, dr); http tcp 192.0.2.9:80 (wlc, dr)",
		"web-a", "MASTER", // who is master now
		"reloaded /etc/halb/halb.yaml", // the timeline
	} {
		if !strings.Contains(m.Text, s) {
			t.Errorf("body lacks %q:\n%s", s, m.Text)
		}
	}
	if len(m.Pools) != 1 || m.Pools[0].Up != 2 || m.Pools[0].Total != 3 || len(m.Pools[0].Servers) != 3 {
		t.Errorf("pools = %+v, want www with 2/3 up and its 3 servers once each", m.Pools)
	}
	if m.ID != "lb-a/7-7" {
		t.Errorf("id = %q", m.ID)
	}
}

func TestComposeHeadlines(t *testing.T) {
	var six []event.Record
	for i, n := range []string{"v1", "v2", "v3", "v4", "v5", "v6"} {
		six = append(six, vrrpEvent(uint64(i+1), t0, n, "BACKUP", "MASTER", "master down timer expired"))
	}
	var flap []event.Record
	for i := range 5 {
		flap = append(flap, healthEvent(uint64(i+1), t0.Add(time.Duration(i)*time.Second), 12, i%2 == 1))
	}
	mixed := []event.Record{healthEvent(1, t0, 12, false),
		{Seq: 2, Kind: "quorum", Summary: "pool www LOST quorum (healthy weight 0 < 1)", Quorum: &event.Quorum{Pool: "www"}}}
	for _, tc := range []struct {
		name string
		b    Batch
		want string
	}{
		{"failover of six", Batch{Events: six}, "lb-a: v1, v2, v3 +3 now MASTER (master down timer expired)"},
		{"one instance", Batch{Events: six[:1]}, "lb-a: v1 now MASTER (was BACKUP: master down timer expired)"},
		{"flapping", Batch{Events: flap}, "lb-a: 198.51.100.12 flapping in pool www: 5 changes, now DOWN (HTTP 503 /healthz), 2/3 up"},
		{"two servers", Batch{Events: []event.Record{healthEvent(1, t0, 12, false), healthEvent(2, t0, 13, false), healthEvent(3, t0, 11, true)}},
			"lb-a: 198.51.100.12, 198.51.100.13 DOWN in pool www; 198.51.100.11 UP in pool www, 2/3 up"},
		{"mixed", Batch{Events: mixed, Omitted: 2}, "lb-a: pool www LOST quorum (healthy weight 0 < 1) (+3 more events)"},
	} {
		if got := Compose("lb-a", tc.b, siteStatus(), t0).Subject; got != tc.want {
			t.Errorf("%s: subject = %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestComposeWithoutStatus(t *testing.T) {
	m := Compose("lb-a", Batch{Events: []event.Record{healthEvent(1, t0, 12, false)}}, api.Status{}, t0)
	if m.Subject != "lb-a: 198.51.100.12 DOWN in pool www (HTTP 503 /healthz)" {
		t.Errorf("subject = %q", m.Subject)
	}
	if !strings.Contains(m.Text, "could not be read") || m.Pools == nil || m.Instances == nil || m.Timeline == nil {
		t.Errorf("message without status: %+v", m)
	}
}

func TestShortReason(t *testing.T) {
	h := healthEvent(1, t0, 12, false).Health
	for reason, want := range map[string]string{
		"HTTP 503 from 198.51.100.12:80 /healthz, 3rd failure in a row":      "HTTP 503 /healthz",
		"HTTP 198.51.100.12:80 /index.html: connection refused, 2nd failure": "HTTP /index.html: connection refused",
		"connect timeout after 1s": "connect timeout after 1s",
		"":                         "",
	} {
		h.Reason = reason
		if got := shortReason(h); got != want {
			t.Errorf("shortReason(%q) = %q, want %q", reason, got, want)
		}
	}
}
