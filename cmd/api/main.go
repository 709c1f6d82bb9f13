// Command api serves Streamgate's REST API, end-user SSE streams and the admin page, and helps
// operate it: api version, api config, api token mint|check (api --help lists them).
//
// Configuration is by environment variable (see docs/configuration.md). With no REDIS_URL it
// runs in dev mode on an embedded in-memory Redis: nothing persists.
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
	err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamgate api:", err)
	}
	os.Exit(exitCode(err))
}

// exitCode is the process's exit status for run's error: 2 for a command line or a
// configuration it cannot act on (nothing was opened), 1 for any other failure.
func exitCode(err error) int {
	var cfgErr configError
	var useErr usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &cfgErr), errors.As(err, &useErr):
		return 2
	default:
		return 1
	}
}

// run carries out the command line in args (args[0] is the program's name). With no command it
// serves, as `api serve` does.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 3 && args[1] == "-healthcheck" {
		return healthcheck(ctx, args[2])
	}
	cmd, rest := "serve", []string(nil)
	if len(args) > 1 {
		cmd, rest = args[1], args[2:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "version":
		return runVersion(rest, stdout)
	case "config":
		return runConfig(rest, getenv, stdout)
	case "token":
		return runToken(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		return runHelp(rest, stdout, stderr)
	default:
		writeUsage(stderr)
		return usageError{fmt.Sprintf("unknown command %q (api --help lists them)", cmd)}
	}
}

// runServe starts the node and serves until ctx ends or SIGINT/SIGTERM arrives, then stops
// gracefully within the shutdown timeout.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "api serve", "Runs an api node on STREAMGATE_ADDR until SIGINT or SIGTERM. Configuration is by environment\nvariable only (api --help lists them).", stdout)
	if done, err := parse(fs, args, 0); done || err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := readConfig(args, getenv)
	if err != nil {
		return configError{listProblems(err)}
	}
	return serve(ctx, cfg, getenv, stdout, stderr)
}

// configError marks a configuration problem: nothing was opened.
type configError struct{ err error }

func (e configError) Error() string { return "configuration: " + e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// usageError marks a command line that cannot be carried out: an unknown command, a bad flag or
// value. Nothing was opened.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

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
