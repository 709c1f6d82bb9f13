package httpapi

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/streamgate/streamgate/internal/rawconn"
)

// watchedSocket takes the server side of a loopback pair into a running close watcher, with
// socket buffers of size bytes (256 KiB: a few megabytes fill them; smaller than loopback's
// 64 KiB segments, they make TCP crawl: a window below one segment is probed for, not
// announced). gone is closed when the watcher reports the client gone. The watcher stops when
// stop is called or the test ends.
func watchedSocket(t testing.TB, size int) (client *net.TCPConn, sock *sockConn, gone chan struct{}, stop func()) {
	t.Helper()
	client, server := tcpPair(t)
	_ = client.SetReadBuffer(size)
	_ = server.SetWriteBuffer(size)
	clients := &closeWatcher{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	stop = startClientWatch(t, clients)
	gone = make(chan struct{})
	sock, ok := clients.watch(server, func() { close(gone) }).(*sockConn)
	if !ok {
		t.Fatal("the close watcher did not take the socket")
	}
	t.Cleanup(func() { sock.Close() })
	return client, sock, gone, stop
}

// payload is n bytes that show where each came from.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// readAll reads n bytes from c within callTimeout.
func readAll(c net.Conn, n int) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(callTimeout))
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	return b, err
}

// A taken-over socket has left the runtime: the runtime's connection is closed, the socket is
// not. A write larger than the socket's buffers waits for the client to read (the watcher's
// poller reports the socket writable) and then completes: the client receives every byte, in
// order, through however many waits.
func TestSockConnWriteWaitsForTheClient(t *testing.T) {
	t.Parallel()
	client, sock, _, _ := watchedSocket(t, 256<<10)
	if server := sock.remote; server == nil || client.LocalAddr().String() != server.String() {
		t.Errorf("the socket's remote address %v, want the client's %v", server, client.LocalAddr())
	}
	want := payload(4 << 20)
	_ = sock.SetWriteDeadline(time.Now().Add(callTimeout))
	type result struct {
		n   int
		err error
	}
	wrote := make(chan result, 1)
	go func() {
		n, err := sock.Write(want)
		wrote <- result{n, err}
	}()
	got, err := readAll(client, len(want))
	if err != nil {
		t.Fatalf("the client read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the client read other bytes than were written")
	}
	select {
	case r := <-wrote:
		if r.err != nil || r.n != len(want) {
			t.Fatalf("Write: %d bytes, %v; want %d, nil", r.n, r.err, len(want))
		}
	case <-time.After(callTimeout):
		t.Fatal("the write did not return once the client had read everything")
	}
	// Several buffers, more than the socket takes at once, in one call.
	v := net.Buffers{want[:100], want[100 : 1<<20], want[1<<20 : 3<<20], want[3<<20:]}
	go func() {
		n, err := sock.WriteBuffers(&v)
		wrote <- result{int(n), err}
	}()
	if got, err = readAll(client, len(want)); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the client read %d bytes (%v), not the buffers written", len(got), err)
	}
	if r := <-wrote; r.err != nil || r.n != len(want) || len(v) != 0 {
		t.Fatalf("WriteBuffers: %d bytes, %v, %d buffers left; want %d, nil, none", r.n, r.err, len(v), len(want))
	}
}

// A write the client does not read fails at its deadline, as the runtime's connections do, and
// a write waiting with no deadline ends when the socket is closed.
func TestSockConnWaitingWriteEndsAtDeadlineOrClose(t *testing.T) {
	t.Parallel()
	_, sock, _, _ := watchedSocket(t, 256<<10)
	big := payload(4 << 20)
	_ = sock.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	errs := make(chan error, 1)
	go func() {
		_, err := sock.Write(big)
		errs <- err
	}()
	select {
	case err := <-errs:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Write with nobody reading: %v, want a timeout", err)
		}
	case <-time.After(callTimeout):
		t.Fatal("the write outlived its deadline")
	}

	_ = sock.SetWriteDeadline(time.Time{})
	go func() {
		_, err := sock.Write(big)
		errs <- err
	}()
	select {
	case err := <-errs:
		t.Fatalf("Write with nobody reading and no deadline returned %v before the close", err)
	case <-time.After(50 * time.Millisecond):
	}
	sock.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after the close: %v, want net.ErrClosed", err)
		}
	case <-time.After(callTimeout):
		t.Fatal("closing the socket did not end the waiting write")
	}
}

// A client leaving while a write waits is noticed, and the write fails then, not at its
// deadline (a minute away here).
func TestSockConnClientLeavingWhileAWriteWaits(t *testing.T) {
	t.Parallel()
	client, sock, gone, _ := watchedSocket(t, 256<<10)
	_ = sock.SetWriteDeadline(time.Now().Add(time.Minute))
	errs := make(chan error, 1)
	go func() {
		_, err := sock.Write(payload(4 << 20))
		errs <- err
	}()
	untilFull(t, client)
	client.Close()
	select {
	case <-gone:
	case <-time.After(callTimeout):
		t.Fatal("the client's departure went unnoticed while a write waited")
	}
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("a write to a departed client succeeded")
		}
	case <-time.After(callTimeout):
		t.Fatal("the waiting write did not end when its client left")
	}
}

