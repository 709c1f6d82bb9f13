//go:build !unix

package httpapi

import (
	"net"
	"time"

	"github.com/streamgate/streamgate/internal/delivery"
)

// newConnSink returns the sink of a connection taken over for a stream.
func newConnSink(conn net.Conn, timeout time.Duration) delivery.Sink {
	return &connSink{conn: conn, timeout: timeout}
}
