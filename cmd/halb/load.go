package main

import (
	"os"

	"halb/internal/config"
	"halb/internal/keepalived"
)

// loadConfig reads a configuration file for validate and run: halb's YAML,
// or a keepalived.conf (recognised by its content), read with configID
// selecting its @ lines ("": keepalived's default, the host name up to its
// first dot).
func loadConfig(path, configID string) (*config.Config, config.Diagnostics) {
	opts := config.Options{Hostname: hostname()}
	if data, err := os.ReadFile(path); err == nil && keepalived.IsKeepalived(data) {
		return keepalived.Load(path, keepalived.Options{ConfigID: configID}, opts)
	}
	return config.Load(path, opts)
}
