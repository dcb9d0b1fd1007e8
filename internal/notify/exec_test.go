package notify

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"halb/internal/config"
	"halb/internal/event"
	"halb/internal/lab/labtest"
)

func TestHookArgs(t *testing.T) {
	g := newGroupStates([]config.SyncGroup{{Name: "web", Instances: []string{"web-a", "gw-a"}}})
	got := hookArgs(vrrpEvent(1, t0, "web-a", "BACKUP", "MASTER", "x"), g)
	if want := [][]string{{"INSTANCE", "web-a", "MASTER", "100"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("first member: %q, want %q", got, want)
	}
	got = hookArgs(vrrpEvent(2, t0, "gw-a", "BACKUP", "MASTER", "x"), g)
	if want := [][]string{{"INSTANCE", "gw-a", "MASTER", "100"}, {"GROUP", "web", "MASTER", "0"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("second member: %q, want %q", got, want)
	}
	got = hookArgs(vrrpEvent(3, t0, "gw-a", "MASTER", "INIT", "stopping"), g)
	if want := [][]string{{"INSTANCE", "gw-a", "STOP", "100"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("stop: %q, want %q", got, want)
	}
	if got := hookArgs(healthEvent(4, t0, 12, false), g); !reflect.DeepEqual(got, [][]string{{"HEALTH", "www", "198.51.100.12", "DOWN"}}) {
		t.Errorf("health: %q", got)
	}
	restored := event.Record{Kind: "dataplane_restored", Restored: &event.Restored{At: t0, Reason: "table halb changed by nft (pid 42)", Changes: 3}}
	if got := hookArgs(restored, g); !reflect.DeepEqual(got, [][]string{{"DATAPLANE", "RESTORED"}}) {
		t.Errorf("data plane restored: %q", got)
	}
}

// TestHookRunsAsUnprivilegedUser runs a real notify program as nobody and
// checks its identity, arguments and stdin; a hanging one is killed.
func TestHookRunsAsUnprivilegedUser(t *testing.T) {
	labtest.RequireRoot(t)
	dir, err := os.MkdirTemp("", "halb-hook-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	script := filepath.Join(dir, "notify.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nid -u > "+dir+"/uid\necho \"$@\" > "+dir+"/args\ncat > "+dir+"/stdin\n[ \"$1\" = SLEEP ] && sleep 30\nexit 0\n"), 0o755)

	h, err := NewHook(script, "nobody", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rec := vrrpEvent(1, t0, "web-a", "BACKUP", "MASTER", "master down timer expired")
	in, _ := json.Marshal(HookInput{Args: []string{"INSTANCE", "web-a", "MASTER", "100"}, Event: rec})
	if err := h.Run(t.Context(), []string{"INSTANCE", "web-a", "MASTER", "100"}, in); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	if uid := read("uid"); uid != "65534" {
		t.Errorf("ran as uid %q, want nobody (65534)", uid)
	}
	if a := read("args"); a != "INSTANCE web-a MASTER 100" {
		t.Errorf("args %q", a)
	}
	var back HookInput
	if err := json.Unmarshal([]byte(read("stdin")), &back); err != nil || back.Event.VRRP == nil || back.Event.VRRP.Reason != "master down timer expired" {
		t.Errorf("stdin %q: %v", read("stdin"), err)
	}
	start := time.Now()
	err = h.Run(t.Context(), []string{"SLEEP"}, nil)
	if err == nil || !strings.Contains(err.Error(), "killed after 2s") {
		t.Errorf("hanging program: err %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hanging program stopped after %s, want about 2s", d)
	}
	if _, err := NewHook(script, "no-such-user-here", time.Second); err == nil {
		t.Error("unknown user accepted")
	}
	if _, err := NewHook(script, "", time.Second); err == nil {
		t.Error("no user accepted")
	}
}

// TestNotifierRunsHookPerEvent: through the notifier, the program gets
// every event in order, keepalived's INSTANCE lines and the GROUP line
// once the whole sync group is MASTER, each with its JSON.
func TestNotifierRunsHookPerEvent(t *testing.T) {
	labtest.RequireRoot(t)
	dir, err := os.MkdirTemp("", "halb-hook-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	script := filepath.Join(dir, "notify.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$*\" >> "+dir+"/calls\ncat >> "+dir+"/stdin\necho >> "+dir+"/stdin\n"), 0o755)
	h, err := NewHook(script, "nobody", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	n := New(Options{Node: "lb-a", Status: statusOK, Log: quiet(), Wait: time.Hour, MinInterval: time.Hour, Hook: h,
		SyncGroups: []config.SyncGroup{{Name: "web", Instances: []string{"web-a", "gw-a"}}}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	n.Sink(vrrpEvent(1, t0, "web-a", "BACKUP", "MASTER", "master down timer expired"))
	n.Sink(vrrpEvent(2, t0, "gw-a", "BACKUP", "MASTER", "master down timer expired"))
	n.Sink(healthEvent(3, t0, 12, false))
	want := "INSTANCE web-a MASTER 100\nINSTANCE gw-a MASTER 100\nGROUP web MASTER 0\nHEALTH www 198.51.100.12 DOWN\n"
	var calls string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(dir, "calls"))
		if calls = string(b); calls == want {
			break
		}
	}
	if calls != want {
		t.Errorf("calls:\n%s\nwant:\n%s", calls, want)
	}
	cancel()
	<-done
	b, _ := os.ReadFile(filepath.Join(dir, "stdin"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d JSON documents on stdin, want 4:\n%s", len(lines), b)
	}
	var in HookInput
	if err := json.Unmarshal([]byte(lines[3]), &in); err != nil || in.Pool == nil || in.Pool.Up != 2 || in.Event.Health == nil {
		t.Errorf("health event's stdin %s: %v", lines[3], err)
	}
	if err := json.Unmarshal([]byte(lines[0]), &in); err != nil || in.Instance == nil || in.Instance.Name != "web-a" {
		t.Errorf("vrrp event's stdin %s: %v", lines[0], err)
	}
	if s := n.Stats(); s[0].Name != "exec "+script || s[0].Sent != 4 || s[0].Failed != 0 {
		t.Errorf("stats %+v", s)
	}
}
