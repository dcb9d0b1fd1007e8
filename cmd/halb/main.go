// Command halb is a high-availability layer-4 load balancer: VRRP for the
// virtual IPs, IPVS or nftables for the packets, health checks for the
// real servers, in one daemon.
//
// The command line uses the standard library's flag package: halb has a
// handful of subcommands with a few flags each, and this file adds what a
// conventional command line needs (help on stdout, --version, flags
// anywhere among the arguments, exit 2 with a hint on misuse, completion
// generated from the same list) without a dependency.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"halb/internal/buildinfo"
	"halb/internal/suggest"
)

// runFunc runs a command with its flags parsed and its positional
// arguments.
type runFunc func(args []string, stdout, stderr io.Writer) int

// command is one subcommand of halb.
type command struct {
	name, summary string
	// args names the positional arguments in the usage line ("FILE...").
	args string
	// complete says what the positional arguments are, for completion:
	// fileArgs, dirArgs, or the words they may be.
	complete []string
	// setup declares the command's flags on fs and returns what runs it.
	setup func(fs *flag.FlagSet) runFunc
}

// What a completion offers for an argument.
const (
	fileArgs    = "<file>"
	dirArgs     = "<dir>"
	commandArgs = "<command>"
)

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the command args name and returns the exit status: 0
// done, 1 failed, 2 misuse.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "-version", "--version":
		fmt.Fprintln(stdout, buildinfo.Get())
		return 0
	}
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "halb: unknown flag %q; see halb --help\n", args[0])
		return 2
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "halb: unknown command %q;%s see halb --help\n", args[0], didYouMean(args[0], names()))
		return 2
	}
	return c.execute(args[1:], stdout, stderr)
}

// names lists the commands, sorted.
func names() []string {
	out := make([]string, 0, len(commands))
	for n := range commands {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: halb COMMAND [FLAGS] [ARGS]\n\n")
	b.WriteString("halb is a high-availability layer-4 load balancer: VRRP, IPVS or nftables, health checks.\n\ncommands:\n")
	for _, n := range names() {
		fmt.Fprintf(&b, "  %-11s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nflags:\n  -h, --help  show this help\n  --version   print the version\n")
	b.WriteString("\nRun 'halb help COMMAND' or 'halb COMMAND --help' for a command's flags.\n")
	io.WriteString(w, b.String())
}

// flags returns the command's flag set and the function that runs it.
func (c *command) flags() (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs, c.setup(fs)
}

// execute parses args (flags may come before, between or after the
// positional arguments; "--" ends the flags) and runs the command.
func (c *command) execute(args []string, stdout, stderr io.Writer) int {
	fs, run := c.flags()
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.usage(stdout)
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "halb %s: %s see halb %s --help\n", c.name, c.flagError(fs, err), c.name)
			return 2
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}
	return run(positional, stdout, stderr)
}

// flagError words a parse error of the flag package, ending in ";" and
// suggesting the closest flag for an unknown one.
func (c *command) flagError(fs *flag.FlagSet, err error) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: ")
	if !ok {
		return err.Error() + ";"
	}
	var known []string
	fs.VisitAll(func(f *flag.Flag) { known = append(known, flagName(f.Name)) })
	name = flagName(strings.TrimLeft(name, "-"))
	return fmt.Sprintf("unknown flag %q;%s", name, didYouMean(name, known))
}

// flagName is how usage and completion write a flag: -n, --json.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// usage prints the command's usage line, summary and flags.
func (c *command) usage(w io.Writer) {
	fs, _ := c.flags()
	var b strings.Builder
	line := "usage: halb " + c.name
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		line += " [FLAGS]"
	}
	if c.args != "" {
		line += " " + c.args
	}
	fmt.Fprintf(&b, "%s\n\n%s\n\nflags:\n", line, c.summary)
	type row struct{ left, right string }
	rows := []row{}
	fs.VisitAll(func(f *flag.Flag) {
		arg, text := flag.UnquoteUsage(f)
		left := flagName(f.Name)
		if arg != "" {
			left += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			text += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		rows = append(rows, row{left, text})
	})
	rows = append(rows, row{"-h, --help", "show this help"})
	width := 0
	for _, r := range rows {
		width = max(width, len(r.left))
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, r.left, r.right)
	}
	io.WriteString(w, b.String())
}

// didYouMean suggests the known word closest to word, if one is close
// (" did you mean "status"?"), else "".
func didYouMean(word string, known []string) string {
	best := suggest.Closest(word, known)
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" did you mean %q?", best)
}

func init() {
	register(&command{name: "version", summary: "print halb's version, VCS revision and Go version",
		setup: func(*flag.FlagSet) runFunc {
			return func(args []string, stdout, stderr io.Writer) int {
				if len(args) > 0 {
					fmt.Fprintln(stderr, "halb version: takes no arguments; see halb version --help")
					return 2
				}
				fmt.Fprintln(stdout, buildinfo.Get())
				return 0
			}
		}})
	register(&command{name: "help", summary: "show halb's commands, or a command's flags", args: "[COMMAND]",
		complete: []string{commandArgs},
		setup: func(*flag.FlagSet) runFunc {
			return func(args []string, stdout, stderr io.Writer) int {
				switch {
				case len(args) == 0:
					usage(stdout)
					return 0
				case len(args) > 1:
					fmt.Fprintln(stderr, "halb help: one command at most; see halb --help")
					return 2
				}
				c, ok := commands[args[0]]
				if !ok {
					fmt.Fprintf(stderr, "halb help: unknown command %q;%s see halb --help\n", args[0], didYouMean(args[0], names()))
					return 2
				}
				c.usage(stdout)
				return 0
			}
		}})
}
