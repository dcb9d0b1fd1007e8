package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"pool", "pool", 0}, {"", "vip", 3}, {"persistance", "persistence", 1},
		{"prot", "port", 1}, {"vips", "vip", 1}, {"kitten", "sitting", 3},
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestClosest(t *testing.T) {
	keys := []string{"name", "vips", "ports", "pool", "persistence", "scheduler", "port"}
	for _, c := range []struct{ word, want string }{
		{"persistance", "persistence"}, // one substitution
		{"shceduler", "scheduler"},     // a swap is one edit
		{"vps", "vips"},                // one insertion
		{"nmea", "name"},               // a swap and nothing else close
		{"sched", "scheduler"},         // a prefix
		{"colour", ""},                 // nothing close
		{"pool", ""},                   // known already
		{"x", ""},                      // one letter is no prefix
	} {
		if got := Closest(c.word, keys); got != c.want {
			t.Errorf("Closest(%q) = %q, want %q", c.word, got, c.want)
		}
	}
}
