package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"halb/internal/lab/labtest"
)

// TestHealthCheckMetrics runs halb against real HTTP and TCP servers in a
// lab and reads every check result back from /metrics: checks run by
// result, and their durations by check type.
func TestHealthCheckMetrics(t *testing.T) {
	labtest.RequireTool(t, "busybox")
	lab := labtest.NewLab(t)
	sw := labtest.Switch(t, lab, "sw")
	lb := labtest.Join(t, lab, sw, "lb", "198.51.100.1/24")
	be := labtest.Join(t, lab, sw, "be", "198.51.100.11/24", "198.51.100.12/24")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	// An HTTP server on .11; nothing listens on .12, whose checks fail.
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("ok\n"), 0o644)
	httpd := be.Command(ctx, "busybox", "httpd", "-f", "-p", "198.51.100.11:80", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { httpd.Process.Kill(); httpd.Wait() })

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "halb.yaml")
	sock := filepath.Join(dir, "halb.sock")
	os.WriteFile(cfgPath, []byte(`node: lb-a
services:
  - {name: web, vips: [192.0.2.9], ports: [80], forward: nat, pool: www}
  - {name: raw, vips: [192.0.2.10], ports: [80], forward: nat, pool: raw}
pools:
  www:
    check: {type: http, port: 80, path: /index.html, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11}, {address: 198.51.100.12}]
  raw:
    check: {type: tcp, port: 80, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers: [{address: 198.51.100.11}]
api: {metrics: "127.0.0.1:9470"}
`), 0o644)
	halb, exited := startDryRun(ctx, t, lb, cfgPath, sock, dir)

	// scrape reads /metrics on the listener inside the lab and parses it.
	scrape := func() map[string]*dto.MetricFamily {
		select {
		case <-exited:
			t.Fatalf("halb exited: %v", halb.ProcessState)
		default:
		}
		var body []byte
		err := inNetns(lb.Name, func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:9470", time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
			body, err = io.ReadAll(c)
			return err
		})
		if err != nil {
			return nil
		}
		_, payload, _ := strings.Cut(string(body), "\r\n\r\n")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(payload))
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		return fams
	}
	// The checks' types; the servers have no port of their own.
	const check11, check12, tcp11 = "http", "http", "tcp"
	checks := func(fams map[string]*dto.MetricFamily, pool, server, typ, result string) float64 {
	next:
		for _, m := range fams["halb_server_checks_total"].GetMetric() {
			want := map[string]string{"pool": pool, "address": server, "port": "", "type": typ, "result": result}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
		return 0
	}
	hist := func(fams map[string]*dto.MetricFamily, typ string) *dto.Histogram {
		for _, m := range fams["halb_health_check_duration_seconds"].GetMetric() {
			if l := m.GetLabel(); len(l) == 1 && l[0].GetValue() == typ {
				return m.GetHistogram()
			}
		}
		return &dto.Histogram{}
	}

	var first map[string]*dto.MetricFamily
	waitFor(t, ctx, "checks counted", func() bool {
		first = scrape()
		return checks(first, "www", "198.51.100.11", check11, "ok") >= 2 && checks(first, "www", "198.51.100.12", check12, "fail") >= 2 &&
			checks(first, "raw", "198.51.100.11", tcp11, "ok") >= 2
	})
	began := time.Now()
	time.Sleep(2 * time.Second)
	second := scrape()
	elapsed := time.Since(began)
	// Every 200 ms: about ten checks each in two seconds. At least two
	// (a loaded machine), and never more than one a tick (plus slack):
	// a result is counted once for its server.
	most := float64(elapsed/(200*time.Millisecond)) + 3
	for _, c := range []struct{ pool, server, check, result string }{
		{"www", "198.51.100.11", check11, "ok"},
		{"www", "198.51.100.12", check12, "fail"},
		{"raw", "198.51.100.11", tcp11, "ok"},
	} {
		grew := checks(second, c.pool, c.server, c.check, c.result) - checks(first, c.pool, c.server, c.check, c.result)
		if grew < 2 || grew > most {
			t.Errorf("checks_total{%s %s %s} grew by %v in %s, want 2..%v", c.pool, c.check, c.result, grew, elapsed.Round(time.Millisecond), most)
		}
	}
	if v := checks(second, "www", "198.51.100.11", check11, "fail"); v != 0 {
		t.Errorf("%v failed checks of the live HTTP server", v)
	}
	if v := checks(second, "www", "198.51.100.12", check12, "ok"); v != 0 {
		t.Errorf("%v passed checks of an address where nothing listens", v)
	}

	// One observation per check, by type; every check here ends within
	// its 150 ms timeout, so within the 1 s bucket.
	httpRuns := checks(second, "www", "198.51.100.11", check11, "ok") + checks(second, "www", "198.51.100.12", check12, "fail")
	for typ, runs := range map[string]float64{"http": httpRuns, "tcp": checks(second, "raw", "198.51.100.11", tcp11, "ok")} {
		h := hist(second, typ)
		n := float64(h.GetSampleCount())
		t.Logf("%s: %v checks run, %v durations observed, mean %.2f ms", typ, runs, n, 1000*h.GetSampleSum()/n)
		if n == 0 || n < runs-5 || n > runs+5 {
			t.Errorf("%s duration histogram has %v observations, checks_total says %v", typ, n, runs)
		}
		if h.GetSampleSum() <= 0 {
			t.Errorf("%s durations sum to %v", typ, h.GetSampleSum())
		}
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 1 && b.GetCumulativeCount() != h.GetSampleCount() {
				t.Errorf("%s: %d of %d checks took over 1 s", typ, h.GetSampleCount()-b.GetCumulativeCount(), h.GetSampleCount())
			}
		}
	}
	if n := len(second["halb_health_check_duration_seconds"].GetMetric()); n != 2 {
		t.Errorf("%d duration histograms, want one per check type (2)", n)
	}

	// The HTTP server stops: its checks now count as failures.
	httpd.Process.Kill()
	httpd.Wait()
	waitFor(t, ctx, "failed checks of the stopped server", func() bool {
		return checks(scrape(), "www", "198.51.100.11", check11, "fail") >= 2
	})
}
