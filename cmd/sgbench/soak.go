package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/sseclient"
)

// soakConfig is the command line of `sgbench soak`.
type soakConfig struct {
	URL      string
	Redis    string
	Duration time.Duration
	Users    int
	Rooms    int
	Rate     float64
	Hold     time.Duration
	Settle   time.Duration
	Progress time.Duration
	Out      string
}

const soakUsage = `sgbench soak keeps a node busy the way a product does, for a set time, and reports whether
anything grows: users connect, read for a while, leave and come back (half of them resuming
with their last event id), add and remove a channel through the sessions API, while events are
published at a steady rate. The api's goroutines, heap, RSS and open descriptors (from its
/metrics) and Redis's keys are sampled before the load and again after every user has left and
-settle has passed: a leak shows as growth.

Usage:
  sgbench soak -url http://127.0.0.1:8080 -redis 127.0.0.1:6379 -duration 30m

Only the addresses given with -url and -redis are contacted. Flags:
`

func parseSoakConfig(args []string, stderr io.Writer) (soakConfig, error) {
	var c soakConfig
	fs := flag.NewFlagSet("sgbench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "the api node's base `URL`")
	fs.StringVar(&c.Redis, "redis", "", "the node's Redis `host:port`, to count its keys (none: keys are not reported)")
	fs.DurationVar(&c.Duration, "duration", 30*time.Minute, "how long the load runs")
	fs.IntVar(&c.Users, "users", 200, "users, each with its own token, connecting and leaving in a loop")
	fs.IntVar(&c.Rooms, "rooms", 20, "channels the users share (user i reads room i mod rooms)")
	fs.Float64Var(&c.Rate, "rate", 50, "events published per second, over all rooms")
	fs.DurationVar(&c.Hold, "hold", 10*time.Second, "a connection stays open a random time up to this")
	fs.DurationVar(&c.Settle, "settle", 65*time.Second, "after the users left, wait this long before the last sample (past the minute publish request ids live)")
	fs.DurationVar(&c.Progress, "progress", 30*time.Second, "print a progress line this often (0: never)")
	fs.StringVar(&c.Out, "out", "", "also write the JSON result to this `file`")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), soakUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.Duration <= 0 || c.Duration > 24*time.Hour:
		return c, errors.New("-duration must be above 0 and at most 24h")
	case c.Users < 1 || c.Users > 20_000:
		return c, errors.New("-users must be from 1 to 20000")
	case c.Rooms < 1 || c.Rooms > 10_000:
		return c, errors.New("-rooms must be from 1 to 10000")
	case c.Rate < 0 || c.Rate > 100_000:
		return c, errors.New("-rate must be from 0 to 100000")
	case c.Hold < 100*time.Millisecond:
		return c, errors.New("-hold must be at least 100ms")
	case c.Settle < 0:
		return c, errors.New("-settle must not be negative")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("-url %q is not an http(s) URL", c.URL)
	}
	c.URL = strings.TrimSuffix(c.URL, "/")
	return c, nil
}

// soakSample is the state of the api and Redis at one moment.
type soakSample struct {
	Goroutines   float64 `json:"goroutines"`
	HeapInuseMiB float64 `json:"heap_inuse_mib"`
	RSSMiB       float64 `json:"rss_mib"`
	OpenFDs      float64 `json:"open_fds"`
	Connections  float64 `json:"connections"`
	RedisKeys    int64   `json:"redis_keys"`
	// SessionKeys are session records, kept max(history window, 1 h) after a session ends
	// so that it can resume: they grow during a soak by design and expire later.
	SessionKeys int64 `json:"session_records"`
	// RequestIDKeys make a publish retried by the client library apply once; each lives a
	// minute.
	RequestIDKeys int64 `json:"publish_request_ids"`
}

// soakCounts is what the users and the publisher did.
type soakCounts struct {
	Connects      int64            `json:"connects"`
	Resumed       int64            `json:"resumed"`
	Resets        int64            `json:"resets"`
	Changes       int64            `json:"sessions_api_changes"`
	Messages      int64            `json:"messages"`
	Publishes     int64            `json:"publishes"`
	Errors        int64            `json:"errors"`
	ErrorsByCause map[string]int64 `json:"errors_by_cause,omitempty"`
}

