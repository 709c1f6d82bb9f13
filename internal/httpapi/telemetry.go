package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamgate/streamgate/internal/telemetry"
)

// instruments are the edge's own metrics.
type instruments struct {
	duration  metric.Float64Histogram
	published metric.Int64Counter
}

func newInstruments(m metric.Meter, log *slog.Logger) instruments {
	var in instruments
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
	s.instruments.published.Add(ctx, int64(n), metric.WithAttributeSet(attribute.NewSet(attribute.String("tenant", tenantID))))
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
		name := r.Method
		if route != "" {
			name += " " + route
		}
		ctx := telemetry.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
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
		attrs := []attribute.KeyValue{attribute.String("http.request.method", r.Method), attribute.Int("http.response.status_code", status)}
		if route != "" {
			attrs = append(attrs, attribute.String("http.route", route))
		}
		s.instruments.duration.Record(ctx, elapsed.Seconds(), metric.WithAttributeSet(attribute.NewSet(attrs...)))
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.DebugContext(ctx, "request", "method", r.Method, "route", route, "status", status,
				"duration_ms", float64(elapsed.Microseconds())/1000)
		}
	}
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
