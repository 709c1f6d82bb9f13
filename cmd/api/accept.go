package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
)

// newConnsListener bounds the connections a node holds on their first request: it accepts a
// new connection only while fewer than max accepted ones are still reading or answering their
// first request. A storm of connects (every client of a stopped node at once, a deploy) then
// waits in the kernel's accept queue, and the node works through it at the speed its cores
// allow, instead of holding tens of thousands of half-served connections at once — their
// goroutines, buffers and grown stacks, whose memory the Go runtime keeps for the next burst
// long after the storm. A connection stops counting once its first request is answered (an
// idle keep-alive connection), taken over (a stream), or closed; requests on kept-alive
// connections are never held back. Set the server's ConnState to the listener's.
func newConnsListener(l net.Listener, max int) *connsListener {
	return &connsListener{Listener: l, slots: make(chan struct{}, max), fresh: make(map[net.Conn]struct{}, max), closed: make(chan struct{})}
}

type connsListener struct {
	net.Listener
	slots chan struct{} // a token per connection on its first request

	mu    sync.Mutex
	fresh map[net.Conn]struct{} // the connections that hold a token

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
}

func (l *connsListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	l.mu.Lock()
	l.fresh[c] = struct{}{}
	l.mu.Unlock()
	return c, nil
}

// Close closes the listener; an Accept waiting for a slot returns net.ErrClosed.
func (l *connsListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// ConnState gives back the slot of a connection whose first request is over.
func (l *connsListener) ConnState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateIdle, http.StateHijacked, http.StateClosed:
	default:
		return
	}
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	l.mu.Lock()
	_, held := l.fresh[c]
	delete(l.fresh, c)
	l.mu.Unlock()
	if held {
		<-l.slots
	}
}
