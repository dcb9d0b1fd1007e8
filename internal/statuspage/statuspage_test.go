package statuspage

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"halb/internal/api"
	"halb/internal/dataplane"
	"halb/internal/event"
	"halb/internal/lab/labtest"
	"halb/internal/metrics"
	"halb/internal/metrics/livetest"
)

const site = `node: lb-a
vrrp:
  instances:
    - {name: web-a, interface: eth0, vrid: 9, priority: 150, vips: [192.0.2.9/24]}
    - {name: web-b, interface: eth0, vrid: 10, priority: 100, vips: [192.0.2.10/24]}
services:
  - {name: https, vips: [192.0.2.9], ports: [443], pool: www}
pools:
  www:
    check: {type: http, port: 80, path: /healthz}
    servers:
      - {address: 198.51.100.11}
      - {address: 198.51.100.12}
      - {address: 198.51.100.13}
`

type kernel struct{}

func (kernel) Counters(context.Context) ([]metrics.ServiceCounters, error) {
	return []metrics.ServiceCounters{{Key: dataplane.ServiceKey{Family: 4, Protocol: "tcp", Addr: netip.MustParseAddr("192.0.2.9"), Port: 443},
		Connections: 4242, Reals: []metrics.RealCounters{{Addr: netip.MustParseAddr("198.51.100.11"), ActiveConns: 17}}}}, nil
}

// livePage runs an engine where web-a is master and 198.51.100.12 is
// down, and serves its status page.
func livePage(t *testing.T) *httptest.Server {
	t.Helper()
	live := livetest.Start(t, site, nil)
	at := time.Now()
	live.VRRP(event.VRRP{At: at, Instance: "web-a", VRID: 9, Old: "BACKUP", New: "MASTER", Priority: 150, EffectivePriority: 150,
		Master: netip.MustParseAddr("192.0.2.1"), Reason: "master down timer expired"})
	live.Health(event.Health{At: at, Pool: "www", Addr: netip.MustParseAddr("198.51.100.12"), Check: "http :80 /healthz",
		Up: false, Weight: -1, Reason: "HTTP 503 from 198.51.100.12:80 /healthz, 3rd failure in a row", Consecutive: 3, Latency: 1500 * time.Microsecond})
	live.Wait(t, func(st api.Status) bool { return len(st.Events) >= 2 })
	page := New(live.Status, func() metrics.CounterSource { return kernel{} }, 5*time.Second, time.Now)
	srv := httptest.NewServer(page)
	t.Cleanup(srv.Close)
	return srv
}

var wantOnPage = []string{
	"halb on lb-a",
	"MASTER", "192.0.2.1", "master down timer expired", // who is master, and why
	"https tcp 192.0.2.9:443", "connections 4242",
	"198.51.100.12", "DOWN", "HTTP 503 from 198.51.100.12:80 /healthz, 3rd failure in a row", "1.5ms",
	"198.51.100.11", "17", // active connections from the kernel counters
	"198.51.100.12 DOWN in pool www", // the event history
}

func TestPageShowsLiveState(t *testing.T) {
	srv := livePage(t)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range wantOnPage {
		if !strings.Contains(string(body), s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if !strings.Contains(string(body), `<meta http-equiv="refresh" content="5">`) {
		t.Error("page does not refresh itself")
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(method, srv.URL, strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %s, want 405 (read-only)", method, resp.Status)
		}
	}
}

func TestPageWithoutEngine(t *testing.T) {
	page := New(func(context.Context) (api.Status, error) { return api.Status{}, context.DeadlineExceeded }, nil, time.Second, time.Now)
	rec := httptest.NewRecorder()
	page.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "did not answer") {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}

// chromium runs headless Chromium with a fresh profile.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, "chromium", append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// TestPageInChromium loads the page in a real browser: the DOM it builds
// holds the live state, and a screenshot is kept (go test -artifacts).
func TestPageInChromium(t *testing.T) {
	labtest.RequireTool(t, "chromium")
	srv := livePage(t)
	dom := string(chromium(t, "--dump-dom", srv.URL))
	for _, s := range wantOnPage {
		if !strings.Contains(dom, s) {
			t.Errorf("DOM lacks %q", s)
		}
	}
	for _, id := range []string{`id="vrrp"`, `id="services"`, `id="pools"`, `id="events"`, `data-server="198.51.100.12"`} {
		if !strings.Contains(dom, id) {
			t.Errorf("DOM lacks %s", id)
		}
	}
	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	chromium(t, "--window-size=1280,900", "--hide-scrollbars", "--screenshot="+shot, srv.URL)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot is %v", b)
	}
	// The DOWN cell is painted red: look for its colour (#f8c0c0).
	red := 0
	for y := 0; y < img.Bounds().Dy(); y += 2 {
		for x := 0; x < img.Bounds().Dx(); x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 == 0xf8 && g>>8 == 0xc0 && b>>8 == 0xc0 {
				red++
			}
		}
	}
	if red == 0 {
		t.Error("no red (DOWN) cell in the screenshot")
	}
	t.Logf("screenshot: %s", shot)
}

// TestPageHeaderShowsARefusedReload: the last reload refused is said at
// the top of the page, with its errors.
func TestPageHeaderShowsARefusedReload(t *testing.T) {
	now := time.Now()
	st := api.Status{Node: "lb-a", LastReload: api.Reload{At: now.Add(-time.Minute), Errors: []string{"halb.yaml:3:7: vrid: 300 is not from 1 to 255"}}}
	page := New(func(context.Context) (api.Status, error) { return st, nil }, nil, time.Second, func() time.Time { return now })
	rec := httptest.NewRecorder()
	page.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	body := rec.Body.String()
	if !strings.Contains(body, "Last reload REFUSED</b> 1m0s ago") || !strings.Contains(body, "<li>halb.yaml:3:7: vrid: 300 is not from 1 to 255</li>") {
		t.Errorf("the page does not show the refused reload:\n%s", body)
	}
	st.LastReload = api.Reload{At: now, Applied: true, Errors: []string{}}
	rec = httptest.NewRecorder()
	page.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if strings.Contains(rec.Body.String(), "REFUSED") {
		t.Error("the page shows an applied reload as refused")
	}
}

// TestRefusedReloadInChromium: in a real browser, the refused reload is
// in the page's header, before the instances.
func TestRefusedReloadInChromium(t *testing.T) {
	labtest.RequireTool(t, "chromium")
	st := api.Status{Node: "lb-a", VRRP: []api.Instance{}, LastReload: api.Reload{At: time.Now().Add(-time.Minute),
		Errors: []string{"halb.yaml:3:7: vrid: 300 is not from 1 to 255"}}}
	srv := httptest.NewServer(New(func(context.Context) (api.Status, error) { return st, nil }, nil, 5*time.Second, time.Now))
	defer srv.Close()
	dom := string(chromium(t, "--dump-dom", srv.URL))
	refused, vrrp := strings.Index(dom, `id="reload-refused"`), strings.Index(dom, `id="vrrp"`)
	if refused < 0 || vrrp < 0 || refused > vrrp || !strings.Contains(dom, "vrid: 300 is not from 1 to 255") {
		t.Errorf("the refused reload is not in the header (at %d, instances at %d):\n%s", refused, vrrp, dom)
	}
}
