// Package stream is Streamgate's Redis-side messaging: the publish path (history log plus live
// fan-out), history reads and the cursor positions streams resume from, and the node's channel
// subscriptions (the hub).
package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/ratelimit"
)

// RequestIDTTL is how long a request without an Idempotency-Key (a publish, a job update) is
// remembered by its request id: long enough for the Redis client's retry of a lost answer.
const RequestIDTTL = time.Minute

// ErrIdempotencyMismatch means an Idempotency-Key came back with another request than its first
// use (other events, another job or workflow update).
var ErrIdempotencyMismatch = errors.New("idempotency key reused")

var (
	//go:embed lib.lua
	libLua string
	//go:embed publish.lua
	publishLua string

	// Each script is the shared library followed by its own body: Redis scripts cannot call
	// one another. On a cluster, live events use sharded pub/sub: the channel's hash tag is the
	// tenant's, so SPUBLISH stays on the shard of the script's keys.
	// The publish script counts the publish rate itself, with the rate limiter's Lua.
	publishScripts = [2]*redis.Script{PublishingScript(ratelimit.Lua+publishLua, false), PublishingScript(ratelimit.Lua+publishLua, true)}
)

// PublishingScript returns a script made of the publish library (the tenant's event clock, and
// append: history, trimming and the live publish of one event) followed by body, for a single
// Redis or, with sharded, a Redis Cluster. Whatever else publishes events (the job worker's
// apply script) goes through the same library, so history and live events have one format.
func PublishingScript(body string, sharded bool) *redis.Script {
	pub := "PUBLISH"
	if sharded {
		pub = "SPUBLISH"
	}
	return redis.NewScript("local PUB = '" + pub + "'\n" + libLua + body)
}

