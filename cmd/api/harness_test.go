package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/sseclient"
)

const (
	testAdminToken = "test-admin-token-0123456789"
	testSecretKey  = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes, base64
)

// testClient bounds every request of the tests, streams included: a test whose stream stalls,
// or that was served a stream where it expected a refusal, fails within a minute instead of
// hanging the suite.
var testClient = &http.Client{Timeout: time.Minute}

// node is one api process started through run, as main would, on a free port.
type node struct {
	t      testing.TB
	URL    string
	Redis  *redistest.Server
	cancel context.CancelFunc
	done   chan error
	logs   *logSink
	stdout *bytes.Buffer
}

// startNode boots the api on a private Redis (or the given one) with env on top of the test
// defaults, and waits until /readyz answers 200.
func startNode(t testing.TB, rs *redistest.Server, env map[string]string) *node {
	t.Helper()
	return startNodeContext(context.Background(), t, rs, env)
}

// startNodeContext is startNode with run's context made from parent, which may carry test hooks
// (under telemetry.ProviderKey).
func startNodeContext(parent context.Context, t testing.TB, rs *redistest.Server, env map[string]string) *node {
	t.Helper()
	if rs == nil {
		rs = redistest.Start(t)
	}
	vars := map[string]string{
		"REDIS_URL":              rs.URL(),
		"STREAMGATE_ADDR":        "127.0.0.1:0",
		"STREAMGATE_ADMIN_TOKEN": testAdminToken,
		"STREAMGATE_SECRET_KEY":  testSecretKey,
		"STREAMGATE_LOG_LEVEL":   "debug",
		"STREAMGATE_DRAIN_DELAY": "0", // tests that stop a node and want the delay set it
	}
	for k, v := range env {
		vars[k] = v
	}
	return bootNodeContext(parent, t, rs, vars)
}

func bootNode(t testing.TB, rs *redistest.Server, vars map[string]string) *node {
	t.Helper()
	return bootNodeContext(context.Background(), t, rs, vars)
}

func bootNodeContext(parent context.Context, t testing.TB, rs *redistest.Server, vars map[string]string) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(parent)
	n := &node{t: t, Redis: rs, cancel: cancel, done: make(chan error, 1), logs: newLogSink(), stdout: &bytes.Buffer{}}
	go func() {
		n.done <- run(ctx, []string{"api"}, func(k string) string { return vars[k] }, n.stdout, n.logs)
	}()
	select {
	case addr := <-n.logs.listening:
		n.URL = "http://" + addr
	case err := <-n.done:
		cancel()
		t.Fatalf("api exited before listening: %v\n%s", err, n.logs)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("api did not start listening\n%s", n.logs)
	}
	t.Cleanup(func() { n.Stop() })
	n.waitReady()
	return n
}

func (n *node) waitReady() {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := testClient.Get(n.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("api never became ready\n%s", n.logs)
}

// Stop ends the node as SIGTERM would and returns run's error.
func (n *node) Stop() error {
	n.cancel()
	select {
	case err, ok := <-n.done:
		if ok {
			close(n.done)
		}
		return err
	case <-time.After(30 * time.Second):
		n.t.Errorf("api did not stop within 30s")
		return errors.New("timeout")
	}
}

// logSink collects the node's JSON log lines and spots the listening address.
type logSink struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	partial   []byte
	listening chan string
}

func newLogSink() *logSink { return &logSink{listening: make(chan string, 1)} }

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(l.partial[:i], &rec) == nil && rec.Msg == "listening" {
			select {
			case l.listening <- rec.Addr:
			default:
			}
		}
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// call is one JSON request; it returns the status and decoded body.
type call struct {
	method, path string
	auth         string
	body         any // string bodies are sent as is
	header       map[string]string
}

type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// errCode returns the contract's error code of a refusal, failing the test if the body is not
// in the contract's shape.
func (r reply) errCode(t testing.TB) string {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("status %d: body %q is not an error in the contract's shape", r.Status, r.Body)
	}
	return e.Error.Code
}

