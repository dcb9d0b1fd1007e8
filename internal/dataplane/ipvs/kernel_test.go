package ipvs

import "testing"

// Without IPVS, opening the kernel's sockets fails cleanly, closing what
// was opened.
func TestDialWithoutIPVS(t *testing.T) {
	if Available() {
		t.Skip("this kernel has IPVS")
	}
	if k, err := dialKernel(); err == nil || k != nil {
		t.Fatalf("dial = %v, %v; want an error", k, err)
	}
}
