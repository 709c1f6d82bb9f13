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

func (*poller) add(*net.TCPConn, uint64) error { return errors.ErrUnsupported }
func (*poller) remove(*net.TCPConn)            {}
func (*poller) wait(func([]clientEvent)) error { return errors.ErrUnsupported }
func (*poller) close()                         {}
