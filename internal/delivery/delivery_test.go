package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/presence"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/sseclient"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// The lifecycle is tested without HTTP and without a pub/sub connection: the tests publish
// through the real publish script on a private Redis and play the hub's part themselves, handing
// the published frames to the registry (live) or not (lost while the hub was reconnecting).

const wait = 10 * time.Second

type fixture struct {
	t       *testing.T
	rs      *redistest.Server
	rdb     *redis.Client
	svc     *Service
	reg     *session.Registry
	pub     *stream.Publisher
	history *gatedHistory
	tenant  tenant.Tenant
	clock   *clock
}

func newFixture(t *testing.T, limits tenant.Limits) *fixture {
	t.Helper()
	return newFixtureFor(t, tenant.Tenant{ID: streamgate.NewID("tn_"), Name: "Test", Limits: limits})
}

func newFixtureFor(t *testing.T, tn tenant.Tenant) *fixture {
	t.Helper()
	rs := redistest.Start(t)
	rdb := rs.Client()
	f := &fixture{t: t, rs: rs, rdb: rdb, clock: &clock{now: time.Now()}}
	f.reg = session.NewRegistry("node-a", session.Config{Now: f.clock.Now})
	f.pub = stream.NewPublisher(rdb)
	f.history = &gatedHistory{History: stream.NewHistory(rdb)}
	f.tenant = tn
	f.svc = f.service(Config{NodeID: "node-a"}, nopHub{}, f.history)
	return f
}

// service is the lifecycle of the fixture's node with cfg, hub and history.
func (f *fixture) service(cfg Config, hub Hub, history History) *Service {
	leases := cluster.NewLeases(f.rdb, "node-a", slog.New(slog.DiscardHandler))
	return New(cfg, Deps{
		Registry:  f.reg,
		Hub:       hub,
		History:   history,
		Records:   cluster.NewRecords(f.rdb),
		Nodes:     loneNode{},
		Admission: cluster.NewAdmission(leases, stream.NewHistory(f.rdb)),
		Calls:     nil, // one node: nothing is ever called remotely
		Tenants:   staticTenants{f.tenant},
		Presence:  presence.New(f.rdb, presence.Config{NodeID: "node-a"}, slog.New(slog.DiscardHandler)),
	}, slog.New(slog.DiscardHandler))
}

func defaultLimits() tenant.Limits { return tenant.DefaultLimits() }

func (f *fixture) claims(sub string, exp time.Time, channels ...string) tenant.Claims {
	return tenant.Claims{TenantID: f.tenant.ID, KeyID: "sig_test", Sub: sub, Channels: channels, ExpiresAt: exp}
}

// publish stores events in history as the REST path does; live hands them to the registry as the
// hub would, or, when false, loses them as a broken pub/sub connection would.
func (f *fixture) publish(live bool, channel string, n int) []string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	w := stream.Window{Events: f.tenant.Limits.HistoryEvents, Seconds: f.tenant.Limits.HistorySeconds}
	var ids []string
	for range n {
		res, err := f.pub.Publish(ctx, f.tenant.ID, w, ratelimit.Rate{}, []stream.Event{{Channel: channel, Event: "e", Data: json.RawMessage(`{"n":1}`)}}, "")
		if err != nil {
			f.t.Fatalf("publish: %v", err)
		}
		ids = append(ids, res.IDs[0])
		if live {
			_, seq, _ := stream.ParseID(res.IDs[0])
			f.reg.Broadcast(f.tenant.ID, channel, liveFrame(channel, res.IDs[0], seq))
		}
	}
	return ids
}

// liveFrame is what the hub makes of an event published on channel.
func liveFrame(channel, id string, seq uint64) *streamgate.Frame {
	return streamgate.NewEventFrame(channel, id, seq, streamgate.EventMessage, `{"channel":"`+channel+`","event":"e","data":{"n":1}}`)
}

