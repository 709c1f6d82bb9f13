package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/streamgate/streamgate/internal/memory"
)

// closeWatcher notices the clients of taken-over streams going away, for all of the node's
// streams at once. An EventSource client sends nothing after its request, so a stream's
// connection only becomes readable when its client leaves (or misbehaves); a goroutine blocked
// reading each connection would cost a stack per idle stream for that. Instead, while
// WatchClients runs, each connection is registered with a poller of the node's own (epoll on
// Linux) and one loop hears from all of them. Where that is not possible (another system, a
// connection that is not plain TCP, a poller that cannot be set up or has stopped) a stream
// falls back to a goroutine of its own reading its connection (watchClose).
type closeWatcher struct {
	log *slog.Logger

	mu sync.Mutex
	p  *poller // nil unless WatchClients runs: registrations fall back to watchClose then
	// last is the last registration id handed out. An event carries the id, never the
	// descriptor: a descriptor is reused as soon as its connection closes, and an event fetched
	// for the old connection must not reach the new one. Ids are never reused.
	last    uint64
	watched map[uint64]watchedConn
	high    int // the most registrations held since watched was last sized (memory.Shrink)

	// ending holds the departures not yet acted on, which up to goneWorkers goroutines work
	// through (enders counts them).
	ending []func()
	enders int
}

// goneWorkers bounds the goroutines ending streams whose clients left: a node whose clients all
// leave at once ends their streams a few dozen at a time rather than starting a goroutine for
// each (the Go runtime keeps every goroutine record it ever made).
const goneWorkers = 64

// watchedConn is a registered connection and what to call when its client goes away.
type watchedConn struct {
	conn *net.TCPConn
	gone func()
}

// clientEvent is what the poller reports for a registration: its client left, or (sent) sent
// bytes while its connection is still open.
type clientEvent struct {
	id   uint64
	sent bool
}

// WatchClients notices the clients of the node's streams going away until ctx ends: on Linux
// through one epoll instance of the node's own, itself waited on through the runtime's
// netpoller, so that an idle stream costs its writer's goroutine and no other. Streams taken
// over while it does not run (before it starts, after it returns, on other systems or where
// the epoll instance cannot be set up, which is logged) each keep a goroutine reading their
// connection instead; those it still watches when ctx ends are handed such a goroutine before
// it returns.
func (s *Server) WatchClients(ctx context.Context) {
	s.clients.run(ctx)
}

func (w *closeWatcher) run(ctx context.Context) {
	p, err := openPoller()
	if err != nil {
		if !errors.Is(err, errors.ErrUnsupported) {
			w.log.Warn("clients' departures are watched by a goroutine per stream", "err", err)
		}
		return
	}
	w.mu.Lock()
	if w.p != nil {
		w.mu.Unlock()
		p.close()
		w.log.Error("WatchClients called while it runs")
		return
	}
	w.p, w.watched = p, make(map[uint64]watchedConn)
	w.mu.Unlock()

	var once sync.Once
	stop := func() {
		once.Do(func() {
			w.mu.Lock()
			left := w.watched
			w.p, w.watched = nil, nil
			w.mu.Unlock()
			p.close()
			for _, c := range left {
				go watchClose(c.conn, c.gone)
			}
		})
	}
	defer context.AfterFunc(ctx, stop)()
	err = p.wait(w.fire)
	if ctx.Err() == nil {
		w.log.Warn("clients' departures are watched by a goroutine per stream from now on", "err", err)
	}
	stop()
}

// watch calls gone once the client of c goes away, closing c first if the client sends
// anything. It returns the registration to forget when the stream ends, 0 when c is watched by
// a goroutine of its own (which ends when c is closed).
func (w *closeWatcher) watch(c net.Conn, gone func()) uint64 {
	if tc, ok := c.(*net.TCPConn); ok {
		if id := w.add(tc, gone); id != 0 {
			return id
		}
	}
	go watchClose(c, gone)
	return 0
}

// add registers c with the poller, or returns 0 when it is not running or refuses c.
func (w *closeWatcher) add(c *net.TCPConn, gone func()) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.p == nil {
		return 0
	}
	w.last++
	// Added under the lock, so that its event, however soon it comes, finds it.
	if err := w.p.add(c, w.last); err != nil {
		return 0
	}
	w.watched[w.last] = watchedConn{conn: c, gone: gone}
	return w.last
}

// forget drops registration id (0 is none), taking its connection out of the poller. The
// connection must still be open: once it closes, its descriptor may belong to another.
func (w *closeWatcher) forget(id uint64) {
	if id == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.watched[id]
	if !ok {
		return // already fired, or handed to a goroutine
	}
	delete(w.watched, id)
	w.watched = memory.Shrink(w.watched, &w.high)
	w.p.remove(c.conn)
}

// fire acts on the poller's events, as watchClose does on its read. gone runs on one of the
// watcher's enders: ending a stream makes Redis round trips (presence, the connection count)
// that must not hold up the other streams' events.
func (w *closeWatcher) fire(events []clientEvent) {
	for _, ev := range events {
		w.mu.Lock()
		c, ok := w.watched[ev.id]
		delete(w.watched, ev.id)
		w.watched = memory.Shrink(w.watched, &w.high)
		w.mu.Unlock()
		if !ok {
			continue // the stream ended first and forgot it
		}
		if ev.sent {
			c.conn.Close()
		}
		w.ended(c.gone)
	}
}

// ended has gone called by one of the watcher's enders, starting one if fewer than goneWorkers
// run.
func (w *closeWatcher) ended(gone func()) {
	w.mu.Lock()
	w.ending = append(w.ending, gone)
	start := w.enders < goneWorkers
	if start {
		w.enders++
	}
	w.mu.Unlock()
	if start {
		go w.end()
	}
}

// end calls the departures waiting until there are none.
func (w *closeWatcher) end() {
	for {
		w.mu.Lock()
		if len(w.ending) == 0 {
			w.ending = nil // let a burst's array go
			w.enders--
			w.mu.Unlock()
			return
		}
		gone := w.ending[0]
		w.ending[0] = nil
		w.ending = w.ending[1:]
		w.mu.Unlock()
		gone()
	}
}
