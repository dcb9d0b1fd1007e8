package health

import (
	"fmt"
	"time"
)

// Result is the outcome of one probe.
type Result struct {
	OK bool
	// Detail says what was seen, naming the target:
	// "HTTP 503 from 198.51.100.12:80 /healthz", "connect timeout after 1s".
	Detail string
	// Weight is a weight the check reported (exec); -1 when none.
	Weight  int
	Latency time.Duration
}

// probeState is the rise/fall state of one probe.
type probeState struct {
	known  bool // a result has confirmed or changed the initial state
	up     bool
	okRun  int // successes in a row
	badRun int // failures in a row
	last   Result
}

// observe folds one result into the state with the given rise and fall
// counts and initial state. It reports whether the state changed or was
// confirmed for the first time.
func (s *probeState) observe(r Result, rise, fall int, initialUp bool) bool {
	if r.OK {
		s.okRun++
		s.badRun = 0
	} else {
		s.badRun++
		s.okRun = 0
	}
	s.last = r
	if !s.known {
		s.up = initialUp
	}
	was, wasKnown := s.up, s.known
	switch {
	case s.up && s.badRun >= fall:
		s.up = false
	case !s.up && s.okRun >= rise:
		s.up = true
	}
	if !s.known && s.up == r.OK {
		// The result agrees with the (possibly just changed) state.
		s.known = true
	}
	return s.known && (!wasKnown || was != s.up)
}

// reason is the last result in words, with its count.
func (s *probeState) reason() string {
	return s.last.Detail + countText(s.last.OK, s.consecutive())
}

// consecutive is the number of results in a row that agree with the last.
func (s *probeState) consecutive() int {
	if s.last.OK {
		return s.okRun
	}
	return s.badRun
}

// countText returns ", 3rd failure in a row" for n > 1, else "".
func countText(ok bool, n int) string {
	if n < 2 {
		return ""
	}
	what := "failure"
	if ok {
		what = "success"
	}
	return fmt.Sprintf(", %s %s in a row", ordinal(n), what)
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

// slowStartWeight returns the weight of a server that came up elapsed ago
// with the given full weight and ramp time: it grows linearly from 1 to
// full. It reports false once the ramp is over.
func slowStartWeight(full int, elapsed, ramp time.Duration) (int, bool) {
	if ramp <= 0 || elapsed >= ramp || full <= 1 {
		return full, false
	}
	w := int((int64(full)*int64(elapsed) + int64(ramp) - 1) / int64(ramp))
	return max(w, 1), true
}
