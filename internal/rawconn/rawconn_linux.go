package rawconn

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

const supported = true

type rawConn = syscall.RawConn

// Read reads with recv(2), waiting on the network poller while there is nothing to read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n     int
		errno syscall.Errno
	)
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
			switch e {
			case 0:
				n = int(r)
				return true
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until the socket is readable
			}
			errno = e
			return true
		}
	})
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

// Write writes all of p with send(2) (MSG_NOSIGNAL: a peer that reset the connection is an
// EPIPE, never a SIGPIPE), waiting on the network poller while the socket has no room.
func (c *Conn) Write(p []byte) (int, error) {
	raceRelease()
	var (
		n     int
		errno syscall.Errno
	)
	err := c.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n), syscall.MSG_NOSIGNAL, 0, 0)
			switch e {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait until the socket has room
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err != nil {
		return n, c.opError("write", err)
	}
	if errno != 0 {
		return n, c.opError("write", os.NewSyscallError("sendto", errno))
	}
	return n, nil
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
