package httpapi

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
)

// redisReply is an error answer from Redis, as go-redis returns it.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

// A Redis Cluster that keeps refusing a command because its slot is moving between masters
// (after the client's and the publish path's own retries) answers 503: nothing was accepted,
// and the client may retry. An error answer that is a bug stays a 500.
func TestClusterRefusalsAreUnavailable(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		err  error
		want int
	}{
		{redisReply("TRYAGAIN Multiple keys request during rehashing of slot"), http.StatusServiceUnavailable},
		{fmt.Errorf("publish to tenant tn_a: %w", redisReply("MOVED 3999 127.0.0.1:6381")), http.StatusServiceUnavailable},
		{fmt.Errorf("append job update for j: %w", redisReply("ASK 3999 127.0.0.1:6381")), http.StatusServiceUnavailable},
		{redisReply("CLUSTERDOWN The cluster is down"), http.StatusServiceUnavailable},
		{redisReply("ERR Error running script: attempt to index a nil value"), http.StatusInternalServerError},
	} {
		got := toError(log, tc.err)
		if got.Status != tc.want {
			t.Errorf("%v: status %d, want %d", tc.err, got.Status, tc.want)
		}
		if tc.want == http.StatusServiceUnavailable && got.Code != CodeUnavailable {
			t.Errorf("%v: code %s, want %s", tc.err, got.Code, CodeUnavailable)
		}
	}
}