// open opens a stream and serves it into a client that reads what an EventSource would.
func (f *fixture) open(claims tenant.Claims, cursor string, channels ...string) (*Stream, *client) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := f.svc.Open(ctx, Request{Claims: claims, Tenant: f.tenant, Channels: channels, Cursor: cursor})
	if err != nil {
		f.t.Fatalf("open: %v", err)
	}
	return st, serve(f.t, st)
}

// client reads a served stream the way a browser's EventSource does.
type client struct {
	t      *testing.T
	events chan sseclient.Event
	done   chan struct{} // closed when Serve returned
}

func serve(t *testing.T, st *Stream) *client {
	return serveTo(t, st, func(s Sink) Sink { return s })
}

// serveTo is serve through a sink that wrap makes of the client's.
func serveTo(t *testing.T, st *Stream, wrap func(Sink) Sink) *client {
	pr, pw := io.Pipe()
	c := &client{t: t, events: make(chan sseclient.Event, 1024), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		st.Serve(wrap(pipeSink{pw}))
		st.Close() // as a transport does once Serve returns
		pw.Close()
	}()
	go func() {
		defer close(c.events)
		s := sseclient.NewStream(&http.Response{Body: pr})
		for {
			ev, err := s.NextEvent()
			if err != nil {
				return
			}
			c.events <- ev
		}
	}()
	t.Cleanup(func() {
		st.Close()
		pr.Close()
	})
	return c
}

// next is the next event; the test fails after a deadline or when the stream ends.
func (c *client) next() sseclient.Event {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(wait):
		c.t.Fatal("no event within the deadline")
		return sseclient.Event{}
	}
}

// expect reads events and checks their names, and the channel of each message.
func (c *client) expect(names ...string) []sseclient.Event {
	c.t.Helper()
	var out []sseclient.Event
	for _, want := range names {
		ev := c.next()
		got := ev.Event
		if got == streamgate.EventMessage {
			var m struct{ Channel string }
			_ = json.Unmarshal([]byte(ev.Data), &m)
			got = "e:" + m.Channel
		}
		if got != want {
			c.t.Fatalf("event %q (%s), want %q", got, ev.Data, want)
		}
		out = append(out, ev)
	}
	return out
}

// ended waits until Serve returned and the client read everything.
func (c *client) ended() []sseclient.Event {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(wait):
		c.t.Fatal("Serve did not return")
	}
	var rest []sseclient.Event
	for ev := range c.events {
		rest = append(rest, ev)
	}
	return rest
}

func lastID(evs []sseclient.Event) string { return evs[len(evs)-1].ID }

func TestResumeAcrossChannels(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	claims := f.claims("u1", time.Now().Add(time.Hour), "*")
	st, c := f.open(claims, "", "a", "b")
	hello := c.expect(streamgate.EventConnected)
	f.publish(true, "a", 1)
	f.publish(true, "b", 1)
	got := c.expect("e:a", "e:b")
	cursor := lastID(got)
	st.Close()
	c.ended()

	missed := append(f.publish(false, "b", 1), f.publish(false, "a", 2)...)
	_, c2 := f.open(claims, cursor, "ignored-on-resume")
	again := c2.expect(streamgate.EventConnected)
	if !strings.Contains(again[0].Data, sessionIDOf(t, hello[0])) {
		t.Fatalf("resumed as another session: %s", again[0].Data)
	}
	replayed := c2.expect("e:b", "e:a", "e:a")
	for i, ev := range replayed {
		if !strings.HasSuffix(ev.ID, ":"+missed[i]) {
			t.Fatalf("replayed %s, want event %s", ev.ID, missed[i])
		}
	}
	f.publish(true, "b", 1)
	c2.expect("e:b")
}

