package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/stream"
)

// refusals counts the commands that Redis Cluster refused, after go-redis's own redirections
// and retries, because their slot was moving.
type refusals struct{ n atomic.Int64 }

func (r *refusals) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *refusals) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if stream.SlotMoving(err) {
			r.n.Add(1)
		}
		return err
	}
}
func (r *refusals) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Job updates accepted while their partition's slot moves between masters are appended, each
// once and in order: Redis refuses the append script while the slot's keys are split, and it
// runs again until the move ends, instead of failing the request.
func TestAppendDuringSlotMove(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{cl.Nodes[0].Addr}})
	t.Cleanup(func() { rdb.Close() })
	refused := &refusals{}
	rdb.AddHook(refused)
	u := NewUpdates(rdb)
	w := stream.Window{Events: 100, Seconds: 60}
	slot := cl.Slot(t, keys.Updates(Partition("tn_a", UpdateJob, "j")))
	to := cl.Nodes[0]
	if cl.MasterOf(t, slot) == to {
		to = cl.Nodes[1]
	}

	var appended, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := u.Append(ctx, Update{TenantID: "tn_a", Kind: UpdateJob, ID: "j", Fields: map[string]json.RawMessage{"progress": json.RawMessage(strconv.Itoa(i))}, Window: w})
			cancel()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			} else {
				appended.Add(1)
			}
		}
	}()
	waitAppended := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for appended.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d updates appended", appended.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitAppended(10)
	// The slot stays split until appends have been refused for it.
	cl.MoveSlot(t, slot, to, redistest.MoveOptions{Batch: 2, During: func(moved int) {
		deadline := time.Now().Add(10 * time.Second)
		for moved == 0 && refused.n.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}})
	waitAppended(appended.Load() + 10)
	close(stop)
	<-done

	if refused.n.Load() < 3 {
		t.Fatalf("Redis refused %d appends while the slot moved: the test did not append during the move", refused.n.Load())
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d appends failed during the move, the first: %v", n, firstErr.Load())
	}
	got := updatesOf(t, rdb, "tn_a", UpdateJob, "j")
	if int64(len(got)) != appended.Load() {
		t.Fatalf("the partition holds %d updates of the job, want the %d appended, each once", len(got), appended.Load())
	}
	for i, m := range got {
		if m.Values["seq"] != strconv.Itoa(i+1) || m.Values["fields"] != fmt.Sprintf(`{"progress":%d}`, i+1) {
			t.Fatalf("update %d is %v, want seq %d with progress %d", i, m.Values, i+1, i+1)
		}
	}
}
