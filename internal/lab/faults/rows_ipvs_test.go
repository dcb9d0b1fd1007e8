package faults

import "testing"

func TestFirstIPVSReal(t *testing.T) {
	saved := `-A -f 279998255 -s wlc -p 300
-a -f 279998255 -r 198.51.100.11:0 -g -w 1
-A -t 192.0.2.9:80 -s rr
-a -t 192.0.2.9:80 -r 198.51.100.12:8080 -m -w 2
`
	svc, dest, ok := firstIPVSReal(saved)
	if !ok || svc != "-f 279998255" || dest != [2]string{"198.51.100.11:0", "-g"} {
		t.Errorf("firstIPVSReal = %q, %q, %v", svc, dest, ok)
	}
	svc, dest, ok = firstIPVSReal("-A -t 192.0.2.9:80 -s rr\n-A -f 1 -s rr\n-a -f 1 -r 198.51.100.11:0 -g -w 1\n")
	if ok {
		t.Errorf("a first service without reals: %q, %q", svc, dest)
	}
	if _, _, ok := firstIPVSReal(""); ok {
		t.Error("no service found one")
	}
}
