package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/cluster"
	"github.com/streamgate/streamgate/internal/presence"
	"github.com/streamgate/streamgate/internal/session"
	"github.com/streamgate/streamgate/internal/stream"
)

// gatedAdmission holds the first Admit until released, so that a test can put another write of
// the same record in between a resume's read and its write.
type gatedAdmission struct {
	Admission
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gatedAdmission) Admit(ctx context.Context, a cluster.Admit) (cluster.Admitted, error) {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return g.Admission.Admit(ctx, a)
}

// A channel added through the sessions API while the session resumes on another node is not
// lost: the change is acknowledged, so the resumed stream and the record both have it.
func TestSubscribeRacingAResumeOnAnotherNode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	claims := f.claims("u1", time.Now().Add(time.Hour), "*")
	st, c := f.open(claims, "", "a")
	sid := sessionIDOf(t, c.expect(streamgate.EventConnected)[0])
	f.publish(true, "a", 1)
	cursor := lastID(c.expect("e:a"))
	st.Close()
	c.ended()

	// Node B, on the same Redis, whose first record write waits.
	leasesB := cluster.NewLeases(f.rdb, "node-b", slog.New(slog.DiscardHandler))
	admission := &gatedAdmission{Admission: cluster.NewAdmission(leasesB, stream.NewHistory(f.rdb)), entered: make(chan struct{}), release: make(chan struct{})}
	regB := session.NewRegistry("node-b", session.Config{})
	nodeB := New(Config{NodeID: "node-b"}, Deps{
		Registry:  regB,
		Hub:       nopHub{},
		History:   stream.NewHistory(f.rdb),
		Records:   cluster.NewRecords(f.rdb),
		Nodes:     loneNode{},
		Admission: admission,
		Tenants:   staticTenants{f.tenant},
		Presence:  presence.New(f.rdb, presence.Config{NodeID: "node-b"}, slog.New(slog.DiscardHandler)),
	}, slog.New(slog.DiscardHandler))

	type opened struct {
		st  *Stream
		err error
	}
	resumed := make(chan opened, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		st, err := nodeB.Open(ctx, Request{Claims: claims, Tenant: f.tenant, Cursor: cursor})
		resumed <- opened{st, err}
	}()
	select {
	case <-admission.entered:
	case <-time.After(wait):
		t.Fatal("the resume never reached its record write")
	}

	// The resume has read the record ([a]); the change comes in before it writes.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := f.svc.Subscribe(ctx, claims, f.tenant, sid, "x"); err != nil {
		t.Fatalf("subscribe during the resume: %v", err)
	}
	close(admission.release)

	var r opened
	select {
	case r = <-resumed:
	case <-time.After(wait):
		t.Fatal("the resume never finished")
	}
	if r.err != nil {
		t.Fatalf("resume: %v", r.err)
	}
	cb := serve(t, r.st)
	var connected struct {
		SessionID string   `json:"session_id"`
		Channels  []string `json:"channels"`
	}
	if err := json.Unmarshal([]byte(cb.expect(streamgate.EventConnected)[0].Data), &connected); err != nil {
		t.Fatal(err)
	}
	if connected.SessionID != sid || !slices.Equal(connected.Channels, []string{"a", "x"}) {
		t.Errorf("resumed as %s on %v, want %s on [a x]", connected.SessionID, connected.Channels, sid)
	}
	rec, err := cluster.NewRecords(f.rdb).Load(ctx, f.tenant.ID, sid)
	if err != nil {
		t.Fatal(err)
	}
	if rec.NodeID != "node-b" || !slices.Equal(rec.Channels, []string{"a", "x"}) {
		t.Errorf("record names %s with %v, want node-b with [a x]", rec.NodeID, rec.Channels)
	}

	// The stream left behind on node A is no longer the session: a change there does not
	// write the record (its write requires the record to name node A).
	if err := cluster.NewRecords(f.rdb).SetChannels(ctx, f.tenant.ID, sid, cluster.Expect{Node: "node-a"}, []string{"a"}, time.Hour); !errors.Is(err, cluster.ErrRecordChanged) {
		t.Errorf("a write from the old node: %v, want ErrRecordChanged", err)
	}
}
