//go:build unix

package rawconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection: the server's accepted through Listener,
// the client's dialled through Dialer.
func pair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := Listener{ln}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	client, err = Dialer((&net.Dialer{}).DialContext)(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case server = <-accepted:
	case <-ctx.Done():
		t.Fatal("no connection accepted")
	}
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	deadline := time.Now().Add(20 * time.Second)
	server.SetDeadline(deadline)
	client.SetDeadline(deadline)
	return server, client
}

func TestWrapped(t *testing.T) {
	t.Parallel()
	server, client := pair(t)
	for _, c := range []net.Conn{server, client} {
		_, wrapped := c.(*Conn)
		if wrapped != supported {
			t.Fatalf("%T: wrapped %v, want %v on %s", c, wrapped, supported, runtime.GOOS)
		}
		if tc, ok := TCP(c); !ok || tc == nil {
			t.Fatalf("TCP(%T) = %v, %v", c, tc, ok)
		}
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("a pipe was wrapped")
	}
	if _, ok := TCP(a); ok {
		t.Fatal("TCP of a pipe")
	}
}

// Megabytes written at once arrive whole and in order, through a reader slower than the
// writer: both wait on the poller when the socket is empty or full.
func TestReadWriteWhole(t *testing.T) {
	t.Parallel()
	server, client := pair(t)
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7 / 3)
	}
	wrote := make(chan error, 1)
	go func() {
		n, err := client.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		wrote <- err
		client.Close()
	}()
	var got bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := server.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got.Len(), err)
		}
		if got.Len()%(1<<20) < 1000 {
			time.Sleep(time.Millisecond) // let the writer fill the socket
		}
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read %d bytes, not the %d written", got.Len(), len(want))
	}
	if n, err := server.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after EOF: %d, %v", n, err)
	}
}

func TestDeadlinesAndClose(t *testing.T) {
	t.Parallel()
	server, client := pair(t)
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := server.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read past its deadline: %#v, want a *net.OpError for read", err)
	}

	// A writer whose reader does not read stops at the write deadline, having written part.
	// (Nothing at all is written only when the deadline passed before the call began.)
	start := time.Now()
	client.SetWriteDeadline(start.Add(time.Second))
	big := make([]byte, 64<<20)
	n, err := client.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n >= len(big) || n == 0 && time.Since(start) < time.Second {
		t.Fatalf("write into a full socket: %d bytes, %v; want some, then a timeout", n, err)
	}

	if n, err := server.Read(nil); n != 0 || err != nil {
		t.Fatalf("an empty read of an open connection: %d, %v", n, err)
	}
	server.Close()
	if _, err := server.Read(nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("an empty read of a closed connection: %v, want net.ErrClosed", err)
	}
	if _, err := server.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed connection: %v, want net.ErrClosed", err)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write to a closed connection: %v, want net.ErrClosed", err)
	}
}

// Writing to a peer that reset the connection is an error, not a SIGPIPE that ends the test
// binary.
func TestWriteToResetPeer(t *testing.T) {
	t.Parallel()
	server, client := pair(t)
	tc, _ := TCP(client)
	tc.SetLinger(0)
	client.Close() // RST
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = server.Write([]byte("data for nobody"))
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write to a reset peer: %v, want EPIPE or ECONNRESET", err)
	}
}

// net/http serves over it: keep-alive requests, bodies both ways.
func TestHTTPServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(bytes.Repeat(b, 1000))
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(Listener{ln})
	defer srv.Close()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: Dialer((&net.Dialer{}).DialContext)}}
	defer client.CloseIdleConnections()
	for i := range 20 {
		body := bytes.Repeat([]byte{byte('a' + i)}, 100)
		resp, err := client.Post("http://"+ln.Addr().String(), "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, bytes.Repeat(body, 1000)) {
			t.Fatalf("request %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// poolCheck is the check go-redis makes of a pooled connection before each command: a peek
// that does not wait, through the connection's SyscallConn.
func poolCheck(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return errors.New("no SyscallConn")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var seen error
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n == 0 && err == nil:
			seen = io.EOF
		case n > 0:
			seen = errors.New("unexpected data")
		case err == syscall.EAGAIN:
		default:
			seen = err
		}
		return true
	})
	if err != nil {
		return err
	}
	return seen
}

// A pool's check finds a healthy idle connection healthy, and one with data waiting, one its
// peer closed and one its peer reset not.
func TestPoolCheck(t *testing.T) {
	t.Parallel()
	server, _ := pair(t)
	if err := poolCheck(server); err != nil {
		t.Fatalf("an idle open connection: %v, want healthy", err)
	}

	server, client := pair(t)
	client.Write([]byte("x"))
	waitFor(t, func() bool { return poolCheck(server) != nil })
	if err := poolCheck(server); err == nil || err.Error() != "unexpected data" {
		t.Fatalf("a connection with data waiting: %v", err)
	}
	if b, err := io.ReadAll(io.LimitReader(server, 1)); err != nil || string(b) != "x" {
		t.Fatalf("the data peeked at is still there to read: %q, %v", b, err)
	}

	server, client = pair(t)
	client.Close()
	waitFor(t, func() bool { return poolCheck(server) != nil })
	if err := poolCheck(server); err != io.EOF {
		t.Fatalf("a connection its peer closed: %v, want EOF", err)
	}

	server, client = pair(t)
	tc, _ := TCP(client)
	tc.SetLinger(0)
	client.Close()
	waitFor(t, func() bool { return poolCheck(server) != nil })
	if err := poolCheck(server); !errors.Is(err, syscall.ECONNRESET) && err != io.EOF {
		t.Fatalf("a connection its peer reset: %v, want ECONNRESET", err)
	}
}

// waitFor polls ok for up to ten seconds: what one end did reaches the other through the
// kernel, at once on loopback but not within the same instruction.
func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("waited ten seconds")
		}
	}
}
