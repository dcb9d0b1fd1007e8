package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"halb/internal/config"
	"halb/internal/keepalived"
)

func init() {
	register(&command{name: "convert", summary: "print a keepalived.conf as halb YAML, with every unsupported keyword named",
		args: "FILE", complete: []string{fileArgs}, setup: convertFlags})
}

func convertFlags(fs *flag.FlagSet) runFunc {
	id := fs.String("config-id", "", "select @`ID` conditional lines (default: the host name up to its first dot)")
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) != 1 {
			fmt.Fprintln(stderr, "halb convert: needs one FILE; see halb convert --help")
			return 2
		}
		return runConvert(args[0], *id, stdout, stderr)
	}
}

func runConvert(file, id string, stdout, stderr io.Writer) int {
	opts := keepalived.Options{ConfigID: id}
	if opts.ConfigID == "" {
		opts.ConfigID = keepalived.DefaultConfigID()
	}
	conv := keepalived.Convert(file, opts)
	if conv.Config == nil {
		io.WriteString(stderr, conv.Diags.String())
		return 1
	}
	out, err := keepalived.RenderYAML(conv.Config, conv.Written, conv.Origins)
	if err != nil {
		fmt.Fprintf(stderr, "halb convert: %v\n", err)
		return 1
	}
	// Validate as halb would load it; this completes conv.Config with
	// halb's defaults, so it comes after rendering.
	_, diags := conv.Build(config.Options{Hostname: hostname()})
	warnings := len(diags) - len(diags.Errors())
	fmt.Fprintf(stdout, "# halb configuration converted from %s (keepalived.conf, config-id %q).\n", file, opts.ConfigID)
	fmt.Fprintf(stdout, "# %d warning(s) and %d error(s), listed on stderr as FILE:LINE:COL.\n", warnings, len(diags.Errors()))
	if diags.HasErrors() {
		fmt.Fprintln(stdout, "# NOT VALID as it stands: fix the errors in the keepalived file, or edit this file.")
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "halb convert: %v\n", err)
		return 1
	}
	io.WriteString(stderr, strings.TrimPrefix(diags.String(), "\n"))
	if diags.HasErrors() {
		return 1
	}
	return 0
}
