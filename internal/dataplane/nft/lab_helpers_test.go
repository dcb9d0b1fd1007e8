package nft

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/dataplane"
	"halb/internal/engine"
	"halb/internal/lab/labtest"
	"halb/internal/lab/netns"
)

// nsDataplane returns a data plane that programs host's namespace.
func nsDataplane(t testing.TB, h *netns.Host, opts ...Option) *Dataplane {
	t.Helper()
	f, err := os.Open(filepath.Join("/var/run/netns", h.Name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	d, err := New(append([]Option{WithNetNS(int(f.Fd()))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// listTable renders halb's table with the nft tool.
func listTable(t testing.TB, h *netns.Host, table string) string {
	t.Helper()
	out, err := h.Run("nft", "list", "table", "inet", table)
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return string(out)
}

// loadState derives the desired state of a configuration file with every
// server healthy.
func loadState(t testing.TB, path string) (*config.Config, dataplane.State) {
	t.Helper()
	cfg, diags := config.Load(path, config.Options{Hostname: "test"})
	if cfg == nil {
		t.Fatalf("%s: %s", path, diags)
	}
	return cfg, engine.Desired(engine.Inputs{Config: cfg}).State
}

func reconcile(t testing.TB, d *Dataplane, st dataplane.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := d.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
}

func labHost(t testing.TB) (*netns.Lab, *netns.Host) {
	t.Helper()
	lab := labtest.NewLab(t)
	labtest.RequireTool(t, "nft")
	h, err := lab.AddHost("lb")
	if err != nil {
		t.Fatal(err)
	}
	return lab, h
}

// frontAndBack adds a client-side and a server-side switch to a lab, and a
// client on the front one with the given addresses.
func frontAndBack(t testing.TB, lab *netns.Lab, clientAddrs ...string) (front, back, client *netns.Host) {
	t.Helper()
	var err error
	if front, err = lab.AddSwitch("front"); err != nil {
		t.Fatal(err)
	}
	if back, err = lab.AddSwitch("back"); err != nil {
		t.Fatal(err)
	}
	if client, err = lab.AddHost("client"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Connect(client, front, "eth0", clientAddrs...); err != nil {
		t.Fatal(err)
	}
	return front, back, client
}
