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
	return loadConfigWith(&config.Parser{}, path, configID)
}

// loadConfigWith is loadConfig for successive versions of one file: p
// decodes again only what changed of halb's YAML since its last load.
func loadConfigWith(p *config.Parser, path, configID string) (*config.Config, config.Diagnostics) {
	opts := config.Options{Hostname: hostname()}
	data, err := os.ReadFile(path)
	if err != nil {
		return config.Load(path, opts) // which reports it
	}
	if keepalived.IsKeepalived(data) {
		return keepalived.Load(path, keepalived.Options{ConfigID: configID}, opts)
	}
	return p.Parse(path, data, opts)
}
