package keepalived

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"halb/internal/config"
)

// FuzzRead feeds arbitrary text to the reader, and the mapping after it,
// as a file that may include itself and a second file that includes it
// back: they must not panic, must finish, and must bound include
// recursion.
func FuzzRead(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(samplesDir, "keepalived.conf.*"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("include k.conf\n"))
	f.Add([]byte("include other.conf\nx {\n"))
	f.Add([]byte("$A=${A}${A}\n$A\n"))
	f.Add([]byte("$M= \\\n$M \\\n$M\n$M\n"))
	f.Add([]byte("~SEQ(N, 0, 1, 99999999) $M\n"))
	f.Add([]byte("$E=3\n~LST({A, B}, {1, 2}, {3}) ~SEQ(C, 1, $E) ~LST(D, x, {y}) $A$B$C$D\n"))
	f.Add([]byte("a \"b\\x4g\\c\" 'c\n}{{\n@x y\n@^x z {\n"))
	f.Add([]byte("virtual_server_group g { 192.0.2.1-3 80\nfwmark 3 }\nvirtual_server group g { real_server 198.51.100.1 { HTTP_GET { url { path / } } } }\n"))
	dir := f.TempDir()
	other := filepath.Join(dir, "other.conf")
	if err := os.WriteFile(other, []byte("include k.conf\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "k.conf")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(other, filepath.Join(filepath.Dir(path), "other.conf")); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Load(path, Options{ConfigID: "x"}, config.Options{Hostname: "h"})
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("Read did not finish in 20s on %q", data)
		}
	})
}
