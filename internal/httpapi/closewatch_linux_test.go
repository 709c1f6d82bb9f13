package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	streamgate "github.com/streamgate/streamgate"
)

// These tests need the node's close watcher (epoll): elsewhere streams fall back to a goroutine
// each, which the other tests cover.

// rawStream is a stream read over a bare connection: no goroutine on the client's side, so that
// a test can count the server's, and a client that can misbehave.
type rawStream struct {
	conn      net.Conn
	br        *bufio.Reader
	SessionID string
}

// openRawStream sends a stream request on a connection of its own and reads up to the connected
// event. The connection is closed when the test ends.
func (s *testServer) openRawStream(t testing.TB, token string, channels ...string) *rawStream {
	t.Helper()
	conn, br := s.rawConn(t)
	q := "token=" + token
	for _, ch := range channels {
		q += "&channel=" + ch
	}
	if _, err := fmt.Fprintf(conn, "GET /v1/stream?%s HTTP/1.1\r\nHost: x\r\n\r\n", q); err != nil {
		t.Fatal(err)
	}
	st := &rawStream{conn: conn, br: br}
	data := st.readData(t, streamgate.EventConnected)
	var connected struct {
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal([]byte(data), &connected); err != nil || connected.SessionID == "" {
		t.Fatalf("connected data %q: %v", data, err)
	}
	st.SessionID = connected.SessionID
	return st
}

// readData reads until an event named event and returns its data, within callTimeout.
func (st *rawStream) readData(t testing.TB, event string) string {
	t.Helper()
	_ = st.conn.SetReadDeadline(time.Now().Add(callTimeout))
	seen := false
	for {
		line, err := st.br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before a %s event: %v", event, err)
		}
		line = strings.TrimPrefix(strings.TrimSuffix(line, "\n"), "\r")
		switch {
		case line == "event: "+event:
			seen = true
		case seen && strings.HasPrefix(line, "data: "):
			return strings.TrimPrefix(line, "data: ")
		}
	}
}

// watchedConns returns the connections the server's close watcher holds.
func (s *testServer) watchedConns() []*sockConn {
	w := &s.api.clients
	w.mu.Lock()
	defer w.mu.Unlock()
	conns := make([]*sockConn, 0, len(w.watched))
	for _, c := range w.watched {
		conns = append(conns, c.sock)
	}
	return conns
}

// onlyWatched returns the one connection the close watcher holds, failing otherwise: a stream
// that fell back to a goroutine would not test the watcher.
func (s *testServer) onlyWatched(t testing.TB) *sockConn {
	t.Helper()
	conns := s.watchedConns()
	if len(conns) != 1 {
		t.Fatalf("the close watcher holds %d connections, want 1", len(conns))
	}
	return conns[0]
}

// descriptor returns c's descriptor number, or -1 once c is closed.
func descriptor(c syscall.Conn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if raw.Control(func(d uintptr) { fd = int(d) }) != nil {
		return -1
	}
	return fd
}

// connections is the tenant's open streams, as its usage reports them.
func (s *testServer) connections(t testing.TB, a account) int {
	t.Helper()
	var tn struct {
		Usage struct{ Connections int } `json:"usage"`
	}
	s.do(t, call{method: "GET", path: "/v1/tenant", auth: a.APIKey}).want(t, 200).decode(t, &tn)
	return tn.Usage.Connections
}

func TestClientLeavingEndsItsStream(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	tok := s.token(t, a, "u", "*")
	st := s.openRawStream(t, tok, "c")
	s.onlyWatched(t)
	if n := s.connections(t, a); n != 1 {
		t.Fatalf("%d connections while the client is connected, want 1", n)
	}
	st.conn.Close()
	eventually(t, callTimeout, "the session to leave", func() bool { return s.connections(t, a) == 0 })
	if n := len(s.watchedConns()); n != 0 {
		t.Errorf("the close watcher still holds %d connections", n)
	}
}

// A client that sends bytes after its stream request (EventSource never does) is closed, and its
// session leaves the node.
func TestClientThatSendsIsClosed(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	tok := s.token(t, a, "u", "*")
	st := s.openRawStream(t, tok, "c")
	s.onlyWatched(t)
	if _, err := st.conn.Write([]byte("unexpected bytes from the client")); err != nil {
		t.Fatal(err)
	}
	// EOF, or a reset (the server closed with our bytes unread): either way closed; only a
	// timeout means the server kept it.
	_ = st.conn.SetReadDeadline(time.Now().Add(callTimeout))
	var ne net.Error
	if _, err := io.Copy(io.Discard, st.br); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection: %v", err)
	}
	eventually(t, callTimeout, "the session to leave", func() bool { return s.connections(t, a) == 0 })
}

