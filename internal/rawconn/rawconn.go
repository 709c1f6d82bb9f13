// Package rawconn makes a TCP connection's reads and writes system calls the Go scheduler is
// not told about.
//
// A socket's descriptor is non-blocking, so recv(2) and send(2) on it never block: when it has
// nothing to read or no room to write they fail with EAGAIN at once, and the connection then
// waits on the runtime's network poller as any other does (deadlines included). Through the
// syscall package each call also enters and leaves the scheduler's system-call state, and that
// has a cost beyond its own: the runtime's monitor thread (sysmon) wakes from its sleep
// whenever a call is entered while every processor was idle, then polls every 20 µs for at
// least a millisecond, and a processor it sees in one call across two polls is handed to
// another thread. A node answering a few thousand requests a second goes idle and wakes
// thousands of times a second, and sysmon was 13.8% of its CPU in a kernel profile of one
// publishing (scenario C of make bench); raw calls keep it asleep.
//
// The cost: a call that takes long (loopback runs the receiving side's TCP stack inside the
// sender's call) keeps its processor meanwhile. Socket calls take microseconds.
//
// It holds only while the socket is non-blocking, as the net package makes every socket. The
// flag belongs to the open file, which duplicates of the descriptor share: nothing may make a
// duplicate blocking (os.File.Fd does, for instance), or a raw call would block its thread and
// processor, and with them a garbage collection waiting to stop the world.
package rawconn

import (
	"context"
	"net"
	"time"
)

// Conn is a TCP connection whose Read and Write are raw system calls (on Linux).
//
// Its SyscallConn serves the checks connection pools make before they hand a connection out:
// go-redis peeks at every connection it takes from its pool with a recv(2) through the syscall
// package, and that one call per command alone kept sysmon at 10.5% of a publishing node's CPU
// once every other call was raw (0.2% without it). See peekFirst.
type Conn struct {
	tcp    *net.TCPConn
	raw    rawConn
	rd, wr op
}

func (c *Conn) Close() error                       { return c.tcp.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.tcp.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.tcp.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.tcp.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.tcp.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tcp.SetWriteDeadline(t) }

// CloseWrite shuts down the writing side, as net/http does before it closes a connection it
// answered with an error, so that the client reads the answer rather than a reset.
func (c *Conn) CloseWrite() error { return c.tcp.CloseWrite() }

// CloseRead shuts down the reading side.
func (c *Conn) CloseRead() error { return c.tcp.CloseRead() }

// Wrap returns c as a *Conn when it is a *net.TCPConn on a system where the calls can be made
// raw, and c itself otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !supported {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rc := &Conn{tcp: tc, raw: raw}
	rc.bind()
	return rc
}

// TCP returns the TCP connection c is or wraps.
func TCP(c net.Conn) (*net.TCPConn, bool) {
	switch c := c.(type) {
	case *net.TCPConn:
		return c, true
	case *Conn:
		return c.tcp, true
	}
	return nil, false
}

// Listener wraps each connection its Listener accepts.
type Listener struct{ net.Listener }

func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// DialFunc dials a connection, as net.Dialer.DialContext does.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// Dialer returns dial with what it dials wrapped, for clients that take a dial function
// (go-redis's Options.Dialer). A TLS connection is returned as it is.
func Dialer(dial DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return Wrap(c), nil
	}
}
