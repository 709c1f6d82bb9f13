package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/delivery"
	"github.com/streamgate/streamgate/internal/jobs"
	"github.com/streamgate/streamgate/internal/presence"
	"github.com/streamgate/streamgate/internal/ratelimit"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/sseclient"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
	"github.com/streamgate/streamgate/internal/urlguard"
	"github.com/streamgate/streamgate/internal/webhook"
)

const (
	testAdminToken = "test-admin-token-0123456789"
	// callTimeout bounds every request a test sends, so that a misbehaving handler fails the
	// test in seconds instead of hanging it.
	callTimeout = 10 * time.Second
)

// testServer is one node's edge on a private Redis, with the loops a stream needs running, served
// by httptest. It holds the parts tests look into to check that a refusal changed nothing.
type testServer struct {
	URL       string
	rdb       redis.UniversalClient
	tenants   *tenant.Store
	history   *stream.History
	publisher *stream.Publisher
	ready     *atomic.Bool
	client    *http.Client
	webhooks  *webhook.Store
	api       *Server
	// handler is the node's gin engine, for benchmarks that skip the network.
	handler http.Handler
	// states are the states net/http has put each connection in, by the client's address.
	states *connStates
}

// connStates records the states of a server's connections, by the client's address.
type connStates struct {
	mu   sync.Mutex
	seen map[string][]http.ConnState
}

func (cs *connStates) record(c net.Conn, state http.ConnState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.seen[c.RemoteAddr().String()] = append(cs.seen[c.RemoteAddr().String()], state)
}

// of returns the states the connection from client has been in, in order.
func (cs *connStates) of(client net.Addr) []http.ConnState {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return slices.Clone(cs.seen[client.String()])
}

// newTestServer builds the edge as cmd/api wires it, with only the parts the routes use: the
// tenant store, publisher, history, job states and webhook store (loopback URLs allowed), and a
// delivery service with presence whose hub, calls, leases and registry run until the test ends.
// edit may change the edge's configuration.
func newTestServer(t testing.TB, edit func(*Config)) *testServer {
	t.Helper()
	rdb := redistest.Start(t).Client()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const nodeID = "node-test"

	tenants, err := tenant.NewStore(rdb, bytes.Repeat([]byte{7}, 32), tenant.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	registry := session.NewRegistry(nodeID, session.Config{})
	calls := cluster.NewCalls(rdb, nodeID, log)
	hub := stream.NewHub(rdb, nodeID, stream.Handlers{
		Deliver: registry,
		Control: delivery.ControlHandler(registry, log),
		Node:    calls.Receive,
	}, log)
	history := stream.NewHistory(rdb)
	view := cluster.NewView(rdb)
	leases := cluster.NewLeases(rdb, nodeID, log)
	tracker := presence.New(rdb, presence.Config{NodeID: nodeID}, log)
	streams := delivery.New(delivery.Config{NodeID: nodeID}, delivery.Deps{
		Registry: registry, Hub: hub, History: history, Records: cluster.NewRecords(rdb),
		Nodes: view, Admission: cluster.NewAdmission(leases, history), Calls: calls, Tenants: tenants,
		Presence: tracker,
	}, log)
	webhooks, err := webhook.NewStore(rdb, bytes.Repeat([]byte{9}, 32), urlguard.Guard{AllowPrivate: true}, nil)
	if err != nil {
		t.Fatal(err)
	}

	cfg := Config{NodeID: nodeID, AdminToken: testAdminToken, SignupOpen: true, WriteTimeout: 5 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	ready := &atomic.Bool{}
	ready.Store(true)
	publisher := stream.NewPublisher(rdb)
	api := New(cfg, log, Deps{
		Tenants: tenants, Publisher: publisher, Streams: streams, Cluster: view,
		JobStates: jobs.NewStates(history), Updates: jobs.NewUpdates(rdb), Webhooks: webhooks,
		Ready: ready.Load, Limiter: ratelimit.New(rdb),
	})

	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return registry.Run(gctx) })
	g.Go(func() error { return hub.Run(gctx) })
	g.Go(func() error { return calls.Serve(gctx, streams.NodeHandler()) })
	g.Go(func() error { return streams.Run(gctx) })
	g.Go(func() error { return leases.Run(gctx) })
	g.Go(func() error { return tracker.Run(gctx) })
	g.Go(func() error { api.WatchClients(gctx); return nil })
	t.Cleanup(func() {
		streams.Stop()
		cancel()
		if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("node loops: %v", err)
		}
	})
	handler := api.Handler()
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnContext = api.ConnContext
	states := &connStates{seen: map[string][]http.ConnState{}}
	srv.Config.ConnState = states.record
	srv.Start()
	t.Cleanup(srv.Close)
	return &testServer{
		URL: srv.URL, rdb: rdb, tenants: tenants, history: history, publisher: publisher, ready: ready,
		client: &http.Client{Timeout: callTimeout}, webhooks: webhooks, api: api, handler: handler, states: states,
	}
}

// call is one request. A body is sent as application/json unless contentType says otherwise;
// header adds or overrides headers.
type call struct {
	method      string
	path        string
	auth        string // the bearer token, if any
	body        string
	contentType string
	header      http.Header
	unsized     bool // send the body chunked, without a Content-Length
}

