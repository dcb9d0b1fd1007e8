package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func init() {
	register(&command{name: "validate", summary: "check configuration files; print FILE:LINE:COL problems", args: "FILE...",
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
	for _, file := range files {
		_, diags := loadConfig(file, configID)
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
