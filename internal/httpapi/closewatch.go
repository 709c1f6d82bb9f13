package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/streamgate/streamgate/internal/memory"
	"github.com/streamgate/streamgate/internal/rawconn"
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

// watchedConn is a registered socket and what to call when its client goes away.
type watchedConn struct {
	sock *sockConn
	gone func()
}

// clientEvent is what the poller reports for a registration.
type clientEvent struct {
	id   uint64
	kind eventKind
}

type eventKind uint8

const (
	clientLeft     eventKind = iota // the client closed its side, or the connection failed
	clientSent                      // the client sent bytes while its connection is still open
	socketWritable                  // the socket takes bytes again, as a waiting write asked
)

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
				if nc := c.sock.handOn(); nc != nil {
					go watchClose(nc, c.gone)
				} else {
					go c.gone()
				}
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
// anything. It returns the connection the stream writes and closes from then on: c itself,
// watched by a goroutine of its own (which ends when c is closed), or c's socket taken out of
// the runtime and into the watcher's poller (sockConn), c closed.
func (w *closeWatcher) watch(c net.Conn, gone func()) net.Conn {
	if tc, ok := rawconn.TCP(c); ok {
		if sc := w.add(tc, gone); sc != nil {
			tc.Close() // the socket stays open through sc's descriptor
			return sc
		}
	}
	go watchClose(c, gone)
	return c
}

// heldConn is the connection a request came on, as ConnContext records it. A stream takes its
// socket from here rather than by hijacking the connection: net/http never gets a hijacked
// connection's 4 KiB read and write buffers back, so each stream opened that way left 8 KiB of
// garbage, most of what a burst of connects allocated, and the heap a burst grew to (with the
// runtime's own memory for it, which stays once the clients leave). Handler then aborts the
// request, and net/http closes its side of a connection it still owns and pools the buffers.
type heldConn struct {
	conn net.Conn // nil once a stream took the socket: Handler then aborts the request
}

// taken reports whether a stream took the connection's socket (one request at a time per
// connection).
func (h *heldConn) taken() bool { return h.conn == nil }

type heldConnKey struct{}

// heldConnOf returns the record ConnContext made of r's connection, or nil.
func heldConnOf(r *http.Request) *heldConn {
	h, _ := r.Context().Value(heldConnKey{}).(*heldConn)
	return h
}

// takeHeld takes the socket of r's connection, as ConnContext recorded it, into the watcher,
// for Handler to abort the request once it returns. It returns nil when there is no record or
// the watcher does not take the socket (it is not running; not Linux): hijack it then.
func (w *closeWatcher) takeHeld(r *http.Request, gone func()) *sockConn {
	h := heldConnOf(r)
	if h == nil {
		return nil
	}
	tc, ok := rawconn.TCP(h.conn)
	if !ok {
		return nil
	}
	sc := w.add(tc, gone)
	if sc != nil {
		// The connection is net/http's to close and forget; the record, which outlives the
		// request in whatever keeps its context, no longer names it.
		h.conn = nil
	}
	return sc
}

// add registers c's socket with the poller, or returns nil when it is not running or refuses c.
func (w *closeWatcher) add(c *net.TCPConn, gone func()) *sockConn {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.p == nil {
		return nil
	}
	sc, err := takeSocket(c)
	if err != nil {
		return nil
	}
	w.last++
	sc.w, sc.id = w, w.last
	// Added under the lock, so that its event, however soon it comes, finds it.
	if err := w.p.add(sc.fd, sc.id); err != nil {
		sc.release()
		return nil
	}
	w.watched[sc.id] = watchedConn{sock: sc, gone: gone}
	return sc
}

// forget takes sc out of the watcher and its poller, before sc's descriptor closes: once
// closed, the number may be another connection's.
func (w *closeWatcher) forget(sc *sockConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.watched[sc.id]; !ok {
		return // already fired, or handed on
	}
	delete(w.watched, sc.id)
	w.watched = memory.Shrink(w.watched, &w.high)
	w.p.remove(sc.descriptor())
}

// errClientLeft fails a write that waits for a client the watcher has seen leave.
var errClientLeft = errors.New("the client has gone away")

// armWrite has the poller report when sc's socket takes bytes again, besides its client
// leaving. It returns an error when no such report will come: the client has left, or the
// poller refused. While sc is being closed or handed on nothing is armed and nil returned:
// either sends the waiting write its word.
func (w *closeWatcher) armWrite(sc *sockConn) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.watched[sc.id]; ok {
		return w.p.arm(sc.descriptor(), sc.id, true)
	}
	if sc.left {
		return errClientLeft
	}
	return nil
}

// fire acts on the poller's events, as watchClose does on its read. gone runs on one of the
// watcher's enders: ending a stream makes Redis round trips (presence, the connection count)
// that must not hold up the other streams' events. A writable socket is re-armed for its
// client leaving only, and its waiting write told to look again (and to ask again if it must):
// after every re-arming that drops a write's request, that write has a word waiting.
func (w *closeWatcher) fire(events []clientEvent) {
	for _, ev := range events {
		w.mu.Lock()
		c, ok := w.watched[ev.id]
		if ok && ev.kind == socketWritable && w.p.arm(c.sock.descriptor(), ev.id, false) == nil {
			w.mu.Unlock()
			c.sock.wake()
			continue
		}
		if ok {
			c.sock.left = true
		}
		delete(w.watched, ev.id)
		w.watched = memory.Shrink(w.watched, &w.high)
		w.mu.Unlock()
		if !ok {
			continue // the stream ended first and forgot it
		}
		c.sock.wake() // a write waiting for the client fails now, not at its deadline
		if ev.kind == clientSent {
			c.sock.Close()
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
