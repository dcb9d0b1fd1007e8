package traffic

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestConnsNameTheirBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "web7") })}
	go srv.Serve(ln)
	defer srv.Close()
	var d net.Dialer
	g := &Generator{Dial: d.DialContext, VIPs: []string{"127.0.0.1"}, Port: ln.Addr().(*net.TCPAddr).Port,
		Interval: 10 * time.Millisecond, Timeout: time.Second, Persistent: 2}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for !answered(g.Conns()) {
		if time.Now().After(deadline) {
			t.Fatalf("no answer on the long-lived connections: %+v", g.Conns())
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Close() // each connection's next request fails
	for {
		cs := g.Conns()
		if cs[0].Broken != "" && cs[1].Broken != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections not broken after the server closed: %+v", cs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	for i, c := range g.Conns() {
		if c.VIP != "127.0.0.1" || c.Backend != "web7" {
			t.Errorf("conn %d: %+v, want VIP 127.0.0.1 and backend web7", i, c)
		}
	}
}

func answered(cs []Conn) bool {
	if len(cs) != 2 {
		return false
	}
	for _, c := range cs {
		if c.Backend == "" {
			return false
		}
	}
	return true
}
