package keepalived

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"halb/internal/config"
)

// Limits that keep a hostile or mistaken file from running away.
const (
	maxIncludeDepth = 8       // nested include levels
	maxExpandDepth  = 16      // nested parameter substitutions in one line
	maxOutputBytes  = 8 << 20 // total bytes of expanded configuration
	maxSeqItems     = 4096    // values produced by one ~SEQ
	maxLines        = 1 << 18 // lines processed, after expansion
)

// Pos is a place in a file the user wrote: 1-based line and byte column.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// text is a line being expanded: its bytes, and for each byte the place in
// the user's files it comes from. Bytes produced by a substitution point at
// the reference that produced them.
type text struct {
	s   []byte
	pos []Pos
}

func newText(file string, line int, s []byte) text {
	t := text{s: s, pos: make([]Pos, len(s))}
	for i := range s {
		t.pos[i] = Pos{file, line, i + 1}
	}
	return t
}

// at returns the position of byte i, or of the end of the line.
func (t text) at(i int) Pos {
	if i < len(t.pos) {
		return t.pos[i]
	}
	if len(t.pos) > 0 {
		p := t.pos[len(t.pos)-1]
		p.Col++
		return p
	}
	return Pos{}
}

func (t text) slice(i, j int) text { return text{t.s[i:j], t.pos[i:j]} }

func (t text) trim() text {
	i, j := 0, len(t.s)
	for i < j && isSpace(t.s[i]) {
		i++
	}
	for j > i && isSpace(t.s[j-1]) {
		j--
	}
	return t.slice(i, j)
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\r' || b == '\n' || b == '\v' || b == '\f'
}

// definition is a $NAME=value parameter; a multi-line one has several lines.
type definition struct {
	lines []text
	multi bool
}

// lexer turns files into logical lines of tokens, doing what keepalived's
// reader does before parsing: comments, includes, conditional lines,
// parameter definitions and substitution, and ~SEQ and ~LST lines.
type lexer struct {
	configID string
	defs     map[string]*definition
	out      [][]Token
	diags    config.Diagnostics
	files    []string // include stack, to report cycles
	bytes    int
	lines    int
	stopped  bool
	runaway  bool // the current line nests too deep; reported once
}

func (lx *lexer) errorf(p Pos, format string, args ...any) {
	lx.diags = append(lx.diags, config.Diagnostic{File: p.File, Pos: config.Pos{Line: p.Line, Col: p.Col}, Message: fmt.Sprintf(format, args...)})
}

func (lx *lexer) warnf(p Pos, format string, args ...any) {
	lx.diags = append(lx.diags, config.Diagnostic{File: p.File, Pos: config.Pos{Line: p.Line, Col: p.Col}, Severity: config.Warning, Message: fmt.Sprintf(format, args...)})
}

// readFile reads one file (the main one or an included one) line by line.
func (lx *lexer) readFile(path string, from Pos) {
	for _, f := range lx.files {
		if f == path {
			lx.errorf(from, "include of %s: the file includes itself (through %s)", path, strings.Join(lx.files, " → "))
			return
		}
	}
	if len(lx.files) >= maxIncludeDepth {
		lx.errorf(from, "include of %s: more than %d nested includes", path, maxIncludeDepth)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		lx.errorf(from, "cannot read %s: %v", path, err)
		return
	}
	lx.files = append(lx.files, path)
	defer func() { lx.files = lx.files[:len(lx.files)-1] }()

	var pending *definition // multi-line definition being collected
	for n, raw := range bytes.Split(data, []byte("\n")) {
		if lx.stopped {
			return
		}
		t := stripComment(newText(path, n+1, raw)).trim()
		if pending != nil {
			cont := len(t.s) > 0 && t.s[len(t.s)-1] == '\\'
			if cont {
				t = t.slice(0, len(t.s)-1).trim()
			}
			if len(t.s) > 0 {
				pending.lines = append(pending.lines, t)
			}
			if !cont {
				pending = nil
			}
			continue
		}
		if len(t.s) == 0 {
			continue
		}
		if word := firstWord(t.s); isInclude(word) {
			lx.include(t, word)
			continue
		}
		lx.runaway = false
		pending = lx.process(t, 0)
	}
}

