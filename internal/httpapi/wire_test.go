package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTakeOverWritesAValidChunkedStream checks the HTTP/1.1 path end to end with a real client:
// the head carries the headers set before, batches arrive as chunks, and the client going away
// is noticed, by the node's close watcher and by the goroutine that stands in for it.
func TestTakeOverWritesAValidChunkedStream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		watcher bool
	}{{"close watcher", true}, {"goroutine", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clients := &closeWatcher{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if tc.watcher {
				startClientWatch(t, clients)
			}
			testTakeOver(t, clients, tc.watcher)
		})
	}
}

// startClientWatch runs clients until stop is called or the test ends, and waits until it
// watches.
func startClientWatch(t testing.TB, clients *closeWatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		clients.run(ctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	eventually(t, callTimeout, "the close watcher to start", func() bool {
		clients.mu.Lock()
		defer clients.mu.Unlock()
		return clients.p != nil
	})
	return stop
}

func testTakeOver(t *testing.T, clients *closeWatcher, watched bool) {
	gone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		conn, head, ok := takeOver(w, r, clients, func() { close(gone) })
		if !ok || conn == nil {
			t.Error("takeOver refused an HTTP/1.1 connection")
			return
		}
		if _, sock := conn.(*sockConn); sock != watched {
			t.Errorf("the close watcher took the socket: %v, want %v", sock, watched)
		}
		go func() {
			defer conn.Close()
			out := &connSink{conn: conn, timeout: time.Second, first: head}
			for i := range 3 {
				if err := out.WriteBatch([][]byte{[]byte("id: c:"), []byte{'0' + byte(i)}, []byte("\nevent: message\ndata: {}\n\n")}); err != nil {
					return
				}
			}
			// A batch larger than the copied ones goes out piece by piece.
			if err := out.WriteBatch([][]byte{[]byte("id: c:3\nevent: message\ndata: "), bytes.Repeat([]byte("x"), copyMax), []byte("\n\n")}); err != nil {
				return
			}
			<-gone
		}()
	}))
	defer srv.Close()

	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("headers %v", resp.Header)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	br := bufio.NewReader(resp.Body)
	var got strings.Builder
	for range 16 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString(line)
	}
	want := strings.Repeat("id: c:X\nevent: message\ndata: {}\n\n", 3)
	want = strings.Replace(strings.Replace(strings.Replace(want, "X", "0", 1), "X", "1", 1), "X", "2", 1)
	want += "id: c:3\nevent: message\ndata: " + strings.Repeat("x", copyMax) + "\n\n"
	if got.String() != want {
		t.Errorf("body %q, want %q", got.String(), want)
	}
	resp.Body.Close()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not notice the client going away")
	}
}

func TestHTTPSinkFlushesEachBatch(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	out := &httpSink{w: rec, rc: http.NewResponseController(rec), timeout: time.Second}
	if err := out.WriteBatch([][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if !rec.Flushed || rec.Body.String() != "ab" {
		t.Errorf("flushed %v body %q", rec.Flushed, rec.Body.String())
	}
}

// writesConn records each write it is given, as one string: what reaches the socket in one
// system call.
type writesConn struct {
	net.Conn
	writes []string
}

func (c *writesConn) Write(b []byte) (int, error) {
	c.writes = append(c.writes, string(b))
	return len(b), nil
}

func (c *writesConn) WriteBuffers(v *net.Buffers) (int64, error) {
	var b []byte
	for _, p := range *v {
		b = append(b, p...)
	}
	c.writes = append(c.writes, string(b))
	*v = nil
	return int64(len(b)), nil
}

func (c *writesConn) SetWriteDeadline(time.Time) error { return nil }

// A taken-over stream's response head goes out with its first batch, in the same write, and
// only then: a connect costs one system call less.
func TestConnSinkWritesTheHeadWithTheFirstBatch(t *testing.T) {
	t.Parallel()
	conn := &writesConn{}
	out := &connSink{conn: conn, timeout: time.Second, first: []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")}
	for _, batch := range []string{"retry: 2000\n\n", "data: x\n\n"} {
		if err := out.WriteBatch([][]byte{[]byte(batch)}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nd\r\nretry: 2000\n\n\r\n", "9\r\ndata: x\n\n\r\n"}
	if !slices.Equal(conn.writes, want) {
		t.Errorf("writes %q, want %q", conn.writes, want)
	}
}
