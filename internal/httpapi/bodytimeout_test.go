package httpapi

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

const testBodyTimeout = 300 * time.Millisecond

// publishHead is a publish's request line and headers, announcing a body of size bytes.
func publishHead(a account, size int) string {
	return "POST /v1/channels/orders/events HTTP/1.1\r\nHost: streamgate\r\nAuthorization: Bearer " + a.APIKey +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
}

// TestBodyTimeout: a client that sends a publish's headers and then stalls its body gets the
// contract's 408 once the body timeout has passed, its connection is closed (it holds nothing
// of the server's), and nothing is published.
func TestBodyTimeout(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.BodyTimeout = testBodyTimeout })
	a := s.signup(t, "Acme")
	body := `{"event":"created","data":{"id":1}}`
	c, r := s.rawConn(t)
	// Half the body, then nothing.
	if _, err := io.WriteString(c, publishHead(a, len(body))+body[:10]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	reply{Status: resp.StatusCode, Header: resp.Header, Body: b}.want(t, http.StatusRequestTimeout, CodeInvalid)
	if waited := time.Since(start); waited < testBodyTimeout/2 {
		t.Errorf("answered after %v, before the body timeout of %v", waited, testBodyTimeout)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the 408 the connection gave %v, want it closed (EOF)", err)
	}
	if n, total := s.published(t, a.TenantID, "orders"); n != 0 || total != 0 {
		t.Errorf("a stalled publish stored %d events (count %d), want none", n, total)
	}
}

// TestBodyTimeoutBoundsOnlyUploads: the body timeout bounds the upload, not the request. While
// a handler runs, net/http reads the connection in the background to see the client leave; were
// a deadline left on that read, it would time out and cancel the request's context. So a handler
// that outlasts the timeout once the body is in, or that serves a request without a body (a
// stream's), keeps its context.
func TestBodyTimeoutBoundsOnlyUploads(t *testing.T) {
	srv := &Server{cfg: Config{BodyTimeout: testBodyTimeout}}
	r := gin.New()
	r.Use(srv.bodyDeadline())
	r.Any("/", func(c *gin.Context) {
		if _, err := io.ReadAll(c.Request.Body); err != nil {
			c.String(http.StatusBadRequest, "body: %v", err)
			return
		}
		select {
		case <-c.Request.Context().Done():
			c.String(http.StatusOK, "cancelled")
		case <-time.After(3 * testBodyTimeout):
			c.String(http.StatusOK, "ok")
		}
	})
	ts := httptest.NewServer(r)
	defer ts.Close()
	client := &http.Client{Timeout: callTimeout}
	for _, method := range []string{"POST", "GET"} {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader(`{"data":1}`)
		}
		req, _ := http.NewRequest(method, ts.URL, body)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Errorf("%s: the handler saw %q past the body timeout, want its context intact", method, b)
		}
	}
}
