package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/streamgate/streamgate/internal/jobs"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/telemetry"
)

// metrics is one scrape of a Prometheus text endpoint: series ("name{labels}") → value.
type metrics map[string]float64

func scrape(t testing.TB, url string) metrics {
	t.Helper()
	resp, err := testClient.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: bad line %q", url, line)
		}
		m[line[:i]] = v
	}
	return m
}

// get sums the series of name whose labels include every one of labels ("k=v"), and reports
// whether there was any.
func (m metrics) get(name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for series, v := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		match := true
		for _, l := range labels {
			k, val, _ := strings.Cut(l, "=")
			if !strings.Contains(rest, k+`="`+val+`"`) {
				match = false
				break
			}
		}
		if match {
			sum += v
			found = true
		}
	}
	return sum, found
}

func (m metrics) want(t testing.TB, name string, want float64, labels ...string) {
	t.Helper()
	got, ok := m.get(name, labels...)
	if !ok {
		t.Errorf("no series %s%v", name, labels)
	} else if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func (m metrics) atLeast(t testing.TB, name string, want float64, labels ...string) {
	t.Helper()
	got, ok := m.get(name, labels...)
	if !ok {
		t.Errorf("no series %s%v", name, labels)
	} else if got < want {
		t.Errorf("%s%v = %v, want at least %v", name, labels, got, want)
	}
}

// TestMetrics scrapes /metrics of an api node and of a worker after traffic and checks the
// instruments by name, and that their values follow what happened.
func TestMetrics(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, nil)
	// An idle node has its node-wide gauges, at 0: a dashboard shows 0, not "no data".
	idle := scrape(t, n.URL+"/metrics")
	idle.want(t, "streamgate_node_connections", 0)
	idle.want(t, "streamgate_node_subscriptions", 0)
	a := n.signup(t, "Acme")
	other := n.signup(t, "Other")
	tok := n.token(t, a, "u", []string{"*"}, 0)
	sub := n.openStream(t, tok, "chat.x", "job:j1")
	for i := range 3 {
		n.publish(t, a, "chat.x", i)
	}
	n.do(t, call{method: "POST", path: "/v1/events", auth: a.APIKey, body: batchOf(2, "chat.x")}).want(t, http.StatusAccepted)
	n.publish(t, other, "chat.x", "elsewhere")
	for range 5 {
		decodeMessage(t, sub.next(5*time.Second))
	}
	n.putJob(t, a, "j1", map[string]any{"status": "running"}) // no worker yet: it waits in the stream

	tenant := "tenant=" + a.TenantID
	var m metrics
	waitFor(t, 5*time.Second, "delivered messages to be counted", func() bool {
		m = scrape(t, n.URL+"/metrics")
		v, _ := m.get("streamgate_delivered_total", tenant)
		return v >= 5
	})
	m.want(t, "streamgate_connections", 1, tenant)
	m.want(t, "streamgate_subscriptions", 2, tenant)
	m.want(t, "streamgate_node_connections", 1)
	m.want(t, "streamgate_node_subscriptions", 2)
	m.want(t, "streamgate_published_total", 5, tenant)
	m.want(t, "streamgate_published_total", 1, "tenant="+other.TenantID)
	m.want(t, "streamgate_dropped_total", 0, tenant)
	m.want(t, "streamgate_evicted_total", 0, tenant)
	m.atLeast(t, "streamgate_publish_to_delivery_seconds_count", 5)
	m.atLeast(t, "streamgate_publish_to_delivery_seconds_bucket", 5, "le=+Inf")
	m.want(t, "http_server_request_duration_seconds_count", 4,
		"http_request_method=POST", "http_route=/v1/channels/:channel/events", "http_response_status_code=202")
	m.want(t, "http_server_request_duration_seconds_count", 1,
		"http_request_method=POST", "http_route=/v1/events", "http_response_status_code=202")
	m.want(t, "streamgate_updates_lag", 1)
	m.want(t, "streamgate_updates_pending", 0)
	m.want(t, "streamgate_updates_dead_letters", 0)
	if _, ok := m.get("go_goroutines"); !ok {
		t.Errorf("no Go runtime metrics")
	}

	w := startWorker(t, n.Redis, "metered", "STREAMGATE_WORKER_METRICS_ADDR=127.0.0.1:0")
	if got := jobEvent(t, sub.next(10*time.Second)); got.Status != "running" {
		t.Fatalf("job state %+v, want running", got)
	}
	// The worker counts an update once its script returned, which may be after the stream saw
	// the event the script published.
	workerMetrics := "http://" + logAttr(t, w.logs, "serving metrics", "addr") + "/metrics"
	var wm metrics
	waitFor(t, 5*time.Second, "the applied update to be counted", func() bool {
		wm = scrape(t, workerMetrics)
		v, _ := wm.get("streamgate_worker_applied_total")
		return v >= 1
	})
	wm.want(t, "streamgate_worker_applied_total", 1)
	for _, name := range []string{"streamgate_worker_retried_total", "streamgate_worker_dead_lettered_total", "streamgate_worker_lost_total"} {
		wm.want(t, name, 0)
	}
	wm.want(t, "streamgate_updates_lag", 0)
	wm.want(t, "streamgate_updates_pending", 0)

	sub.Close()
	waitFor(t, 5*time.Second, "the closed stream to leave the gauges", func() bool {
		m = scrape(t, n.URL+"/metrics")
		c, _ := m.get("streamgate_connections", tenant)
		return c == 0
	})
	m.want(t, "streamgate_updates_lag", 0)
	m.atLeast(t, "streamgate_publish_to_delivery_seconds_count", 6) // the job's new state came too
}

