package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/session"
)

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

func setup(t *testing.T, vars map[string]string) *Telemetry {
	t.Helper()
	tel, err := Setup(t.Context(), "test", env(vars))
	if err != nil {
		t.Fatalf("Setup(%v): %v", vars, err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

var remoteParent = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled, Remote: true,
})

// TestNoExportWithoutEndpoint: with no OTLP endpoint nothing is recorded, yet an incoming trace
// context still passes through, so logs and update entries keep the caller's trace.
func TestNoExportWithoutEndpoint(t *testing.T) {
	t.Parallel()
	for _, vars := range []map[string]string{
		{},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"},
	} {
		tel := setup(t, vars)
		if tel.Tracing {
			t.Errorf("%v: tracing on", vars)
		}
		ctx := trace.ContextWithRemoteSpanContext(context.Background(), remoteParent)
		_, span := Tracer(tel.Tracer).Start(ctx, "x")
		if span.IsRecording() || span.SpanContext().TraceID() != remoteParent.TraceID() {
			t.Errorf("%v: span %v recording=%v, want a non-recording span of the caller's trace", vars, span.SpanContext(), span.IsRecording())
		}
		span.End()
	}
}

// TestExportOverOTLP: with OTEL_EXPORTER_OTLP_ENDPOINT set, spans go to <endpoint>/v1/traces
// over OTLP/HTTP; the signal's own endpoint variable is used as it is.
func TestExportOverOTLP(t *testing.T) {
	t.Parallel()
	var paths = make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("Content-Type") == "application/x-protobuf" {
			paths <- r.URL.Path
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		vars map[string]string
		path string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL}, "/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL + "/base/", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "/base/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/collect", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, "/collect"},
	} {
		tel, err := Setup(t.Context(), "test", env(tc.vars))
		if err != nil {
			t.Fatal(err)
		}
		if !tel.Tracing {
			t.Fatalf("%v: tracing off", tc.vars)
		}
		_, span := Tracer(tel.Tracer).Start(context.Background(), "request", trace.WithSpanKind(trace.SpanKindServer))
		span.End()
		if err := tel.Shutdown(context.Background()); err != nil { // flushes
			t.Fatalf("%v: shutdown: %v", tc.vars, err)
		}
		select {
		case got := <-paths:
			if got != tc.path {
				t.Errorf("%v: exported to %s, want %s", tc.vars, got, tc.path)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v: nothing exported", tc.vars)
		}
	}
}

func TestSetupRefusesWhatItCannotHonour(t *testing.T) {
	t.Parallel()
	for _, vars := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "zipkin"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "sometimes"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
	} {
		if _, err := Setup(t.Context(), "test", env(vars)); err == nil {
			t.Errorf("Setup(%v) accepted it", vars)
		}
	}
}

// TestSampler: spans are sampled as OTEL_TRACES_SAMPLER says, except that a client span with
// no parent (a background loop's Redis command) never starts a trace.
func TestSampler(t *testing.T) {
	t.Parallel()
	local := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}, TraceFlags: trace.FlagsSampled}))
	for _, tc := range []struct {
		sampler, arg           string
		root, child, orphanCli bool
	}{
		{"", "", true, true, false},
		{"parentbased_always_on", "", true, true, false},
		{"always_on", "", true, true, false},
		{"always_off", "", false, false, false},
		{"parentbased_always_off", "", false, true, false},
		{"traceidratio", "0", false, false, false},
		{"parentbased_traceidratio", "0", false, true, false},
	} {
		s, err := Sampler(env(map[string]string{"OTEL_TRACES_SAMPLER": tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg}))
		if err != nil {
			t.Fatal(err)
		}
		sampled := func(ctx context.Context, kind trace.SpanKind) bool {
			return s.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: trace.TraceID{7}, Name: "x", Kind: kind}).Decision == sdktrace.RecordAndSample
		}
		if got := sampled(context.Background(), trace.SpanKindServer); got != tc.root {
			t.Errorf("%s: root server span sampled %v, want %v", tc.sampler, got, tc.root)
		}
		if got := sampled(local, trace.SpanKindClient); got != tc.child {
			t.Errorf("%s: client span of a sampled parent sampled %v, want %v", tc.sampler, got, tc.child)
		}
		if got := sampled(context.Background(), trace.SpanKindClient); got != tc.orphanCli {
			t.Errorf("%s: client span without parent sampled %v, want %v", tc.sampler, got, tc.orphanCli)
		}
	}
}

// TestLogsCarryTraceIDs: a record logged with a span's context has its trace and span ids;
// one logged without has neither.
func TestLogsCarryTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := NewLogger(&buf, "debug").With("node", "n1")
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remoteParent)
	log.InfoContext(ctx, "with span", "k", 1)
	log.Info("without span")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log %q", buf.String())
	}
	var with, without map[string]any
	if json.Unmarshal([]byte(lines[0]), &with) != nil || json.Unmarshal([]byte(lines[1]), &without) != nil {
		t.Fatalf("not JSON: %q", buf.String())
	}
	if with["trace_id"] != remoteParent.TraceID().String() || with["span_id"] != remoteParent.SpanID().String() || with["node"] != "n1" {
		t.Errorf("record with a span: %v", with)
	}
	if _, ok := without["trace_id"]; ok {
		t.Errorf("record without a span has a trace id: %v", without)
	}
}

