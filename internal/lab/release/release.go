// Package release names halb's previous release and builds its binary
// from the repository's git history, for the tests of an upgrade from it.
package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Previous is the commit of the last release, the one an upgrade starts
// from. halb has no release tags: when a release lands on main, set this
// to its commit (git rev-parse main) in the same change that records the
// release, so the upgrade tests then start from it.
const Previous = "7aafcdefe8bd5b3658748448d3fc20f9d83c697f"

// ErrNoHistory says the repository cannot give the commit: no git, not a
// git checkout (a source tarball), or a history without the commit (a
// shallow clone).
var ErrNoHistory = errors.New("no git history to build the previous release from")

// Build builds cmd/halb as it was at commit, from the git repository
// that holds dir repo, into work, and returns the binary's path. The
// binary knows its revision (halb --version). A binary already built
// there for that commit is reused; builds running at once in the same
// work directory each put a whole binary in place.
func Build(ctx context.Context, repo, commit, work string) (string, error) {
	bin := filepath.Join(work, "halb-"+commit[:min(len(commit), 12)])
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if _, err := exec.LookPath("git"); err != nil {
		return "", fmt.Errorf("%w: git is not installed", ErrNoHistory)
	}
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--verify", "--quiet", commit+"^{commit}").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s has no commit %s (not a git checkout, or a shallow clone): %v %s",
			ErrNoHistory, repo, commit, err, strings.TrimSpace(string(out)))
	}
	rev := strings.TrimSpace(string(out))
	src, err := os.MkdirTemp(work, "src-")
	if err != nil {
		return "", fmt.Errorf("build the previous release: %w", err)
	}
	defer os.RemoveAll(src)
	if err := extract(ctx, repo, rev, src); err != nil {
		return "", err
	}
	tmp := filepath.Join(src, ".halb-build") // renamed in place whole
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", tmp,
		"-ldflags", "-X halb/internal/buildinfo.revision="+rev, "./cmd/halb")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build halb at %s: %w: %s", rev, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("build halb at %s: %w", rev, err)
	}
	return bin, nil
}

// extract writes the tree of commit rev into dir (git archive | tar).
func extract(ctx context.Context, repo, rev, dir string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("extract the tree of %s: %w", rev, err)
	}
	archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", rev)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	var archiveErr, untarErr strings.Builder
	archive.Stdout, archive.Stderr = w, &archiveErr
	untar.Stdin, untar.Stderr = r, &untarErr
	aerr := archive.Start()
	uerr := untar.Start()
	// Only the children hold the pipe now: either's end ends the other.
	_, _ = r.Close(), w.Close()
	if aerr == nil {
		aerr = archive.Wait()
	}
	if uerr == nil {
		uerr = untar.Wait()
	}
	if aerr != nil {
		return fmt.Errorf("git archive %s: %w: %s", rev, aerr, archiveErr.String())
	}
	if uerr != nil {
		return fmt.Errorf("extract the tree of %s: %w: %s", rev, uerr, untarErr.String())
	}
	return nil
}