func isInclude(w string) bool {
	switch w {
	case "include", "includer", "includem", "includew", "includeb", "includea":
		return true
	}
	return false
}

func firstWord(s []byte) string {
	i := 0
	for i < len(s) && !isSpace(s[i]) {
		i++
	}
	return string(s[:i])
}

// include reads the files an include line names, in sorted order; relative
// patterns are relative to the including file's directory.
func (lx *lexer) include(t text, word string) {
	cur := lx.files[len(lx.files)-1]
	t = lx.substitute(t.slice(len(word), len(t.s)).trim(), 0)
	// Braces belong to the pattern here, so only quotes are tokens.
	tok := Token{Val: string(t.s), Pos: t.at(0)}
	if len(t.s) > 0 && (t.s[0] == '"' || t.s[0] == '\'') {
		toks, _ := lx.tokenize(t)
		if len(toks) == 1 {
			tok = toks[0]
		}
	}
	if tok.Val == "" || (!tok.Quoted && bytes.ContainsAny(t.s, " \t")) {
		lx.errorf(t.at(0), "%s takes one file name or pattern", word)
		return
	}
	toks := []Token{tok}
	pattern := tok.Val
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(cur), pattern)
	}
	var matches []string
	for _, p := range expandBraces(pattern) {
		m, err := filepath.Glob(p)
		if err != nil {
			lx.errorf(toks[0].Pos, "%s %q: %v", word, toks[0].Val, err)
			return
		}
		matches = append(matches, m...)
	}
	if len(matches) == 0 {
		if word == "include" || word == "includer" {
			lx.warnf(toks[0].Pos, "%s %q matches no file; nothing included", word, toks[0].Val)
		} else {
			lx.errorf(toks[0].Pos, "%s %q matches no file", word, toks[0].Val)
		}
		return
	}
	for _, m := range matches {
		lx.readFile(m, toks[0].Pos)
	}
}

// expandBraces expands csh-style {a,b} alternatives, as glob(3) with
// GLOB_BRACE does.
func expandBraces(s string) []string {
	depth, open := 0, -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			if depth == 0 {
				open = i
			}
			depth++
		case '}':
			if depth == 0 {
				continue
			}
			depth--
			if depth > 0 {
				continue
			}
			var alts []string
			d, start := 0, open+1
			for j := open + 1; j < i; j++ {
				switch s[j] {
				case '{':
					d++
				case '}':
					d--
				case ',':
					if d == 0 {
						alts = append(alts, s[start:j])
						start = j + 1
					}
				}
			}
			alts = append(alts, s[start:i])
			var out []string
			for _, a := range alts {
				out = append(out, expandBraces(s[:open]+a+s[i+1:])...)
				if len(out) > maxSeqItems {
					return out
				}
			}
			return out
		}
	}
	return []string{s}
}

// stripComment cuts the line at the first # or ! outside quotes.
func stripComment(t text) text {
	var quote byte
	for i := 0; i < len(t.s); i++ {
		c := t.s[i]
		switch {
		case quote != 0 && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' || c == '!':
			return t.slice(0, i)
		}
	}
	return t
}

