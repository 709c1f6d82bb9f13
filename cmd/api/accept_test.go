package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// The node holds at most max connections on their first request: further connections wait
// to be accepted until one of those is answered, taken over or closed, while requests on
// kept-alive connections go through.
func TestConnectionsOnTheirFirstRequestAreBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "done")
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nhijacked")
		// Held open, as a stream is, until the test ends.
		t.Cleanup(func() { c.Close() })
	})
	ln, dial := serveBounded(t, 2, time.Hour, mux)

	send := func(c net.Conn, path string) {
		t.Helper()
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: node\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	// answer reads one response within wait: its body, or the read's error.
	answer := func(c net.Conn, br *bufio.Reader, wait time.Duration) (string, error) {
		c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	mustAnswer := func(c net.Conn, br *bufio.Reader, want string) {
		t.Helper()
		if got, err := answer(c, br, 10*time.Second); err != nil || got != want {
			t.Fatalf("answer %q, %v; want %q", got, err, want)
		}
	}

	// A kept-alive connection, and one taken over: neither holds a place.
	keep, keepR := dial()
	send(keep, "/ok")
	mustAnswer(keep, keepR, "ok")
	taken, takenR := dial()
	send(taken, "/hijack")
	mustAnswer(taken, takenR, "hijacked")

	// Two connections on their first request fill the places.
	a, aR := dial()
	send(a, "/block")
	b, bR := dial()
	send(b, "/block")
	waitFor(t, 10*time.Second, "both to be accepted", func() bool { return len(ln.slots) == 2 })

	c, cR := dial() // the kernel completes the handshake; the node does not accept it yet
	send(c, "/ok")
	if got, err := answer(c, cR, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a third new connection was answered (%q, %v) while two held both places", got, err)
	}
	// The kept-alive connection is not held back.
	send(keep, "/ok")
	mustAnswer(keep, keepR, "ok")

	close(release)
	mustAnswer(a, aR, "done")
	mustAnswer(b, bR, "done")
	mustAnswer(c, cR, "ok")
}

// A connection that stalls its first request (a body announced and never sent, to a handler
// that does not read it) gives its place back after the hold: it cannot keep the node from
// accepting.
func TestAStalledFirstRequestGivesItsPlaceBack(t *testing.T) {
	t.Parallel()
	ln, dial := serveBounded(t, 1, 200*time.Millisecond, http.NewServeMux())
	stalled, _ := dial()
	if _, err := io.WriteString(stalled, "POST /ok HTTP/1.1\r\nHost: node\r\nContent-Length: 100\r\n\r\nx"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the stalled connection to be accepted", func() bool {
		ln.mu.Lock()
		defer ln.mu.Unlock()
		return len(ln.fresh) == 1
	})
	c, cR := dial()
	if _, err := io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: node\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(cR, nil)
	if err != nil {
		t.Fatalf("a new connection was not answered while a stalled one held the only place: %v", err)
	}
	resp.Body.Close()
}

// serveBounded serves mux, with /ok added, behind a connsListener of max places held for hold
// at most, until the test ends. dial opens a connection to it, with a 10 s deadline.
func serveBounded(t *testing.T, max int, hold time.Duration, mux *http.ServeMux) (*connsListener, func() (net.Conn, *bufio.Reader)) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newConnsListener(inner, max, hold)
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{Handler: mux, ConnState: ln.ConnState, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln, func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.DialTimeout("tcp", inner.Addr().String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
}