// A stream's connection closes and its descriptor goes to the next stream's: nothing of the old
// registration reaches the new stream, which keeps receiving and is still noticed leaving. The
// old stream ends either way: its client leaves, or the node ends it (an eviction) and its
// client, still connected, leaves only once the new stream holds the descriptor. Not parallel:
// with no other test opening descriptors, the next connection takes the freed one.
func TestReusedDescriptorKeepsItsOwnStream(t *testing.T) {
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	tok := s.token(t, a, "u", "*")
	reused := 0
	for round := range 20 {
		evict := round%2 == 1
		old := s.openRawStream(t, tok, "c")
		oldConn := s.onlyWatched(t)
		oldFD := descriptor(oldConn)
		if evict {
			s.do(t, call{method: "DELETE", path: "/admin/api/sessions/" + old.SessionID, auth: testAdminToken}).want(t, 204)
		} else {
			old.conn.Close()
		}
		eventually(t, callTimeout, "the first stream's connection to close", func() bool { return descriptor(oldConn) < 0 })

		st := s.openRawStream(t, tok, "c")
		if descriptor(s.onlyWatched(t)) == oldFD {
			reused++
		}
		old.conn.Close()
		data := fmt.Sprintf(`{"round":%d}`, round)
		s.do(t, call{method: "POST", path: "/v1/channels/c/events", auth: a.APIKey, body: `{"data":` + data + `}`}).want(t, 202)
		if got := st.readData(t, "message"); !strings.Contains(got, data) {
			t.Fatalf("round %d: message %s, want its data %s", round, got, data)
		}
		st.conn.Close()
		eventually(t, callTimeout, "the second stream to end", func() bool { return s.connections(t, a) == 0 })
	}
	t.Logf("the descriptor was reused in %d of 20 rounds", reused)
	if reused == 0 {
		t.Fatal("no stream's connection took the descriptor of the one before: the test proved nothing")
	}
}

// An idle stream costs no goroutine: its writer runs only while there is something to write,
// and its client's departure is watched by the node's one watcher. Not parallel: it counts the
// process's goroutines.
func TestIdleStreamsCostNoGoroutine(t *testing.T) {
	const streams = 200
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	tok := s.token(t, a, "u", "*")
	s.openRawStream(t, tok, "c") // the node's first stream starts what all streams share
	before := runtime.NumGoroutine()
	for range streams {
		s.openRawStream(t, tok, "c")
	}
	// The requests' own goroutines end once their connections are taken over.
	var grew int
	deadline := time.Now().Add(callTimeout)
	for {
		grew = runtime.NumGoroutine() - before
		if grew < streams/10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d streams, %d more goroutines", streams, grew)
	if grew >= streams/10 {
		t.Errorf("%d idle streams took %d more goroutines, want fewer than %d", streams, grew, streams/10)
	}
	if n := len(s.watchedConns()); n != streams+1 {
		t.Errorf("the close watcher holds %d connections, want %d", n, streams+1)
	}
}

// Streams the close watcher still watches when it stops are handed a goroutine each: their
// clients leaving is still noticed.
func TestStoppedCloseWatcherHandsItsStreamsOn(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)

	clients := &closeWatcher{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	stop := startClientWatch(t, clients)
	gone := make(chan struct{})
	if _, ok := clients.watch(server, func() { close(gone) }).(*sockConn); !ok {
		t.Fatal("the close watcher did not take the connection")
	}
	stop()
	client.Close()
	select {
	case <-gone:
	case <-time.After(callTimeout):
		t.Fatal("the client's departure went unnoticed once the close watcher stopped")
	}
}

// A stream takes its socket without hijacking the connection: net/http closes its own side
// (StateClosed, never StateHijacked), which returns its 8 KiB of buffers to its pools for the
// next connection, and the stream goes on through the descriptor the close watcher holds.
func TestStreamTakesItsSocketWithoutHijacking(t *testing.T) {
	s := newTestServer(t, nil)
	a := s.signup(t, "Acme")
	st := s.openRawStream(t, s.token(t, a, "u1", "orders"), "orders")
	client := st.conn.LocalAddr()
	eventually(t, callTimeout, "net/http to close its side of the stream's connection", func() bool {
		return slices.Contains(s.states.of(client), http.StateClosed)
	})
	if states := s.states.of(client); slices.Contains(states, http.StateHijacked) {
		t.Fatalf("the stream's connection went through %v: hijacked", states)
	}
	s.onlyWatched(t)
	s.do(t, call{method: "POST", path: "/v1/channels/orders/events", auth: a.APIKey, body: `{"event":"created","data":{"id":7}}`}).want(t, http.StatusAccepted)
	if data := st.readData(t, "message"); !strings.Contains(data, `"id":7`) {
		t.Fatalf("message %s, want the event published", data)
	}
}
