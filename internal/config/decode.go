package config

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder maps a YAML node tree onto Go values strictly: unknown keys,
// duplicate keys and wrong types are reported with their position, and
// decoding goes on so that every problem is found in one pass.
type decoder struct {
	file      string
	positions map[string]Pos
	diags     Diagnostics
}

// nodeDecoder is implemented by types with their own YAML syntax.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string)
}

func posOf(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.diags = append(d.diags, Diagnostic{File: d.file, Pos: posOf(n), Severity: Error, Message: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported value"
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.positions[path] = posOf(n)
	switch v.Type() {
	case reflect.TypeFor[netip.Addr]():
		if a, ok := decodeAddr(d, n, path); ok {
			v.Set(reflect.ValueOf(a))
		}
		return
	case reflect.TypeFor[netip.Prefix]():
		if p, ok := decodePrefix(d, n, path); ok {
			v.Set(reflect.ValueOf(p))
		}
		return
	}
	if v.CanAddr() {
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			nd.decodeNode(d, n, path)
			return
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "%s: expected a list, got %s", displayPath(path), kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "%s: expected a string, got %s", displayPath(path), kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, ok := scalarBool(n)
		if !ok {
			d.errorf(n, "%s: expected true or false, got %s", displayPath(path), kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		i, ok := scalarInt(n, 64)
		if !ok {
			d.errorf(n, "%s: expected an integer, got %s", displayPath(path), kindName(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint16, reflect.Uint32:
		bits := v.Type().Bits()
		i, ok := scalarInt(n, 64)
		if !ok || i < 0 || i >= 1<<bits {
			d.errorf(n, "%s: expected an integer from 0 to %d, got %s", displayPath(path), uint64(1)<<bits-1, kindName(n))
			return
		}
		v.SetUint(uint64(i))
	default:
		d.errorf(n, "%s: cannot decode into %s", displayPath(path), v.Type())
	}
}

func scalarBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return false, false
	}
	b, err := strconv.ParseBool(strings.ToLower(n.Value))
	return b, err == nil
}

func scalarInt(n *yaml.Node, bits int) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		return 0, false
	}
	i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, bits)
	return i, err == nil
}

// fieldsByKey returns the YAML keys of a struct type and their field index.
func fieldsByKey(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		m[tag] = i
	}
	return m
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a mapping, got %s", displayPath(path), kindName(n))
		return
	}
	fields := fieldsByKey(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			d.errorf(k, "%s: merge keys are not supported", displayPath(path))
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, "%s: %s", displayPath(path), unknownKey(k.Value, fields))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "%s: key %q given twice", displayPath(path), k.Value)
			continue
		}
		seen[k.Value] = true
		d.decode(val, v.Field(idx), joinPath(path, k.Value))
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a mapping, got %s", displayPath(path), kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			d.errorf(k, "%s: expected a name as key, got %s", displayPath(path), kindName(k))
			continue
		}
		key := reflect.ValueOf(k.Value)
		if v.MapIndex(key).IsValid() {
			d.errorf(k, "%s: %q given twice", displayPath(path), k.Value)
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		p := joinPath(path, k.Value)
		d.positions[p+"#key"] = posOf(k)
		d.decode(val, elem, p)
		v.SetMapIndex(key, elem)
	}
}

// unknownKey says that key is none of fields', naming the closest one
// when it looks misspelt, else every known key.
func unknownKey(key string, fields map[string]int) string {
	if hint := didYouMean(key, maps.Keys(fields)); hint != "" {
		return fmt.Sprintf("unknown key %q%s", key, hint)
	}
	return fmt.Sprintf("unknown key %q (known keys: %s)", key, strings.Join(slices.Sorted(maps.Keys(fields)), ", "))
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// displayPath names a value for messages; the top level is "config".
func displayPath(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

func (dur *Duration) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, "%s: expected a duration such as 1s or 300ms, got %s", displayPath(path), kindName(n))
		return
	}
	if n.Tag == "!!int" {
		d.errorf(n, "%s: duration %s needs a unit, e.g. %ss", displayPath(path), n.Value, n.Value)
		return
	}
	t, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, "%s: bad duration %q (use a unit, e.g. 1s, 300ms)", displayPath(path), n.Value)
		return
	}
	if t < 0 {
		d.errorf(n, "%s: duration %s is negative", displayPath(path), n.Value)
		return
	}
	*dur = Duration(t)
}

func decodeAddr(d *decoder, n *yaml.Node, path string) (netip.Addr, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%s: expected an IP address, got %s", displayPath(path), kindName(n))
		return netip.Addr{}, false
	}
	if n.Tag == "!!null" || n.Value == "" {
		return netip.Addr{}, true
	}
	a, err := netip.ParseAddr(n.Value)
	if err != nil || a.Zone() != "" {
		d.errorf(n, "%s: bad IP address %q", displayPath(path), n.Value)
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func decodePrefix(d *decoder, n *yaml.Node, path string) (netip.Prefix, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, "%s: expected an address such as 192.0.2.9/24, got %s", displayPath(path), kindName(n))
		return netip.Prefix{}, false
	}
	s := n.Value
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			d.errorf(n, "%s: bad address %q", displayPath(path), s)
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		d.errorf(n, "%s: bad address %q (want ADDRESS/PREFIX-LENGTH)", displayPath(path), s)
		return netip.Prefix{}, false
	}
	return p, true
}
