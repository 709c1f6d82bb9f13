package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/httpapi"
	"github.com/streamgate/streamgate/internal/jobs"
	"github.com/streamgate/streamgate/internal/memory"
	"github.com/streamgate/streamgate/internal/mercure"
	"github.com/streamgate/streamgate/internal/presence"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/rawconn"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/telemetry"
	"github.com/streamgate/streamgate/internal/tenant"
	"github.com/streamgate/streamgate/internal/urlguard"
	"github.com/streamgate/streamgate/internal/webhook"
)

// serve runs the node until ctx ends: telemetry and Redis first, then the node's parts (newNode),
// then its listener.
func serve(ctx context.Context, cfg apiConfig, getenv func(string) string, stdout, stderr io.Writer) error {
	log := telemetry.NewLogger(stderr, cfg.LogLevel).With("node", cfg.NodeID)
	memory.LimitFromContainer(getenv, log)

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

	rdb, closeRedis, err := openRedis(cfg, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	if err := tel.InstrumentRedis(rdb); err != nil {
		return err
	}
	n, err := newNode(cfg, rdb, tel, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	n.announce(ln.Addr(), stdout)
	err = n.run(ctx, ln)
	log.Info("stopped")
	return err
}

// apiNode is one api process's parts, built in dependency order by newNode.
type apiNode struct {
	cfg       apiConfig
	log       *slog.Logger
	registry  *session.Registry
	calls     *cluster.Calls
	hub       *stream.Hub
	leases    *cluster.Leases
	presence  *presence.Tracker
	streams   *delivery.Service
	api       *httpapi.Server
	heartbeat *cluster.Heartbeat
	occupancy *webhook.Occupancy
	worker    *jobs.Worker        // dev mode only: there is no separate worker
	webhooks  *webhook.Dispatcher // dev mode only, likewise
	ready     atomic.Bool
}

// newNode wires the node from top to bottom: each part is built from the parts above it.
func newNode(cfg apiConfig, rdb redis.UniversalClient, tel *telemetry.Telemetry, log *slog.Logger) (*apiNode, error) {
	n := &apiNode{cfg: cfg, log: log}
	meter := telemetry.Meter(tel.Meter)
	tenants, err := tenant.NewStore(rdb, cfg.SecretKey, cfg.DefaultLimits,
		tenant.WithURLGuard(urlguard.Guard{AllowPrivate: cfg.AllowPrivateURLs}))
	if err != nil {
		return nil, fmt.Errorf("tenant store: %w", err)
	}
	events := webhook.NewEvents(rdb, log)
	webhooks, err := webhook.NewStore(rdb, cfg.SecretKey, urlguard.Guard{AllowPrivate: cfg.AllowPrivateURLs}, events)
	if err != nil {
		return nil, fmt.Errorf("webhook store: %w", err)
	}
	n.occupancy = webhook.NewOccupancy(rdb, cfg.NodeID, events, log)
	n.registry = session.NewRegistry(cfg.NodeID, session.Config{BufferSize: cfg.SessionBuffer, HeartbeatInterval: cfg.Heartbeat, TokenWarning: cfg.TokenWarning})
	// The tenants' Mercure updates are matched once per node on their way to the sessions.
	mercureIndex := mercure.NewIndex(stream.MercureChannel, n.registry)
	deliverer, err := telemetry.MeasureDelivery(meter, mercureIndex)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	n.calls = cluster.NewCalls(rdb, cfg.NodeID, log)
	n.hub = stream.NewHub(rdb, cfg.NodeID, stream.Handlers{
		Deliver:   deliverer,
		Control:   delivery.ControlHandler(n.registry, log, tenants.Forget),
		Node:      n.calls.Receive,
		Occupancy: n.occupancy,
	}, log, stream.WithKeepalive(cfg.PubSubKeepalive, cfg.PubSubKeepalive*2/3))
	history := stream.NewHistory(rdb)
	view := cluster.NewView(rdb)
	n.leases = cluster.NewLeases(rdb, cfg.NodeID, log)
	n.presence = presence.New(rdb, presence.Config{NodeID: cfg.NodeID, Lease: cfg.PresenceLease, Sharded: stream.Sharded(rdb),
		OnChange: presenceWebhooks(events, log)}, log)
	n.streams = delivery.New(delivery.Config{NodeID: cfg.NodeID}, delivery.Deps{
		Registry:  n.registry,
		Hub:       n.hub,
		History:   history,
		Records:   cluster.NewRecords(rdb),
		Nodes:     view,
		Admission: cluster.NewAdmission(n.leases, history),
		Calls:     n.calls,
		Tenants:   tenants,
		Events:    events,
		Presence:  n.presence,
	}, log)
	updates := jobs.NewUpdates(rdb)
	updates.Retention = cfg.JobRetention
	n.api = httpapi.New(httpapi.Config{
		NodeID:         cfg.NodeID,
		AdminToken:     cfg.AdminToken,
		SignupOpen:     cfg.SignupOpen,
		CORSOrigins:    cfg.CORSOrigins,
		WriteTimeout:   cfg.WriteTimeout,
		BodyTimeout:    cfg.BodyTimeout,
		Rates:          cfg.Rates,
		TrustedProxies: cfg.TrustedProxies,
	}, log, httpapi.Deps{
		Tenants:   tenants,
		Publisher: stream.NewPublisher(rdb),
		History:   history,
		Streams:   n.streams,
		Mercure:   mercureIndex,
		Cluster:   view,
		JobStates: jobs.NewStates(history),
		Updates:   updates,
		Webhooks:  webhooks,
		Ready:     n.ready.Load,
		Limiter:   ratelimit.New(rdb),
		Tracer:    tel.Tracer,
		Meter:     tel.Meter,
		Metrics:   tel.Metrics,
	})
	n.heartbeat = cluster.NewHeartbeat(rdb, cfg.NodeID, n.registry.Stats, log)
	if cfg.Redis.DevMode() {
		n.worker = jobs.NewWorker(rdb, jobs.WorkerConfig{Consumer: cfg.NodeID, Retention: cfg.JobRetention, Tracer: tel.Tracer, Notify: events}, log)
		n.webhooks = webhook.NewDispatcher(webhooks, webhook.DispatcherConfig{Consumer: cfg.NodeID}, log)
		if err := telemetry.ObserveWorker(meter, n.worker.Stats); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	if err := telemetry.ObservePubSub(meter, n.hub.Stats); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := telemetry.ObserveSessions(meter, n.registry.Stats, cfg.MetricsTenants); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := telemetry.ObserveBacklog(meter, func(ctx context.Context) (int64, int64, error) {
		return jobs.Backlog(ctx, rdb, jobs.DefaultGroup)
	}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := telemetry.ObserveDeadLetters(meter, func(ctx context.Context) (int64, error) {
		return jobs.DeadLetters(ctx, rdb)
	}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return n, nil
}

// announce says where the node listens, and in dev mode how to start.
func (n *apiNode) announce(addr net.Addr, stdout io.Writer) {
	n.log.Info("listening", "addr", addr.String(), "signup", map[bool]string{true: "open", false: "closed"}[n.cfg.SignupOpen])
	if n.cfg.AdminGenerated {
		// Printed once, to stdout only, so that log shipping never carries it.
		fmt.Fprintf(stdout, "Admin token (generated; set STREAMGATE_ADMIN_TOKEN to keep one): %s\n", n.cfg.AdminToken)
	}
	if n.cfg.Redis.DevMode() {
		fmt.Fprintf(stdout, "Sign a tenant up:  curl -s -X POST http://%s/v1/tenants -H 'Content-Type: application/json' -d '{\"name\":\"Acme\"}'\n", displayAddr(addr))
	}
}

// run starts every loop of the node and serves ln until ctx ends, then shuts down.
func (n *apiNode) run(ctx context.Context, l net.Listener) error {
	l = rawconn.Listener{Listener: l} // raw reads and writes: see package rawconn
	var connState func(net.Conn, http.ConnState)
	if n.cfg.MaxNewConns > 0 {
		conns := newConnsListener(l, n.cfg.MaxNewConns, firstRequestHold)
		l = conns
		connState = conns.ConnState
	}
	ln := &onceCloseListener{Listener: l}
	httpSrv := &http.Server{
		Handler:           n.api.Handler(),
		ConnContext:       n.api.ConnContext,
		ConnState:         connState,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	// The loops outlive ctx: during a graceful stop the node keeps delivering until its streams
	// were told to go. They end when shutdown is over, or when one of them fails.
	loops, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()
	readiness, stopReadiness := context.WithCancel(loops)
	defer stopReadiness()
	g, gctx := errgroup.WithContext(loops)
	g.Go(func() error { return n.registry.Run(gctx) })
	g.Go(func() error { return n.hub.Run(gctx) })
	g.Go(func() error { return n.calls.Serve(gctx, n.streams.NodeHandler()) })
	g.Go(func() error { return n.streams.Run(gctx) })
	g.Go(func() error { return n.leases.Run(gctx) })
	g.Go(func() error { return n.presence.Run(gctx) })
	g.Go(func() error { return n.heartbeat.Run(gctx) })
	g.Go(func() error { return n.occupancy.Run(gctx) })
	// Streams still open when it stops (a failed loop) get a goroutine each to watch them.
	g.Go(func() error { n.api.WatchClients(gctx); return nil })
	// A burst's heap goes back to the system once it is over.
	trimmer := memory.NewTrimmer()
	trimmer.Held = n.registry.Len // clients leaving free what their streams held
	g.Go(func() error { trimmer.Run(gctx); return nil })
	g.Go(func() error { return watchReadiness(readiness, n.calls, &n.ready, n.log) })
	if n.cfg.PprofAddr != "" {
		g.Go(func() error { return servePprof(gctx, n.cfg.PprofAddr, n.log) })
	}
	if n.worker != nil {
		g.Go(func() error { return n.worker.Run(gctx) })
		g.Go(func() error { return n.webhooks.Run(gctx) })
	}
	if n.cfg.Demo {
		g.Go(func() error {
			if err := runDemo(gctx, "http://"+ln.Addr().String(), n.log); err != nil {
				n.log.Warn("demo stopped", "err", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		// Shutdown closes ln itself before it tells the server: either error means a stop.
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		drain := true
		select {
		case <-ctx.Done():
		case <-gctx.Done():
			drain = false // a loop failed: no point in waiting for a load balancer
		}
		stopReadiness()
		n.shutdown(httpSrv, ln, drain)
		stopLoops()
		return nil
	})
	return g.Wait()
}

// shutdown stops the node in order: /readyz fails at once; the node keeps serving for the
// drain delay so that load balancers notice; then it stops accepting, tells its streams to go
// (disconnect, reconnect: true), drains in-flight requests and waits for the streams' last
// notices, within the shutdown timeout.
func (n *apiNode) shutdown(httpSrv *http.Server, ln net.Listener, drain bool) {
	n.ready.Store(false)
	if drain && n.cfg.DrainDelay > 0 {
		n.log.Info("draining: not ready, still serving", "delay", n.cfg.DrainDelay.String())
		time.Sleep(n.cfg.DrainDelay)
	}
	n.log.Info("shutting down", "timeout", n.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	// No new connection once streams are told to reconnect: they must land on another node.
	// Hijacked streams are not the HTTP server's to wait for; Drain does.
	ln.Close()
	n.streams.Stop()
	if err := httpSrv.Shutdown(sctx); err != nil {
		n.log.Warn("shutdown deadline passed; closing remaining connections", "err", err)
		httpSrv.Close()
	}
	if err := n.streams.Drain(sctx); err != nil {
		n.log.Warn("shutdown deadline passed with streams still writing their last notice")
	}
	// Every stream has let go of its channels: those this node was the last to hold are vacated.
	n.occupancy.Close(sctx)
}

// presenceWebhooks hands presence joins and leaves to the tenants' webhooks, off the tracker's
// goroutine (OnChange must return quickly; an emit is a Redis round trip when the tenant has
// an endpoint for it).
func presenceWebhooks(events *webhook.Events, log *slog.Logger) func(presence.Change) {
	return func(c presence.Change) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			emit := events.PresenceLeave
			if c.Join {
				emit = events.PresenceJoin
			}
			if err := emit(ctx, c.TenantID, c.Channel, c.Sub, c.Info); err != nil {
				log.Warn("presence webhook event", "tenant", c.TenantID, "err", err)
			}
		}()
	}
}

// onceCloseListener lets shutdown close the listener before http.Server.Shutdown does.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
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
	// miniredis expires keys only when told that time passed: without this, rate-limit windows
	// and every other TTL would never end.
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mr.FastForward(100 * time.Millisecond)
			}
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, func() { close(stop); rdb.Close(); mr.Close() }, nil
}

// watchReadiness keeps the readiness flag in step with a canary that the node publishes to
// itself: ready means Redis takes writes and this node's subscriber receives them.
func watchReadiness(ctx context.Context, calls *cluster.Calls, ready *atomic.Bool, log *slog.Logger) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		err := calls.Canary(ctx, 2*time.Second)
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