// Per-tenant series stop at STREAMGATE_METRICS_TENANTS tenants; the rest are summed as "other".
func TestMetricsTenantLabelsAreBounded(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil, map[string]string{"STREAMGATE_METRICS_TENANTS": "2"})
	counts := []int{3, 2, 1, 1}
	var ids []string
	for i, c := range counts {
		acct := n.signup(t, fmt.Sprintf("T%d", i))
		ids = append(ids, acct.TenantID)
		tok := n.token(t, acct, "u", []string{"*"}, 0)
		for range c {
			n.openStream(t, tok, "x")
		}
	}
	m := scrape(t, n.URL+"/metrics")
	m.want(t, "streamgate_connections", 3, "tenant="+ids[0])
	m.want(t, "streamgate_connections", 2, "tenant="+ids[1])
	m.want(t, "streamgate_connections", 2, "tenant=other")
	for _, id := range ids[2:] {
		if _, ok := m.get("streamgate_connections", "tenant="+id); ok {
			t.Errorf("tenant %s outside the top 2 has its own series", id)
		}
	}
	m.want(t, "streamgate_node_connections", 7)
}

// logAttr waits for a log line with msg and returns its attribute key.
func logAttr(t testing.TB, logs *logSink, msg, key string) string {
	t.Helper()
	var val string
	waitFor(t, 5*time.Second, "log line "+msg, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
				val, _ = rec[key].(string)
				return val != ""
			}
		}
		return false
	})
	return val
}

// spanRecorder is a tracer provider whose spans are kept in memory, shaped like a node's.
func spanRecorder(t testing.TB) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(nodeSampler(t)))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

func findSpan(spans tracetest.SpanStubs, name string, parent trace.SpanID) (tracetest.SpanStub, bool) {
	for _, s := range spans {
		if s.Name == name && (!parent.IsValid() || s.Parent.SpanID() == parent) {
			return s, true
		}
	}
	return tracetest.SpanStub{}, false
}

// A caller's trace context, as its own tracing would send it.
const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

