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
	register("convert", "print a keepalived.conf as halb YAML, with every unsupported keyword named", runConvert)
}

func runConvert(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("config-id", "", "select @`ID` conditional lines (default: the host name up to its first dot)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: halb convert FILE [--config-id ID]")
		fs.PrintDefaults()
	}
	// The file may come before or after the flags.
	var files []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) != 1 {
		fs.Usage()
		return 2
	}
	file := files[0]
	opts := keepalived.Options{ConfigID: *id}
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