// process handles one line after comments: conditional prefix, parameter
// definition, ~SEQ and ~LST, substitution. It returns the multi-line definition the
// line starts, if any, so that the caller collects its continuation lines.
func (lx *lexer) process(t text, depth int) *definition {
	t = t.trim()
	if len(t.s) == 0 || lx.stopped || lx.runaway {
		return nil
	}
	if depth > maxExpandDepth {
		lx.errorf(t.at(0), "parameter substitution nests more than %d levels deep (a parameter that refers to itself?)", maxExpandDepth)
		lx.runaway = true
		return nil
	}
	if lx.lines++; lx.lines > maxLines {
		lx.stopf(t.at(0), "the configuration expands to more than %d lines; stopped reading", maxLines)
		return nil
	}
	if t.s[0] == '@' {
		neg := len(t.s) > 1 && t.s[1] == '^'
		start := 1
		if neg {
			start = 2
		}
		end := start
		for end < len(t.s) && !isSpace(t.s[end]) {
			end++
		}
		if (string(t.s[start:end]) == lx.configID) == neg {
			return nil
		}
		return lx.process(t.slice(end, len(t.s)), depth)
	}
	if name, val, ok := splitDefinition(t); ok {
		v := val.trim()
		if len(v.s) > 0 && v.s[len(v.s)-1] == '\\' {
			d := &definition{multi: true}
			if rest := v.slice(0, len(v.s)-1).trim(); len(rest.s) > 0 {
				d.lines = append(d.lines, rest)
			}
			lx.defs[name] = d
			return d
		}
		lx.defs[name] = &definition{lines: []text{v}}
		return nil
	}
	if bytes.HasPrefix(t.s, []byte("~SEQ")) {
		lx.seq(t, depth)
		return nil
	}
	if bytes.HasPrefix(t.s, []byte("~LST")) {
		lx.lst(t, depth)
		return nil
	}
	s, multi := lx.substituteOnce(t)
	if multi != nil {
		for _, l := range multi {
			lx.process(l, depth+1)
		}
		return nil
	}
	if s != nil {
		return lx.process(*s, depth+1)
	}
	lx.emit(t)
	return nil
}

// splitDefinition recognises "$NAME=value".
func splitDefinition(t text) (string, text, bool) {
	if len(t.s) < 3 || t.s[0] != '$' || !isNameStart(t.s[1]) {
		return "", text{}, false
	}
	i := 2
	for i < len(t.s) && isNameByte(t.s[i]) {
		i++
	}
	if i >= len(t.s) || t.s[i] != '=' {
		return "", text{}, false
	}
	return string(t.s[1:i]), t.slice(i+1, len(t.s)), true
}

func isNameStart(b byte) bool {
	return b == '_' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')
}

func isNameByte(b byte) bool { return isNameStart(b) || (b >= '0' && b <= '9') }

// substitute expands every parameter in a line that must stay one line.
func (lx *lexer) substitute(t text, depth int) text {
	for ; depth <= maxExpandDepth; depth++ {
		s, multi := lx.substituteOnce(t)
		if multi != nil {
			lx.errorf(t.at(0), "a multi-line parameter cannot be used here")
			return t
		}
		if s == nil {
			return t
		}
		t = *s
	}
	lx.errorf(t.at(0), "parameter substitution nests more than %d levels deep (a parameter that refers to itself?)", maxExpandDepth)
	return t
}