func sessionIDOf(t *testing.T, connected sseclient.Event) string {
	var d struct {
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal([]byte(connected.Data), &d); err != nil || d.SessionID == "" {
		t.Fatalf("connected %q has no session id", connected.Data)
	}
	return d.SessionID
}

func TestResumeOutsideWindowResets(t *testing.T) {
	t.Parallel()
	limits := defaultLimits()
	limits.HistoryEvents = 2
	f := newFixture(t, limits)
	claims := f.claims("u1", time.Now().Add(time.Hour), "*")
	st, c := f.open(claims, "", "a")
	c.expect(streamgate.EventConnected)
	f.publish(true, "a", 1)
	cursor := lastID(c.expect("e:a"))
	st.Close()
	c.ended()

	f.publish(false, "a", 3) // one more than the window keeps: the first is gone
	_, c2 := f.open(claims, cursor, "a", "x")
	evs := c2.expect(streamgate.EventConnected, streamgate.EventReset)
	var reset struct {
		Reason   string   `json:"reason"`
		Channels []string `json:"channels"`
	}
	_ = json.Unmarshal([]byte(evs[1].Data), &reset)
	if reset.Reason != streamgate.ReasonWindowExceeded || strings.Join(reset.Channels, ",") != "a,x" {
		t.Fatalf("reset %s, want %q on the request's channels a,x", evs[1].Data, streamgate.ReasonWindowExceeded)
	}
	f.publish(true, "x", 1)
	c2.expect("e:x")
}

func TestCatchUpAfterHubReconnect(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	_, c := f.open(f.claims("u1", time.Now().Add(time.Hour), "*"), "", "a")
	c.expect(streamgate.EventConnected)
	f.publish(true, "a", 1)
	c.expect("e:a")

	lost := f.publish(false, "a", 2)
	f.reg.Broadcast(f.tenant.ID, "a", &streamgate.Frame{Channel: "a", Resync: true})
	got := c.expect("e:a", "e:a")
	for i, ev := range got {
		if !strings.HasSuffix(ev.ID, ":"+lost[i]) {
			t.Fatalf("caught up %s, want %s", ev.ID, lost[i])
		}
	}
	// The lost events arriving late over pub/sub are not written twice.
	_, seq, _ := stream.ParseID(lost[1])
	f.reg.Broadcast(f.tenant.ID, "a", liveFrame("a", lost[1], seq))
	next := f.publish(true, "a", 1)
	if ev := c.expect("e:a")[0]; !strings.HasSuffix(ev.ID, ":"+next[0]) {
		t.Fatalf("after the catch-up got %s, want the next event %s", ev.ID, next[0])
	}
}

// resumeGated resumes a session of claims whose replay is held until the returned release.
func (f *fixture) resumeGated(claims tenant.Claims) (st *Stream, c *client, release func()) {
	f.t.Helper()
	st, c = f.open(claims, "", "a")
	c.expect(streamgate.EventConnected)
	f.publish(true, "a", 1)
	cursor := lastID(c.expect("e:a"))
	st.Close()
	c.ended()
	f.publish(false, "a", 2)

	gate := f.history.hold()
	st, c = f.open(claims, cursor)
	c.expect(streamgate.EventConnected)
	select {
	case <-gate.entered:
	case <-time.After(wait):
		f.t.Fatal("the replay never started")
	}
	return st, c, func() { close(gate.release) }
}

func TestSubscribeAndUnsubscribeDuringReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	claims := f.claims("u1", time.Now().Add(time.Hour), "*")
	st, c, release := f.resumeGated(claims)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := f.svc.Subscribe(ctx, claims, f.tenant, st.SessionID(), "b"); err != nil {
		t.Fatalf("subscribe during replay: %v", err)
	}
	if err := f.svc.Unsubscribe(ctx, claims, f.tenant, st.SessionID(), "a"); err != nil {
		t.Fatalf("unsubscribe during replay: %v", err)
	}
	release()
	// The replay was read for the channels the session had when it started; the changes come
	// after it, in order.
	c.expect("e:a", "e:a", streamgate.EventSubscribed, streamgate.EventUnsubscribed)
	f.publish(true, "a", 1)
	f.publish(true, "b", 1)
	c.expect("e:b")
}

func TestCloseDuringReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	st, c, _ := f.resumeGated(f.claims("u1", time.Now().Add(time.Hour), "*"))
	st.Close()
	if rest := c.ended(); len(rest) != 0 {
		t.Fatalf("a closed stream wrote %d more events", len(rest))
	}
	if _, ok := f.reg.Lookup(st.SessionID()); ok {
		t.Fatal("the session is still registered after Close")
	}
}

func TestTokenExpiryEndsTheStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	_, c := f.open(f.claims("u1", f.clock.Now().Add(time.Minute), "*"), "", "a")
	c.expect(streamgate.EventConnected)
	f.clock.advance(2 * time.Minute)
	f.reg.ExpireTokens()
	ev := c.expect(streamgate.EventAuthFailed)[0]
	if !strings.Contains(ev.Data, streamgate.ReasonTokenExpired) {
		t.Fatalf("auth_failed %s, want reason %q", ev.Data, streamgate.ReasonTokenExpired)
	}
	c.ended()
}

func TestOpenRefusals(t *testing.T) {
	t.Parallel()
	limits := defaultLimits()
	limits.MaxSubscriptionsPerSession = 2
	f := newFixture(t, limits)
	exp := time.Now().Add(time.Hour)
	st, c := f.open(f.claims("owner", exp, "*"), "", "a")
	c.expect(streamgate.EventConnected)
	f.publish(true, "a", 1)
	cursor := lastID(c.expect("e:a"))
	st.Close()

	for _, tc := range []struct {
		name     string
		claims   tenant.Claims
		channels []string
		cursor   string
		want     error
	}{
		{"channel not granted", f.claims("u", exp, "chat.*"), []string{"chat.1", "news"}, "", ErrForbidden},
		{"too many channels", f.claims("u", exp, "*"), []string{"a", "b", "c"}, "", session.ErrLimitExceeded},
		{"malformed cursor", f.claims("u", exp, "*"), []string{"a"}, "garbage", ErrInvalid},
		{"another user's cursor", f.claims("intruder", exp, "*"), []string{"a"}, cursor, ErrForbidden},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		_, err := f.svc.Open(ctx, Request{Claims: tc.claims, Tenant: f.tenant, Channels: tc.channels, Cursor: tc.cursor})
		cancel()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if n := f.reg.Stats().Connections; n != 0 {
		t.Fatalf("refused opens left %d sessions registered", n)
	}
}

// max_connections counts open streams: a closed one gives its connection back, and a resume
// that takes over a stream this node still holds uses that stream's connection.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	limits := defaultLimits()
	limits.MaxConnections = 2
	f := newFixture(t, limits)
	exp := time.Now().Add(time.Hour)
	refused := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		st, err := f.svc.Open(ctx, Request{Claims: f.claims("u", exp, "*"), Tenant: f.tenant, Channels: []string{"a"}})
		if !errors.Is(err, session.ErrLimitExceeded) {
			if st != nil {
				st.Close()
			}
			t.Fatalf("%s: err = %v, want the cap", what, err)
		}
	}
	first, c1 := f.open(f.claims("u", exp, "*"), "", "a")
	hello := c1.expect(streamgate.EventConnected)
	f.publish(true, "a", 1)
	cursor := lastID(c1.expect("e:a"))
	_, c2 := f.open(f.claims("u", exp, "*"), "", "a")
	c2.expect(streamgate.EventConnected)
	refused("a third stream")

	// The first client reconnects before its old connection was noticed dead.
	resumed, again := f.open(f.claims("u", exp, "*"), cursor, "a")
	again.expect(streamgate.EventConnected)
	c1.ended()
	refused("a third stream after the takeover")

	first.Close() // closing the stream that was taken over gives nothing back twice
	refused("a third stream after the old stream closed")
	if resumed.SessionID() != sessionIDOf(t, hello[0]) {
		t.Fatal("the reconnect did not resume the session")
	}
	resumed.Close()
	_, c3 := f.open(f.claims("u", exp, "*"), "", "a")
	c3.expect(streamgate.EventConnected)
}

