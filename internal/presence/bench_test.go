package presence

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/redistest"
)

// BenchmarkPresenceJoin measures what one user's arrival costs Redis: commands executed
// (those the scripts run included), round trips, and memory, per join. Run it with a count that
// matches the scale of interest, e.g. -benchtime=100000x for a channel of 100,000 members (or a
// tenant with 100,000 presence channels).
func BenchmarkPresenceJoin(b *testing.B) {
	info := json.RawMessage(`{"name":"Ada Lovelace","avatar":"https://cdn.example/a/0123456789.png"}`)
	for _, bc := range []struct {
		name string
		join func(tr *Tracker, i int)
	}{
		{"new member of one channel", func(tr *Tracker, i int) {
			tr.Join(context.Background(), "tn_bench", "user-"+strconv.Itoa(i), info, []string{"room"})
		}},
		{"one member of a new channel", func(tr *Tracker, i int) {
			tr.Join(context.Background(), "tn_bench", "user-1", info, []string{"room." + strconv.Itoa(i)})
		}},
		{"another session of a member", func(tr *Tracker, i int) {
			tr.Join(context.Background(), "tn_bench", "user-1", info, []string{"room"})
		}},
	} {
		b.Run(strings.ReplaceAll(bc.name, " ", "_"), func(b *testing.B) {
			rdb := redistest.Start(b).Client()
			tr := New(rdb, Config{NodeID: "node-a", Lease: time.Hour}, slog.New(slog.DiscardHandler))
			bc.join(tr, -1) // the lease, the scripts and the channel exist before measuring
			before := serverStats(b, rdb)
			b.ResetTimer()
			for i := range b.N {
				bc.join(tr, i)
			}
			b.StopTimer()
			after := serverStats(b, rdb)
			n := float64(b.N)
			b.ReportMetric(float64(after.commands-before.commands)/n, "cmds/join")
			b.ReportMetric(float64(after.calls-before.calls)/n, "roundtrips/join")
			b.ReportMetric(float64(after.memory-before.memory)/n, "redis-B/join")
		})
	}
}

type redisStats struct{ commands, calls, memory int64 }

// serverStats reads Redis's own counters: commands executed per command name (commands a
// script runs count too; the INFO calls of this function do not), script calls, memory used.
func serverStats(tb testing.TB, rdb *redis.Client) redisStats {
	tb.Helper()
	raw, err := rdb.Info(context.Background(), "commandstats", "memory").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var st redisStats
	for _, line := range strings.Split(raw, "\r\n") {
		if name, rest, ok := strings.Cut(line, ":calls="); ok && strings.HasPrefix(name, "cmdstat_") {
			calls, _, _ := strings.Cut(rest, ",")
			n, _ := strconv.ParseInt(calls, 10, 64)
			switch name {
			case "cmdstat_info":
			case "cmdstat_evalsha", "cmdstat_eval":
				st.calls += n
			default:
				st.commands += n
			}
		}
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			st.memory, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return st
}
