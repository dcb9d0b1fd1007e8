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
	register("events", "show the running daemon's recent events", runEvents)
}

func runEvents(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", config.DefaultSocket, "status socket `PATH`")
	n := fs.Int("n", 50, "show at most `N` events (0: all kept)")
	asJSON := fs.Bool("json", false, "print the events as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := api.NewClient(*socket).Events(ctx, *n)
	if err != nil {
		fmt.Fprintf(stderr, "halb events: %v\n", err)
		return 1
	}
	if *asJSON {
		api.WriteJSON(stdout, api.Events{SchemaVersion: event.SchemaVersion, Events: evs})
		return 0
	}
	for _, ev := range evs {
		fmt.Fprintf(stdout, "%s  %-9s %s\n", ev.At.Local().Format("2006-01-02 15:04:05.000"), ev.Kind, ev.Summary)
	}
	return 0
}
