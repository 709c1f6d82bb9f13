//go:build !linux

package httpapi

import (
	"errors"
	"net"
)

// poller is epoll's place on other systems, where no poller is set up: every stream watches its
// connection with a goroutine of its own.
type poller struct{}

func openPoller() (*poller, error) { return nil, errors.ErrUnsupported }

func (*poller) add(int, uint64) error          { return errors.ErrUnsupported }
func (*poller) arm(int, uint64, bool) error    { return errors.ErrUnsupported }
func (*poller) remove(int)                     {}
func (*poller) wait(func([]clientEvent)) error { return errors.ErrUnsupported }
func (*poller) close()                         {}

// sockConn is the Linux stream socket's place here, where none is ever made: streams keep the
// runtime's connection.
type sockConn struct {
	net.Conn
	w    *closeWatcher
	id   uint64
	fd   int
	left bool
}

func takeSocket(*net.TCPConn) (*sockConn, error) { return nil, errors.ErrUnsupported }

func (*sockConn) release()         {}
func (*sockConn) handOn() net.Conn { return nil }
func (*sockConn) descriptor() int  { return -1 }
func (*sockConn) wake()            {}
