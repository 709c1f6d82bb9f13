package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// newConnsListener bounds the connections a node holds on their first request: it accepts a
// new connection only while fewer than max accepted ones are still reading or answering their
// first request. A storm of connects (every client of a stopped node at once, a deploy) then
// waits in the kernel's accept queue, and the node works through it at the speed its cores
// allow, instead of holding tens of thousands of half-served connections at once — their
// goroutines, buffers and grown stacks, whose memory the Go runtime keeps for the next burst
// long after the storm. A connection stops counting once its first request is answered (an
// idle keep-alive connection), taken over (a stream), or closed, and in any case hold after it
// was accepted: a client that stalls its request (a trickled body, a response it does not
// read) or a long-lived response (the dashboard's stats stream) cannot keep a place. Requests on
// kept-alive connections are never held back. Set the server's ConnState to the listener's.
func newConnsListener(l net.Listener, max int, hold time.Duration) *connsListener {
	cl := &connsListener{Listener: l, hold: hold, slots: make(chan struct{}, max),
		fresh: make(map[net.Conn]time.Time, max), closed: make(chan struct{})}
	go cl.expire()
	return cl
}

type connsListener struct {
	net.Listener
	hold  time.Duration
	slots chan struct{} // a token per connection on its first request

	mu    sync.Mutex
	fresh map[net.Conn]time.Time // the connections that hold a token, and when they were accepted

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
}

// firstRequestHold is how long an accepted connection holds its place at most.
const firstRequestHold = 2 * time.Second

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
	l.fresh[c] = time.Now()
	l.mu.Unlock()
	return c, nil
}

// Close closes the listener; an Accept waiting for a place returns net.ErrClosed.
func (l *connsListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// ConnState gives back the place of a connection whose first request is over.
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

// expire gives back the places held for longer than hold, until the listener is closed.
func (l *connsListener) expire() {
	tick := time.NewTicker(max(l.hold/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-l.closed:
			return
		case now := <-tick.C:
			l.mu.Lock()
			n := 0
			for c, at := range l.fresh {
				if now.Sub(at) >= l.hold {
					delete(l.fresh, c)
					n++
				}
			}
			l.mu.Unlock()
			for range n {
				<-l.slots
			}
		}
	}
}
