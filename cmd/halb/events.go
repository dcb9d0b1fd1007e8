package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"halb/internal/api"
	"halb/internal/config"
	"halb/internal/event"
)

func init() {
	register(&command{name: "events", summary: "show the running daemon's recent events, or follow them", setup: eventsFlags})
}

// eventsOptions are halb events's flags.
type eventsOptions struct {
	socket         string
	n              int
	asJSON, follow bool
}

func eventsFlags(fs *flag.FlagSet) runFunc {
	var o eventsOptions
	fs.StringVar(&o.socket, "socket", config.DefaultSocket, "status socket `PATH`")
	fs.IntVar(&o.n, "n", 50, "show at most `N` events (0: all kept)")
	fs.BoolVar(&o.asJSON, "json", false, "print the events as JSON (docs/schema/events.schema.json; with --follow, a document a line)")
	fs.BoolVar(&o.follow, "follow", false, "then print each new event as it comes, until interrupted")
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) != 0 {
			fmt.Fprintln(stderr, "halb events: takes no arguments; see halb events --help")
			return 2
		}
		if o.follow {
			return followEvents(o, stdout, stderr)
		}
		return runEvents(o, stdout, stderr)
	}
}

func runEvents(o eventsOptions, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := api.NewClient(o.socket).Events(ctx, o.n)
	if err != nil {
		fmt.Fprintf(stderr, "halb events: %v\n", err)
		return 1
	}
	if o.asJSON {
		if err := api.WriteJSON(stdout, api.Events{SchemaVersion: event.SchemaVersion, Events: evs}); err != nil {
			fmt.Fprintf(stderr, "halb events: %v\n", err)
			return 1
		}
		return 0
	}
	for _, ev := range evs {
		writeEvent(stdout, ev)
	}
	return 0
}

// followEvents prints the last events, then each new one, until SIGINT or
// SIGTERM (exit 0) or halb stops (exit 1).
func followEvents(o eventsOptions, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := api.NewClient(o.socket).Follow(ctx, o.n, func(ev event.Record) {
		if !o.asJSON {
			writeEvent(stdout, ev)
			return
		}
		line, err := event.Marshal(api.Events{SchemaVersion: event.SchemaVersion, Events: []event.Record{ev}})
		if err == nil {
			fmt.Fprintf(stdout, "%s\n", line)
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "halb events: %v\n", err)
		return 1
	}
	return 0
}

func writeEvent(w io.Writer, ev event.Record) {
	fmt.Fprintf(w, "%s  %-9s %s\n", ev.At.Local().Format("2006-01-02 15:04:05.000"), ev.Kind, ev.Summary)
}
