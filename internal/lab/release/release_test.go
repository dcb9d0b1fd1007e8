package release

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gitRepo makes a git repository with a tiny module "halb" whose
// cmd/halb prints the revision set at build time, and returns its
// directory and the commit.
func gitRepo(t *testing.T) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":                     "module halb\n\ngo 1.22\n",
		"internal/buildinfo/info.go": "package buildinfo\n\nvar revision string\n\nfunc Revision() string { return revision }\n",
		"cmd/halb/main.go":           "package main\n\nimport \"halb/internal/buildinfo\"\n\nfunc main() { println(\"revision\", buildinfo.Revision()) }\n",
	}
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.org"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "release")
	return dir, git("rev-parse", "HEAD")
}

func TestBuildFromHistory(t *testing.T) {
	repo, commit := gitRepo(t)
	// A later change to the work tree is not in the build.
	if err := os.WriteFile(filepath.Join(repo, "cmd/halb/main.go"), []byte("package main\n\nfunc main() { println(\"work tree\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	work := t.TempDir()
	bin, err := Build(ctx, repo, commit[:7], work)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "revision "+commit {
		t.Errorf("the built binary says %q (%v), want the revision %s", out, err, commit)
	}
	left, _ := filepath.Glob(filepath.Join(work, "*"))
	if len(left) != 1 || left[0] != bin {
		t.Errorf("the work directory holds %v, want only %s", left, bin)
	}
	// Built again, the binary is reused: a repository without the commit
	// does not matter then.
	again, err := Build(ctx, t.TempDir(), commit[:7], work)
	if err != nil || again != bin {
		t.Errorf("second build: %q, %v; want %s reused", again, err, bin)
	}
}

func TestBuildWithoutHistory(t *testing.T) {
	repo, _ := gitRepo(t)
	ctx := context.Background()
	for name, dir := range map[string]string{"not a checkout": t.TempDir(), "commit not in history": repo} {
		_, err := Build(ctx, dir, Previous, t.TempDir())
		if !errors.Is(err, ErrNoHistory) {
			t.Errorf("%s: %v, want ErrNoHistory", name, err)
		}
	}
}
