package sseclient

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func streamOf(body string) *Stream {
	return NewStream(&http.Response{Body: io.NopCloser(strings.NewReader(body))})
}

// TestNextParsesLikeEventSource feeds the parser the cases the SSE specification describes and
// that the server writes: ids, named events, multi-line data, comments, retry, CRLF line ends.
func TestNextParsesLikeEventSource(t *testing.T) {
	t.Parallel()
	s := streamOf("retry: 2000\n\n" +
		"id: c:1\nevent: connected\ndata: {\"a\":1}\n\n" +
		": ping\n\n" +
		"data: first\ndata: second\n\n" +
		"id: c:2\r\nevent: job\r\ndata:no-space\r\n\r\n" +
		"event: lagging\ndata: {}\n\n")
	want := []Event{
		{Retry: 2000},
		{ID: "c:1", Event: "connected", Data: `{"a":1}`},
		{Comment: "ping"},
		{Event: "message", Data: "first\nsecond"},
		{ID: "c:2", Event: "job", Data: "no-space"},
		{Event: "lagging", Data: "{}"},
	}
	for i, w := range want {
		got, err := s.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got != w {
			t.Errorf("event %d = %+v, want %+v", i, got, w)
		}
	}
	if _, err := s.Next(); err != io.EOF {
		t.Errorf("after the last event: %v, want io.EOF", err)
	}
	if s.LastID() != "c:2" {
		t.Errorf("LastID %q, want c:2 (what EventSource would send back)", s.LastID())
	}
}

func TestNextEventSkipsCommentsAndRetry(t *testing.T) {
	t.Parallel()
	s := streamOf("retry: 10\n\n: ping\n\nevent: message\ndata: x\n\n")
	ev, err := s.NextEvent()
	if err != nil || ev.Event != "message" || ev.Data != "x" {
		t.Fatalf("NextEvent = %+v, %v", ev, err)
	}
}

func TestBadRetryIsAnError(t *testing.T) {
	t.Parallel()
	if _, err := streamOf("retry: soon\n\n").Next(); err == nil {
		t.Fatal("a non-numeric retry was accepted")
	}
}
