// Command sgbench is Streamgate's load tool: users run it against their own deployment to see
// how many SSE sessions it holds, how fast and how reliably it delivers, and at what memory and
// CPU cost.
//
// It signs tenants up (-signup) or takes existing ones (-api-key), mints end-user tokens, opens
// -conns SSE sessions spread over -procs worker processes at -ramp, publishes -events events at
// -rate through the REST API, to one channel per tenant (broadcast) or one per session
// (per-conn), and reports connect time, delivered events per second, publish-to-receipt latency
// percentiles (the send time travels in the payload; sgbench must run on one clock, i.e. one
// machine), lost and duplicated events, publish errors and, given the server's pids, its RSS per
// connection and CPU per delivery and per publish.
//
// Every loop is bounded in count and by -duration, and only the addresses given with -url are
// contacted. `sgbench summary a.json b.json` prints one table of several -out results, and
// `sgbench soak` runs a churning load for a set time and reports what grew (see soak.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	err := run(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.Is(err, errInterrupted):
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "sgbench:", err)
		os.Exit(1)
	}
}

// run is the whole program: a coordinator run, a worker (the hidden -worker flag, started by a
// coordinator) or the summary of earlier results. stdin is read only by a worker.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "summary" {
		return summary(stdout, args[2:])
	}
	if len(args) > 1 && args[1] == "soak" {
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return runSoak(ctx, args[2:], stdout, stderr)
	}
	cfg, err := parseConfig(args[1:], stderr)
	if err != nil {
		return err
	}
	if cfg.Worker {
		// A Ctrl-C in the terminal reaches the whole process group, but the coordinator
		// decides when the sessions close: it still wants the worker's figures.
		signal.Ignore(syscall.SIGINT)
		return runWorker(ctx, stdin, stdout)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The first signal ends the run and still prints what was measured; a second one kills.
	context.AfterFunc(ctx, stop)
	return runBench(ctx, cfg, stdout, stderr)
}
