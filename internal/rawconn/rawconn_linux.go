package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

const supported = true

type rawConn = syscall.RawConn

// op is a read or a write in progress on a Conn, for the function its RawConn calls with the
// descriptor: made once per connection (fd, a method value) rather than a closure per call,
// which would allocate itself and what it captures, three allocations a read or a write.
type op struct {
	mu    sync.Mutex // one read and one write at a time, as RawConn runs them anyway
	fd    func(fd uintptr) bool
	p     []byte
	n     int
	errno syscall.Errno
}

// bind sets the functions c's reads and writes give its RawConn.
func (c *Conn) bind() {
	c.rd.fd, c.wr.fd = c.readFd, c.writeFd
}

// run makes the read (o is c.rd) or the write (c.wr) of p through c's RawConn.
func (c *Conn) run(o *op, p []byte) (n int, errno syscall.Errno, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.p, o.n, o.errno = p, 0, 0
	if o == &c.wr {
		err = c.raw.Write(o.fd)
	} else {
		err = c.raw.Read(o.fd)
	}
	n, errno, o.p = o.n, o.errno, nil
	return n, errno, err
}

// Read reads with recv(2), waiting on the network poller while there is nothing to read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 { // nothing to read, unless the connection is closed (as net's own Read)
		if err := c.raw.Control(func(uintptr) {}); err != nil {
			return 0, c.opError("read", err)
		}
		return 0, nil
	}
	n, errno, err := c.run(&c.rd, p)
	if err != nil {
		return 0, c.opError("read", err)
	}
	if errno != 0 {
		return 0, c.opError("read", os.NewSyscallError("recvfrom", errno))
	}
	if n == 0 {
		return 0, io.EOF
	}
	raceAcquire()
	return n, nil
}

func (c *Conn) readFd(fd uintptr) bool {
	o := &c.rd
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&o.p[0])), uintptr(len(o.p)), 0, 0, 0)
		switch e {
		case 0:
			o.n = int(r)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until the socket is readable
		}
		o.errno = e
		return true
	}
}

// Write writes all of p with send(2) (MSG_NOSIGNAL: a peer that reset the connection is an
// EPIPE, never a SIGPIPE), waiting on the network poller while the socket has no room.
func (c *Conn) Write(p []byte) (int, error) {
	raceRelease()
	n, errno, err := c.run(&c.wr, p)
	if err != nil {
		return n, c.opError("write", err)
	}
	if errno != 0 {
		return n, c.opError("write", os.NewSyscallError("sendto", errno))
	}
	return n, nil
}

func (c *Conn) writeFd(fd uintptr) bool {
	o := &c.wr
	m, err := SendAll(int(fd), o.p[o.n:])
	o.n += m
	switch err {
	case nil:
	case syscall.EAGAIN:
		return false // wait until the socket has room
	default:
		o.errno = err.(syscall.Errno)
	}
	return true
}

// Send writes b to a non-blocking socket: send(2) with MSG_NOSIGNAL (a peer that reset the
// connection is an EPIPE, never a SIGPIPE to the process), made without telling the scheduler
// (RawSyscall), since it cannot block. It is also a stream's write of a live event, the one
// system call per delivery of the node's flushers, where both of these were measured (scenario
// B, three alternated runs each):
//   - Through syscall.Syscall each call also entered and left the scheduler's syscall state,
//     and a P seen in a system call across two of sysmon's ticks (a write slowed by the
//     receive path loopback runs in it, or by stolen CPU) was handed to another thread, which
//     kept sysmon polling every 20 µs: 10.3 → 9.6 µs of api CPU per delivery.
//   - send(2) goes to the socket directly, where write(2) passes through the file layer first:
//     9.9 → 9.6 µs.
//
// A descriptor that is not a socket is written with write(2).
func Send(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	p, l := uintptr(unsafe.Pointer(&b[0])), uintptr(len(b))
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), p, l, syscall.MSG_NOSIGNAL, 0, 0)
	if e == syscall.ENOTSOCK {
		n, _, e = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), p, l)
	}
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// opError is err as the TCP connection's own Read and Write report one: a *net.OpError named
// for op (the raw connection's say "raw-read" and "raw-write"), which keeps what it wraps
// (net.ErrClosed, os.ErrDeadlineExceeded, a system call's errno) for errors.Is and its
// Timeout.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
		return oe
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// SyscallConn returns the connection's descriptor for a check that peeks at it without
// waiting, as a connection pool makes before it hands a connection out (go-redis's, before
// every command): see peekFirst. Read and write through Read and Write.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return peekFirst{c.raw}, nil }

// peekFirst is a socket's RawConn whose Read first peeks at the socket itself, with a raw
// recv(2): when there is nothing to read and the peer has not closed the connection, which is
// what a check of a healthy idle connection finds, Read returns nil at once without calling f.
// A check's f (a MSG_PEEK|MSG_DONTWAIT recv that reports what it saw and returns true) would
// have found the same, through a system call the scheduler is told about. Otherwise (data
// waiting, the peer gone, an error) f runs as RawConn.Read runs it. An f that means to wait
// for data must not be given it: it would return before any came.
type peekFirst struct{ syscall.RawConn }

func (r peekFirst) Read(f func(fd uintptr) bool) error {
	quiet := false
	if err := r.Control(func(fd uintptr) { quiet = nothingToRead(fd) }); err == nil && quiet {
		return nil
	}
	return r.RawConn.Read(f)
}

// nothingToRead reports whether the socket fd is open with nothing to read.
func nothingToRead(fd uintptr) bool {
	var b [1]byte
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return e == syscall.EAGAIN
}
