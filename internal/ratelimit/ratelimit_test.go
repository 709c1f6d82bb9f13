package ratelimit

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"10-M", Rate{10, time.Minute}, true},
		{"100-S", Rate{100, time.Second}, true},
		{"5-h", Rate{5, time.Hour}, true},
		{"1-D", Rate{1, 24 * time.Hour}, true},
		{"0-M", Rate{}, false},
		{"-1-M", Rate{}, false},
		{"10", Rate{}, false},
		{"10-W", Rate{}, false},
		{"ten-M", Rate{}, false},
	} {
		got, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if got := (Rate{10, time.Minute}).String(); got != "10 per minute" {
		t.Errorf("String %q", got)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 500_000_000)
	for _, tc := range []struct {
		reset int64
		want  int64
	}{
		{1000, 1}, // the window ends within this second
		{1001, 2},
		{1059, 60},
		{900, 1}, // never less than one
	} {
		if got := (Result{Reset: time.Unix(tc.reset, 0)}).RetryAfter(now); got != tc.want {
			t.Errorf("reset %d: RetryAfter %d, want %d", tc.reset, got, tc.want)
		}
	}
}

// TestTake: counts are shared through Redis by every limiter, a take of n counts n, refused
// takes count too, the key lives on the tenant's shard and expires with its window, and a
// limiter whose Redis is gone reports an error rather than a verdict.
func TestTake(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rdb := rs.Client()
	a, b := New(rdb), New(rdb) // two nodes
	key := keys.RateLimitPublish("tn_test")
	rate := Rate{Limit: 5, Period: time.Minute}
	ctx := t.Context()

	steps := []struct {
		l         *Limiter
		n         int64
		remaining int64
		reached   bool
	}{
		{a, 3, 2, false},
		{b, 2, 0, false},
		{a, 1, 0, true},
		{b, 1, 0, true},
	}
	for i, s := range steps {
		res, err := s.l.Take(ctx, key, s.n, rate)
		if err != nil {
			t.Fatal(err)
		}
		if res.Limit != 5 || res.Remaining != s.remaining || res.Reached != s.reached {
			t.Errorf("step %d: %+v, want remaining %d reached %v", i, res, s.remaining, s.reached)
		}
		if until := time.Until(res.Reset); until < -time.Second || until > time.Minute {
			t.Errorf("step %d: reset in %s", i, until)
		}
	}
	full := "sg:{tn_test}:rl:publish"
	if n, err := rdb.Get(ctx, full).Int(); err != nil || n != 7 {
		t.Errorf("count at %s = %d, %v; want 7 (refused takes count)", full, n, err)
	}
	if ttl := rdb.PTTL(ctx, full).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("window key ttl %s", ttl)
	}

	rs.Stop()
	if _, err := New(rdb).Take(ctx, key, 1, rate); err == nil { // never reached Redis
		t.Errorf("a limiter without Redis gave a verdict")
	}
	if _, err := a.Take(ctx, key, 1, rate); err == nil { // had its scripts loaded
		t.Errorf("a limiter without Redis gave a verdict")
	}
}

func TestResultOf(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 700_000_000)
	rate := Rate{Limit: 5, Period: time.Minute}
	for _, tc := range []struct {
		name        string
		count, pttl int64
		want        Result
	}{
		{"a window opened", 1, 60000, Result{Limit: 5, Remaining: 4, Reset: time.Unix(1060, 0)}},
		{"at the limit", 5, 1500, Result{Limit: 5, Remaining: 0, Reset: time.Unix(1002, 0)}},
		{"over it", 7, 1500, Result{Limit: 5, Remaining: 0, Reset: time.Unix(1002, 0), Reached: true}},
		{"no window open (a peek)", 0, 0, Result{Limit: 5, Remaining: 5, Reset: time.Unix(1060, 0)}},
		{"a key without expiry", 3, -1, Result{Limit: 5, Remaining: 2, Reset: time.Unix(1060, 0)}},
	} {
		if got := ResultOf(rate, tc.count, tc.pttl, now); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestLuaSharesTake: a script counting with Lua and a Limiter's Take count one key together,
// and ResultOf reads the script's count as Take reports its own.
func TestLuaSharesTake(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	l := New(rdb)
	script := redis.NewScript(Lua + `
local count, pttl
if ARGV[1] == 'peek' then
  count, pttl = ratePeek(KEYS[1])
else
  count, pttl = rateTake(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
end
return {count, pttl}`)
	rate := Rate{Limit: 5, Period: time.Minute}
	ctx := t.Context()
	lua := func(arg string) Result {
		t.Helper()
		v, err := script.Run(ctx, rdb, []string{keys.RateLimitPublishFull("tn_test")}, arg, rate.Period.Milliseconds()).Int64Slice()
		if err != nil || len(v) != 2 {
			t.Fatalf("script: %v, %v", v, err)
		}
		return ResultOf(rate, v[0], v[1], time.Now())
	}
	take := func(n int64) Result {
		t.Helper()
		res, err := l.Take(ctx, keys.RateLimitPublish("tn_test"), n, rate)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	if got := lua("peek"); got.Remaining != 5 || got.Reached {
		t.Errorf("peek before any take: %+v, want 5 remaining", got)
	}
	steps := []struct {
		take      func() Result
		remaining int64
		reached   bool
	}{
		{func() Result { return lua("2") }, 3, false},
		{func() Result { return take(2) }, 1, false},
		{func() Result { return lua("1") }, 0, false},
		{func() Result { return take(1) }, 0, true},
		{func() Result { return lua("1") }, 0, true},
		{func() Result { return lua("peek") }, 0, true},
	}
	for i, s := range steps {
		got := s.take()
		if got.Limit != 5 || got.Remaining != s.remaining || got.Reached != s.reached {
			t.Errorf("step %d: %+v, want remaining %d reached %v", i, got, s.remaining, s.reached)
		}
		if until := time.Until(got.Reset); until < -time.Second || until > time.Minute {
			t.Errorf("step %d: reset in %s", i, until)
		}
	}
	full := keys.RateLimitPublishFull("tn_test")
	if n, err := rdb.Get(ctx, full).Int(); err != nil || n != 7 {
		t.Errorf("count at %s = %d, %v; want 7 (refused takes count, peeks do not)", full, n, err)
	}
	if ttl := rdb.PTTL(ctx, full).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("window key ttl %s", ttl)
	}
}