func (n *node) do(t testing.TB, c call) reply {
	t.Helper()
	var body io.Reader
	switch b := c.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(c.method, n.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.auth != "" {
		req.Header.Set("Authorization", "Bearer "+c.auth)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// want fails the test unless the reply has the status (and, for errors, the code).
func (r reply) want(t testing.TB, status int, code ...string) reply {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	if len(code) > 0 {
		if got := r.errCode(t); got != code[0] {
			t.Fatalf("code %q, want %q: %s", got, code[0], r.Body)
		}
	}
	return r
}

// account is a signed-up tenant.
type account struct {
	TenantID   string
	APIKey     string
	APIKeyID   string
	SigningKey string
	SigningID  string
}

func (n *node) signup(t testing.TB, name string) account {
	t.Helper()
	var out struct {
		Tenant struct {
			ID string `json:"id"`
		} `json:"tenant"`
		APIKey struct {
			ID, Secret string
		} `json:"api_key"`
		SigningKey struct {
			ID, Secret string
		} `json:"signing_key"`
	}
	n.do(t, call{method: "POST", path: "/v1/tenants", body: map[string]string{"name": name}}).want(t, 201).decode(t, &out)
	return account{TenantID: out.Tenant.ID, APIKey: out.APIKey.Secret, APIKeyID: out.APIKey.ID,
		SigningKey: out.SigningKey.Secret, SigningID: out.SigningKey.ID}
}

func (n *node) token(t testing.TB, a account, sub string, channels []string, ttl int) string {
	t.Helper()
	body := map[string]any{"sub": sub, "channels": channels}
	if ttl > 0 {
		body["ttl_seconds"] = ttl
	}
	var out struct{ Token string }
	n.do(t, call{method: "POST", path: "/v1/tokens", auth: a.APIKey, body: body}).want(t, 201).decode(t, &out)
	return out.Token
}

func (n *node) publish(t testing.TB, a account, channel string, data any) string {
	t.Helper()
	var out struct{ ID string }
	n.do(t, call{method: "POST", path: "/v1/channels/" + channel + "/events", auth: a.APIKey,
		body: map[string]any{"data": data}}).want(t, 202).decode(t, &out)
	return out.ID
}

// subscriber is an open end-user stream, read in the background into events.
type subscriber struct {
	t         testing.TB
	stream    *sseclient.Stream
	events    chan sseclient.Event
	done      chan error
	connected connectedData
	cancel    context.CancelFunc
}

type connectedData struct {
	SessionID string   `json:"session_id"`
	NodeID    string   `json:"node_id"`
	Channels  []string `json:"channels"`
}

func streamURL(n *node, token string, channels ...string) string {
	q := url.Values{}
	for _, c := range channels {
		q.Add("channel", c)
	}
	if token != "" {
		q.Set("token", token)
	}
	return n.URL + "/v1/stream?" + q.Encode()
}

// openStream connects, reads the connected event, and keeps reading in the background. The
// events channel has room for many events so that a test's reader is never the slow one.
func (n *node) openStream(t testing.TB, token string, channels ...string) *subscriber {
	t.Helper()
	s := n.dial(t, streamURL(n, token, channels...), nil, 1<<16)
	return s
}

func (n *node) dial(t testing.TB, u string, header http.Header, buffer int) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, resp, err := sseclient.Connect(ctx, testClient, u, header)
	if err != nil {
		cancel()
		t.Fatalf("connect stream: %v", err)
	}
	if st == nil {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("stream refused: %d %s", resp.StatusCode, raw)
	}
	s := &subscriber{t: t, stream: st, events: make(chan sseclient.Event, buffer), done: make(chan error, 1), cancel: cancel}
	t.Cleanup(s.Close)
	ev, err := st.NextEvent()
	if err != nil || ev.Event != "connected" {
		t.Fatalf("first event %+v, %v; want connected", ev, err)
	}
	if err := json.Unmarshal([]byte(ev.Data), &s.connected); err != nil {
		t.Fatalf("connected data %q: %v", ev.Data, err)
	}
	go func() {
		defer close(s.events)
		for {
			ev, err := st.Next()
			if err != nil {
				s.done <- err
				return
			}
			s.events <- ev
		}
	}()
	return s
}

func (s *subscriber) Close() {
	s.cancel()
	s.stream.Close()
}

// next returns the next event that is not a comment, failing the test after timeout.
func (s *subscriber) next(timeout time.Duration) sseclient.Event {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("stream ended while waiting for an event")
			}
			if ev.Comment != "" || ev.Event == "" {
				continue
			}
			return ev
		case <-deadline:
			s.t.Fatalf("no event within %s", timeout)
		}
	}
}

// expectNone fails if an event (not a comment) arrives within d.
func (s *subscriber) expectNone(d time.Duration) {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return
			}
			if ev.Comment != "" || ev.Event == "" {
				continue
			}
			s.t.Fatalf("unexpected event %s: %s", ev.Event, ev.Data)
		case <-deadline:
			return
		}
	}
}

// message decodes a message event's data.
type messageData struct {
	Channel     string          `json:"channel"`
	Event       string          `json:"event"`
	Data        json.RawMessage `json:"data"`
	PublishedAt time.Time       `json:"published_at"`
}

func decodeMessage(t testing.TB, ev sseclient.Event) messageData {
	t.Helper()
	if ev.Event != "message" {
		t.Fatalf("event %q (%s), want message", ev.Event, ev.Data)
	}
	var m messageData
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		t.Fatalf("message data %q: %v", ev.Data, err)
	}
	return m
}

// eventID returns the event id part of a cursor ("ses:epoch:<id>").
func eventID(t testing.TB, cursor string) string {
	t.Helper()
	parts := strings.Split(cursor, ":")
	if len(parts) != 3 {
		t.Fatalf("cursor %q is not session:epoch:id", cursor)
	}
	return parts[2]
}

// waitFor polls cond until it holds, failing the test with what after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

var _ = fmt.Sprintf
