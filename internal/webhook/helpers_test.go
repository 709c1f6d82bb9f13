package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/urlguard"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fixture is an endpoint store and event intake on a private Redis.
type fixture struct {
	rdb    redis.UniversalClient
	events *Events
	store  *Store
}

func newFixture(t testing.TB, guard urlguard.Guard) *fixture {
	t.Helper()
	rdb := redistest.Start(t).Client()
	events := NewEvents(rdb, quietLog())
	store, err := NewStore(rdb, testKey, guard, events)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{rdb: rdb, events: events, store: store}
}

// open is the guard of tests whose receivers listen on loopback.
var open = urlguard.Guard{AllowPrivate: true}

// dispatch runs a dispatcher until the test ends; zero fields of cfg get quick test values.
func (f *fixture) dispatch(t testing.TB, cfg DispatcherConfig) *Dispatcher {
	t.Helper()
	if cfg.Poll == 0 {
		cfg.Poll = 20 * time.Millisecond
	}
	d := NewDispatcher(f.store, cfg, quietLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("dispatcher did not stop")
		}
	})
	return d
}

func (f *fixture) create(t testing.TB, tenantID, url string, events ...string) (Endpoint, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ep, secret, err := f.store.Create(ctx, tenantID, Input{URL: url, Events: events})
	if err != nil {
		t.Fatalf("create webhook: %v", err)
	}
	return ep, secret
}

func (f *fixture) emit(t testing.TB, tenantID, typ string, data any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.events.Emit(ctx, tenantID, typ, data); err != nil {
		t.Fatalf("emit: %v", err)
	}
}

func (f *fixture) attempts(t testing.TB, tenantID, id string) []Attempt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := f.store.Attempts(ctx, tenantID, id)
	if err != nil {
		t.Fatalf("attempts: %v", err)
	}
	return rows
}

// DeadCount (for the tests) is how many dead deliveries of an endpoint are kept.
func (s *Store) DeadCount(ctx context.Context, tenantID, id string) (int64, error) {
	cutoff := s.now().Add(-DeadRetention).UnixMilli()
	return s.rdb.ZCount(ctx, keys.WebhookDeadIndex(tenantID, id), fmt.Sprint(cutoff), "+inf").Result()
}

// request is one request a receiver got.
type request struct {
	ID, Timestamp, Signature, ContentType string
	Body                                  []byte
}

// receiver is an endpoint in the test: it records every request and answers with status.
type receiver struct {
	srv    *httptest.Server
	got    chan request
	status atomic.Int32
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	r := &receiver{got: make(chan request, 1000)}
	r.status.Store(http.StatusNoContent)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.got <- request{ID: req.Header.Get("webhook-id"), Timestamp: req.Header.Get("webhook-timestamp"),
			Signature: req.Header.Get("webhook-signature"), ContentType: req.Header.Get("Content-Type"), Body: body}
		w.WriteHeader(int(r.status.Load()))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) next(t testing.TB, timeout time.Duration) request {
	t.Helper()
	select {
	case req := <-r.got:
		return req
	case <-time.After(timeout):
		t.Fatalf("no delivery within %s", timeout)
		return request{}
	}
}

func (r *receiver) expectNone(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case req := <-r.got:
		t.Fatalf("unexpected delivery %s: %s", req.ID, req.Body)
	case <-time.After(d):
	}
}

// verified checks a request's signatures the Standard Webhooks way, written out here rather
// than borrowed from the package: it reports how many of the space-separated signatures are a
// valid HMAC-SHA256 of "<id>.<timestamp>.<body>" under secret.
func verified(t testing.TB, secret string, req request) int {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") || len(key) != 32 {
		t.Fatalf("secret %q is not whsec_ + base64 of 32 bytes", secret)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(req.ID + "." + req.Timestamp + "."))
	mac.Write(req.Body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	n := 0
	for _, sig := range strings.Fields(req.Signature) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			n++
		}
	}
	return n
}

// payload is a delivery's body.
type payload struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

func decodePayload(t testing.TB, req request) payload {
	t.Helper()
	var p payload
	dec := json.NewDecoder(strings.NewReader(string(req.Body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("body %s: %v", req.Body, err)
	}
	return p
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeDNS answers every A query with the address it holds now (and AAAA queries with no
// address), so that a test can make a name resolve to one address at creation and to another
// at delivery, as DNS rebinding would.
type fakeDNS struct {
	pc   net.PacketConn
	mu   sync.Mutex
	addr netip.Addr
}

func newFakeDNS(t testing.TB, addr string) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{pc: pc, addr: netip.MustParseAddr(addr)}
	t.Cleanup(func() { pc.Close() })
	go d.serve()
	return d
}

func (d *fakeDNS) set(addr string) {
	d.mu.Lock()
	d.addr = netip.MustParseAddr(addr)
	d.mu.Unlock()
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			_, _ = d.pc.WriteTo(resp, from)
		}
	}
}

func (d *fakeDNS) answer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	end := 12
	for end < len(q) && q[end] != 0 {
		end += int(q[end]) + 1
	}
	end += 5 // the root label, QTYPE and QCLASS
	if end > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[end-4:])
	d.mu.Lock()
	addr := d.addr
	d.mu.Unlock()
	answers := 0
	if qtype == 1 {
		answers = 1
	}
	resp := make([]byte, 0, end+16)
	resp = append(resp, q[0], q[1], 0x81, 0x80, 0, 1, 0, byte(answers), 0, 0, 0, 0)
	resp = append(resp, q[12:end]...)
	if answers == 1 {
		ip := addr.As4()
		resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4)
		resp = append(resp, ip[:]...)
	}
	return resp
}

// resolver sends every lookup to the fake server.
func (d *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "udp", d.pc.LocalAddr().String())
	}}
}