type soakResult struct {
	Duration string     `json:"duration"`
	Users    int        `json:"users"`
	Rate     float64    `json:"rate"`
	Counts   soakCounts `json:"counts"`
	Before   soakSample `json:"before"`
	After    soakSample `json:"after"`
}

// soakRun holds the counters the goroutines of a soak share.
type soakRun struct {
	cfg    soakConfig
	rest   *restClient
	stream *http.Client
	apiKey string

	connects, resumed, resets, changes, messages, publishes atomic.Int64

	mu     sync.Mutex
	errors map[string]int64
}

func (r *soakRun) fail(cause string) {
	r.mu.Lock()
	r.errors[cause]++
	r.mu.Unlock()
}

func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseSoakConfig(args, stderr)
	if err != nil {
		return err
	}
	r := &soakRun{cfg: cfg, rest: newRESTClient(), errors: map[string]int64{},
		stream: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 15 * time.Second}}}
	var rdb *redis.Client
	if cfg.Redis != "" {
		rdb = redis.NewClient(&redis.Options{Addr: cfg.Redis})
		defer rdb.Close()
	}
	if err := r.rest.waitReady(ctx, []string{cfg.URL}, 20*time.Second); err != nil {
		return err
	}
	su, err := r.rest.signup(ctx, cfg.URL, "sgbench soak")
	if err != nil {
		return fmt.Errorf("sign a tenant up: %w", err)
	}
	r.apiKey = su.APIKey
	if l := su.Limits; l.MaxConnections < cfg.Users || float64(l.PublishPerSecond) < cfg.Rate*2 {
		fmt.Fprintf(stderr, "sgbench soak: warning: the tenant allows %d connections and %d publishes/s; the soak wants %d and %.0f (raise the node's defaults)\n",
			l.MaxConnections, l.PublishPerSecond, cfg.Users, cfg.Rate)
	}
	// Each user's token is signed here with the tenant's key, as its backend would.
	tokens := make([]string, cfg.Users)
	ttl := tokenTTL(cfg.Duration + cfg.Settle)
	for i := range tokens {
		if tokens[i], err = signToken(su.Signing, fmt.Sprintf("soak-%d", i), []string{"soak.*"}, ttl); err != nil {
			return fmt.Errorf("sign the token of user %d: %w", i, err)
		}
	}

	before, err := r.sample(ctx, rdb)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "sgbench soak: %d users, %.0f events/s, for %s\n", cfg.Users, cfg.Rate, cfg.Duration)
	start := time.Now()
	load, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	var wg sync.WaitGroup
	for i, tok := range tokens {
		wg.Go(func() { r.user(load, i, tok) })
	}
	wg.Go(func() { r.publish(load) })
	if cfg.Progress > 0 {
		wg.Go(func() {
			t := time.NewTicker(cfg.Progress)
			defer t.Stop()
			for {
				select {
				case <-load.Done():
					return
				case <-t.C:
					s, _ := r.sample(load, nil)
					fmt.Fprintf(stderr, "%6s  connects %d  resumed %d  messages %d  publishes %d  errors %d  |  api: %.0f streams, %.0f goroutines, heap %.1f MiB, RSS %.1f MiB\n",
						time.Since(start).Round(time.Second), r.connects.Load(), r.resumed.Load(), r.messages.Load(), r.publishes.Load(), r.errorCount(),
						s.Connections, s.Goroutines, s.HeapInuseMiB, s.RSSMiB)
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return errInterrupted
	}
	// Keep-alive connections of this tool would count as the api's descriptors and goroutines.
	r.stream.CloseIdleConnections()
	r.rest.http.CloseIdleConnections()
	fmt.Fprintf(stderr, "sgbench soak: load over; every user has left; sampling again in %s\n", cfg.Settle)
	if err := sleep(ctx, cfg.Settle); err != nil {
		return errInterrupted
	}
	after, err := r.sample(ctx, rdb)
	if err != nil {
		return err
	}
	res := soakResult{Duration: cfg.Duration.String(), Users: cfg.Users, Rate: cfg.Rate, Before: before, After: after,
		Counts: soakCounts{Connects: r.connects.Load(), Resumed: r.resumed.Load(), Resets: r.resets.Load(), Changes: r.changes.Load(),
			Messages: r.messages.Load(), Publishes: r.publishes.Load(), Errors: r.errorCount(), ErrorsByCause: r.errors}}
	printSoak(stdout, res)
	if cfg.Out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(cfg.Out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (r *soakRun) errorCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, c := range r.errors {
		n += c
	}
	return n
}

// user connects, reads, changes its channels and leaves, again and again until ctx ends.
func (r *soakRun) user(ctx context.Context, i int, token string) {
	room := fmt.Sprintf("soak.room-%d", i%r.cfg.Rooms)
	var sessionID, cursor string
	rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
	for ctx.Err() == nil {
		resume := cursor != "" && rng.IntN(2) == 0
		if !resume {
			cursor = ""
		}
		hold := time.Duration(rng.Int64N(int64(r.cfg.Hold)))
		id, last, err := r.connectOnce(ctx, token, room, cursor, sessionID, hold, rng)
		if err != nil {
			if ctx.Err() == nil {
				r.fail(err.Error())
				_ = sleep(ctx, time.Second)
			}
			continue
		}
		sessionID, cursor = id, last
		_ = sleep(ctx, time.Duration(rng.Int64N(int64(2*time.Second))))
	}
}

// connectOnce holds one stream for hold and returns its session and the last event id read.
func (r *soakRun) connectOnce(ctx context.Context, token, room, cursor, lastSession string, hold time.Duration, rng *rand.Rand) (string, string, error) {
	sctx, cancel := context.WithTimeout(ctx, hold+15*time.Second)
	defer cancel()
	u := r.cfg.URL + "/v1/stream?channel=" + url.QueryEscape(room)
	header := http.Header{"Authorization": {"Bearer " + token}}
	if cursor != "" {
		header.Set("Last-Event-ID", cursor)
	}
	st, resp, err := sseclient.Connect(sctx, r.stream, u, header)
	if err != nil {
		return "", "", errors.New("connect: " + reason(err))
	}
	if st == nil {
		err := refusal(resp)
		resp.Body.Close()
		return "", "", fmt.Errorf("connect refused: %w", err)
	}
	defer st.Close()
	ev, err := st.NextEvent()
	if err != nil || ev.Event != "connected" {
		return "", "", errors.New("no connected event")
	}
	var connected struct {
		SessionID string `json:"session_id"`
	}
	_ = json.Unmarshal([]byte(ev.Data), &connected)
	r.connects.Add(1)
	if cursor != "" {
		if connected.SessionID == lastSession {
			r.resumed.Add(1)
		} else {
			r.resets.Add(1)
		}
	}
	last := cursor
	if ev.ID != "" {
		last = ev.ID
	}
	// Leave after hold; meanwhile, sometimes add a channel through the sessions API and remove
	// it again.
	leave := time.AfterFunc(hold, func() { st.Close() })
	defer leave.Stop()
	if rng.IntN(3) == 0 {
		extra := fmt.Sprintf("soak.extra-%d", rng.IntN(1000))
		change := time.AfterFunc(hold/3, func() {
			r.change(sctx, token, connected.SessionID, http.MethodPost, extra)
			time.AfterFunc(hold/3, func() { r.change(sctx, token, connected.SessionID, http.MethodDelete, extra) })
		})
		defer change.Stop()
	}
	for {
		ev, err := st.NextEvent()
		if err != nil {
			return connected.SessionID, last, nil
		}
		if ev.ID != "" {
			last = ev.ID
		}
		if ev.Event == "message" {
			r.messages.Add(1)
		}
	}
}

func (r *soakRun) change(ctx context.Context, token, sessionID, method, channel string) {
	if ctx.Err() != nil {
		return
	}
	path := r.cfg.URL + "/v1/sessions/" + url.PathEscape(sessionID) + "/subscriptions"
	var body any
	if method == http.MethodPost {
		body = map[string]string{"channel": channel}
	} else {
		path += "/" + url.PathEscape(channel)
	}
	err := r.rest.do(ctx, method, path, token, body, nil)
	switch {
	case err == nil:
		r.changes.Add(1)
	case ctx.Err() != nil:
	case strings.Contains(err.Error(), "not_found"):
		// The stream ended just before: the session is between connections, which is fine.
		r.changes.Add(1)
	default:
		r.fail("sessions API: " + err.Error())
	}
}

// publish sends cfg.Rate events a second to random rooms until ctx ends.
func (r *soakRun) publish(ctx context.Context) {
	if r.cfg.Rate == 0 {
		<-ctx.Done()
		return
	}
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	t := time.NewTicker(interval)
	defer t.Stop()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			r.fail("publish: 32 requests already waiting")
			continue
		}
		room := fmt.Sprintf("soak.room-%d", n%r.cfg.Rooms)
		wg.Go(func() {
			defer func() { <-sem }()
			err := r.rest.do(ctx, http.MethodPost, r.cfg.URL+"/v1/channels/"+room+"/events", r.apiKey, map[string]any{"data": map[string]int{"n": n}}, nil)
			switch {
			case err == nil:
				r.publishes.Add(1)
			case ctx.Err() == nil:
				r.fail("publish: " + err.Error())
			}
		})
	}
}

// sample reads the api's figures from its /metrics, and Redis's keys when rdb is set.
func (r *soakRun) sample(ctx context.Context, rdb *redis.Client) (soakSample, error) {
	var s soakSample
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL+"/metrics", nil)
	if err != nil {
		return s, err
	}
	resp, err := r.rest.http.Do(req)
	if err != nil {
		return s, fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	metrics := map[string]*float64{
		"go_goroutines":                 &s.Goroutines,
		"go_memstats_heap_inuse_bytes":  &s.HeapInuseMiB,
		"process_resident_memory_bytes": &s.RSSMiB,
		"process_open_fds":              &s.OpenFDs,
		"streamgate_node_connections":   &s.Connections,
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if p := metrics[name]; ok && p != nil {
			*p, _ = strconv.ParseFloat(strings.TrimSpace(value), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("read /metrics: %w", err)
	}
	s.HeapInuseMiB /= 1 << 20
	s.RSSMiB /= 1 << 20
	if rdb == nil {
		return s, nil
	}
	// Counted with SCAN, which skips keys whose time to live has passed: DBSIZE would count those
	// Redis has not reclaimed yet.
	// One pass over the keyspace sorts the keys into the counts.
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		s.RedisKeys++
		if strings.Contains(k, ":ses:") {
			s.SessionKeys++
		}
		if strings.Contains(k, ":idem:~") {
			s.RequestIDKeys++
		}
	}
	if err := iter.Err(); err != nil {
		return s, fmt.Errorf("redis SCAN: %w", err)
	}
	return s, nil
}

func printSoak(w io.Writer, res soakResult) {
	c := res.Counts
	fmt.Fprintf(w, "soak: %s, %d users, %.0f events/s\n", res.Duration, res.Users, res.Rate)
	fmt.Fprintf(w, "  connects %d (resumed %d, reset %d), sessions-API changes %d, messages read %d, publishes %d, errors %d\n",
		c.Connects, c.Resumed, c.Resets, c.Changes, c.Messages, c.Publishes, c.Errors)
	for cause, n := range c.ErrorsByCause {
		fmt.Fprintf(w, "    %d × %s\n", n, cause)
	}
	fmt.Fprintf(w, "  %-34s %12s %12s %12s\n", "", "before", "after", "change")
	row := func(name string, b, a float64, format string) {
		fmt.Fprintf(w, "  %-34s %12s %12s %12s\n", name, fmt.Sprintf(format, b), fmt.Sprintf(format, a), fmt.Sprintf("%+"+format[1:], a-b))
	}
	b, a := res.Before, res.After
	row("api open streams", b.Connections, a.Connections, "%.0f")
	row("api goroutines", b.Goroutines, a.Goroutines, "%.0f")
	row("api heap in use, MiB", b.HeapInuseMiB, a.HeapInuseMiB, "%.1f")
	row("api RSS, MiB", b.RSSMiB, a.RSSMiB, "%.1f")
	row("api open descriptors", b.OpenFDs, a.OpenFDs, "%.0f")
	if a.RedisKeys > 0 {
		other := func(x soakSample) float64 { return float64(x.RedisKeys - x.SessionKeys - x.RequestIDKeys) }
		row("Redis keys (all but the two below)", other(b), other(a), "%.0f")
		row("Redis session records (kept ≥1 h)", float64(b.SessionKeys), float64(a.SessionKeys), "%.0f")
		row("Redis publish request ids (1 min)", float64(b.RequestIDKeys), float64(a.RequestIDKeys), "%.0f")
	}
}
