package main

import "halb/internal/config"

// loadConfig reads a configuration file for validate and run.
func loadConfig(path string) (*config.Config, config.Diagnostics) {
	return config.Load(path, config.Options{Hostname: hostname()})
}