type countingDeliverer struct{ n atomic.Int64 }

func (d *countingDeliverer) Broadcast(string, string, *streamgate.Frame) int { d.n.Add(1); return 1 }

// TestMetricsServed: the instruments reach /metrics under their Prometheus names, with values
// taken from their sources at scrape time.
func TestMetricsServed(t *testing.T) {
	t.Parallel()
	tel := setup(t, nil)
	m := Meter(tel.Meter)
	stats := session.NodeStats{Tenants: map[string]session.TenantStats{"tn_a": {Connections: 2, Subscriptions: 3, Delivered: 7, Dropped: 1, Evicted: 1}}}
	if err := ObserveSessions(m, func() session.NodeStats { return stats }, 20); err != nil {
		t.Fatal(err)
	}
	d := &countingDeliverer{}
	measured, err := MeasureDelivery(m, d)
	if err != nil {
		t.Fatal(err)
	}
	id := func(ago time.Duration) string {
		return strconv.FormatInt(time.Now().Add(-ago).UnixMilli(), 10) + "-1"
	}
	measured.Broadcast("tn_a", "c", &streamgate.Frame{ID: id(2 * time.Second), Message: true})
	measured.Broadcast("tn_a", "c", &streamgate.Frame{ID: id(0), Message: true})
	measured.Broadcast("tn_a", "c", &streamgate.Frame{Body: []byte(": notice\n\n")}) // not a message: not measured
	if d.n.Load() != 3 {
		t.Errorf("delivered %d of 3 frames", d.n.Load())
	}

	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{
		`streamgate_connections{tenant="tn_a"} 2`,
		`streamgate_subscriptions{tenant="tn_a"} 3`,
		`streamgate_delivered_total{tenant="tn_a"} 7`,
		`streamgate_dropped_total{tenant="tn_a"} 1`,
		`streamgate_evicted_total{tenant="tn_a"} 1`,
		`streamgate_publish_to_delivery_seconds_count 2`,
		`streamgate_publish_to_delivery_seconds_bucket{le="2.5"} 2`,
		`streamgate_publish_to_delivery_seconds_bucket{le="1"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestRedisErrorsCounted: failures a Redis client meets are counted by kind from start (0 before
// any), and what is normal work (a missing key, a script not cached yet, a caller that gave up)
// is not.
func TestRedisErrorsCounted(t *testing.T) {
	t.Parallel()
	tel := setup(t, nil)
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1, ReadTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	if err := tel.InstrumentRedis(rdb); err != nil {
		t.Fatal(err)
	}
	scrape := func() string {
		rec := httptest.NewRecorder()
		tel.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	counts := func(timeout, network, server int) []string {
		return []string{
			fmt.Sprintf(`streamgate_redis_errors_total{kind="timeout"} %d`, timeout),
			fmt.Sprintf(`streamgate_redis_errors_total{kind="network"} %d`, network),
			fmt.Sprintf(`streamgate_redis_errors_total{kind="server"} %d`, server),
		}
	}
	expect := func(when string, want []string) {
		t.Helper()
		text := scrape()
		for _, w := range want {
			if !strings.Contains(text, w+"\n") {
				t.Errorf("%s: metrics lack %q", when, w)
			}
		}
	}
	expect("at start", counts(0, 0, 0))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Normal work.
	if err := rdb.Get(ctx, "missing").Err(); err != redis.Nil {
		t.Fatalf("GET missing: %v", err)
	}
	if err := redis.NewScript("return 1").Run(ctx, rdb, nil).Err(); err != nil {
		t.Fatalf("script: %v", err) // EVALSHA answered NOSCRIPT first, then EVAL
	}
	gone, stop := context.WithCancel(ctx)
	stop()
	_ = rdb.Ping(gone).Err()
	expect("after normal work", counts(0, 0, 0))

	// Faults.
	if err := rdb.Do(ctx, "NOSUCHCOMMAND").Err(); err == nil {
		t.Fatal("an unknown command succeeded")
	}
	// Redis stops answering for a second: the command times out.
	if err := rs.Client().Do(ctx, "CLIENT", "PAUSE", "1000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET answered within a 200 ms read timeout while Redis was paused for a second")
	}
	closed := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { closed.Close() })
	if err := tel.InstrumentRedis(closed); err != nil {
		t.Fatal(err)
	}
	if err := closed.Ping(ctx).Err(); err == nil {
		t.Fatal("a ping to a closed port succeeded")
	}
	expect("after the faults", []string{counts(1, 0, 1)[0], counts(1, 0, 1)[2]})
	// The pool dials a few times before it gives up: each failed dial counts, and the command.
	if text := scrape(); strings.Contains(text, `streamgate_redis_errors_total{kind="network"} 0`+"\n") {
		t.Error("the refused connection was not counted")
	}
}
