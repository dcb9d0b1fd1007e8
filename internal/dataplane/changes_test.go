package dataplane

import (
	"context"
	"testing"
)

type counting struct{ n int }

func (c *counting) Reconcile(context.Context, State) error { return nil }
func (c *counting) Close() error                           { return nil }
func (c *counting) Changes() int                           { return c.n }

type wrapper struct{ Dataplane }

func (w wrapper) Unwrap() Dataplane { return w.Dataplane }

type silent struct{ Dataplane }

func TestChangesOf(t *testing.T) {
	c := &counting{n: 7}
	for _, tc := range []struct {
		name string
		dp   Dataplane
		n    int
		ok   bool
	}{
		{"itself", c, 7, true},
		{"wrapped twice", wrapper{wrapper{c}}, 7, true},
		{"wrapped without Unwrap", silent{c}, 0, false},
		{"none", &Layered{}, 0, false},
	} {
		if n, ok := ChangesOf(tc.dp); n != tc.n || ok != tc.ok {
			t.Errorf("%s: ChangesOf = %d, %v; want %d, %v", tc.name, n, ok, tc.n, tc.ok)
		}
	}
}

// TestLayeredChanges: a layered data plane counts the changes of its
// three steps when both layers count, and tells it does not otherwise.
func TestLayeredChanges(t *testing.T) {
	marks, services := &counting{n: 2}, &counting{n: 3}
	for _, tc := range []struct {
		name string
		l    *Layered
		n    int
		ok   bool
	}{
		{"both count", &Layered{Marks: marks, Services: services}, 2 + 3 + 2, true},
		{"the services do not", &Layered{Marks: marks, Services: silent{services}}, 0, false},
	} {
		if err := tc.l.Reconcile(context.Background(), State{}); err != nil {
			t.Fatal(err)
		}
		if n, ok := ChangesOf(tc.l); n != tc.n || ok != tc.ok {
			t.Errorf("%s: ChangesOf = %d, %v; want %d, %v", tc.name, n, ok, tc.n, tc.ok)
		}
	}
}
