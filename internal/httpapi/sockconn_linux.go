package httpapi

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sockConn is a stream's socket once net/http has handed it over: a bare descriptor of the
// node's own, watched by the close watcher's poller and out of the Go runtime's.
//
// The runtime never gives back a poll descriptor (about 600 bytes each, with its two deadline
// timers): it keeps them for later connections. A node that held 10,000 streams would keep
// 6 MB of them after every client left, for the rest of its life. So a stream's socket leaves
// the runtime as soon as it is taken over: its descriptor is duplicated and the runtime's
// connection closed, which returns the runtime's record to the next request. Writes go straight
// to the descriptor (it is non-blocking); a write the socket cannot take whole waits for the
// close watcher's poller to report the socket writable (EPOLLOUT), for its deadline, or for the
// close. The deadline counts only for a write that has to wait: one the socket takes at once
// always goes through.
//
// If the watcher stops, the socket goes back to the runtime (handOn) and its writes go on
// there.
type sockConn struct {
	w      *closeWatcher
	id     uint64 // the watcher's registration
	local  net.Addr
	remote net.Addr

	wmu sync.Mutex   // one write at a time, as the runtime's connections do
	mu  sync.RWMutex // read-held around each system call on fd, write-held to close or hand it on
	fd  int          // -1 once closed or handed on
	nc  net.Conn     // the runtime's connection after handOn

	left bool // the watcher saw the client leave; under the watcher's lock

	deadline atomic.Int64  // the write deadline in Unix nanoseconds, 0 for none
	writable chan struct{} // one word for a waiting write: look again
}

// takeSocket duplicates c's descriptor into a sockConn. c stays open: the caller closes it once
// the sockConn is registered.
func takeSocket(c *net.TCPConn) (*sockConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(d uintptr) { fd, dupErr = unix.FcntlInt(d, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, dupErr
	}
	// Non-blocking, as the writes here need: the runtime makes every socket so, and the flag
	// belongs to the socket, which the duplicate shares.
	return &sockConn{fd: fd, local: c.LocalAddr(), remote: c.RemoteAddr(), writable: make(chan struct{}, 1)}, nil
}

// release closes the descriptor of a sockConn the watcher did not take.
func (c *sockConn) release() { syscall.Close(c.fd) }

// write calls try with the descriptor until try reports it is done, waiting between calls for
// the socket to take bytes again. Once the socket has been handed back to the runtime it
// returns that connection instead, for the caller to go on with.
func (c *sockConn) write(try func(fd int) bool) (net.Conn, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for {
		c.mu.RLock()
		fd, nc := c.fd, c.nc
		done := fd >= 0 && try(fd)
		c.mu.RUnlock()
		switch {
		case nc != nil:
			return nc, nil
		case fd < 0:
			return nil, net.ErrClosed
		case done:
			return nil, nil
		}
		if err := c.wait(); err != nil {
			return nil, err
		}
	}
}

// wait waits for a word that the socket may take bytes again (or was closed, or handed on), or
// for the write deadline.
func (c *sockConn) wait() error {
	if err := c.w.armWrite(c); err != nil {
		return err
	}
	var expired <-chan time.Time
	if d := c.deadline.Load(); d != 0 {
		left := time.Until(time.Unix(0, d))
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(left)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-c.writable:
		return nil
	case <-expired:
		return os.ErrDeadlineExceeded
	}
}

// wake tells a waiting write to look again; one word is kept for a write about to wait.
func (c *sockConn) wake() {
	select {
	case c.writable <- struct{}{}:
	default:
	}
}

func (c *sockConn) Write(b []byte) (int, error) {
	v := net.Buffers{b}
	n, err := c.WriteBuffers(&v)
	return int(n), err
}

// WriteBuffers writes v with as few system calls as the socket allows (writev), consuming it
// as net.Buffers.WriteTo does for the runtime's connections.
func (c *sockConn) WriteBuffers(v *net.Buffers) (int64, error) {
	var n int64
	var werr error
	nc, err := c.write(func(fd int) bool {
		for len(*v) > 0 {
			m, err := unix.Writev(fd, (*v)[:min(len(*v), 1024)]) // IOV_MAX
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false
			case err != nil:
				werr = err
				return true
			}
			n += int64(m)
			consume(v, m)
		}
		return true
	})
	if nc != nil {
		m, err := v.WriteTo(nc)
		return n + m, err
	}
	return n, c.opError(err, werr)
}