// substituteOnce replaces the defined parameters of one pass over the line.
// It returns nil when nothing was replaced; lines when a multi-line
// parameter was used.
func (lx *lexer) substituteOnce(t text) (*text, []text) {
	var out text
	changed := false
	var multi []text
	for i := 0; i < len(t.s); {
		c := t.s[i]
		if c != '$' || i+1 >= len(t.s) {
			out.s, out.pos = append(out.s, c), append(out.pos, t.pos[i])
			i++
			continue
		}
		name, end := "", i
		if t.s[i+1] == '{' {
			j := i + 2
			for j < len(t.s) && t.s[j] != '}' {
				j++
			}
			if j < len(t.s) {
				name, end = string(t.s[i+2:j]), j+1
			}
		} else if isNameStart(t.s[i+1]) {
			j := i + 1
			for j < len(t.s) && isNameByte(t.s[j]) {
				j++
			}
			if j == len(t.s) || isSpace(t.s[j]) {
				name, end = string(t.s[i+1:j]), j
			}
		}
		val, ok := lx.value(name, t.pos[i])
		if name == "" || !ok {
			out.s, out.pos = append(out.s, c), append(out.pos, t.pos[i])
			i++
			continue
		}
		changed = true
		if d := lx.defs[name]; d != nil && d.multi {
			// A multi-line parameter becomes lines of their own, located
			// where the definition wrote them; what precedes and follows
			// the reference stays on the first and last of them.
			for k, l := range d.lines {
				var nl text
				if k == 0 {
					nl = text{append([]byte(nil), out.s...), append([]Pos(nil), out.pos...)}
				}
				nl.s, nl.pos = append(nl.s, l.s...), append(nl.pos, l.pos...)
				multi = append(multi, nl)
				lx.bytes += len(nl.s)
			}
			if lx.bytes > maxOutputBytes {
				lx.stop(t.pos[i])
				return nil, nil
			}
			if len(multi) == 0 {
				multi = append(multi, out)
			}
			last := &multi[len(multi)-1]
			last.s, last.pos = append(last.s, t.s[end:]...), append(last.pos, t.pos[end:]...)
			return nil, multi
		}
		for range val {
			out.pos = append(out.pos, t.pos[i])
		}
		out.s = append(out.s, val...)
		i = end
		lx.bytes += len(val)
		if lx.bytes > maxOutputBytes {
			lx.stop(t.pos[i-1])
			return nil, nil
		}
	}
	if !changed {
		return nil, nil
	}
	return &out, nil
}

// value returns the value of a defined or pre-defined parameter.
func (lx *lexer) value(name string, at Pos) (string, bool) {
	if d, ok := lx.defs[name]; ok {
		if d.multi {
			return "", true
		}
		return string(d.lines[0].s), true
	}
	switch {
	case name == "_PWD":
		return filepath.Dir(at.File), true
	case name == "_INSTANCE":
		return lx.configID, true
	case name == "_HASH":
		return "#", true
	case name == "_BANG":
		return "!", true
	case name == "_RANDOM" || strings.HasPrefix(name, "_RANDOM "):
		// halb reads a configuration the same way every time: the
		// lowest value of the range stands for the random one.
		f := strings.Fields(name)
		v := "0"
		if len(f) > 1 {
			v = f[1]
		}
		lx.warnf(at, "${_RANDOM}: halb uses the lowest value of the range, %s, so that every read gives the same configuration", v)
		return v, true
	}
	return "", false
}

func (lx *lexer) stop(at Pos) {
	lx.stopf(at, "the configuration expands to more than %d bytes; stopped reading", maxOutputBytes)
}

func (lx *lexer) stopf(at Pos, format string, args ...any) {
	if !lx.stopped {
		lx.errorf(at, format, args...)
	}
	lx.stopped = true
}

// seq expands "~SEQ(var, start, step, end) rest" (and ~SEQx, hexadecimal).
func (lx *lexer) seq(t text, depth int) {
	hex := bytes.HasPrefix(t.s, []byte("~SEQx("))
	open := bytes.IndexByte(t.s, '(')
	closeAt := bytes.IndexByte(t.s, ')')
	if open < 0 || closeAt < open {
		lx.errorf(t.at(0), "~SEQ needs (VAR, [START, [STEP,]] END)")
		return
	}
	// Parameters in the numbers are substituted first, as keepalived does.
	args := strings.Split(string(lx.substitute(t.slice(open+1, closeAt), depth).s), ",")
	for i := range args {
		args[i] = strings.TrimSpace(args[i])
	}
	name := args[0]
	nums := make([]int64, 0, 3)
	for _, a := range args[1:] {
		v, err := strconv.ParseInt(a, 0, 64)
		if err != nil {
			lx.errorf(t.at(open+1), "~SEQ: %q is not a number", a)
			return
		}
		nums = append(nums, v)
	}
	if name == "" || len(nums) == 0 || len(nums) > 3 {
		lx.errorf(t.at(0), "~SEQ needs (VAR, [START, [STEP,]] END)")
		return
	}
	end := nums[len(nums)-1]
	start, step := int64(1), int64(1)
	if end < 0 {
		start = -1
	}
	if len(nums) >= 2 {
		start = nums[0]
	}
	if end < start {
		step = -1
	}
	if len(nums) == 3 {
		step = nums[1]
		if step == 0 || (start < end && step < 0) || (start > end && step > 0) {
			lx.errorf(t.at(0), "~SEQ: a step of %d never goes from %d to %d (keepalived skips the line)", step, start, end)
			return
		}
	}
	if hex && (start < 0 || end < 0) {
		lx.errorf(t.at(0), "~SEQx takes no negative numbers (keepalived skips the line)")
		return
	}
	var sets [][]string
	for v := start; (step > 0 && v <= end) || (step < 0 && v >= end); v += step {
		if len(sets) == maxSeqItems {
			lx.errorf(t.at(0), "~SEQ produces more than %d lines", maxSeqItems)
			break
		}
		s := strconv.FormatInt(v, 10)
		if hex {
			s = strconv.FormatInt(v, 16)
		}
		sets = append(sets, []string{s})
	}
	lx.repeat(t, t.slice(closeAt+1, len(t.s)), []string{name}, sets, depth)
}

