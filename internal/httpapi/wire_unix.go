//go:build unix

package httpapi

import (
	"net"
	"syscall"
	"time"

	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/rawconn"
)

// newConnSink returns the sink of a connection taken over for a stream, which writes head
// (the response's) before its first batch: one the node's flushers write without blocking
// (delivery.TrySink) when the connection is a plain socket, else a connSink.
func newConnSink(conn net.Conn, head []byte, timeout time.Duration) delivery.Sink {
	o := &tryConnSink{connSink: connSink{conn: conn, timeout: timeout, first: head}}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			o.raw = raw
		}
	}
	if o.raw == nil {
		return &o.connSink
	}
	o.writeOut = o.writeFd
	return o
}

// tryConnSink is a connSink that can also be written without blocking, straight to its socket:
// what the socket does not take at once (its send buffer is full: a slow client) is kept, in
// order, and written by the stream's own goroutine, which may block, before anything else.
type tryConnSink struct {
	connSink
	raw  syscall.RawConn
	rest []byte   // the tail of a chunk the socket did not take
	held [][]byte // a batch not tried (too large to copy), to be written as a chunk after rest

	// The try in progress, for writeFd: the function raw.Write calls is made once, with the
	// sink, rather than a closure per try (three allocations per delivery).
	writeOut func(fd uintptr) bool
	out      []byte
	wrote    int
	werr     error
}

func (o *tryConnSink) WriteBatch(pieces [][]byte) error {
	if err := o.Flush(); err != nil {
		return err
	}
	return o.connSink.WriteBatch(pieces)
}

// Flush writes what TryWriteBatch kept.
func (o *tryConnSink) Flush() error {
	if len(o.rest) > 0 {
		if err := o.extendDeadline(); err != nil {
			return err
		}
		_, err := o.conn.Write(o.rest)
		o.rest = nil
		if err != nil {
			return err
		}
	}
	if len(o.held) > 0 {
		held := o.held
		o.held = nil
		return o.connSink.WriteBatch(held)
	}
	return nil
}

// TryWriteBatch writes a small batch as one chunk with non-blocking writes; a large one (a
// catch-up, a large event) is kept whole for Flush, whose writev takes it from the shared
// frames without a copy.
func (o *tryConnSink) TryWriteBatch(pieces [][]byte) (bool, error) {
	n := batchSize(pieces)
	if n == 0 {
		return true, nil
	}
	if n > copyMax || len(o.rest) > 0 || len(o.held) > 0 || o.first != nil {
		// Appended to whatever is kept, after it (and after the response head, not yet
		// written): one chunk may hold any number of frames.
		o.held = append(o.held, pieces...)
		return false, nil
	}
	// A try never waits, but the runtime refuses any write once the deadline a blocking write
	// left has passed (a stream idle for longer than the timeout): one close to passing goes.
	if !o.deadline.IsZero() && time.Until(o.deadline) < o.timeout/4 {
		o.deadline = time.Time{}
		if err := o.conn.SetWriteDeadline(o.deadline); err != nil {
			return false, err
		}
	}
	bp := chunk(pieces, n)
	defer putChunk(bp)
	b := *bp
	o.out, o.wrote, o.werr = b, 0, nil
	err := o.raw.Write(o.writeOut)
	wrote := o.wrote
	if err == nil {
		err = o.werr
	}
	o.out, o.werr = nil, nil
	if err != nil {
		return false, err
	}
	if wrote == len(b) {
		return true, nil
	}
	o.rest = append([]byte(nil), b[wrote:]...)
	return false, nil
}

// writeFd writes o.out from o.wrote on, without blocking: raw.Write's function.
func (o *tryConnSink) writeFd(fd uintptr) bool {
	m, err := rawconn.SendAll(int(fd), o.out[o.wrote:])
	o.wrote += m
	if err != syscall.EAGAIN {
		o.werr = err
	}
	return true // never wait: what is left is kept
}