func TestStopSendsReconnectableDisconnect(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	_, c := f.open(f.claims("u1", time.Now().Add(time.Hour), "*"), "", "a")
	c.expect(streamgate.EventConnected)
	f.svc.Stop()
	ev := c.expect(streamgate.EventDisconnect)[0]
	if !strings.Contains(ev.Data, `"reconnect":true`) {
		t.Fatalf("disconnect %s, want reconnect true", ev.Data)
	}
	c.ended()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := f.svc.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if _, err := f.svc.Open(ctx, Request{Claims: f.claims("u2", time.Now().Add(time.Hour), "*"), Tenant: f.tenant, Channels: []string{"a"}}); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("open after Stop: %v, want ErrShuttingDown", err)
	}
}

type pipeSink struct{ w *io.PipeWriter }

func (p pipeSink) WriteBatch(pieces [][]byte) error {
	for _, b := range pieces {
		if _, err := p.w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

type nopHub struct{}

func (nopHub) Acquire(context.Context, string, string) error { return nil }
func (nopHub) Release(string, string)                        {}
func (nopHub) Reconnected() <-chan struct{}                  { return nil }

// reconnectingHub is a hub whose pub/sub can be made to come back from a break.
type reconnectingHub struct {
	nopHub
	ch chan struct{}
}

func (h reconnectingHub) Reconnected() <-chan struct{} { return h.ch }

type loneNode struct{}

func (loneNode) Nodes(context.Context) ([]cluster.NodeReport, error) { return nil, nil }
func (loneNode) Alive(context.Context, string) (bool, error)         { return false, nil }
func (loneNode) TenantUsage(context.Context, string, string) (cluster.TenantReport, error) {
	return cluster.TenantReport{}, nil
}

type staticTenants struct{ t tenant.Tenant }

func (s staticTenants) Cached(context.Context, string) (tenant.Tenant, error) { return s.t, nil }
func (s staticTenants) Revocations(context.Context, map[string][]string) ([]tenant.Event, error) {
	return nil, nil
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// gatedHistory is the real history, whose next Read can be held to catch a stream mid-replay.
type gatedHistory struct {
	*stream.History
	gate atomic.Pointer[gate]
}

type gate struct{ entered, release chan struct{} }

func (h *gatedHistory) hold() *gate {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	h.gate.Store(g)
	return g
}

func (h *gatedHistory) Read(ctx context.Context, tenantID string, channels []string, after, upto string, limit int) ([]stream.Entry, bool, error) {
	if g := h.gate.Swap(nil); g != nil {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	return h.History.Read(ctx, tenantID, channels, after, upto, limit)
}

// A revocation whose control message never arrived (pub/sub down at that moment) still ends
// the sessions it affects: after pub/sub comes back, and periodically.
func TestRevocationsMissedByPubSubAreCaught(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	store, err := tenant.NewStore(rdb, make([]byte, 32), tenant.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	a, err := store.Create(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.Create(ctx, "Other")
	if err != nil {
		t.Fatal(err)
	}
	hub := reconnectingHub{ch: make(chan struct{}, 1)}
	for _, tc := range []struct {
		name     string
		revoke   func() error
		every    time.Duration
		signal   bool
		event    string
		affected tenant.Signup
	}{
		{"key deleted, caught after a pub/sub reconnect", func() error {
			return store.DeleteSigningKey(ctx, a.Tenant.ID, a.SigningKey.ID)
		}, time.Hour, true, streamgate.EventAuthFailed, a},
		{"tenant suspended, caught by the periodic check", func() error {
			suspend := true
			_, err := store.Update(ctx, b.Tenant.ID, tenant.LimitsPatch{}, &suspend)
			return err
		}, 50 * time.Millisecond, false, streamgate.EventDisconnect, b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := session.NewRegistry("node-a", session.Config{})
			leases := cluster.NewLeases(rdb, "node-a", slog.New(slog.DiscardHandler))
			svc := New(Config{NodeID: "node-a", Revalidate: tc.every}, Deps{
				Registry: reg, Hub: hub, History: stream.NewHistory(rdb), Records: cluster.NewRecords(rdb),
				Nodes: loneNode{}, Admission: cluster.NewAdmission(leases, stream.NewHistory(rdb)), Tenants: store,
			}, slog.New(slog.DiscardHandler))
			runCtx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Run(runCtx) }()
			defer func() { stop(); <-done }()

			claims := tenant.Claims{TenantID: tc.affected.Tenant.ID, KeyID: tc.affected.SigningKey.ID, Sub: "u", Channels: []string{"*"}, ExpiresAt: time.Now().Add(time.Hour)}
			st, err := svc.Open(ctx, Request{Claims: claims, Tenant: tc.affected.Tenant, Channels: []string{"a"}})
			if err != nil {
				t.Fatal(err)
			}
			c := serve(t, st)
			c.expect(streamgate.EventConnected)
			// Nothing listens to the control channel here: the change's message is lost.
			if err := tc.revoke(); err != nil {
				t.Fatal(err)
			}
			if tc.signal {
				hub.ch <- struct{}{}
			}
			c.expect(tc.event)
			c.ended()
		})
	}
}

// gatedRelease holds Admission.Release until let is closed.
type gatedRelease struct {
	Admission
	called, let chan struct{}
}

func (g gatedRelease) Release(tenantID string) {
	close(g.called)
	<-g.let
	g.Admission.Release(tenantID)
}

// A closing stream gives its connection back before the tenant's usage stops counting it: a
// tenant told it has a place free finds the place free.
func TestUsageCountsAStreamUntilItsConnectionIsBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	gate := gatedRelease{Admission: f.svc.Admission, called: make(chan struct{}), let: make(chan struct{})}
	f.svc.Admission = gate
	st, err := f.svc.Open(t.Context(), Request{Claims: f.claims("u", time.Now().Add(time.Hour), "*"), Tenant: f.tenant, Channels: []string{"room"}})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { st.Close(); close(closed) }()
	select {
	case <-gate.called:
	case <-time.After(wait):
		t.Fatal("Close did not give the connection back")
	}
	if conns, _, err := f.svc.Usage(t.Context(), f.tenant.ID); err != nil || conns != 1 {
		t.Errorf("usage while the connection is being given back: %d connections (err %v), want 1", conns, err)
	}
	close(gate.let)
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
	if conns, _, err := f.svc.Usage(t.Context(), f.tenant.ID); err != nil || conns != 0 {
		t.Errorf("usage after Close: %d connections (err %v), want 0", conns, err)
	}
}

// A stream outlives its request and keeps nothing of the request's context: its values (the
// connection's record, the request's span, the client's address) would otherwise stay in memory
// for as long as the stream, hundreds of bytes each.
func TestStreamKeepsNoRequestContext(t *testing.T) {
	f := newFixture(t, defaultLimits())
	type requestValue struct{}
	value := new([64]byte)
	held := weak.Make(value)
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), requestValue{}, value), wait)
	st, err := f.svc.Open(ctx, Request{Claims: f.claims("u", time.Now().Add(time.Hour), "chat.*"), Tenant: f.tenant, Channels: []string{"chat.a"}})
	cancel()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	c := serve(t, st)
	c.expect(streamgate.EventConnected)
	value, ctx = nil, nil // the request is over: nothing of it is referenced here
	deadline := time.Now().Add(wait)
	for runtime.GC(); held.Value() != nil; runtime.GC() {
		if time.Now().After(deadline) {
			t.Fatal("the open stream still holds its request's context")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.publish(true, "chat.a", 1)
	c.expect("e:chat.a")
}