// lst expands "~LST(var, v1, v2, ...) rest" and
// "~LST({var1, var2}, {v1, v2}, {v3, v4}, ...) rest": the rest once per
// value, or set of values. A set shorter than the variables leaves the
// others empty, as keepalived does.
func (lx *lexer) lst(t text, depth int) {
	open := bytes.IndexByte(t.s, '(')
	closeAt := bytes.IndexByte(t.s, ')')
	if open < 0 || closeAt < open || strings.TrimSpace(string(t.s[4:open])) != "" {
		lx.errorf(t.at(0), "~LST needs (VAR, VALUE, ...) or ({VAR, ...}, {VALUE, ...}, ...)")
		return
	}
	items, ok := listItems(string(t.s[open+1 : closeAt]))
	if !ok || len(items) < 2 || slices.Contains(items[0], "") {
		lx.errorf(t.at(0), "~LST needs (VAR, VALUE, ...) or ({VAR, ...}, {VALUE, ...}, ...)")
		return
	}
	names, sets := items[0], items[1:]
	if len(sets) > maxSeqItems {
		lx.errorf(t.at(0), "~LST produces more than %d lines", maxSeqItems)
		sets = sets[:maxSeqItems]
	}
	for i, set := range sets {
		if len(set) > len(names) {
			lx.errorf(t.at(0), "~LST: value set %d has %d values for %d variables (keepalived skips the line)", i+1, len(set), len(names))
			return
		}
		for len(set) < len(names) {
			set = append(set, "")
		}
		sets[i] = set
	}
	lx.repeat(t, t.slice(closeAt+1, len(t.s)), names, sets, depth)
}

// listItems splits the inside of ~LST(...) at its top-level commas; an
// item is a word or a {braced, list} of words.
func listItems(s string) ([][]string, bool) {
	var items [][]string
	for {
		s = strings.TrimLeft(s, " \t")
		var item []string
		if strings.HasPrefix(s, "{") {
			inner, after, ok := strings.Cut(s[1:], "}")
			if !ok || strings.Contains(inner, "{") {
				return nil, false
			}
			for _, w := range strings.Split(inner, ",") {
				item = append(item, strings.TrimSpace(w))
			}
			s = strings.TrimLeft(after, " \t")
			if s != "" && s[0] != ',' {
				return nil, false
			}
		} else {
			w, _, _ := strings.Cut(s, ",")
			if strings.ContainsAny(w, "{}") {
				return nil, false
			}
			item = []string{strings.TrimSpace(w)}
			s = s[len(w):]
		}
		items = append(items, item)
		if s == "" {
			return items, true
		}
		s = s[1:] // the comma
	}
}