// TestTraceThroughWorker follows one trace from PUT /v1/jobs/{id}, which continues the caller's
// traceparent, into the update stream entry, to the worker's "apply update" span and the Redis
// call of the apply script that publishes the new state — all kept by an in-memory exporter,
// the api booted through run and a worker in this process sharing it.
func TestTraceThroughWorker(t *testing.T) {
	t.Parallel()
	tp, exp := spanRecorder(t)
	rs := redistest.Start(t)
	n := startNodeContext(context.WithValue(context.Background(), telemetry.ProviderKey{}, tp), t, rs, nil)

	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { rdb.Close() })
	if err := telemetry.InstrumentRedis(rdb, tp); err != nil {
		t.Fatal(err)
	}
	w := jobs.NewWorker(rdb, jobs.WorkerConfig{Consumer: "traced", Tracer: tp}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped })

	a := n.signup(t, "Acme")
	sub := n.openStream(t, n.token(t, a, "u", []string{"job:*"}, 0), "job:j1")
	n.do(t, call{method: "PUT", path: "/v1/jobs/j1", auth: a.APIKey, body: map[string]any{"status": "running"},
		header: map[string]string{"traceparent": "00-" + callerTrace + "-" + callerSpan + "-01"}}).want(t, http.StatusAccepted)
	if got := jobEvent(t, sub.next(10*time.Second)); got.Status != "running" {
		t.Fatalf("job state %+v, want running", got)
	}

	var spans tracetest.SpanStubs
	var server, apply, publish tracetest.SpanStub
	waitFor(t, 5*time.Second, "the spans of the request and the worker", func() bool {
		spans = exp.GetSpans()
		var ok1, ok2, ok3 bool
		server, ok1 = findSpan(spans, "PUT /v1/jobs/:id", trace.SpanID{})
		if ok1 {
			apply, ok2 = findSpan(spans, "apply update", server.SpanContext.SpanID())
		}
		if ok2 {
			publish, ok3 = findSpan(spans, "evalsha", apply.SpanContext.SpanID())
		}
		return ok1 && ok2 && ok3
	})
	if got := server.SpanContext.TraceID().String(); got != callerTrace {
		t.Errorf("request span in trace %s, want the caller's %s", got, callerTrace)
	}
	if got := server.Parent.SpanID().String(); got != callerSpan || !server.Parent.IsRemote() {
		t.Errorf("request span's parent %s, want the caller's span %s", got, callerSpan)
	}
	if server.SpanKind != trace.SpanKindServer {
		t.Errorf("request span kind %v", server.SpanKind)
	}
	for _, s := range []tracetest.SpanStub{apply, publish} {
		if s.SpanContext.TraceID() != server.SpanContext.TraceID() {
			t.Errorf("span %q in trace %s, want %s", s.Name, s.SpanContext.TraceID(), server.SpanContext.TraceID())
		}
	}
	if _, ok := findSpan(spans, "evalsha", server.SpanContext.SpanID()); !ok {
		t.Errorf("the append script's Redis call is not a child of the request span")
	}
	attrs := map[string]string{}
	for _, kv := range apply.Attributes {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["streamgate.tenant"] != a.TenantID || attrs["streamgate.update.result"] != "applied" {
		t.Errorf("apply update attributes %v", attrs)
	}
	for _, kv := range publish.Attributes {
		if kv.Key == "db.statement" {
			t.Errorf("a Redis span records the command's arguments: %s", kv.Value.String())
		}
	}
	// The request's log line carries the trace.
	if logs := n.logs.String(); !strings.Contains(logs, `"trace_id":"`+callerTrace+`"`) {
		t.Errorf("no log line carries trace_id %s", callerTrace)
	}
}

// otlpReceiver takes OTLP/HTTP trace exports, as a collector would.
type otlpReceiver struct {
	URL   string
	mu    sync.Mutex
	spans []*tracepb.Span
}

func startOTLPReceiver(t testing.TB) *otlpReceiver {
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var msg coltracepb.ExportTraceServiceRequest
		if err != nil || req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &msg) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *otlpReceiver) find(name string, parent []byte) *tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if s.Name == name && string(s.ParentSpanId) == string(parent) {
			return s
		}
	}
	return nil
}

// TestTraceThroughWorkerProcess: a cmd/worker process, told by the standard OTEL_* variables to
// export over OTLP, continues the api's trace from the update stream entry.
func TestTraceThroughWorkerProcess(t *testing.T) {
	t.Parallel()
	tp, exp := spanRecorder(t)
	rs := redistest.Start(t)
	n := startNodeContext(context.WithValue(context.Background(), telemetry.ProviderKey{}, tp), t, rs, nil)
	collector := startOTLPReceiver(t)
	startWorker(t, rs, "exporting", "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_BSP_SCHEDULE_DELAY=50")

	a := n.signup(t, "Acme")
	sub := n.openStream(t, n.token(t, a, "u", []string{"job:*"}, 0), "job:j1")
	n.putJob(t, a, "j1", map[string]any{"progress": 10})
	jobEvent(t, sub.next(10*time.Second))

	var server tracetest.SpanStub
	waitFor(t, 5*time.Second, "the request span", func() bool {
		var ok bool
		server, ok = findSpan(exp.GetSpans(), "PUT /v1/jobs/:id", trace.SpanID{})
		return ok
	})
	serverID := server.SpanContext.SpanID()
	var apply *tracepb.Span
	waitFor(t, 10*time.Second, "the worker's apply update span over OTLP", func() bool {
		apply = collector.find("apply update", serverID[:])
		return apply != nil
	})
	if got, want := hex.EncodeToString(apply.TraceId), server.SpanContext.TraceID().String(); got != want {
		t.Errorf("worker span in trace %s, want the request's %s", got, want)
	}
	waitFor(t, 10*time.Second, "the apply script's Redis span over OTLP", func() bool {
		return collector.find("evalsha", apply.SpanId) != nil
	})
}

// nodeSampler is the sampler a node uses with no OTEL_TRACES_SAMPLER set.
func nodeSampler(t testing.TB) sdktrace.Sampler {
	s, err := telemetry.Sampler(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return s
}
