package keepalived

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"halb/internal/config"
)

// foldWarnings keeps one warning per cause (the same message): the first,
// which names the other places and the count. Errors are all kept. The
// diagnostics must be sorted.
func foldWarnings(diags config.Diagnostics) config.Diagnostics {
	type place struct {
		at   int // index in out
		more []string
	}
	first := map[string]*place{}
	var out config.Diagnostics
	for _, d := range diags {
		if d.Severity != config.Warning {
			out = append(out, d)
			continue
		}
		if p, ok := first[d.Message]; ok {
			where := fmt.Sprintf("%d:%d", d.Pos.Line, d.Pos.Col)
			if d.File != out[p.at].File {
				where = d.File + ":" + where
			}
			p.more = append(p.more, where)
			continue
		}
		first[d.Message] = &place{at: len(out)}
		out = append(out, d)
	}
	for _, p := range first {
		if len(p.more) > 0 {
			out[p.at].Message += fmt.Sprintf(" (%d times in all; also at %s)", len(p.more)+1, strings.Join(p.more, ", "))
		}
	}
	return out
}

// foldPools merges pools that are the same but for their names into the
// first of them: the services of the others use it.
func (m *mapper) foldPools() {
	names := make([]string, 0, len(m.cfg.Pools))
	for name := range m.cfg.Pools {
		names = append(names, name)
	}
	// Keep the pool of the earliest service.
	order := map[string]int{}
	for i, s := range m.cfg.Services {
		if _, ok := order[s.Pool]; !ok {
			order[s.Pool] = i
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if oa, ob := order[a], order[b]; oa != ob {
			return oa - ob
		}
		return strings.Compare(a, b)
	})
	into := map[string]string{}
	for i, a := range names {
		if _, merged := into[a]; merged {
			continue
		}
		for _, b := range names[i+1:] {
			if _, merged := into[b]; !merged && samePool(m.cfg.Pools[a], m.cfg.Pools[b]) {
				into[b] = a
			}
		}
	}
	for dup, keep := range into {
		delete(m.cfg.Pools, dup)
		delete(m.origins, "pools."+dup)
		for path := range m.written {
			if path == "pools."+dup || strings.HasPrefix(path, "pools."+dup+".") {
				delete(m.written, path)
			}
		}
		for i := range m.cfg.Services {
			if m.cfg.Services[i].Pool == dup {
				m.cfg.Services[i].Pool = keep
			}
		}
	}
}

// samePool reports whether two pools differ in their names only.
func samePool(a, b config.Pool) bool {
	a.Name, b.Name = "", ""
	return reflect.DeepEqual(a, b)
}
