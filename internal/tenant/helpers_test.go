package tenant

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/redistest"
)

// testEnv is one private Redis with a store on it. secretKey lets a test open more stores on
// the same Redis: another node of the same deployment.
type testEnv struct {
	rdb       *redis.Client
	store     *Store
	secretKey []byte
}

func newTestEnv(tb testing.TB) *testEnv {
	tb.Helper()
	rs := redistest.Start(tb)
	env := &testEnv{rdb: rs.Client(), secretKey: randomKey(tb)}
	env.store = env.node(tb)
	return env
}

// node returns a fresh store on the same Redis with the same secret key and an empty cache, as
// another process of the deployment would have.
func (e *testEnv) node(tb testing.TB, opts ...Option) *Store {
	tb.Helper()
	s, err := NewStore(e.rdb, e.secretKey, DefaultLimits(), opts...)
	if err != nil {
		tb.Fatalf("NewStore: %v", err)
	}
	return s
}

func randomKey(tb testing.TB) []byte {
	tb.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		tb.Fatalf("rand: %v", err)
	}
	return k
}

// fixedClock pins a store's clock to a whole second near the real time (the caches run on the
// real clock, so the two must not drift apart).
func fixedClock(s *Store) time.Time {
	now := time.Now().Truncate(time.Second)
	s.now = func() time.Time { return now }
	return now
}

func mustCreate(tb testing.TB, s *Store, name string) Signup {
	tb.Helper()
	su, err := s.Create(tb.Context(), name)
	if err != nil {
		tb.Fatalf("Create(%q): %v", name, err)
	}
	return su
}

// redisDump reads every key of the database with the real client and returns key → a readable
// rendering of its whole value. Tests compare dumps and search them for secrets.
func redisDump(tb testing.TB, rdb *redis.Client) map[string]string {
	tb.Helper()
	ctx := tb.Context()
	out := map[string]string{}
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			tb.Fatalf("TYPE %s: %v", k, err)
		}
		var v any
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "set":
			var m []string
			m, err = rdb.SMembers(ctx, k).Result()
			slices.Sort(m)
			v = m
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "stream":
			v, err = rdb.XRange(ctx, k, "-", "+").Result()
		default:
			tb.Fatalf("key %s has type %s, which redisDump cannot read", k, typ)
		}
		if err != nil {
			tb.Fatalf("read %s: %v", k, err)
		}
		b, _ := json.Marshal(v) // map keys are sorted: equal values render equal
		out[k] = typ + " " + string(b)
	}
	if err := iter.Err(); err != nil {
		tb.Fatalf("SCAN: %v", err)
	}
	return out
}

// assertNotInRedis fails if secret, or a plain encoding of it, appears in any key name or value.
func assertNotInRedis(tb testing.TB, rdb *redis.Client, what, secret string) {
	tb.Helper()
	dump := redisDump(tb, rdb)
	if len(dump) == 0 {
		tb.Fatalf("Redis is empty: the scan would prove nothing")
	}
	forms := []string{
		secret,
		base64.StdEncoding.EncodeToString([]byte(secret)),
		base64.RawStdEncoding.EncodeToString([]byte(secret)),
		fmt.Sprintf("%x", secret),
	}
	for k, v := range dump {
		for _, f := range forms {
			// json.Marshal escapes nothing in these alphabets, so a plain search is exact.
			if strings.Contains(k, f) || strings.Contains(v, f) {
				tb.Errorf("%s found in Redis key %s (value %.120s…)", what, k, v)
			}
		}
	}
}

// jwtPart is the unpadded base64url encoding of v's JSON, as in a JWT.
func jwtPart(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("marshal %v: %v", v, err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// handToken builds a JWT byte by byte: header and payload as given, and a signature that is
// HMAC-SHA256 of the signing input with key, or empty when key is nil. No JWT library is
// involved, so the header can claim anything.
func handToken(tb testing.TB, header, payload map[string]any, key []byte) string {
	tb.Helper()
	input := jwtPart(tb, header) + "." + jwtPart(tb, payload)
	if key == nil {
		return input + "."
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
