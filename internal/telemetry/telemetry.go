// Package telemetry sets up a process's OpenTelemetry: traces, exported over OTLP only where the
// standard OTEL_* variables ask for it; metrics, served as Prometheus text; and JSON logs that
// carry the trace and span ids of their context. It also holds the instruments that read the
// node's figures (sessions, worker, update backlog, delivery latency) on every scrape.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName names Streamgate's tracers and meters.
const ScopeName = "github.com/streamgate/streamgate"

// Propagator carries trace context across HTTP requests and through the update stream: W3C
// traceparent and tracestate, and baggage.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{})

// Telemetry is one process's tracer and meter providers and its Prometheus handler. Build it
// with Setup and call Shutdown when the process stops.
type Telemetry struct {
	// Tracer makes the spans. Where nothing exports them it is a no-op provider, which still
	// passes an incoming trace context on (into logs and update stream entries).
	Tracer trace.TracerProvider
	// Tracing reports whether spans are recorded and exported.
	Tracing bool
	// Meter makes the instruments that Metrics serves.
	Meter metric.MeterProvider
	// Metrics serves every instrument, with Go runtime and process figures, as Prometheus text.
	Metrics http.Handler

	shutdown []func(context.Context) error
}

// ProviderKey is the context key of a *sdktrace.TracerProvider that Setup uses instead of what
// the environment says: for tests (an in-memory exporter) and for programs that embed a node.
// Setup does not shut that provider down.
type ProviderKey struct{}

// Setup builds the telemetry of service from the environment read with getenv:
//
//   - Traces go over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
//     set, unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. The protocol is
//     http/protobuf unless OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL says grpc. The exporter reads the
//     other OTEL_EXPORTER_OTLP_* variables (headers, certificates, timeout) itself, from the
//     process environment. OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG choose the sampler.
//     Otherwise no span is recorded.
//   - Metrics are always collected; Metrics serves them.
//
// It returns an error for a variable it cannot honour. The caller must call Shutdown.
func Setup(ctx context.Context, service string, getenv func(string) string) (*Telemetry, error) {
	t := &Telemetry{}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}

	if err := t.setupTracing(ctx, res, getenv); err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	t.Meter = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)
	t.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return t, nil
}

func (t *Telemetry) setupTracing(ctx context.Context, res *resource.Resource, getenv func(string) string) error {
	if tp, ok := ctx.Value(ProviderKey{}).(*sdktrace.TracerProvider); ok && tp != nil {
		t.Tracer, t.Tracing = tp, true
		return nil
	}
	t.Tracer = noop.NewTracerProvider()
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil
	}
	switch exporters := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exporters {
	case "", "otlp":
	case "none":
		return nil
	default:
		return fmt.Errorf("OTEL_TRACES_EXPORTER must be otlp or none, got %q", exporters)
	}
	endpoint, generic := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")), false
	if endpoint == "" {
		endpoint, generic = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")), true
	}
	if endpoint == "" {
		return nil // no destination: the contract says no export
	}
	if _, err := url.Parse(endpoint); err != nil || !strings.Contains(endpoint, "://") {
		return fmt.Errorf("OTLP endpoint must be a URL such as http://collector:4318, got %q", endpoint)
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	// The endpoint is passed on as read here; the exporters read the rest of their variables
	// themselves.
	switch proto := first(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); proto {
	case "", "http/protobuf":
		if generic { // the signal's path goes after the generic endpoint
			endpoint = strings.TrimRight(endpoint, "/") + "/v1/traces"
		}
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	case "grpc":
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(endpoint))
	default:
		return fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, got %q", proto)
	}
	if err != nil {
		return fmt.Errorf("otlp trace exporter: %w", err)
	}
	sampler, err := Sampler(getenv)
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp), // OTEL_BSP_* tune it
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	t.Tracer, t.Tracing = tp, true
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return nil
}

// Shutdown flushes what is buffered (spans waiting for export) and stops the providers Setup
// made, within ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		if err := f(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Tracer returns Streamgate's tracer of tp, or a no-op one for nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(ScopeName)
}

// InstrumentRedis counts the failed commands of rdb (streamgate_redis_errors_total) and, when
// tracing is on, makes every command a client span of the caller's trace. The commands'
// arguments are never recorded: they carry tenants' data and key material.
func (t *Telemetry) InstrumentRedis(rdb redis.UniversalClient) error {
	if err := CountRedisErrors(rdb, Meter(t.Meter)); err != nil {
		return fmt.Errorf("count redis errors: %w", err)
	}
	if !t.Tracing {
		return nil
	}
	return InstrumentRedis(rdb, t.Tracer)
}

// InstrumentRedis makes every command of rdb a client span on tp, without its arguments.
func InstrumentRedis(rdb redis.UniversalClient, tp trace.TracerProvider) error {
	if err := redisotel.InstrumentTracing(rdb,
		redisotel.WithTracerProvider(tp),
		redisotel.WithDBStatement(false),
		redisotel.WithDialFilter(true),
	); err != nil {
		return fmt.Errorf("trace redis commands: %w", err)
	}
	return nil
}

func first(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// Sampler reads OTEL_TRACES_SAMPLER (default parentbased_always_on) and its argument.
// Whatever it is, a client span without a parent is not sampled: Redis commands of background
// loops (heartbeats, polls, canaries) would otherwise each start a trace of their own several
// times a second, while a command made for a request or an update joins that trace.
func Sampler(getenv func(string) string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, got %q", arg)
		}
		return f, nil
	}
	var s sdktrace.Sampler
	switch name := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")); name {
	case "", "parentbased_always_on":
		s = sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "parentbased_always_off":
		s = sdktrace.ParentBased(sdktrace.NeverSample())
	case "always_on":
		s = sdktrace.AlwaysSample()
	case "always_off":
		s = sdktrace.NeverSample()
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		s = sdktrace.TraceIDRatioBased(r)
		if name == "parentbased_traceidratio" {
			s = sdktrace.ParentBased(s)
		}
	default:
		return nil, fmt.Errorf("OTEL_TRACES_SAMPLER %q is not supported (always_on, always_off, traceidratio and their parentbased_ forms are)", name)
	}
	return orphanClientFilter{s}, nil
}

// orphanClientFilter drops client spans that have no parent and asks next about the rest.
type orphanClientFilter struct{ next sdktrace.Sampler }

func (f orphanClientFilter) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	psc := trace.SpanContextFromContext(p.ParentContext)
	if !psc.IsValid() && p.Kind == trace.SpanKindClient {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop, Tracestate: psc.TraceState()}
	}
	return f.next.ShouldSample(p)
}

func (f orphanClientFilter) Description() string {
	return "OrphanClientFilter{" + f.next.Description() + "}"
}
