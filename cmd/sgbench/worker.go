package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Worker tuning: how many sessions of one worker may be connecting at once, how often it
// reports, and how long past the run's deadline it waits for its coordinator before giving up.
const (
	maxConnecting  = 256
	progressEvery  = 250 * time.Millisecond
	workerGrace    = 30 * time.Second
	fdsBesidesConn = 64
)

// worker holds one process's share of the sessions.
type worker struct {
	cfg      workerConfig
	client   *http.Client
	sessions []*session

	established, failed, delivered, closedEarly atomic.Int64
	firstStartInv, lastEstablished              atomic.Int64 // firstStartInv: MaxInt64 − unix ns
	connectHist, latencyHist                    histogram

	mu           sync.Mutex
	failures     map[string]int64
	closeReasons map[string]int64
	notices      map[string]int64
	perChannel   map[int]int64
}

// runWorker is the body of a worker process: it reads its share of the run from stdin, opens
// the sessions, writes progress to stdout, and after the coordinator's ledger arrives closes
// them and writes its result. It returns when stdin closes early or the run's deadline passes
// by workerGrace.
func runWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	nofile := raiseNoFile()
	dec := json.NewDecoder(stdin)
	var cfg workerConfig
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("read worker config: %w", err)
	}
	if err := cfg.check(); err != nil {
		return fmt.Errorf("worker config: %w", err)
	}
	w := newWorker(cfg)
	if need := uint64(len(w.sessions) + fdsBesidesConn); nofile > 0 && need > nofile {
		return fmt.Errorf("worker %d needs %d file descriptors but may open %d: raise ulimit -n or use more -procs", cfg.Worker, need, nofile)
	}
	ctx, cancel := context.WithDeadline(ctx, time.Unix(0, cfg.Deadline).Add(workerGrace))
	defer cancel()

	out := &lineWriter{enc: json.NewEncoder(stdout)}
	finish := make(chan ledger, 1)
	go func() { // ends with stdin, which the coordinator closes at the latest when it exits
		var f finishMsg
		if err := dec.Decode(&f); err == nil {
			finish <- f.Ledger
		}
		close(finish)
	}()

	sessCtx, stopSessions := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var connecting sync.WaitGroup
	connecting.Add(len(w.sessions))
	wg.Go(func() { w.ramp(sessCtx, &wg, &connecting) })
	wg.Go(func() { w.report(sessCtx, out) })
	ready := make(chan struct{})
	go func() { connecting.Wait(); close(ready) }() // every session resolves once sessCtx ends

	var l ledger
	var ok bool
	select {
	case <-ready:
		w.mu.Lock()
		per := w.perChannel
		w.mu.Unlock()
		out.send(workerMsg{Type: "ready", Ready: &workerReady{PerChannel: per}})
		select {
		case l, ok = <-finish:
		case <-ctx.Done():
		}
	case l, ok = <-finish:
	case <-ctx.Done():
	}
	stopSessions()
	wg.Wait()
	if !ok {
		return errors.New("the coordinator went away before the run finished")
	}
	res := w.result(newExpectation(cfg.Plan, l))
	res.NoFile = nofile
	out.send(workerMsg{Type: "result", Result: &res})
	return out.err
}

