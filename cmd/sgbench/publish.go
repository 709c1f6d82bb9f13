package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// publisher sends the run's events, one POST each, at a steady rate from a pool of keep-alive
// connections. The pacing is a token bucket that refills at the rate and holds one token:
// event i is due at start + i/rate and goes out then, or as soon as a sender is free if they are
// all busy (sgbench then falls behind the rate and reports the rate it reached).
type publisher struct {
	plan     plan
	urls     []string
	keys     []string // API key per tenant
	events   int64
	rate     float64
	size     int
	senders  int
	deadline time.Time
	client   *http.Client

	next     atomic.Int64
	accepted atomic.Int64
	sent     atomic.Int64
	lastDone atomic.Int64
	rtt      histogram

	errCount  atomic.Int64
	maxBehind atomic.Int64 // ns

	mu      sync.Mutex
	failed  []int64
	errors  map[string]int64
	limited int64
}

// pubResult is what publishing did.
type pubResult struct {
	Ledger      ledger
	Attempted   int64            // requests sent
	Accepted    int64            // 2xx answers
	Errors      map[string]int64 // "HTTP 429 rate_limited", "timeout", …
	RateLimited int64            // 429 answers
	Start, End  time.Time        // first due time, last answer
	RTT         histData         // request round trip
	MaxBehind   time.Duration    // the furthest a send fell behind its due time
}

// defaultSenders sizes the pool for the rate: enough for answers 25 ms slow at full pace.
func defaultSenders(rate float64, events int64) int {
	n := min(max(int(rate/40), 4), maxPublishers)
	return int(min(int64(n), max(events, 1)))
}

func newPublisher(cfg config, p plan, keys []string, deadline time.Time) *publisher {
	senders := cfg.Publishers
	if senders == 0 {
		senders = defaultSenders(cfg.Rate, cfg.Events)
	}
	return &publisher{
		plan: p, urls: cfg.URLs, keys: keys, events: cfg.Events, rate: cfg.Rate, size: cfg.Payload,
		senders: senders, deadline: deadline, errors: map[string]int64{},
		client: &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        senders * len(cfg.URLs),
				MaxIdleConnsPerHost: senders,
				MaxConnsPerHost:     senders,
				IdleConnTimeout:     time.Minute,
				DisableCompression:  true,
			},
		},
	}
}

// run publishes every event, or as many as fit before ctx ends or the deadline passes, and
// returns the ledger of what was accepted.
func (p *publisher) run(ctx context.Context) pubResult {
	start := time.Now()
	interval := time.Duration(float64(time.Second) / p.rate)
	var wg sync.WaitGroup
	for range p.senders {
		wg.Go(func() { p.send(ctx, start, interval) })
	}
	wg.Wait()
	p.client.CloseIdleConnections()
	handed := min(p.next.Load(), p.events)
	slices.Sort(p.failed)
	res := pubResult{
		Ledger:      ledger{Handed: handed, Failed: p.failed},
		Attempted:   p.sent.Load(),
		Accepted:    p.accepted.Load(),
		Errors:      p.errors,
		RateLimited: p.limited,
		Start:       start,
		End:         time.Unix(0, p.lastDone.Load()),
		RTT:         p.rtt.snapshot(),
		MaxBehind:   time.Duration(p.maxBehind.Load()),
	}
	if res.Attempted == 0 {
		res.End = start
	}
	return res
}

// send is one sender: it takes the next event, waits for its due time and publishes it, until
// the events run out, ctx ends or the deadline passes. An event it takes and cannot send is
// recorded as failed, so the ledger accounts for every event handed out.
func (p *publisher) send(ctx context.Context, start time.Time, interval time.Duration) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		i := p.next.Add(1) - 1
		if i >= p.events {
			return
		}
		due := start.Add(time.Duration(i) * interval)
		if due.After(p.deadline) || ctx.Err() != nil {
			p.fail(i, "")
			return
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				p.fail(i, "")
				return
			}
		} else {
			raise(&p.maxBehind, -d.Nanoseconds())
		}
		p.publishOne(ctx, i)
	}
}

// publishOne sends event i. Each request gets its own body buffer: the transport may still be
// reading one after an early answer.
func (p *publisher) publishOne(ctx context.Context, i int64) {
	c := p.plan.channelOfEvent(i)
	target := p.urls[p.plan.eventNode(i)] + "/v1/channels/" + url.PathEscape(p.plan.channelName(c)) + "/events"
	sent := time.Now()
	body := appendPublishBody(make([]byte, 0, p.size+96), payload{Index: i, Sent: sent.UnixNano()}, p.size)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		p.fail(i, "bad request: "+err.Error())
		return
	}
	req.Header.Set("Authorization", "Bearer "+p.keys[p.plan.channelTenant(c)])
	req.Header.Set("Content-Type", "application/json")
	p.sent.Add(1)
	resp, err := p.client.Do(req)
	done := time.Now()
	p.rtt.record(done.Sub(sent).Nanoseconds())
	raise(&p.lastDone, done.UnixNano())
	if err != nil {
		p.fail(i, reason(err))
		return
	}
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		p.accepted.Add(1)
		return
	}
	why := refusal(resp).Error()
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		p.mu.Lock()
		p.limited++
		p.mu.Unlock()
	}
	p.fail(i, why)
}

// fail records event i as not accepted; why is empty for an event never sent.
func (p *publisher) fail(i int64, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed = append(p.failed, i)
	if why != "" {
		p.errors[why]++
		p.errCount.Add(1)
	}
}
