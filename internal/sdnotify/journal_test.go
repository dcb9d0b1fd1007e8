package sdnotify

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLogHandlerForTheJournal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	syscall.Fstat(int(f.Fd()), &st)
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	log := slog.New(LogHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})).With("subsystem", "notify")
	log.Error("notification failed", "err", "relay refused")
	log.Warn("w")
	log.Info("i")
	log.WithGroup("g").Debug("d", "k", 1)
	b, _ := os.ReadFile(f.Name())
	want := `<3>level=ERROR msg="notification failed" subsystem=notify err="relay refused"
<4>level=WARN msg=w subsystem=notify
<6>level=INFO msg=i subsystem=notify
<7>level=DEBUG msg=d subsystem=notify g.k=1
`
	if string(b) != want {
		t.Errorf("journal lines:\n%s\nwant:\n%s", b, want)
	}
}

func TestLogHandlerElsewhere(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Setenv("JOURNAL_STREAM", "1:2") // another stream
	slog.New(LogHandler(f, nil)).Info("hello")
	b, _ := os.ReadFile(f.Name())
	if !strings.HasPrefix(string(b), "time=") || strings.HasPrefix(string(b), "<") {
		t.Errorf("plain stderr line %q", b)
	}
}
