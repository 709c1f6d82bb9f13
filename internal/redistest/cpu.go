package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReportCPU measures the CPU time (system and user, as INFO has it) that the Redis behind rdb
// spends from now until the returned function is called, and reports it per operation as
// "redis-µs/op": `defer redistest.ReportCPU(b, rdb)()` just before the benchmark's loop. On a
// machine shared with other work a CPU time is steadier than ns/op, which also counts the time
// spent waiting to be scheduled.
func ReportCPU(b *testing.B, rdb redis.UniversalClient) (stop func()) {
	b.Helper()
	start := cpu(b, rdb)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpu(b, rdb)-start).Microseconds())/float64(b.N), "redis-µs/op")
		}
	}
}

// cpu is the Redis server's CPU time so far.
func cpu(tb testing.TB, rdb redis.UniversalClient) time.Duration {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatalf("INFO cpu: %v", err)
	}
	var total time.Duration
	for line := range strings.Lines(info) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			s, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("INFO cpu: %s %q", k, v)
			}
			total += time.Duration(s * float64(time.Second))
		}
	}
	return total
}