// untilFull waits until the client has bytes it has not read (its receive buffer and the
// socket's send buffer fill from there), then a little longer: by then a write larger than both
// waits for the client. Were it not waiting yet, what follows would still have to hold.
func untilFull(t *testing.T, client *net.TCPConn) {
	t.Helper()
	raw, err := client.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, callTimeout, "the client's receive buffer to fill", func() bool {
		n := 0
		_ = raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
		return n > 0
	})
	time.Sleep(20 * time.Millisecond)
}

// Once the watcher stops, a socket goes back to the runtime: a write waiting then completes
// there, later writes go there, and the client leaving is still noticed.
func TestSockConnHandedOnWhenTheWatcherStops(t *testing.T) {
	t.Parallel()
	client, sock, gone, stop := watchedSocket(t, 256<<10)
	want := payload(4 << 20)
	_ = sock.SetWriteDeadline(time.Now().Add(callTimeout))
	wrote := make(chan error, 1)
	go func() {
		_, err := sock.Write(want[:2<<20])
		if err == nil {
			_, err = sock.Write(want[2<<20:])
		}
		wrote <- err
	}()
	untilFull(t, client)
	stop()
	if got, err := readAll(client, len(want)); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the client read %d bytes (%v), not what was written", len(got), err)
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("Write once the watcher stopped: %v", err)
		}
	case <-time.After(callTimeout):
		t.Fatal("the write did not complete once the watcher stopped")
	}
	client.Close()
	select {
	case <-gone:
	case <-time.After(callTimeout):
		t.Fatal("the client's departure went unnoticed once the watcher stopped")
	}
}

// A stream's sink on a socket the watcher holds writes without blocking and keeps the rest, as
// on the runtime's connections.
func TestTryConnSinkOnAWatchedSocket(t *testing.T) {
	t.Parallel()
	client, sock, _, _ := watchedSocket(t, 4<<10)
	testTryConnSink(t, client, sock)
}

// BenchmarkDeliveryWrite is the write of one live event to one stream's socket, what a flusher
// does per delivery in scenario B (sink: the stream's sink on a socket the close watcher holds),
// beside the bare system call it ends in (syscall: send(2), the kernel's share, which no change
// here can cut) and the write(2) the sink made before (write). A client reads the other end all
// along. On loopback the system call is most of a delivery's cost, and more of it when the
// write has to wake the reader.
func BenchmarkDeliveryWrite(b *testing.B) {
	pieces := [][]byte{[]byte("id: "), []byte("ses_8b9emu3un9uogerf:74503206:"), []byte("1796211426424-1\nevent: message\ndata: " +
		`{"channel":"chat.lobby","event":"chat.message","data":{"text":"hello, world","user":"u-42"},"published_at":"2026-12-02T11:37:06.423369917Z"}` + "\n\n")}
	run := func(b *testing.B, writer func(sock *sockConn) func() error) {
		client, sock, _, _ := watchedSocket(b, 256<<10)
		go func() { _, _ = io.Copy(io.Discard, client) }()
		write := writer(sock)
		b.SetBytes(int64(batchSize(pieces)))
		b.ReportAllocs()
		for b.Loop() {
			if err := write(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("sink", func(b *testing.B) {
		run(b, func(sock *sockConn) func() error {
			sink, ok := newConnSink(sock, nil, callTimeout).(*tryConnSink)
			if !ok {
				b.Fatal("a watched socket's sink cannot be written without blocking")
			}
			return func() error {
				done, err := sink.TryWriteBatch(pieces)
				if err == nil && !done {
					err = sink.Flush() // the client fell behind: the stream's goroutine would wait
				}
				return err
			}
		})
	})
	bare := func(write func(fd int, b []byte) (int, error)) func(sock *sockConn) func() error {
		frame := bytes.Join(pieces, nil)
		return func(sock *sockConn) func() error {
			fd := sock.fd
			return func() error {
				for wrote := 0; wrote < len(frame); {
					m, err := write(fd, frame[wrote:])
					if err == unix.EAGAIN {
						if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, -1); err != nil && err != unix.EINTR {
							return err
						}
						continue
					}
					if err != nil && err != unix.EINTR {
						return err
					}
					wrote += max(m, 0)
				}
				return nil
			}
		}
	}
	b.Run("syscall", func(b *testing.B) { run(b, bare(rawconn.Send)) })
	b.Run("write", func(b *testing.B) { run(b, bare(unix.Write)) })
}
