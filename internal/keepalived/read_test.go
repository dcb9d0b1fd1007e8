package keepalived

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dump renders a tree one statement a line, with where each keyword came
// from, so tests compare structure and positions together.
func dump(nodes []*Node, dir string) string {
	var b strings.Builder
	var walk func([]*Node, int)
	walk = func(ns []*Node, depth int) {
		for _, n := range ns {
			fmt.Fprintf(&b, "%s%s", strings.Repeat("  ", depth), n.Name)
			for _, a := range n.Args {
				fmt.Fprintf(&b, " %s", a.Val)
			}
			rel, _ := filepath.Rel(dir, n.Pos.File)
			fmt.Fprintf(&b, " @%s:%d:%d\n", rel, n.Pos.Line, n.Pos.Col)
			walk(n.Children, depth+1)
		}
	}
	walk(nodes, 0)
	return b.String()
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadGrammar(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		id    string
		want  string
	}{{
		name: "comments and braces",
		files: map[string]string{"k.conf": `! a comment
global_defs {   # trailing comment
  router_id lb-a   ! another
}
vrrp_instance VI_1
{
  virtual_ipaddress { 192.0.2.9/24 192.0.2.10/24 }
  authentication { auth_type PASS
    auth_pass "se cr#t" }
}
`},
		want: `global_defs @k.conf:2:1
  router_id lb-a @k.conf:3:3
vrrp_instance VI_1 @k.conf:5:1
  virtual_ipaddress @k.conf:7:3
    192.0.2.9/24 192.0.2.10/24 @k.conf:7:23
  authentication @k.conf:8:3
    auth_type PASS @k.conf:8:20
    auth_pass se cr#t @k.conf:9:5
`,
	}, {
		name: "include relative to the including file, globs and braces",
		files: map[string]string{
			"k.conf":         "include conf.d/*.conf\ninclude ${_PWD}/extra/{x,y}.inc\n",
			"conf.d/b.conf":  "b_keyword\ninclude ../extra/z.inc\n",
			"conf.d/a.conf":  "a_keyword 1\n",
			"extra/x.inc":    "x_keyword\n",
			"extra/y.inc":    "y_keyword\n",
			"extra/z.inc":    "z_keyword\n",
			"extra/skip.inc": "never\n",
		},
		want: `a_keyword 1 @conf.d/a.conf:1:1
b_keyword @conf.d/b.conf:1:1
z_keyword @extra/z.inc:1:1
x_keyword @extra/x.inc:1:1
y_keyword @extra/y.inc:1:1
`,
	}, {
		name: "conditional lines",
		id:   "lb-a",
		files: map[string]string{"k.conf": `@lb-a router_id a
@lb-b router_id b
@^lb-a unicast_src_ip 192.0.2.2
@^lb-b unicast_src_ip 192.0.2.1
`},
		want: `router_id a @k.conf:1:7
unicast_src_ip 192.0.2.1 @k.conf:4:8
`,
	}, {
		name: "parameters, recursive, late binding, multi-line",
		id:   "high",
		files: map[string]string{"k.conf": `$BASE=192.0.2.${SUB}
$SUB=9
vip ${BASE}/24
$SUB=10
vip ${BASE}/24 $UNDEFINED
$IF_HIGH=@high
$IF_HIGH priority 200
$INST= \
vrrp_instance VI_${N} { \
  @high priority 150 \
  @low priority 100 \
  virtual_router_id ${N} \
}
$N=1
$INST
$N=2
$INST
`},
		want: `vip 192.0.2.9/24 @k.conf:3:1
vip 192.0.2.10/24 $UNDEFINED @k.conf:5:1
priority 200 @k.conf:7:10
vrrp_instance VI_1 @k.conf:9:1
  priority 150 @k.conf:10:9
  virtual_router_id 1 @k.conf:12:3
vrrp_instance VI_2 @k.conf:9:1
  priority 150 @k.conf:10:9
  virtual_router_id 2 @k.conf:12:3
`,
	}, {
		name:  "sequences and predefined parameters",
		id:    "lb-a",
		files: map[string]string{"k.conf": "~SEQ(N, 1, 3) addr 192.0.2.${N}\n~SEQx(H, 9, 2, 12) addr 2001:db8::${H}\nid ${_INSTANCE} ${_HASH}x${_BANG}\n"},
		want: `addr 192.0.2.1 @k.conf:1:15
addr 192.0.2.2 @k.conf:1:15
addr 192.0.2.3 @k.conf:1:15
addr 2001:db8::9 @k.conf:2:20
addr 2001:db8::b @k.conf:2:20
id lb-a #x! @k.conf:3:1
`,
	}, {
		name:  "list blocks, nested and with sequences; parameters in a sequence's numbers",
		id:    "x",
		files: map[string]string{"k.conf": "$LAST=8\n~SEQ(M, 7, $LAST) mark ${M}\n~LST(M, 7, 9) fwmark ${M}\n~LST({A, B}, {1, 2}, {3}) ~SEQ(C, 4, 5) addr 192.0.${A}.${C} ${B}\n"},
		want: `mark 7 @k.conf:2:19
mark 8 @k.conf:2:19
fwmark 7 @k.conf:3:15
fwmark 9 @k.conf:3:15
addr 192.0.1.4 2 @k.conf:4:41
addr 192.0.1.5 2 @k.conf:4:41
addr 192.0.3.4 @k.conf:4:41
addr 192.0.3.5 @k.conf:4:41
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			nodes, diags := Read(filepath.Join(dir, "k.conf"), Options{ConfigID: tt.id})
			if diags.HasErrors() {
				t.Fatalf("errors:\n%s", diags)
			}
			if got := dump(nodes, dir); got != tt.want {
				t.Errorf("tree:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestReadErrorsAreLocatedAndAllReported(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"k.conf": `vrrp_instance A {
  state MASTER
}
}
include inc.conf
name "unterminated
include missing/*.conf
includea missing/*.conf
vrrp_instance B {
`,
		"inc.conf":  "in_include {\n  x\n}}\ninclude loop.conf\n",
		"loop.conf": "include inc.conf\n",
	})
	_, diags := Read(filepath.Join(dir, "k.conf"), Options{ConfigID: "x"})
	var got []string
	for _, d := range diags {
		rel, _ := filepath.Rel(dir, d.File)
		got = append(got, fmt.Sprintf("%s:%d:%d %v", rel, d.Pos.Line, d.Pos.Col, d.Severity))
	}
	want := []string{
		"inc.conf:3:2 0",  // unexpected }
		"k.conf:4:1 0",    // unexpected }
		"k.conf:6:6 0",    // unterminated quote
		"k.conf:7:9 1",    // include with no match: warning
		"k.conf:8:10 0",   // includea with no match: error
		"k.conf:9:1 0",    // never closed
		"loop.conf:1:9 0", // include cycle
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diagnostics:\n%s\n\ngot positions:\n%s\nwant:\n%s", diags, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestReadSkipsBadSequencesAndLists: a ~SEQ or ~LST line keepalived
// skips as invalid is an error located at its start, and produces nothing.
func TestReadSkipsBadSequencesAndLists(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"k.conf": "~SEQ(N, 1, -1, 3) a $N\n~SEQx(N, -2, 2) b $N\n~LST({A}, {1, 2}) c $A\n~LST(A) d $A\n~LST({A, B, 1) e $A\nkept\n",
	})
	nodes, diags := Read(filepath.Join(dir, "k.conf"), Options{ConfigID: "x"})
	var got []string
	for _, d := range diags {
		got = append(got, fmt.Sprintf("%d:%d %v", d.Pos.Line, d.Pos.Col, d.Severity))
	}
	want := []string{"1:1 0", "2:1 0", "3:1 0", "4:1 0", "5:1 0"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diagnostics:\n%s\ngot positions %v, want %v", diags, got, want)
	}
	if out := dump(nodes, dir); out != "kept @k.conf:6:1\n" {
		t.Errorf("tree:\n%s\nwant only the last line", out)
	}
}

func TestReadBoundsSelfReference(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"k.conf": "$A=${A}${A}\nx $A\n$M= \\\n$M \\\n$M\n$M\n",
	})
	_, diags := Read(filepath.Join(dir, "k.conf"), Options{ConfigID: "x"})
	if !diags.HasErrors() {
		t.Fatalf("a self-referencing parameter must be an error")
	}
	for _, d := range diags {
		if !strings.Contains(d.Message, "levels deep") && !strings.Contains(d.Message, "expands to more than") {
			t.Errorf("unexpected diagnostic %s", d)
		}
	}
}

// samplesDir holds keepalived's own sample configurations (Debian package
// keepalived); tests read them there.
const samplesDir = "/usr/share/doc/keepalived/samples"
