package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/keys"
	"github.com/streamgate/streamgate/internal/stream"
	"github.com/streamgate/streamgate/internal/tenant"
)

// forwardPresence plays the hub's part for presence events: what the presence scripts publish
// on the tenant's channels reaches the registry.
func (f *fixture) forwardPresence() {
	f.t.Helper()
	ps := f.rdb.PSubscribe(f.t.Context(), keys.Channel(f.tenant.ID, "*"))
	if _, err := ps.Receive(f.t.Context()); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { ps.Close() })
	go func() {
		for m := range ps.Channel() {
			_, channel, _ := keys.ParseChannel(m.Channel)
			if fr, ok := stream.EncodeFrame(channel, m.Payload); ok && fr.ID == "" {
				f.reg.Broadcast(f.tenant.ID, channel, fr)
			}
		}
	}()
}

func (f *fixture) members(channel string) string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	l, err := f.svc.ReadPresence(ctx, Reader{Tenant: f.tenant}, channel)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, m := range l.Members {
		out = append(out, fmt.Sprintf("%s×%d %s", m.Sub, m.Sessions, m.Info))
	}
	return fmt.Sprintf("%d: %s", l.Count, strings.Join(out, ", "))
}

// presenceEvent reads the next event, which must be a presence event, as "action sub".
func presenceEvent(c *client) string {
	c.t.Helper()
	ev := c.next()
	var p struct{ Channel, Action, Sub string }
	if ev.Event != streamgate.EventPresence || json.Unmarshal([]byte(ev.Data), &p) != nil || ev.ID != "" {
		c.t.Fatalf("event %s %q (id %q), want presence without id", ev.Event, ev.Data, ev.ID)
	}
	return p.Action + " " + p.Sub + " " + p.Channel
}

func TestPresenceFollowsEverySubscription(t *testing.T) {
	t.Parallel()
	f := newFixtureFor(t, tenant.Tenant{ID: streamgate.NewID("tn_"), Limits: defaultLimits(),
		Settings: tenant.Settings{PresenceChannels: []string{"room.*"}}})
	f.forwardPresence()
	exp := time.Now().Add(time.Hour)
	ada := f.claims("ada", exp, "*")
	ada.Info = json.RawMessage(`{"name":"Ada"}`)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	first, c1 := f.open(ada, "", "room.1", "lobby")
	c1.expect(streamgate.EventConnected)
	if got := presenceEvent(c1); got != "join ada room.1" {
		t.Fatalf("got %s, want ada's own join", got)
	}
	if got := f.members("room.1") + " | " + f.members("lobby"); got != `1: ada×1 {"name":"Ada"} | 0: ` {
		t.Fatalf("members %s; lobby keeps no presence", got)
	}
	// A second tab of the same user is no change for the others.
	second, c2 := f.open(ada, "", "room.1")
	c2.expect(streamgate.EventConnected)
	_, c3 := f.open(f.claims("bob", exp, "*"), "", "room.1")
	c3.expect(streamgate.EventConnected)
	for _, c := range []*client{c1, c2, c3} {
		if got := presenceEvent(c); got != "join bob room.1" {
			t.Fatalf("got %s, want bob's join alone", got)
		}
	}
	if got := f.members("room.1"); got != `2: ada×2 {"name":"Ada"}, bob×1 null` {
		t.Fatalf("members %s", got)
	}

	// Through the sessions API: leaving room.1 with one tab keeps ada there; room.2 is joined.
	if err := f.svc.Unsubscribe(ctx, ada, f.tenant, second.SessionID(), "room.1"); err != nil {
		t.Fatal(err)
	}
	c2.expect(streamgate.EventUnsubscribed)
	if err := f.svc.Subscribe(ctx, ada, f.tenant, second.SessionID(), "room.2"); err != nil {
		t.Fatal(err)
	}
	c2.expect(streamgate.EventSubscribed)
	if got := presenceEvent(c2); got != "join ada room.2" {
		t.Fatalf("got %s, want ada's join of room.2", got)
	}
	if got := f.members("room.1"); got != `2: ada×1 {"name":"Ada"}, bob×1 null` {
		t.Fatalf("members %s", got)
	}

	// A refresh that no longer grants room.1 takes ada's last session there out: she leaves.
	if err := f.svc.RefreshToken(ctx, f.claims("ada", exp, "lobby"), f.tenant, first.SessionID()); err != nil {
		t.Fatal(err)
	}
	c1.expect(streamgate.EventUnsubscribed)
	if got := presenceEvent(c3); got != "leave ada room.1" {
		t.Fatalf("got %s, want ada's leave", got)
	}
	// Closing is leaving.
	second.Close()
	c2.ended()
	if got := f.members("room.2"); got != "0: " {
		t.Fatalf("room.2 after its only session closed: %s", got)
	}
}

func TestPresenceSettingsApplyToNewSubscriptions(t *testing.T) {
	t.Parallel()
	f := newFixtureFor(t, tenant.Tenant{ID: streamgate.NewID("tn_"), Limits: defaultLimits(),
		Settings: tenant.Settings{PresenceChannels: []string{"room.*"}}})
	exp := time.Now().Add(time.Hour)
	st, c := f.open(f.claims("ada", exp, "*"), "", "room.1")
	c.expect(streamgate.EventConnected)

	// The tenant removes the pattern: ada stays until she goes, nobody new registers.
	f.tenant.Settings = tenant.Settings{}
	f.svc.Tenants = staticTenants{f.tenant}
	_, c2 := f.open(f.claims("bob", exp, "*"), "", "room.1")
	c2.expect(streamgate.EventConnected)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := f.svc.Subscribe(ctx, f.claims("ada", exp, "*"), f.tenant, st.SessionID(), "room.2"); err != nil {
		t.Fatal(err)
	}
	if got := f.members("room.1") + " | " + f.members("room.2"); got != "1: ada×1 null | 0: " {
		t.Fatalf("members %s", got)
	}
	st.Close()
	c.ended()
	if got := f.members("room.1"); got != "0: " {
		t.Fatalf("after ada left: %s", got)
	}
}

func TestReadPresenceRefusesUngrantedChannels(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	claims := f.claims("u", time.Now().Add(time.Hour), "room.*")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := f.svc.ReadPresence(ctx, Reader{Tenant: f.tenant, Claims: &claims}, "lobby"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a channel the token does not grant: %v, want ErrForbidden", err)
	}
	if l, err := f.svc.ReadPresence(ctx, Reader{Tenant: f.tenant, Claims: &claims}, "room.1"); err != nil || l.Count != 0 {
		t.Fatalf("%+v, %v", l, err)
	}
}