type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (s *testServer) do(t testing.TB, c call) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
		if c.unsized {
			body = io.MultiReader(body)
		}
	}
	req, err := http.NewRequestWithContext(ctx, c.method, s.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.body != "" {
		ct := c.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", "Bearer "+c.auth)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", c.method, c.path, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// want checks the status and, for an error, that the body is exactly the contract's error shape
// with the code given and a message that is a sentence.
func (r reply) want(t testing.TB, status int, code ...string) reply {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if len(code) == 0 {
		return r
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type %q, want application/json", ct)
	}
	got := errorShape(t, r.Body)
	if got.Code != code[0] {
		t.Errorf("code %q, want %q; body %s", got.Code, code[0], r.Body)
	}
	if !isSentence(got.Message) {
		t.Errorf("message %q is not a sentence a person can act on", got.Message)
	}
	return r
}

func (r reply) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

type errorFields struct{ Code, Message string }

// errorShape decodes {"error":{"code","message"}} and fails on anything else: another top-level
// key, another field in the error, or a field of another type.
func errorShape(t testing.TB, body []byte) errorFields {
	t.Helper()
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil {
		t.Fatalf("error body %q is not a JSON object: %v", body, err)
	}
	if len(outer) != 1 || outer["error"] == nil {
		t.Fatalf("error body %s: want exactly one key, \"error\"", body)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(outer["error"], &inner); err != nil || len(inner) != 2 {
		t.Fatalf("error body %s: want \"error\" to hold exactly code and message", body)
	}
	var e errorFields
	if json.Unmarshal(inner["code"], &e.Code) != nil || json.Unmarshal(inner["message"], &e.Message) != nil {
		t.Fatalf("error body %s: code and message must be strings", body)
	}
	return e
}

// isSentence reports whether msg reads as a sentence: words, starting with a capital (after one
// position in a list such as "events[3]: "), on one line, without stray spaces.
func isSentence(msg string) bool {
	if msg == "" || strings.TrimSpace(msg) != msg || !strings.Contains(msg, " ") || strings.ContainsAny(msg, "\r\n") {
		return false
	}
	rest := msg
	if i := strings.Index(rest, "]: "); i > 0 && strings.Contains(rest[:i], "[") && !strings.Contains(rest[:i], " ") {
		rest = rest[i+3:]
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return unicode.IsUpper(r)
}

// account is a signed-up tenant with its secrets.
type account struct {
	TenantID     string
	APIKey       string
	SigningKeyID string
}

func (s *testServer) signup(t testing.TB, name string) account {
	t.Helper()
	su, err := s.tenants.Create(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return account{TenantID: su.Tenant.ID, APIKey: su.APIKey.Secret, SigningKeyID: su.SigningKey.ID}
}

func (s *testServer) token(t testing.TB, a account, sub string, channels ...string) string {
	t.Helper()
	tok, _, err := s.tenants.MintToken(t.Context(), a.TenantID, sub, channels, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// liveStream is an open end-user stream, as its connected event describes it.
type liveStream struct {
	*sseclient.Stream
	SessionID string
	Cursor    string
}

// openStream opens an end user's stream; it is closed when the test ends.
func (s *testServer) openStream(t testing.TB, token string, channels ...string) liveStream {
	t.Helper()
	q := url.Values{"channel": channels}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, resp, err := sseclient.Connect(ctx, &http.Client{}, s.URL+"/v1/stream?"+q.Encode(), http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatal(err)
	}
	if st == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream refused: %d %s", resp.StatusCode, b)
	}
	t.Cleanup(func() { st.Close() })
	// The first event names the session; a stalled stream fails the test instead of hanging it.
	first := make(chan sseclient.Event, 1)
	go func() {
		ev, err := st.NextEvent()
		if err == nil {
			first <- ev
		}
		close(first)
	}()
	var ev sseclient.Event
	select {
	case e, ok := <-first:
		if !ok {
			t.Fatal("the stream ended before its first event")
		}
		ev = e
	case <-time.After(callTimeout):
		t.Fatal("no connected event")
	}
	if ev.Event != streamgate.EventConnected {
		t.Fatalf("first event %q, want %q", ev.Event, streamgate.EventConnected)
	}
	var connected struct {
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &connected); err != nil || connected.SessionID == "" || ev.ID == "" {
		t.Fatalf("connected event %+v", ev)
	}
	return liveStream{Stream: st, SessionID: connected.SessionID, Cursor: ev.ID}
}

// published reports every event in the tenant's history of channels, and the tenant's publish
// count: what a refused publish must leave untouched.
func (s *testServer) published(t testing.TB, tenantID string, channels ...string) (entries int, total int64) {
	t.Helper()
	es, _, err := s.history.Read(t.Context(), tenantID, channels, "0-0", "+", 1000)
	if err != nil {
		t.Fatal(err)
	}
	total, err = s.publisher.Published(t.Context(), tenantID)
	if err != nil {
		t.Fatal(err)
	}
	return len(es), total
}

// updatesQueued counts the job and workflow updates waiting in the update stream.
func (s *testServer) updatesQueued(t testing.TB) int64 {
	t.Helper()
	pending, lag, err := jobs.Backlog(t.Context(), s.rdb, jobs.DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	return pending + lag
}

// refusal is one bad request and the error it must get.
type refusal struct {
	name   string
	c      call
	status int
	code   string
}

// runRefusals sends each request in parallel and checks its error; it returns once all are done,
// so the caller can then check that nothing changed.
func (s *testServer) runRefusals(t *testing.T, cases []refusal) {
	t.Helper()
	t.Run("refusals", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s.do(t, tc.c).want(t, tc.status, tc.code)
			})
		}
	})
}

// rawConn dials the test server for a conversation written by hand, with a deadline on
// everything it does.
func (s *testServer) rawConn(t testing.TB) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(callTimeout))
	return c, bufio.NewReader(c)
}

// tcpPair is a loopback TCP connection's two ends, closed when the test ends.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = ln.SetDeadline(time.Now().Add(callTimeout))
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return c.(*net.TCPConn), server
}
