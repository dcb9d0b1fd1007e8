package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"halb/internal/config"
	"halb/internal/pair"
)

func init() {
	register(&command{name: "validate", summary: "check configuration files (two: also as the two nodes of a pair); print FILE:LINE:COL problems", args: "FILE...",
		complete: []string{fileArgs}, setup: validateFlags})
}

func validateFlags(fs *flag.FlagSet) runFunc {
	configID := fs.String("config-id", "", "select a keepalived.conf's @`ID` lines (default: the host name up to its first dot)")
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) == 0 {
			fmt.Fprintln(stderr, "halb validate: needs a FILE; see halb validate --help")
			return 2
		}
		return runValidate(args, *configID, stdout, stderr)
	}
}

func runValidate(files []string, configID string, stdout, stderr io.Writer) int {
	failed := false
	var cfgs []*config.Config
	for _, file := range files {
		cfg, diags := loadConfig(file, configID)
		diags = append(diags, netNamespaceMissing(cfg)...)
		io.WriteString(stderr, diags.String())
		if diags.HasErrors() {
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "%s: valid (%d warnings)\n", file, len(diags))
		cfgs = append(cfgs, cfg)
	}
	if len(files) == 2 && len(cfgs) == 2 {
		diags := pair.Check(cfgs[0], cfgs[1])
		io.WriteString(stderr, diags.String())
		if diags.HasErrors() {
			fmt.Fprintf(stdout, "%s and %s: NOT a valid pair (%d errors)\n", files[0], files[1], len(diags.Errors()))
			return 1
		}
		fmt.Fprintf(stdout, "%s and %s: a valid pair (%d warnings)\n", files[0], files[1], len(diags))
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
