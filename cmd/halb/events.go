package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"halb/internal/api"
	"halb/internal/config"
	"halb/internal/event"
)

func init() {
	register(&command{name: "events", summary: "show the running daemon's recent events", setup: eventsFlags})
}

func eventsFlags(fs *flag.FlagSet) runFunc {
	socket := fs.String("socket", config.DefaultSocket, "status socket `PATH`")
	n := fs.Int("n", 50, "show at most `N` events (0: all kept)")
	asJSON := fs.Bool("json", false, "print the events as JSON (docs/schema/events.schema.json)")
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) != 0 {
			fmt.Fprintln(stderr, "halb events: takes no arguments; see halb events --help")
			return 2
		}
		return runEvents(*socket, *n, *asJSON, stdout, stderr)
	}
}

func runEvents(socket string, n int, asJSON bool, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := api.NewClient(socket).Events(ctx, n)
	if err != nil {
		fmt.Fprintf(stderr, "halb events: %v\n", err)
		return 1
	}
	if asJSON {
		api.WriteJSON(stdout, api.Events{SchemaVersion: event.SchemaVersion, Events: evs})
		return 0
	}
	for _, ev := range evs {
		fmt.Fprintf(stdout, "%s  %-9s %s\n", ev.At.Local().Format("2006-01-02 15:04:05.000"), ev.Kind, ev.Summary)
	}
	return 0
}
