package httpapi

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The sinks below are what a stream's writer (delivery.Sink) puts its batches into.

// httpSink writes through net/http (HTTP/2, or where the connection cannot be taken over).
type httpSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (o *httpSink) WriteBatch(pieces [][]byte) error {
	if err := o.rc.SetWriteDeadline(time.Now().Add(o.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	for _, p := range pieces {
		if _, err := o.w.Write(p); err != nil {
			return err
		}
	}
	return o.rc.Flush()
}

// connSink writes an HTTP/1.1 chunked body straight to a connection taken over from
// net/http: one write per batch, a small one copied into a buffer of the node's, a large one
// (a replay) written with writev straight from the shared frames (the pieces' list is kept for
// the next one). A connection held this way costs a registration with the node's close
// watcher and the stream's own state (a writer goroutine only while there is something to
// write), instead of net/http's buffers and background reader.
type connSink struct {
	conn     net.Conn
	timeout  time.Duration
	deadline time.Time   // the write deadline in force
	bufs     net.Buffers // reused between batches
	head     []byte      // a large batch's chunk size line
	// first is the response head, not yet written: it goes out with the first batch, in the
	// same system call.
	first []byte
}

var crlf = []byte("\r\n")

func (o *connSink) WriteBatch(pieces [][]byte) error {
	n := batchSize(pieces)
	if n == 0 && o.first == nil {
		return nil
	}
	if err := o.extendDeadline(); err != nil {
		return err
	}
	if n <= copyMax && o.first == nil {
		// A small batch (a live event or two) is copied into one buffer: one contiguous write
		// costs the kernel less than a writev of its five or so pieces, more than the copy
		// costs here. The buffer is the node's, not the stream's.
		bp := chunk(pieces, n)
		_, err := o.conn.Write(*bp)
		putChunk(bp)
		return err
	}
	bufs := o.bufs[:0]
	if o.first != nil {
		bufs = append(bufs, o.first)
		o.first = nil
	}
	if n > 0 {
		o.head = strconv.AppendInt(o.head[:0], int64(n), 16)
		o.head = append(o.head, '\r', '\n')
		bufs = append(bufs, o.head)
		bufs = append(bufs, pieces...)
		bufs = append(bufs, crlf)
	}
	o.bufs = bufs[:0]
	var err error
	if bw, ok := o.conn.(buffersWriter); ok {
		_, err = bw.WriteBuffers(&bufs)
	} else {
		_, err = bufs.WriteTo(o.conn)
	}
	clear(o.bufs[:cap(o.bufs)])
	return err
}

// buffersWriter is a connection that writes several buffers in one system call (sockConn), as
// net.Buffers.WriteTo does by itself for the runtime's connections.
type buffersWriter interface {
	WriteBuffers(v *net.Buffers) (int64, error)
}

// extendDeadline moves the write deadline a timeout ahead. Moving it costs a runtime timer
// update; a deadline that still leaves at least three quarters of the timeout is good enough
// for another write.
func (o *connSink) extendDeadline() error {
	if now := time.Now(); o.deadline.Sub(now) < o.timeout*3/4 {
		o.deadline = now.Add(o.timeout)
		return o.conn.SetWriteDeadline(o.deadline)
	}
	return nil
}

// batchSize is the bytes of a batch's pieces.
func batchSize(pieces [][]byte) int {
	n := 0
	for _, p := range pieces {
		n += len(p)
	}
	return n
}

// chunk copies pieces, n bytes in all (at most copyMax), into one of the node's buffers as an
// HTTP/1.1 chunk; putChunk gives the buffer back.
func chunk(pieces [][]byte, n int) *[]byte {
	bp := copyBufs.Get().(*[]byte)
	b := strconv.AppendInt((*bp)[:0], int64(n), 16)
	b = append(b, '\r', '\n')
	for _, p := range pieces {
		b = append(b, p...)
	}
	*bp = append(b, crlf...)
	return bp
}

func putChunk(bp *[]byte) {
	*bp = (*bp)[:0]
	copyBufs.Put(bp)
}

// copyMax is the largest batch connSink copies into one buffer rather than writing its pieces
// where they are.
const copyMax = 4 << 10

// copyBufs are the buffers of copied batches: a chunk's head, copyMax bytes and its end.
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, copyMax+16)
	return &b
}}

// takeOver takes an HTTP/1.x connection over from net/http for a stream: it returns the
// connection to write and close from then on (clients' watch) and the response head to write
// before anything else (status, the headers set so far, chunked encoding: the stream's sink
// sends it with the first batch, in the same system call), and has clients call gone once the
// client goes away. The socket goes to the close watcher straight from the connection
// ConnContext recorded, or else by hijacking the connection. ok is false when the connection
// cannot be taken over (HTTP/2): stream through net/http then. A nil conn with ok means the
// stream cannot go on (the client sent more than its request): end it.
func takeOver(w http.ResponseWriter, r *http.Request, clients *closeWatcher, gone func()) (conn net.Conn, head []byte, ok bool) {
	if r.ProtoMajor != 1 {
		return nil, nil, false
	}
	head = streamHead(w.Header())
	if sc := clients.takeHeld(r, gone); sc != nil {
		// Whatever the client sent behind its request is dropped with net/http's buffer; what
		// it sends from now on, the watcher sees (and closes the stream for).
		return sc, head, true
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, false
	}
	// The client sends nothing more on a stream (EventSource never does); bytes already
	// buffered behind the request (a pipelined request, a misbehaving client) close it at once.
	// Neither of net/http's buffers is kept: the stream holds the bare connection.
	if brw.Reader.Buffered() > 0 {
		c.Close()
		return nil, nil, true
	}
	return clients.watch(c, gone), head, true
}

// streamHead is a stream's response head: 200, the headers h holds, chunked.
func streamHead(h http.Header) []byte {
	head := make([]byte, 0, 512)
	head = append(head, "HTTP/1.1 200 OK\r\n"...)
	for k, vs := range h {
		for _, v := range vs {
			head = append(head, k...)
			head = append(head, ": "...)
			head = append(head, v...)
			head = append(head, "\r\n"...)
		}
	}
	return append(head, "Transfer-Encoding: chunked\r\n\r\n"...)
}

// watchClose watches c on a goroutine of its own, where the node's close watcher cannot: it
// calls gone when the client goes away, or when c is closed. A client that sends something
// is closed instead of being read byte by byte for as long as it keeps sending.
func watchClose(c net.Conn, gone func()) {
	defer gone()
	var b [1]byte
	if _, err := c.Read(b[:]); err == nil {
		c.Close()
	}
}
