package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"halb/internal/config"
	"halb/internal/lab/labtest"
)

// manSection returns the lines of a man page from the line starting with
// from up to the one starting with to.
func manSection(t *testing.T, page, from, to string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "packaging", "man", page))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, from)
	if i < 0 {
		t.Fatalf("%s has no %q", page, from)
	}
	j := strings.Index(text[i:], to)
	if j < 0 {
		t.Fatalf("%s has no %q after %q", page, to, from)
	}
	return text[i : i+j]
}

// boldWords are the words set in bold by the .B, .BR and .RB requests of
// a man page's text.
func boldWords(text string) map[string]bool {
	words := map[string]bool{}
	for line := range strings.SplitSeq(text, "\n") {
		req, rest, _ := strings.Cut(line, " ")
		if req != ".B" && req != ".BR" && req != ".RB" {
			continue
		}
		for _, w := range regexp.MustCompile(`[a-z_]+`).FindAllString(rest, -1) {
			words[w] = true
		}
	}
	return words
}

// TestManDocumentsEveryCheckKey: halb.yaml(5) names every key and every
// type of check.
func TestManDocumentsEveryCheckKey(t *testing.T) {
	text := manSection(t, "halb.yaml.5", ".B check\nOne check or a list", ".SH IPVS_SYNC")
	words := boldWords(text)
	ct := reflect.TypeFor[config.Check]()
	for i := range ct.NumField() {
		if key := ct.Field(i).Tag.Get("yaml"); key != "" && !words[key] {
			t.Errorf("halb.yaml(5) does not document the check key %s", key)
		}
	}
	for _, typ := range config.CheckTypes {
		if !words[typ] {
			t.Errorf("halb.yaml(5) does not name the check type %s", typ)
		}
	}
	if strings.Contains(text, "and others") {
		t.Error(`halb.yaml(5) still leaves check keys to "and others"`)
	}
}

// TestManSynopsisListsEveryCommand: halb(8)'s SYNOPSIS has every command
// halb help lists.
func TestManSynopsisListsEveryCommand(t *testing.T) {
	labtest.RequireTool(t, "go")
	cmd := exec.Command("go", "run", "./cmd/halb", "help")
	cmd.Dir = repoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("halb help: %v", err)
	}
	_, list, _ := strings.Cut(string(out), "commands:\n")
	list, _, _ = strings.Cut(list, "\n\n")
	synopsis := manSection(t, "halb.8", ".SH SYNOPSIS", ".SH DESCRIPTION")
	n := 0
	for line := range strings.SplitSeq(list, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if name == "" {
			continue
		}
		n++
		if !strings.Contains(synopsis, ".B halb "+name+"\n") {
			t.Errorf("halb(8) SYNOPSIS lacks halb %s", name)
		}
	}
	if n < 9 {
		t.Fatalf("read %d commands from halb help:\n%s", n, out)
	}
}
