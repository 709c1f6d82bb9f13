package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/httpapi"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/telemetry"
	"github.com/streamgate/streamgate/internal/tenant"
)

// serve wires the node from top to bottom and runs it until ctx ends.
func serve(ctx context.Context, cfg apiConfig, getenv func(string) string, stdout, stderr io.Writer) error {
	log := telemetry.NewLogger(stderr, cfg.LogLevel).With("node", cfg.NodeID)

	tel, err := telemetry.Setup(ctx, "streamgate-api", getenv)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("flush telemetry", "err", err)
		}
	}()
	meter := telemetry.Meter(tel.Meter)

	rdb, closeRedis, err := openRedis(cfg, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	if err := tel.InstrumentRedis(rdb); err != nil {
		return err
	}

	tenants, err := tenant.NewStore(rdb, cfg.SecretKey, cfg.DefaultLimits)
	if err != nil {
		return fmt.Errorf("tenant store: %w", err)
	}
	publisher := stream.NewPublisher(rdb)
	sessions := session.NewRegistry(cfg.NodeID, session.Config{
		BufferSize:        cfg.SessionBuffer,
		HeartbeatInterval: cfg.Heartbeat,
	})
	updates := stream.NewUpdates(rdb)
	updates.Retention = cfg.JobRetention
	var ready atomic.Bool
	var api *httpapi.Server
	if err := telemetry.ObserveSessions(meter, sessions.Stats); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := telemetry.ObserveBacklog(meter, func(ctx context.Context) (int64, int64, error) {
		return stream.Backlog(ctx, rdb, stream.DefaultGroup)
	}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	deliverer, err := telemetry.MeasureDelivery(meter, sessions)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	hub := stream.NewHub(rdb, cfg.NodeID, deliverer, func(payload []byte) {
		var ev tenant.Event
		if err := json.Unmarshal(payload, &ev); err != nil {
			log.Warn("malformed control event", "err", err)
			return
		}
		api.HandleControl(ev)
	}, log)
	api = httpapi.New(httpapi.Config{
		NodeID:         cfg.NodeID,
		AdminToken:     cfg.AdminToken,
		SignupOpen:     cfg.SignupOpen,
		CORSOrigins:    cfg.CORSOrigins,
		WriteTimeout:   cfg.WriteTimeout,
		Rates:          cfg.Rates,
		TrustedProxies: cfg.TrustedProxies,
	}, log, httpapi.Deps{
		Tenants:   tenants,
		Publisher: publisher,
		History:   stream.NewHistory(rdb),
		Records:   stream.NewSessions(rdb),
		Hub:       hub,
		Registry:  sessions,
		Cluster:   cluster.NewView(rdb),
		States:    stream.NewStates(rdb),
		Updates:   updates,
		Ready:     ready.Load,
		Limiter:   ratelimit.New(rdb),
		Tracer:    tel.Tracer,
		Meter:     tel.Meter,
		Metrics:   tel.Metrics,
	})
	hub.SetRPCHandler(api.HandleRPC)
	heartbeat := cluster.NewHeartbeat(rdb, cfg.NodeID, sessions.Stats, log)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	httpSrv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	log.Info("listening", "addr", ln.Addr().String(), "signup", map[bool]string{true: "open", false: "closed"}[cfg.SignupOpen])
	if cfg.AdminGenerated {
		// Printed once, to stdout only, so that log shipping never carries it.
		fmt.Fprintf(stdout, "Admin token (generated; set STREAMGATE_ADMIN_TOKEN to keep one): %s\n", cfg.AdminToken)
	}
	if cfg.Redis.DevMode() {
		fmt.Fprintf(stdout, "Sign a tenant up:  curl -s -X POST http://%s/v1/tenants -H 'Content-Type: application/json' -d '{\"name\":\"Acme\"}'\n", displayAddr(ln.Addr()))
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return sessions.Run(gctx) })
	g.Go(func() error { return hub.Run(gctx) })
	g.Go(func() error { return api.Run(gctx) })
	g.Go(func() error { return heartbeat.Run(gctx) })
	if cfg.PprofAddr != "" {
		g.Go(func() error { return servePprof(gctx, cfg.PprofAddr, log) })
	}
	if cfg.Redis.DevMode() {
		// Dev mode has no separate worker: jobs and workflows are applied in this process.
		w := stream.NewWorker(rdb, stream.WorkerConfig{Consumer: cfg.NodeID, Retention: cfg.JobRetention, Tracer: tel.Tracer}, log)
		if err := telemetry.ObserveWorker(meter, w.Stats); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		g.Go(func() error { return w.Run(gctx) })
	}
	if cfg.Demo {
		g.Go(func() error {
			if err := runDemo(gctx, "http://"+ln.Addr().String(), log); err != nil {
				log.Warn("demo stopped", "err", err)
			}
			return nil
		})
	}
	g.Go(func() error { return watchReadiness(gctx, hub, &ready, log) })
	g.Go(func() error {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
		ready.Store(false)
		api.Stop() // streams get disconnect (reconnect: true) before connections close
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := httpSrv.Shutdown(sctx); err != nil {
			log.Warn("shutdown deadline passed; closing remaining connections", "err", err)
			httpSrv.Close()
		}
		if err := api.Drain(sctx); err != nil {
			log.Warn("shutdown deadline passed with streams still writing their last notice")
		}
		return nil
	})
	err = g.Wait()
	log.Info("stopped")
	return err
}

// openRedis connects to the configured Redis, or starts the embedded one in dev mode.
func openRedis(cfg apiConfig, log *slog.Logger) (redis.UniversalClient, func(), error) {
	if !cfg.Redis.DevMode() {
		rdb, err := cfg.Redis.Client()
		if err != nil {
			return nil, nil, err
		}
		return rdb, func() { rdb.Close() }, nil
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, nil, fmt.Errorf("start embedded redis: %w", err)
	}
	log.Warn("DEV MODE: no REDIS_URL, using an embedded in-memory Redis; nothing persists and this node cannot be clustered",
		"embedded_redis", mr.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, func() { rdb.Close(); mr.Close() }, nil
}

// watchReadiness keeps the readiness flag in step with a canary that the node publishes to
// itself: ready means Redis takes writes and this node's subscriber receives them.
func watchReadiness(ctx context.Context, hub *stream.Hub, ready *atomic.Bool, log *slog.Logger) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		err := hub.Canary(ctx, 2*time.Second)
		if ctx.Err() != nil {
			return nil
		}
		if was := ready.Swap(err == nil); was != (err == nil) {
			if err != nil {
				log.Warn("not ready", "err", err)
			} else {
				log.Info("ready: redis answers and pub/sub delivers")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		if ok {
			return fmt.Sprintf("localhost:%d", tcp.Port)
		}
	}
	return a.String()
}