// consume drops the first n bytes of v.
func consume(v *net.Buffers, n int) {
	for len(*v) > 0 {
		if n < len((*v)[0]) {
			(*v)[0] = (*v)[0][n:]
			return
		}
		n -= len((*v)[0])
		(*v)[0] = nil
		*v = (*v)[1:]
	}
}

// opError is the error of a write that ended with err (waiting) or werr (the system call), as
// the runtime's connections report it.
func (c *sockConn) opError(err, werr error) error {
	if err == nil {
		err = werr
	}
	if err == nil {
		return nil
	}
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError("write", errno)
	}
	return &net.OpError{Op: "write", Net: "tcp", Source: c.local, Addr: c.remote, Err: err}
}

// Read is refused: nothing reads a stream's socket (the close watcher notices a client that
// sends).
func (c *sockConn) Read([]byte) (int, error) { return 0, errors.ErrUnsupported }

// Close takes the socket out of the watcher and closes it, waking a waiting write. Closing again
// does nothing.
func (c *sockConn) Close() error {
	c.w.forget(c)
	c.mu.Lock()
	fd, nc := c.fd, c.nc
	c.fd, c.nc = -1, nil
	c.mu.Unlock()
	c.wake()
	switch {
	case fd >= 0:
		return syscall.Close(fd)
	case nc != nil:
		return nc.Close()
	}
	return nil
}

// handOn gives the socket back to the runtime, for when the watcher stops: from then on writes,
// deadlines and the close go to the connection it returns, which is nil (and the socket closed) when that
// fails.
func (c *sockConn) handOn() net.Conn {
	defer c.wake()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	f := os.NewFile(uintptr(c.fd), "stream")
	nc, err := net.FileConn(f) // a duplicate of f's descriptor
	f.Close()
	c.fd = -1
	if err != nil {
		return nil
	}
	if d := c.deadline.Load(); d != 0 {
		_ = nc.SetWriteDeadline(time.Unix(0, d))
	}
	c.nc = nc
	return nc
}

// descriptor is the socket's descriptor, -1 once closed or handed on.
func (c *sockConn) descriptor() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fd
}

func (c *sockConn) LocalAddr() net.Addr  { return c.local }
func (c *sockConn) RemoteAddr() net.Addr { return c.remote }

func (c *sockConn) SetDeadline(t time.Time) error { return c.SetWriteDeadline(t) }

// SetReadDeadline does nothing: nothing reads the socket.
func (c *sockConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline sets the deadline of writes that have to wait; a waiting write looks at the
// new one.
func (c *sockConn) SetWriteDeadline(t time.Time) error {
	var d int64
	if !t.IsZero() {
		d = t.UnixNano()
	}
	c.deadline.Store(d)
	c.mu.RLock()
	nc := c.nc
	c.mu.RUnlock()
	if nc != nil {
		return nc.SetWriteDeadline(t)
	}
	c.wake()
	return nil
}

// SyscallConn lets the stream's sink write without waiting (tryConnSink).
func (c *sockConn) SyscallConn() (syscall.RawConn, error) { return sockRaw{c}, nil }

// sockRaw is a sockConn's syscall.RawConn.
type sockRaw struct{ c *sockConn }

func (r sockRaw) Control(f func(fd uintptr)) error {
	r.c.mu.RLock()
	fd, nc := r.c.fd, r.c.nc
	if fd >= 0 {
		f(uintptr(fd))
	}
	r.c.mu.RUnlock()
	switch {
	case fd >= 0:
		return nil
	case nc != nil:
		raw, err := rawConn(nc)
		if err != nil {
			return err
		}
		return raw.Control(f)
	}
	return net.ErrClosed
}

func (r sockRaw) Read(func(fd uintptr) bool) error { return errors.ErrUnsupported }

func (r sockRaw) Write(f func(fd uintptr) bool) error {
	nc, err := r.c.write(func(fd int) bool { return f(uintptr(fd)) })
	if nc == nil {
		return err
	}
	raw, err := rawConn(nc)
	if err != nil {
		return err
	}
	return raw.Write(f)
}

// rawConn is the RawConn of a connection handOn made (a *net.TCPConn).
func rawConn(nc net.Conn) (syscall.RawConn, error) {
	return nc.(syscall.Conn).SyscallConn()
}
