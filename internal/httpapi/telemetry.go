package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamgate/streamgate/internal/telemetry"
)

// instruments are the edge's own metrics, with what requests label them with, kept for the
// label values in use: a request reuses its route's and its tenant's instead of building them.
type instruments struct {
	duration  metric.Float64Histogram
	published metric.Int64Counter

	routeSets  *boundedCache[routeLabels, metric.MeasurementOption]
	tenantSets *boundedCache[string, metric.MeasurementOption]
	spanNames  *boundedCache[routeLabels, string] // status left zero
}

// routeLabels are the labels of a request's duration on a route.
type routeLabels struct {
	method, route string
	status        int
}

// boundedCache holds up to maxCached values, each built once from its key. The keys in use
// are few (routes, statuses, active tenants), but they come from requests: past the bound the
// cache starts afresh rather than grow.
type boundedCache[K comparable, V any] struct {
	m sync.Map // K → V
	n atomic.Int64
}

const maxCached = 4096

// get returns the value of k, building it with build when the cache has none.
func (c *boundedCache[K, V]) get(k K, build func(K) V) V {
	if v, ok := c.m.Load(k); ok {
		return v.(V)
	}
	if c.n.Add(1) > maxCached {
		c.m.Clear()
		c.n.Store(1)
	}
	v, _ := c.m.LoadOrStore(k, build(k))
	return v.(V)
}

func newInstruments(m metric.Meter, log *slog.Logger) instruments {
	in := instruments{
		routeSets:  &boundedCache[routeLabels, metric.MeasurementOption]{},
		tenantSets: &boundedCache[string, metric.MeasurementOption]{},
		spanNames:  &boundedCache[routeLabels, string]{},
	}
	var err error
	// Instruments come from a valid name and options, so creation cannot fail in practice;
	// should it, the SDK still hands back a working no-op instrument.
	in.duration, err = m.Float64Histogram(telemetry.MetricRequestDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP requests; for streams, how long they were open."),
		metric.WithExplicitBucketBoundaries(telemetry.LatencyBuckets...))
	if err != nil {
		log.Warn("create instrument", "name", telemetry.MetricRequestDuration, "err", err)
	}
	in.published, err = m.Int64Counter(telemetry.MetricPublished, metric.WithUnit("{event}"),
		metric.WithDescription("Events published over REST and made durable, per tenant."))
	if err != nil {
		log.Warn("create instrument", "name", telemetry.MetricPublished, "err", err)
	}
	return in
}

// countPublished adds n accepted events of tenantID to the publish counter.
func (s *Server) countPublished(ctx context.Context, tenantID string, n int) {
	s.instruments.published.Add(ctx, int64(n), s.instruments.tenantSets.get(tenantID, tenantSet))
}

func tenantSet(tenantID string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("tenant", tenantID)))
}

// serverSpan is the option of every request's span, made once.
var serverSpan = trace.WithSpanKind(trace.SpanKindServer)

// headerCarrier is propagation.HeaderCarrier for the request's headers without its cost: the
// propagators ask for lower-case names (traceparent, tracestate, baggage), which http.Header
// would canonicalize, allocating, on every request.
type headerCarrier http.Header

func (h headerCarrier) Get(key string) string {
	if v := h[canonicalKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h headerCarrier) Values(key string) []string { return h[canonicalKey(key)] }

func (h headerCarrier) Set(key, value string) { http.Header(h).Set(key, value) }

func (h headerCarrier) Keys() []string { return propagation.HeaderCarrier(h).Keys() }

// canonicalKey is http.CanonicalHeaderKey, without allocating for the propagators' names.
func canonicalKey(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return http.CanonicalHeaderKey(key)
}

// observe traces every request as a server span (continuing the trace of an incoming
// traceparent), records its duration by method, route and status, and logs it at debug level
// with the trace's ids. Handlers find the span in the request's context, so the Redis commands
// they make join the trace.
func (s *Server) observe() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		r := c.Request
		route := c.FullPath()
		name := s.spanName(r.Method, route)
		ctx := telemetry.Propagator.Extract(r.Context(), headerCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, name, serverSpan)
		defer span.End()
		recording := span.IsRecording()
		if recording {
			span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route),
				attribute.String("network.protocol.version", protoVersion(r)), attribute.String("client.address", c.ClientIP()))
		}
		c.Request = r.WithContext(ctx)

		c.Next()

		status := c.Writer.Status()
		if recording {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status >= http.StatusInternalServerError {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		}
		elapsed := time.Since(start)
		s.instruments.duration.Record(ctx, elapsed.Seconds(), s.durationSet(r.Method, route, status))
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.DebugContext(ctx, "request", "method", r.Method, "route", route, "status", status,
				"duration_ms", float64(elapsed.Microseconds())/1000)
		}
	}
}

// durationSet is the attribute set of a request's duration. Only requests that matched a route
// share theirs: the method of any other is whatever the client sent.
func (s *Server) durationSet(method, route string, status int) metric.MeasurementOption {
	l := routeLabels{method, route, status}
	if route == "" {
		return l.set()
	}
	return s.instruments.routeSets.get(l, routeLabels.set)
}

func (l routeLabels) set() metric.MeasurementOption {
	attrs := []attribute.KeyValue{attribute.String("http.request.method", l.method), attribute.Int("http.response.status_code", l.status)}
	if l.route != "" {
		attrs = append(attrs, attribute.String("http.route", l.route))
	}
	return metric.WithAttributeSet(attribute.NewSet(attrs...))
}

// spanName is "<method> <route>", or the method alone for a request that matched no route.
func (s *Server) spanName(method, route string) string {
	if route == "" {
		return method
	}
	return s.instruments.spanNames.get(routeLabels{method: method, route: route}, func(l routeLabels) string { return l.method + " " + l.route })
}

func protoVersion(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return "2"
	case 3:
		return "3"
	}
	return "1.1"
}
