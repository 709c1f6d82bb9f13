package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// liveLine redraws one progress line on stderr every second while the run goes on, when stderr
// is a terminal; otherwise it stays silent.
type liveLine struct {
	out     io.Writer
	cfg     config
	workers []*workerProc
	enabled bool
	began   time.Time

	phase atomic.Value // string
	pub   atomic.Pointer[publisher]

	stopOnce sync.Once
	done     chan struct{}
	stopped  chan struct{}
}

func newLiveLine(out io.Writer, cfg config, workers []*workerProc) *liveLine {
	l := &liveLine{out: out, cfg: cfg, workers: workers, enabled: isTerminal(out), began: time.Now(),
		done: make(chan struct{}), stopped: make(chan struct{})}
	l.phase.Store("starting")
	return l
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (l *liveLine) setPhase(p string)         { l.phase.Store(p) }
func (l *liveLine) setPublisher(p *publisher) { l.pub.Store(p) }

// start draws the line every second until stop.
func (l *liveLine) start() {
	if !l.enabled {
		close(l.stopped)
		return
	}
	go func() {
		defer close(l.stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastDelivered int64
		for {
			select {
			case <-l.done:
				fmt.Fprint(l.out, "\r\033[K")
				return
			case <-t.C:
				lastDelivered = l.draw(lastDelivered)
			}
		}
	}()
}

// stop clears the line and waits for the drawing goroutine. It may be called more than once.
func (l *liveLine) stop() {
	l.stopOnce.Do(func() { close(l.done) })
	<-l.stopped
}

func (l *liveLine) draw(lastDelivered int64) int64 {
	var p workerProgress
	for _, w := range l.workers {
		wp := w.progress()
		p.Established += wp.Established
		p.Failed += wp.Failed
		p.Delivered += wp.Delivered
		p.Closed += wp.Closed
	}
	line := fmt.Sprintf("%5.0fs %-10s sessions %d/%d (failed %d, closed %d)",
		time.Since(l.began).Seconds(), l.phase.Load(), p.Established, l.cfg.Conns, p.Failed, p.Closed)
	if pb := l.pub.Load(); pb != nil {
		line += fmt.Sprintf("  published %d/%d (errors %d)", pb.accepted.Load(), l.cfg.Events, pb.errCount.Load())
	}
	if l.cfg.Events > 0 {
		line += fmt.Sprintf("  delivered %d (%d/s)", p.Delivered, p.Delivered-lastDelivered)
	}
	fmt.Fprint(l.out, "\r\033[K"+line)
	return p.Delivered
}
