package keepalived

import (
	"bufio"
	"bytes"
	"strings"
)

// topKeywords are statements that begin keepalived configurations.
var topKeywords = map[string]bool{
	"global_defs": true, "vrrp_instance": true, "vrrp_script": true, "vrrp_sync_group": true,
	"virtual_server": true, "virtual_server_group": true, "static_ipaddress": true,
	"static_routes": true, "static_rules": true, "include": true, "includer": true,
	"includem": true, "includew": true, "includeb": true, "includea": true,
	"net_namespace": true, "linkbeat_interfaces": true, "track_file": true,
	"track_process": true, "vrrp_track_process": true, "bfd_instance": true, "garp_group": true,
}

// IsKeepalived reports whether data looks like a keepalived configuration
// rather than halb's YAML: its first statement is a keepalived keyword, a
// parameter definition, a conditional line or a ~SEQ or ~LST line, or it starts
// with a "!" comment.
func IsKeepalived(data []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "!") || strings.HasPrefix(line, "$") ||
			strings.HasPrefix(line, "@") || strings.HasPrefix(line, "~SEQ") ||
			strings.HasPrefix(line, "~LST"):
			return true
		}
		word := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '{' })
		return len(word) > 0 && topKeywords[word[0]]
	}
	return false
}
