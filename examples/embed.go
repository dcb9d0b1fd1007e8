// Package examples embeds the example configurations, so that the lab and
// the package can use them wherever halb is installed.
package examples

import "embed"

// Files holds every example configuration, by file name.
//
//go:embed *.yaml
var Files embed.FS
