package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/redistest"
	"github.com/streamgate/streamgate/internal/stream"
)

// notifications records what the worker reports, failing the first report of each job.
type notifications struct {
	mu     sync.Mutex
	failed map[string]bool
	got    []string // "<kind> <state>" per successful report
}

func (n *notifications) Finished(_ context.Context, tenantID, kind string, state json.RawMessage) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var s struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(state, &s)
	key := tenantID + " " + string(state)
	if !n.failed[key] {
		n.failed[key] = true
		return errors.New("redis hiccup")
	}
	n.got = append(n.got, kind+" "+s.Status)
	return nil
}

func (n *notifications) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.got...)
}

// A job or workflow that reaches a terminal state is reported once it is applied, with its final
// state; a report that fails leaves the update to be taken again and reported again. Updates
// that do not finish anything report nothing.
func TestFinishedIsReportedAtLeastOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	n := &notifications{failed: map[string]bool{}}
	w := NewWorker(rdb, WorkerConfig{ClaimIdle: 100 * time.Millisecond, Block: 50 * time.Millisecond, Notify: n},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	up := NewUpdates(rdb)
	window := stream.Window{Events: 100, Seconds: 60}
	appendUpdate := func(kind, id, fields string) {
		t.Helper()
		var f map[string]json.RawMessage
		if err := json.Unmarshal([]byte(fields), &f); err != nil {
			t.Fatal(err)
		}
		actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer acancel()
		if err := up.Append(actx, Update{TenantID: "tn_a", Kind: kind, ID: id, Fields: f, Window: window}); err != nil {
			t.Fatal(err)
		}
	}
	appendUpdate(UpdateJob, "j1", `{"status":"running","progress":50}`)
	appendUpdate(UpdateJob, "j1", `{"status":"succeeded","progress":100}`)
	appendUpdate(UpdateJob, "j1", `{"status":"failed"}`) // ignored: the job has finished
	appendUpdate(UpdateWorkflow, "w1", `{"status":"cancelled"}`)

	deadline := time.Now().Add(20 * time.Second)
	for len(n.list()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("reports %q, want the job's and the workflow's finish", n.list())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // more than a claim round: nothing else comes
	got := n.list()
	if len(got) != 2 || !(got[0] == "job succeeded" && got[1] == "workflow cancelled" || got[1] == "job succeeded" && got[0] == "workflow cancelled") {
		t.Errorf("reports %q, want job succeeded and workflow cancelled, once each", got)
	}
}
