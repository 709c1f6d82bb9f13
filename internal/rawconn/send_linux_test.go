package rawconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// Send writes what the socket takes and reports EAGAIN when it takes nothing more,
// without blocking; a descriptor that is not a socket is written all the same; and a peer that
// is gone is an error, not a signal.
func TestSend(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	_ = server.(*net.TCPConn).SetWriteBuffer(4 << 10)
	raw, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) (n int, err error) {
		if cerr := raw.Control(func(fd uintptr) { n, err = Send(int(fd), b) }); cerr != nil {
			t.Fatal(cerr)
		}
		return n, err
	}

	if n, err := write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("write to a socket with room: %d, %v", n, err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "hello" {
		t.Fatalf("client read %q, %v", got, err)
	}

	// Nobody reads: the socket fills, and the write that finds it full says so at once.
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	total := 0
	for range 1000 {
		n, err := write(chunk)
		total += n
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
	}
	if n, err := write(chunk); n != 0 || !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("write to a full socket after %d bytes: %d, %v; want EAGAIN", total, n, err)
	}

	// Not a socket: a pipe is written with write(2).
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var n int
	var werr error
	wraw, _ := w.SyscallConn()
	_ = wraw.Control(func(fd uintptr) { n, werr = Send(int(fd), []byte("pipe")) })
	if n != 4 || werr != nil {
		t.Fatalf("write to a pipe: %d, %v", n, werr)
	}

	// The peer reset the connection: an error (EPIPE or ECONNRESET), and the test process
	// lives on (no SIGPIPE).
	_ = client.(*net.TCPConn).SetLinger(0)
	client.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := write([]byte("after"))
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write after the peer reset: %v, want EPIPE or ECONNRESET", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
