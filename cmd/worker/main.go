// Command worker applies job and workflow updates: it consumes the update stream in a consumer
// group with the other workers, writes each job's and workflow's state, publishes it to
// job:<id> or workflow:<id>, and reclaims what dead workers left behind. It also delivers the
// tenants' webhooks, sharing that work with the other workers the same way.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/config"
	"github.com/streamgate/streamgate/internal/jobs"
	"github.com/streamgate/streamgate/internal/telemetry"
	"github.com/streamgate/streamgate/internal/urlguard"
	"github.com/streamgate/streamgate/internal/webhook"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "streamgate worker:", err)
		var cfgErr configError
		if errors.As(err, &cfgErr) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = `streamgate worker: applies job and workflow updates from the update stream and
delivers webhooks. It takes no arguments; it is configured by environment variables:

  REDIS_URL                        redis:// or rediss:// URL (or REDIS_CLUSTER_ADDRS)
  REDIS_CLUSTER_ADDRS              comma-separated Redis Cluster seeds; wins over REDIS_URL
  STREAMGATE_SECRET_KEY            base64 of 32 bytes, the api's: signs webhook deliveries
  STREAMGATE_WORKER_NAME           this worker's consumer name (default: host-pid-random)
  STREAMGATE_WORKER_CLAIM_IDLE     take over a dead worker's updates after this (default 30s)
  STREAMGATE_WORKER_METRICS_ADDR   serve Prometheus metrics here (default: off)
  STREAMGATE_JOB_RETENTION         keep finished job and workflow states this long (default 168h)
  STREAMGATE_SHUTDOWN_TIMEOUT      finish held work within this on SIGTERM (default 10s)
  STREAMGATE_ALLOW_PRIVATE_URLS    let webhooks reach private addresses (default false)
  STREAMGATE_LOG_LEVEL             debug, info, warn or error (default info)
  OTEL_*                           OpenTelemetry tracing, as for the api

Exit codes: 0 stopped cleanly, 1 failed, 2 bad configuration or arguments.
`

type configError struct{ err error }

func (e configError) Error() string { return "configuration: " + e.err.Error() }
func (e configError) Unwrap() error { return e.err }

type workerConfig struct {
	Redis           config.Redis
	Name            string
	ClaimIdle       time.Duration
	Retention       time.Duration
	ShutdownTimeout time.Duration
	LogLevel        string
	MetricsAddr     string
	// SecretKey decrypts the webhook secrets deliveries are signed with; without it this
	// worker delivers no webhooks.
	SecretKey        []byte
	AllowPrivateURLs bool
}

func readConfig(getenv func(string) string) (workerConfig, error) {
	r := &config.Reader{Env: getenv}
	var c workerConfig
	var err error
	if c.Redis, err = config.ReadRedis(getenv); err != nil {
		r.Fail(err)
	} else if c.Redis.DevMode() {
		r.Fail(errors.New("REDIS_URL or REDIS_CLUSTER_ADDRS is required (in dev mode the api runs its own worker)"))
	}
	host, _ := os.Hostname()
	c.Name = r.String("STREAMGATE_WORKER_NAME", fmt.Sprintf("%s-%d-%s", host, os.Getpid(), streamgate.NewID("")[:6]))
	c.ClaimIdle = r.Duration("STREAMGATE_WORKER_CLAIM_IDLE", 30*time.Second, 10*time.Millisecond, time.Hour)
	c.Retention = r.Duration("STREAMGATE_JOB_RETENTION", jobs.DefaultRetention, time.Minute, 365*24*time.Hour)
	c.ShutdownTimeout = r.Duration("STREAMGATE_SHUTDOWN_TIMEOUT", 10*time.Second, 0, 10*time.Minute)
	c.LogLevel = r.OneOf("STREAMGATE_LOG_LEVEL", "info", "debug", "info", "warn", "error")
	c.MetricsAddr = r.String("STREAMGATE_WORKER_METRICS_ADDR", "")
	c.SecretKey = r.Key32("STREAMGATE_SECRET_KEY")
	c.AllowPrivateURLs = r.OneOf("STREAMGATE_ALLOW_PRIVATE_URLS", "false", "true", "false") == "true"
	return c, r.Err()
}

