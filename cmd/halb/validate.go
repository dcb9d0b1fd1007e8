package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func init() {
	register("validate", "check configuration files; print FILE:LINE:COL problems", runValidate)
}

func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configID := fs.String("config-id", "", "select a keepalived.conf's @`ID` lines (default: the host name up to its first dot)")
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: halb validate [--config-id ID] FILE...") }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	failed := false
	for _, file := range fs.Args() {
		cfg, diags := loadConfig(file, *configID)
		diags = append(diags, netNamespaceMissing(cfg)...)
		io.WriteString(stderr, diags.String())
		if diags.HasErrors() {
			failed = true
		}
	}
	if failed {
		return 1
	}
	return 0
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}
