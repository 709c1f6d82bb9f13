// Command api serves Streamgate's REST API, end-user SSE streams and the admin page.
//
// Configuration is by environment variable (see the README). With no REDIS_URL it runs in dev
// mode on an embedded in-memory Redis: nothing persists.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "streamgate api:", err)
		var cfgErr configError
		if errors.As(err, &cfgErr) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run starts the node and serves until ctx ends or SIGINT/SIGTERM arrives, then stops
// gracefully within the shutdown timeout.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 3 && args[1] == "-healthcheck" {
		return healthcheck(ctx, args[2])
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := readConfig(args, getenv)
	if err != nil {
		return configError{err}
	}
	return serve(ctx, cfg, getenv, stdout, stderr)
}

// configError marks a configuration problem: nothing was opened.
type configError struct{ err error }

func (e configError) Error() string { return "configuration: " + e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// healthcheck asks a running node whether it is ready, for container health checks in images
// that have no shell or curl.
func healthcheck(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return nil
}