// run consumes until ctx ends or SIGINT/SIGTERM arrives, then stops reading, finishes what it
// holds and returns within the shutdown timeout.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usage)
			return nil
		default:
			fmt.Fprint(stderr, usage)
			return configError{fmt.Errorf("unknown argument %q: the worker takes none, only environment variables", args[1])}
		}
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := readConfig(getenv)
	if err != nil {
		return configError{err}
	}
	log := telemetry.NewLogger(stderr, cfg.LogLevel).With("worker", cfg.Name)

	tel, err := telemetry.Setup(ctx, "streamgate-worker", getenv)
	if err != nil {
		return configError{err}
	}
	defer func() {
		// Spans still buffered go out before the process ends.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("flush telemetry", "err", err)
		}
	}()

	rdb, err := cfg.Redis.Client()
	if err != nil {
		return configError{err}
	}
	defer rdb.Close()
	if err := tel.InstrumentRedis(rdb); err != nil {
		return err
	}
	events := webhook.NewEvents(rdb, log)
	w := jobs.NewWorker(rdb, jobs.WorkerConfig{Consumer: cfg.Name, ClaimIdle: cfg.ClaimIdle, Retention: cfg.Retention, Tracer: tel.Tracer, Notify: events}, log)
	var hooks *webhook.Dispatcher
	if cfg.SecretKey != nil {
		store, err := webhook.NewStore(rdb, cfg.SecretKey, urlguard.Guard{AllowPrivate: cfg.AllowPrivateURLs}, events)
		if err != nil {
			return configError{err}
		}
		hooks = webhook.NewDispatcher(store, webhook.DispatcherConfig{Consumer: cfg.Name}, log)
	} else {
		log.Warn("STREAMGATE_SECRET_KEY is not set: this worker delivers no webhooks (set it to the api's key)")
	}

	if cfg.MetricsAddr != "" {
		stopMetrics, err := serveMetrics(cfg.MetricsAddr, tel, w, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	done := make(chan error, 1)
	go func() {
		g := new(errgroup.Group)
		g.Go(func() error { return w.Run(ctx) })
		if hooks != nil {
			g.Go(func() error { return hooks.Run(ctx) })
		}
		done <- g.Wait()
	}()
	log.Info("consuming updates", "claim_idle", cfg.ClaimIdle.String(), "webhooks", hooks != nil)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("stopping: finishing held updates", "timeout", cfg.ShutdownTimeout.String())
	select {
	case err := <-done:
		st := w.Stats()
		attrs := []any{"applied", st.Applied, "dead_lettered", st.DeadLettered}
		if hooks != nil {
			hs := hooks.Stats()
			attrs = append(attrs, "webhooks_succeeded", hs.Succeeded, "webhooks_dead", hs.Dead)
		}
		log.Info("stopped", attrs...)
		return err
	case <-time.After(cfg.ShutdownTimeout):
		return errors.New("shutdown deadline passed with updates or webhook deliveries still in hand; they stay pending for another worker")
	}
}

// serveMetrics serves the worker's counters and the update stream's backlog as Prometheus text
// on GET /metrics at addr, until the returned stop is called.
func serveMetrics(addr string, tel *telemetry.Telemetry, w *jobs.Worker, log *slog.Logger) (stop func(), err error) {
	meter := telemetry.Meter(tel.Meter)
	if err := telemetry.ObserveWorker(meter, w.Stats); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := telemetry.ObserveBacklog(meter, w.Backlog); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := telemetry.ObserveDeadLetters(meter, w.DeadLetters); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("STREAMGATE_WORKER_METRICS_ADDR: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", tel.Metrics)
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusOK) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve metrics", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
