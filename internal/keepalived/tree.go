package keepalived

import (
	"os"
	"strings"

	"halb/internal/config"
)

// Node is one statement of a keepalived configuration: a keyword, its
// arguments, and the statements of its block when it has one.
type Node struct {
	Name     string
	Pos      Pos
	Args     []Token
	Block    bool
	Children []*Node
}

// Arg returns argument i's value, or "" when there is none.
func (n *Node) Arg(i int) string {
	if i < len(n.Args) {
		return n.Args[i].Val
	}
	return ""
}

// ArgPos returns where argument i was written, or the keyword's position.
func (n *Node) ArgPos(i int) Pos {
	if i < len(n.Args) {
		return n.Args[i].Pos
	}
	return n.Pos
}

// Options are the inputs of Read that do not come from the files.
type Options struct {
	// ConfigID selects @id conditional lines; empty means the host name up
	// to its first dot, as keepalived does.
	ConfigID string
}

// DefaultConfigID returns keepalived's default config-id: the host name up
// to its first dot.
func DefaultConfigID() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	h, _, _ = strings.Cut(h, ".")
	return h
}

// Read reads a keepalived configuration file and the files it includes
// into a tree of statements. Every problem is reported, located in the file
// that holds it; the tree is nil only when the main file cannot be read.
func Read(path string, opts Options) ([]*Node, config.Diagnostics) {
	id := opts.ConfigID
	if id == "" {
		id = DefaultConfigID()
	}
	lx := &lexer{configID: id, defs: map[string]*definition{}}
	if _, err := os.Stat(path); err != nil {
		lx.errorf(Pos{path, 1, 1}, "cannot read configuration: %v", err)
		return nil, lx.diags
	}
	lx.readFile(path, Pos{path, 1, 1})
	nodes := build(lx)
	lx.diags.Sort()
	return nodes, lx.diags
}

// build turns logical lines into the statement tree. A "{" starts the block
// of the statement before it, on the same line or alone on the next one;
// "}" ends the innermost open block.
func build(lx *lexer) []*Node {
	root := &Node{Block: true}
	stack := []*Node{root}
	var last *Node // the last statement, which a "{" on the next line opens
	for _, line := range lx.out {
		var cur *Node
		for _, tok := range line {
			switch {
			case tok.Val == "{" && !tok.Quoted:
				target := cur
				if target == nil {
					target = last
				}
				if target == nil || target.Block {
					lx.errorf(tok.Pos, "unexpected \"{\": no statement to open a block for")
					// Open an anonymous block so that its "}" still matches.
					target = &Node{Pos: tok.Pos}
				}
				target.Block = true
				stack = append(stack, target)
				cur, last = nil, nil
			case tok.Val == "}" && !tok.Quoted:
				if len(stack) == 1 {
					lx.errorf(tok.Pos, "unexpected \"}\": no block is open")
				} else {
					stack = stack[:len(stack)-1]
				}
				cur, last = nil, nil
			case cur == nil:
				cur = &Node{Name: tok.Val, Pos: tok.Pos}
				top := stack[len(stack)-1]
				top.Children = append(top.Children, cur)
			default:
				cur.Args = append(cur.Args, tok)
			}
		}
		if cur != nil {
			last = cur
		}
	}
	for _, open := range stack[1:] {
		lx.errorf(open.Pos, "the block of %q is never closed", open.Name)
	}
	return root.Children
}
