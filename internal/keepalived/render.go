package keepalived

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"halb/internal/config"
)

// RenderYAML writes a configuration as halb YAML. Zero values are left
// out unless written says the source set them; origins, keyed by path
// ("vrrp.instances[0]"), become comments above the parts they describe.
func RenderYAML(c *config.Config, written map[string]config.Location, origins map[string]string) ([]byte, error) {
	r := renderer{written: written, origins: origins}
	doc := &yaml.Node{Kind: yaml.DocumentNode}
	root := r.value(reflect.ValueOf(*c), "")
	if root == nil {
		root = &yaml.Node{Kind: yaml.MappingNode}
	}
	doc.Content = []*yaml.Node{root}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("render YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render YAML: %w", err)
	}
	return b.Bytes(), nil
}

type renderer struct {
	written map[string]config.Location
	origins map[string]string
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

func str(v string) *yaml.Node {
	n := scalar(v)
	// Quote what YAML would otherwise read as another type.
	var probe any
	if err := yaml.Unmarshal([]byte(v), &probe); err != nil || v == "" {
		n.Style = yaml.DoubleQuotedStyle
	} else if _, isStr := probe.(string); !isStr || strings.ContainsAny(v, ":#{}[],&*!|>'\"%@`") {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func intNode(i int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(i, 10)}
}

// value renders v, or returns nil when it is to be left out.
func (r *renderer) value(v reflect.Value, path string) *yaml.Node {
	_, written := r.written[path]
	switch x := v.Interface().(type) {
	case config.Duration:
		if x == 0 && !written {
			return nil
		}
		return scalar(durationText(x.D()))
	case config.PortRange:
		if x.Single() {
			return intNode(int64(x.Lo))
		}
		return str(x.String())
	case config.Mark:
		if x.Mode == config.MarkExternal {
			return intNode(int64(x.Value))
		}
		if x.Mode == "" {
			return nil
		}
		return scalar(string(x.Mode))
	case config.StatusRange:
		if x.Lo == x.Hi {
			return intNode(int64(x.Lo))
		}
		return str(fmt.Sprintf("%d-%d", x.Lo, x.Hi))
	case config.Instance:
		return r.instanceValue(v, x, path)
	case config.TrackedObject:
		if x.Weight == 0 {
			return str(x.Name)
		}
		return flow(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{scalar("name"), str(x.Name), scalar("weight"), intNode(int64(x.Weight))}})
	case netip.Addr:
		if !x.IsValid() {
			return nil
		}
		return str(x.String())
	case netip.Prefix:
		if !x.IsValid() {
			return nil
		}
		return str(x.String())
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return r.value(v.Elem(), path)
	case reflect.Struct:
		return r.structValue(v, path)
	case reflect.Map:
		return r.mapValue(v, path)
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		simple := true
		for i := 0; i < v.Len(); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			item := r.value(v.Index(i), p)
			if item == nil {
				item = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
			}
			if item.Kind != yaml.ScalarNode {
				simple = false
			}
			r.comment(item, p)
			seq.Content = append(seq.Content, item)
		}
		if simple {
			seq.Style = yaml.FlowStyle
		}
		return seq
	case reflect.String:
		if v.String() == "" && !written {
			return nil
		}
		return str(v.String())
	case reflect.Bool:
		if !v.Bool() && !written {
			return nil
		}
		return scalar(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.Int() == 0 && !written {
			return nil
		}
		return intNode(v.Int())
	case reflect.Uint16, reflect.Uint32, reflect.Uint8:
		if v.Uint() == 0 && !written {
			return nil
		}
		return intNode(int64(v.Uint()))
	}
	return nil
}

func flow(n *yaml.Node) *yaml.Node {
	n.Style = yaml.FlowStyle
	return n
}

func (r *renderer) structValue(v reflect.Value, path string) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if !f.IsExported() || key == "-" || key == "" {
			continue
		}
		p := join(path, key)
		item := r.value(v.Field(i), p)
		if item == nil {
			continue
		}
		k := scalar(key)
		r.comment(k, p)
		m.Content = append(m.Content, k, item)
	}
	if len(m.Content) == 0 {
		if _, ok := r.written[path]; !ok {
			return nil
		}
		m.Style = yaml.FlowStyle
	}
	// Small leaf mappings (a server, persistence) read best on one line.
	if len(m.Content) <= 6 && allScalars(m) && path != "" {
		m.Style = yaml.FlowStyle
	}
	return m
}

func allScalars(m *yaml.Node) bool {
	for _, c := range m.Content {
		if c.Kind != yaml.ScalarNode && !(c.Kind == yaml.SequenceNode && c.Style == yaml.FlowStyle) {
			return false
		}
	}
	return true
}

func (r *renderer) mapValue(v reflect.Value, path string) *yaml.Node {
	if v.Len() == 0 {
		return nil
	}
	keys := make([]string, 0, v.Len())
	for _, k := range v.MapKeys() {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range keys {
		p := join(path, k)
		item := r.value(v.MapIndex(reflect.ValueOf(k)), p)
		if item == nil {
			item = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		}
		kn := str(k)
		r.comment(kn, p)
		m.Content = append(m.Content, kn, item)
	}
	return m
}

// comment puts the origin of path, if known, above the node.
func (r *renderer) comment(n *yaml.Node, path string) {
	if o, ok := r.origins[path]; ok {
		n.HeadComment = o
	}
}

// durationText writes a duration as keepalived's files give it: whole
// seconds as "300s" (not "5m0s"), else whole milliseconds as "1500ms".
func durationText(d time.Duration) string {
	switch {
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	case d%time.Millisecond == 0:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
	return d.String()
}