func newWorker(cfg workerConfig) *worker {
	w := &worker{
		cfg:          cfg,
		failures:     map[string]int64{},
		closeReasons: map[string]int64{},
		notices:      map[string]int64{},
		perChannel:   map[int]int64{},
	}
	p := cfg.Plan
	names := make(map[int]string)
	for j := cfg.Worker; j < p.Conns; j += cfg.Procs {
		c := p.sessionChannel(j)
		if names[c] == "" {
			names[c] = url.QueryEscape(p.channelName(c))
		}
		sess := &session{
			url:   cfg.URLs[p.sessionNode(j)] + "/v1/stream?channel=" + names[c],
			token: cfg.Tokens[p.sessionTenant(j)],
			tally: tally{channel: c},
		}
		if len(cfg.Signing) > 0 {
			// One user, one token, as in production: the server verifies each one afresh.
			key, sub := cfg.Signing[p.sessionTenant(j)], fmt.Sprintf("%s-u%d", p.Prefix, j)
			channels := []string{p.Prefix + ".*"}
			sess.token = ""
			sess.sign = func() (string, error) { return signToken(key, sub, channels, cfg.TokenTTL) }
		}
		w.sessions = append(w.sessions, sess)
	}
	w.client = &http.Client{Transport: &http.Transport{
		Proxy:                 nil, // only ever the address given, never a proxy from the environment
		DialContext:           (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   -1, // a stream's connection is never reused
		ResponseHeaderTimeout: cfg.ConnectTimeout,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		// HTTP/1.1 only: over HTTP/2 all sessions would share a few connections, which is not
		// what the benchmark claims to measure.
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
		WriteBufferSize: 1 << 10,
	}}
	return w
}

// ramp starts the sessions at the configured pace, from the common start time, with at most
// maxConnecting connecting at once. Sessions it never starts are resolved at once.
func (w *worker) ramp(ctx context.Context, wg, connecting *sync.WaitGroup) {
	start := time.Unix(0, w.cfg.Start)
	var interval time.Duration
	if w.cfg.Ramp > 0 {
		// This worker's share of the pace: its sessions interleave with the other workers'.
		interval = time.Duration(float64(time.Second) * float64(w.cfg.Procs) / w.cfg.Ramp)
	}
	slots := make(chan struct{}, maxConnecting)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for k, s := range w.sessions {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() == nil {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			for range w.sessions[k:] {
				connecting.Done()
			}
			return
		}
		wg.Go(func() {
			s.run(ctx, w, func() { <-slots; connecting.Done() })
		})
	}
}

// report writes a progress line every progressEvery until ctx ends.
func (w *worker) report(ctx context.Context, out *lineWriter) {
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			out.send(workerMsg{Type: "progress", Progress: &workerProgress{
				Established: w.established.Load(),
				Failed:      w.failed.Load(),
				Delivered:   w.delivered.Load(),
				Closed:      w.closedEarly.Load(),
			}})
		}
	}
}

func (w *worker) markStart(ns int64) { raise(&w.firstStartInv, math.MaxInt64-ns) }

func (w *worker) connected(s *session) {
	w.connectHist.record(s.established - s.started)
	raise(&w.lastEstablished, s.established)
	w.mu.Lock()
	w.perChannel[s.tally.channel]++
	w.mu.Unlock()
	w.established.Add(1)
}

func (w *worker) fail(why string) {
	w.mu.Lock()
	w.failures[why]++
	w.mu.Unlock()
	w.failed.Add(1)
}

func (w *worker) closed(why string) {
	w.mu.Lock()
	w.closeReasons[why]++
	w.mu.Unlock()
	w.closedEarly.Add(1)
}

func (w *worker) notice(event string) {
	w.mu.Lock()
	w.notices[event]++
	w.mu.Unlock()
}

// received counts one delivered event; t belongs to the calling session's goroutine. It runs
// once per delivery, the hottest path of the tool: two shared counters and the histogram.
func (w *worker) received(t *tally, p payload, now int64) {
	w.latencyHist.record(now - p.Sent)
	t.record(w.cfg.Plan, p.Index, now)
	w.delivered.Add(1)
}

// result sums the sessions up once they have all stopped.
func (w *worker) result(e *expectation) workerResult {
	r := workerResult{
		Established:     w.established.Load(),
		Failed:          w.failed.Load(),
		LastEstablished: w.lastEstablished.Load(),
		Connect:         w.connectHist.snapshot(),
		Latency:         w.latencyHist.snapshot(),
		Closed:          w.closedEarly.Load(),
	}
	if v := w.firstStartInv.Load(); v > 0 {
		r.FirstStart = math.MaxInt64 - v
	}
	for _, s := range w.sessions {
		r.Delivered += s.tally.delivered
		r.Duplicated += s.tally.dup
		r.Foreign += s.tally.foreign
		if f := s.tally.firstRecv; f > 0 && (r.FirstRecv == 0 || f < r.FirstRecv) {
			r.FirstRecv = f
		}
		r.LastRecv = max(r.LastRecv, s.tally.lastRecv)
		if s.established != 0 {
			r.Lost += s.tally.lost(e)
		}
	}
	w.mu.Lock()
	r.Failures, r.CloseReasons, r.Notices = w.failures, w.closeReasons, w.notices
	w.mu.Unlock()
	return r
}

// lineWriter writes JSON lines from several goroutines. After the first failure (the
// coordinator is gone) it writes nothing more and keeps the error.
type lineWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
	err error
}

func (l *lineWriter) send(m workerMsg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = l.enc.Encode(m)
	}
}
