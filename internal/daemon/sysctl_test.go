package daemon

import (
	"maps"
	"testing"
)

// TestStatusReportsSysctls: the kernel settings the data plane set are in
// the status; a data plane that sets none leaves them out.
func TestStatusReportsSysctls(t *testing.T) {
	h := start(t, func(h *harness) string { return h.yaml("http://a/", "127.0.0.1:9470") }, nil)
	st, err := h.d.status(t.Context())
	if err != nil || st.Sysctls != nil {
		t.Fatalf("status sysctls %v (%v), want none", st.Sysctls, err)
	}
	set := map[string]string{"net.ipv4.vs.sloppy_tcp": "1", "net.ipv4.vs.sloppy_sctp": "1"}
	h.d.dp.Sysctls = func() map[string]string { return maps.Clone(set) }
	if st, err := h.d.status(t.Context()); err != nil || !maps.Equal(st.Sysctls, set) {
		t.Errorf("status sysctls %v (%v), want %v", st.Sysctls, err, set)
	}
}
