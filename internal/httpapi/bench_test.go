package httpapi

import (
	"bytes"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/tenant"
)

// BenchmarkPublish is one POST /v1/channels/{channel}/events through the node's gin engine,
// middleware and all, on a private Redis: the API key check (cached), the body, the rate limit,
// the publish script and the 202. The request and response are reused, so what is counted is the
// node's own work per publish.
func BenchmarkPublish(b *testing.B) {
	benchPublish(b, "/v1/channels/chat.room/events", `{"event":"chat.message","data":{"text":"hello, world","user":"u-42"}}`)
}

// BenchmarkPublishBatch is one POST /v1/events of ten events on two channels.
func BenchmarkPublishBatch(b *testing.B) {
	ev := []string{}
	for i := range 10 {
		ev = append(ev, `{"channel":"chat.room-`+string(rune('a'+i%2))+`","event":"chat.message","data":{"text":"hello, world","user":"u-42"}}`)
	}
	benchPublish(b, "/v1/events", `{"events":[`+strings.Join(ev, ",")+`]}`)
}

func benchPublish(b *testing.B, path, body string) {
	s := newTestServer(b, nil)
	a := s.signup(b, "Bench")
	most := 10_000_000 // the limit is counted, and never reached
	if _, err := s.tenants.Update(b.Context(), a.TenantID, tenant.LimitsPatch{PublishPerSecond: &most}, nil); err != nil {
		b.Fatal(err)
	}
	req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, path, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.APIKey)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(body))
	rb := &rewindBody{}
	req.Body = rb
	w := &benchWriter{header: http.Header{}}
	b.ReportAllocs()
	defer redistest.ReportCPU(b, s.rdb)()
	defer reportProcessCPU(b)()
	for b.Loop() {
		rb.Reset(body)
		w.reset()
		s.handler.ServeHTTP(w, req)
		if w.status != http.StatusAccepted {
			b.Fatalf("status %d: %s", w.status, w.body.Bytes())
		}
	}
}

// reportProcessCPU measures this process's CPU time (the node's, with the benchmark's own small
// share) from now until the returned function is called, and reports it per operation as
// "api-µs/op": steadier than ns/op on a machine shared with other work.
func reportProcessCPU(b *testing.B) (stop func()) {
	used := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := used()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((used()-start).Microseconds())/float64(b.N), "api-µs/op")
		}
	}
}

// rewindBody is a request body that a benchmark reads again on every iteration.
type rewindBody struct{ strings.Reader }

func (*rewindBody) Close() error { return nil }

// benchWriter is a ResponseWriter that a benchmark reuses: it keeps the status and the body.
type benchWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *benchWriter) reset() {
	clear(w.header)
	w.status = 0
	w.body.Reset()
}

func (w *benchWriter) Header() http.Header { return w.header }

func (w *benchWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}