// Sharded reports whether rdb is a Redis Cluster client, which publishes with SPUBLISH.
func Sharded(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// Event is one event to publish: Data must be valid, compact JSON (one line).
type Event struct {
	Channel string
	Event   string
	Data    json.RawMessage
}

// Window is the part of a tenant's limits that shapes its history.
type Window struct {
	Events  int
	Seconds int
}

// Result is what a publish returns.
type Result struct {
	Epoch string
	IDs   []string
	// Duplicate is set when the Idempotency-Key had been seen: IDs are the first call's.
	Duplicate bool
	// Rate is the tenant's standing against the publish rate it was given, if any.
	Rate ratelimit.Result
}

// Publisher appends events to their channels' history and publishes them live, in one script.
type Publisher struct {
	rdb    redis.UniversalClient
	script *redis.Script
	now    func() time.Time
}

// NewPublisher returns a publisher on rdb.
func NewPublisher(rdb redis.UniversalClient) *Publisher {
	return &Publisher{rdb: rdb, script: publishScripts[boolIndex(Sharded(rdb))], now: time.Now}
}

// ErrRateLimited means a publish went over its rate: nothing was published, and Result.Rate
// says when the window has room again.
var ErrRateLimited = errors.New("over the publish rate")

// Publish makes events durable in their channels' history and sends them to live subscribers,
// all or none, in one script: one round trip to Redis.
//
// With a rate (a Limit of at least 1), the events first count against the tenant's publish
// rate in that script (at keys.RateLimitPublishFull, as ratelimit.Limiter.Take counts there):
// over it, nothing is published, the error is ErrRateLimited, and the take counts all the
// same, as a refused Take does. Result.Rate is the tenant's standing after the take; without a
// rate nothing is counted and Result.Rate is zero.
//
// With a non-empty idemKey, a repeat within the history window returns the first call's ids
// and publishes nothing. A repeat (of an Idempotency-Key, or the Redis client's retry of a
// request whose answer it lost) is told before anything is counted: it publishes nothing, so
// it is neither counted nor refused, and its Result.Rate is the standing without it. A key
// reused with other events (ErrIdempotencyMismatch) is not counted either.
func (p *Publisher) Publish(ctx context.Context, tenantID string, w Window, rate ratelimit.Rate, events []Event, idemKey string) (Result, error) {
	if len(events) == 0 {
		return Result{}, errors.New("publish: no events")
	}
	var at [len(time.RFC3339Nano)]byte
	publishedAt := p.now().UTC().AppendFormat(at[:0], time.RFC3339Nano)

	// Without an Idempotency-Key, a request id still makes the script run once: the Redis
	// client retries a command whose answer was lost, and the script may have run. A random
	// request id cannot be reused by another request, so it needs no fingerprint.
	nonce := NewRequestID()
	remember, fingerprint := time.Duration(w.Seconds)*time.Second, RequestIDFingerprint
	if idemKey == "" {
		idemKey, remember = nonce, RequestIDTTL
	} else {
		fingerprint = fingerprintOf(events)
	}
	limit, periodMs := rate.Limit, rate.Period.Milliseconds()
	if limit < 1 {
		limit, periodMs = 0, 0
	}

	ks := make([]string, 4, 4+len(events))
	ks[0], ks[1], ks[2], ks[3] = keys.Publish(tenantID, idemKey)
	args := make([]any, 0, 7+4*len(events))
	// The epoch candidate is the nonce's random part: stored only by a tenant's first publish.
	args = append(args, nonce[1:1+epochLen], w.Events, w.Seconds, fingerprint, remember.Milliseconds(), limit, periodMs)
	for _, ev := range events {
		history, pubsub := keys.PublishChannel(tenantID, ev.Channel)
		ks = append(ks, history)
		payload, err := appendMessage(nil, ev, publishedAt)
		if err != nil {
			return Result{}, err
		}
		args = append(args, ev.Channel, pubsub, messageKind, payload)
	}
	reply, err := RunScript(ctx, p.rdb, p.script, ks, args...).Text()
	if err != nil {
		return Result{}, fmt.Errorf("publish to tenant %s: %w", tenantID, err)
	}
	status, epoch, ids, count, pttl, ok := publishReply(reply)
	if !ok {
		return Result{}, fmt.Errorf("publish to tenant %s: unexpected reply %q", tenantID, reply)
	}
	res := Result{Epoch: epoch}
	if limit > 0 {
		res.Rate = ratelimit.ResultOf(rate, count, pttl, p.now())
	}
	switch status {
	case "ok", "dup":
		res.Duplicate = status == "dup"
		res.IDs = strings.Split(ids, ",")
		return res, nil
	case "limited":
		return res, fmt.Errorf("publish %d events to tenant %s: %w", len(events), tenantID, ErrRateLimited)
	case "mismatch":
		return Result{}, fmt.Errorf("the Idempotency-Key was used with a different request: %w", ErrIdempotencyMismatch)
	}
	return Result{}, fmt.Errorf("publish to tenant %s: unexpected reply %q", tenantID, reply)
}

// publishReply reads publish.lua's reply: "<status> <epoch> <ids> <count> <pttl>".
func publishReply(reply string) (status, epoch, ids string, count, pttl int64, ok bool) {
	status, rest, ok1 := strings.Cut(reply, " ")
	epoch, rest, ok2 := strings.Cut(rest, " ")
	ids, rest, ok3 := strings.Cut(rest, " ")
	c, p, ok4 := strings.Cut(rest, " ")
	count, err1 := strconv.ParseInt(c, 10, 64)
	pttl, err2 := strconv.ParseInt(p, 10, 64)
	return status, epoch, ids, count, pttl, ok1 && ok2 && ok3 && ok4 && err1 == nil && err2 == nil
}

// RequestIDFingerprint stands for the fingerprint of a request known by its random request id:
// no other request can come with that id.
const RequestIDFingerprint = "-"

// messageKind is the kind of a published event, as a script argument (boxed once).
var messageKind any = streamgate.EventMessage

// fingerprintOf identifies a request's events (channels, names, data), so that an
// Idempotency-Key reused for another request is told apart from a retry.
func fingerprintOf(events []Event) string {
	f := NewFingerprint()
	for _, ev := range events {
		f.Add([]byte(ev.Channel)).Add([]byte(ev.Event)).Add(ev.Data)
	}
	return f.String()
}

// Fingerprint identifies a request by its parts, each length-prefixed so that no two lists of
// parts hash alike: what an Idempotency-Key is checked against.
type Fingerprint struct{ h hash.Hash }

// NewFingerprint starts a fingerprint.
func NewFingerprint() Fingerprint { return Fingerprint{sha256.New()} }

// Add adds one part.
func (f Fingerprint) Add(part []byte) Fingerprint {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(part)))
	f.h.Write(n[:])
	f.h.Write(part)
	return f
}

