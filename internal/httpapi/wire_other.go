//go:build !unix

package httpapi

import (
	"net"
	"time"

	"github.com/streamgate/streamgate/internal/delivery"
)

// newConnSink returns the sink of a connection taken over for a stream, which writes head
// (the response's) before its first batch.
func newConnSink(conn net.Conn, head []byte, timeout time.Duration) delivery.Sink {
	return &connSink{conn: conn, timeout: timeout, first: head}
}