// repeat processes rest once per set of values, each variable of names
// set to its value there (located at the start of the line t); the
// variables are restored afterwards.
func (lx *lexer) repeat(t, rest text, names []string, sets [][]string, depth int) {
	saved := make([]*definition, len(names))
	for i, name := range names {
		saved[i] = lx.defs[name]
	}
	for _, set := range sets {
		for i, name := range names {
			val := text{s: []byte(set[i]), pos: make([]Pos, len(set[i]))}
			for k := range val.pos {
				val.pos[k] = t.at(0)
			}
			lx.defs[name] = &definition{lines: []text{val}}
		}
		lx.process(rest, depth+1)
		if lx.stopped {
			break
		}
	}
	for i, name := range names {
		if saved[i] != nil {
			lx.defs[name] = saved[i]
		} else {
			delete(lx.defs, name)
		}
	}
}

// emit tokenizes a finished line and adds it to the output.
func (lx *lexer) emit(t text) {
	lx.bytes += len(t.s)
	if lx.bytes > maxOutputBytes {
		lx.stop(t.at(0))
		return
	}
	toks, ok := lx.tokenize(t)
	if ok && len(toks) > 0 {
		lx.out = append(lx.out, toks)
	}
}

// Token is one word of a configuration line, with quotes removed.
type Token struct {
	Val string
	Pos Pos
	// Quoted is set when any part of the word was quoted; a quoted "{"
	// is a word, not a brace.
	Quoted bool
}

// tokenize splits a line into words: whitespace separates, quotes group,
// and braces outside quotes are words of their own.
func (lx *lexer) tokenize(t text) ([]Token, bool) {
	var toks []Token
	for i := 0; i < len(t.s); {
		c := t.s[i]
		if isSpace(c) {
			i++
			continue
		}
		if c == '{' || c == '}' {
			toks = append(toks, Token{Val: string(c), Pos: t.pos[i]})
			i++
			continue
		}
		tok := Token{Pos: t.pos[i]}
		var b strings.Builder
		for i < len(t.s) && !isSpace(t.s[i]) && t.s[i] != '{' && t.s[i] != '}' {
			q := t.s[i]
			if q != '"' && q != '\'' {
				b.WriteByte(q)
				i++
				continue
			}
			tok.Quoted = true
			open := t.pos[i]
			i++
			closed := false
			for i < len(t.s) {
				if t.s[i] == q {
					closed = true
					i++
					break
				}
				if t.s[i] == '\\' && i+1 < len(t.s) {
					n := unescape(t.s[i+1:], &b)
					i += 1 + n
					continue
				}
				b.WriteByte(t.s[i])
				i++
			}
			if !closed {
				lx.errorf(open, "quote %c is never closed on this line", q)
				return nil, false
			}
		}
		tok.Val = b.String()
		toks = append(toks, tok)
	}
	return toks, true
}

// unescape writes the character an escape inside quotes stands for and
// returns how many bytes after the backslash it used.
func unescape(s []byte, b *strings.Builder) int {
	switch s[0] {
	case 'a':
		b.WriteByte('\a')
	case 'b':
		b.WriteByte('\b')
	case 'E':
		b.WriteByte(0x1b)
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case 'v':
		b.WriteByte('\v')
	case 'x':
		n := 1
		for n < len(s) && n < 3 && isHex(s[n]) {
			n++
		}
		if n == 1 {
			b.WriteByte('x')
			return 1
		}
		v, _ := strconv.ParseUint(string(s[1:n]), 16, 8)
		b.WriteByte(byte(v))
		return n
	case 'c':
		if len(s) > 1 {
			b.WriteByte(s[1] & 0x1f)
			return 2
		}
		b.WriteByte('c')
	default:
		if s[0] >= '0' && s[0] <= '7' {
			n := 1
			for n < len(s) && n < 3 && s[n] >= '0' && s[n] <= '7' {
				n++
			}
			v, _ := strconv.ParseUint(string(s[:n]), 8, 16)
			b.WriteByte(byte(v))
			return n
		}
		b.WriteByte(s[0])
	}
	return 1
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