// String is the fingerprint: 32 hex characters.
func (f Fingerprint) String() string { return hex.EncodeToString(f.h.Sum(nil)[:16]) }

// messageData is an event as history and live subscribers have it (its JSON, which
// appendMessage writes).
type messageData struct {
	Channel     string          `json:"channel"`
	Event       string          `json:"event"`
	Data        json.RawMessage `json:"data"`
	PublishedAt string          `json:"published_at"`
}

// appendMessage appends ev as json.Marshal encodes its messageData, byte for byte, without
// encoding/json's reflection and its second pass over the data (which the edge validated and
// compacted already). Strings or data that json.Marshal would escape (HTML characters, U+2028,
// U+2029, control characters) or that are not compact take json.Marshal itself; publishedAt is
// an RFC 3339 time, which needs no escaping.
func appendMessage(dst []byte, ev Event, publishedAt []byte) ([]byte, error) {
	if !plainJSONString(ev.Channel) || !plainJSONString(ev.Event) || bytes.ContainsAny(ev.Data, "<>&\u2028\u2029\t\n\r") {
		b, err := json.Marshal(messageData{Channel: ev.Channel, Event: ev.Event, Data: ev.Data, PublishedAt: string(publishedAt)})
		if err != nil {
			return nil, fmt.Errorf("encode event: %w", err)
		}
		return append(dst, b...), nil
	}
	const (
		channel = `{"channel":"`
		event   = `","event":"`
		data    = `","data":`
		at      = `,"published_at":"`
		end     = `"}`
	)
	dst = slices.Grow(dst, len(channel)+len(ev.Channel)+len(event)+len(ev.Event)+len(data)+len(ev.Data)+len(at)+len(publishedAt)+len(end))
	dst = append(append(dst, channel...), ev.Channel...)
	dst = append(append(dst, event...), ev.Event...)
	dst = append(append(dst, data...), ev.Data...)
	dst = append(append(dst, at...), publishedAt...)
	return append(dst, end...), nil
}

// plainJSONString reports whether json.Marshal writes s as it is, between quotes.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// epochLen is the length of an epoch: 8 hex characters.
const epochLen = 8

// Epochs and request ids are identifiers, not secrets: they need to differ, not to be
// unguessable (an epoch is in every event id; a client can send any Idempotency-Key but none
// starting with "~"). They come from the runtime's generator (ChaCha8, seeded from the system
// for each thread), a few nanoseconds a call, where crypto/rand's getrandom was 2% of a
// connect's api CPU in a profile of A: one epoch candidate per connect, one id per publish.

// NewEpoch returns a fresh random epoch: 8 hex characters.
func NewEpoch() string {
	var b [epochLen / 2]byte
	binary.LittleEndian.PutUint32(b[:], rand.Uint32())
	return hex.EncodeToString(b[:])
}

// NewRequestID returns a fresh request id: "~" and 16 random hex characters, never an
// Idempotency-Key (which cannot start with "~").
func NewRequestID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	var s [1 + 2*len(b)]byte
	s[0] = '~'
	hex.Encode(s[1:], b[:])
	return string(s[:])
}

// Published returns how many events the tenant has published (its sequence counter).
func (p *Publisher) Published(ctx context.Context, tenantID string) (int64, error) {
	n, err := p.rdb.HGet(ctx, keys.Sequence(tenantID), "seq").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read published count of tenant %s: %w", tenantID, err)
	}
	return n, nil
}

// PublishedMany returns the published counts of several tenants in one round trip.
func (p *Publisher) PublishedMany(ctx context.Context, tenantIDs ...string) (map[string]int64, error) {
	cmds := make([]*redis.StringCmd, len(tenantIDs))
	_, err := p.rdb.Pipelined(ctx, func(pp redis.Pipeliner) error {
		for i, id := range tenantIDs {
			cmds[i] = pp.HGet(ctx, keys.Sequence(id), "seq")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read published counts: %w", err)
	}
	out := make(map[string]int64, len(tenantIDs))
	for i, id := range tenantIDs {
		n, _ := cmds[i].Int64()
		out[id] = n
	}
	return out, nil
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}
