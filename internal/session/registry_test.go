package session

import (
	"errors"
	"slices"
	"testing"
	"time"

	streamgate "github.com/streamgate/streamgate"
)

// Forge: test_realtime_config_default, extended to every field.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	got := NewRegistry("n", Config{}).Config()
	if got.BufferSize != 256 || got.MaxConsecutiveDrops != 10 || got.MaxTotalDrops != 50 ||
		got.HeartbeatInterval != 15*time.Second || got.MaxIdle != 2*time.Minute ||
		got.SweepInterval != time.Second || got.Now == nil {
		t.Errorf("defaults = %+v", got)
	}
	set := NewRegistry("n", Config{BufferSize: 3, MaxConsecutiveDrops: 4, MaxTotalDrops: 5}).Config()
	if set.BufferSize != 3 || set.MaxConsecutiveDrops != 4 || set.MaxTotalDrops != 5 || set.MaxIdle != 2*time.Minute {
		t.Errorf("set fields not kept: %+v", set)
	}
}

// Forge: test_session_server_creation.
func TestNewRegistry(t *testing.T) {
	t.Parallel()
	r := NewRegistry("node-7", Config{})
	if got := r.NodeID(); got != "node-7" {
		t.Errorf("NodeID = %q", got)
	}
	st := r.Stats()
	if st.NodeID != "node-7" || st.Connections != 0 || st.Subscriptions != 0 || len(st.Tenants) != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// Forge: test_session_connection.
func TestRegisterRemove(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	s := mustRegister(t, r, "tn_a", "ses_1", "chat", "news", "chat")
	if got := r.Stats().Connections; got != 1 {
		t.Fatalf("connections = %d, want 1", got)
	}
	if got, want := s.Channels(), []string{"chat", "news"}; !slices.Equal(got, want) {
		t.Errorf("Channels = %v, want %v (duplicates count once)", got, want)
	}
	if got, want := r.Remove("ses_1"), []string{"chat", "news"}; !slices.Equal(got, want) {
		t.Errorf("Remove = %v, want %v", got, want)
	}
	assertFinal(t, s, nil)
	if got := r.Stats().Connections; got != 0 {
		t.Errorf("connections after Remove = %d", got)
	}
	if got := r.Remove("ses_1"); got != nil {
		t.Errorf("second Remove = %v, want nil", got)
	}
	if got := r.Remove("ses_none"); got != nil {
		t.Errorf("Remove(unknown) = %v, want nil", got)
	}
}

func TestRegisterRejects(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	mustRegister(t, r, "tn_a", "ses_1")
	tests := []struct {
		name string
		info Info
		want error
	}{
		{"duplicate id", Info{ID: "ses_1", TenantID: "tn_a"}, ErrDuplicate},
		{"duplicate id in another tenant", Info{ID: "ses_1", TenantID: "tn_b"}, ErrDuplicate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := r.Register(tt.info, nil, 0, 0); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := r.Register(Info{TenantID: "tn_a"}, nil, 0, 0); err == nil {
		t.Error("empty id accepted")
	}
	if got := r.Stats().Connections; got != 1 {
		t.Errorf("connections = %d, want 1", got)
	}
}

// Forge: test_session_subscription.
func TestSubscribeUnsubscribe(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	mustRegister(t, r, "tn_a", "ses_1")

	added, err := r.Subscribe("ses_1", "chat", 0)
	if err != nil || !added {
		t.Fatalf("Subscribe = %v, %v", added, err)
	}
	if added, err := r.Subscribe("ses_1", "chat", 0); err != nil || added {
		t.Errorf("second Subscribe = %v, %v; want false, nil", added, err)
	}
	if got := r.Stats().Subscriptions; got != 1 {
		t.Errorf("subscriptions = %d, want 1", got)
	}
	if got := r.Broadcast("tn_a", "chat", message("1")); got != 1 {
		t.Errorf("Broadcast after Subscribe reached %d, want 1", got)
	}

	removed, err := r.Unsubscribe("ses_1", "chat")
	if err != nil || !removed {
		t.Fatalf("Unsubscribe = %v, %v", removed, err)
	}
	if got := r.Stats().Subscriptions; got != 0 {
		t.Errorf("subscriptions = %d, want 0", got)
	}
	if got := r.Broadcast("tn_a", "chat", message("2")); got != 0 {
		t.Errorf("Broadcast after Unsubscribe reached %d, want 0", got)
	}
}

// Forge: test_session_subscription_limit.
func TestSubscriptionLimit(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	mustRegister(t, r, "tn_a", "ses_1", "a", "b")

	_, err := r.Subscribe("ses_1", "c", 2)
	if !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("Subscribe over cap: err = %v, want ErrLimitExceeded", err)
	}
	if got, want := err.Error(), "at most 2 subscriptions per session: limit exceeded"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	if got, want := r.Stats().Subscriptions, 2; got != want {
		t.Errorf("subscriptions = %d, want %d (nothing added)", got, want)
	}
	if r.Subscribers("tn_a", "c") != 0 {
		t.Error("refused channel is indexed")
	}
	// Re-subscribing to a channel it has is not over the cap.
	if added, err := r.Subscribe("ses_1", "a", 2); err != nil || added {
		t.Errorf("Subscribe existing at cap = %v, %v", added, err)
	}

	// Register refuses too many channels and registers nothing; duplicates count once.
	_, err = r.Register(Info{ID: "ses_2", TenantID: "tn_a"}, []string{"a", "b", "c"}, 0, 2)
	if !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("Register over cap: err = %v", err)
	}
	if _, ok := r.Lookup("ses_2"); ok {
		t.Error("refused session registered")
	}
	if _, err := r.Register(Info{ID: "ses_3", TenantID: "tn_a"}, []string{"a", "b", "a"}, 0, 2); err != nil {
		t.Errorf("Register with a duplicate channel at cap: %v", err)
	}
}

func TestMaxConnectionsPerTenant(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	register := func(tn, id string) error {
		_, err := r.Register(Info{ID: id, TenantID: tn}, []string{"chat"}, 2, 0)
		return err
	}
	for _, id := range []string{"ses_1", "ses_2"} {
		if err := register("tn_a", id); err != nil {
			t.Fatal(err)
		}
	}
	err := register("tn_a", "ses_3")
	if !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("third connection: err = %v, want ErrLimitExceeded", err)
	}
	if got, want := err.Error(), "at most 2 connections per tenant: limit exceeded"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	if got := r.TenantStats("tn_a"); got.Connections != 2 || got.Subscriptions != 2 {
		t.Errorf("tn_a stats = %+v", got)
	}
	// Another tenant has its own cap.
	if err := register("tn_b", "ses_4"); err != nil {
		t.Errorf("other tenant refused: %v", err)
	}
	// A slot frees when a session leaves.
	r.Remove("ses_1")
	if err := register("tn_a", "ses_3"); err != nil {
		t.Errorf("after Remove: %v", err)
	}
}

// Forge: test_try_send_backpressure.
func TestSendBackpressure(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 1)
	s := mustRegister(t, r, "tn_a", "ses_1")
	if err := r.Send("ses_1", message("1")); err != nil {
		t.Fatalf("first Send: %v", err)
	}
	if !isReady(s) {
		t.Error("Ready not signalled after an enqueue")
	}
	if err := r.Send("ses_1", message("2")); !errors.Is(err, ErrFull) {
		t.Fatalf("second Send: err = %v, want ErrFull", err)
	}
	if got := frameIDs(s.Take(nil)); !slices.Equal(got, []string{"1"}) {
		t.Errorf("Take = %v, want [1] (the dropped frame is gone)", got)
	}
	if got := r.TenantStats("tn_a").Dropped; got != 1 {
		t.Errorf("dropped = %d, want 1", got)
	}
	if info, _ := r.Lookup("ses_1"); info.Dropped != 1 {
		t.Errorf("session dropped = %d, want 1", info.Dropped)
	}
}

// Forge: backpressure_evicts_after_max_consecutive_drops.
func TestEvictAfterMaxConsecutiveDrops(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 1)
	s := mustRegister(t, r, "tn_a", "ses_1", "chat")
	if err := r.Send("ses_1", message("fill")); err != nil {
		t.Fatal(err)
	}
	// API.md: "After 10 consecutive or 50 total drops the session gets lagging": drops 1–9
	// are tolerated, the 10th evicts.
	for i := range DefaultMaxConsecutiveDrops - 1 {
		if err := r.Send("ses_1", message("x")); !errors.Is(err, ErrFull) {
			t.Fatalf("drop %d: err = %v, want ErrFull", i+1, err)
		}
	}
	if isDone(s) || r.Stats().Connections != 1 {
		t.Fatal("evicted before reaching the threshold")
	}
	if err := r.Send("ses_1", message("x")); !errors.Is(err, ErrEvicted) {
		t.Fatalf("drop %d: err = %v, want ErrEvicted", DefaultMaxConsecutiveDrops, err)
	}
	assertFinal(t, s, lagging)
	assertGone(t, r, "ses_1")
	st := r.TenantStats("tn_a")
	want := TenantStats{Dropped: DefaultMaxConsecutiveDrops, Evicted: 1}
	if st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	if r.Subscribers("tn_a", "chat") != 0 {
		t.Error("evicted session still indexed")
	}
	// The writer still gets what was pending, then the final frame.
	if got := frameIDs(s.Take(nil)); !slices.Equal(got, []string{"fill"}) {
		t.Errorf("Take after eviction = %v", got)
	}
	if err := r.Send("ses_1", message("y")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Send after eviction: %v, want ErrNotFound", err)
	}
	// The departed session still knows its channels, for its writer's cleanup.
	if got := s.Channels(); !slices.Equal(got, []string{"chat"}) {
		t.Errorf("Channels after eviction = %v", got)
	}
}

// Forge: drop_counter_resets_on_successful_send.
func TestDropCounterResetsOnSuccessfulSend(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 1)
	s := mustRegister(t, r, "tn_a", "ses_1")
	if err := r.Send("ses_1", message("fill")); err != nil {
		t.Fatal(err)
	}
	for range DefaultMaxConsecutiveDrops - 1 {
		if err := r.Send("ses_1", message("x")); !errors.Is(err, ErrFull) {
			t.Fatalf("err = %v, want ErrFull", err)
		}
	}
	s.Take(nil)
	if err := r.Send("ses_1", message("ok")); err != nil {
		t.Fatalf("Send after drain: %v", err)
	}
	for i := range DefaultMaxConsecutiveDrops - 1 {
		if err := r.Send("ses_1", message("x")); !errors.Is(err, ErrFull) {
			t.Fatalf("fresh drop %d: err = %v, want ErrFull", i+1, err)
		}
	}
	if isDone(s) || r.Stats().Connections != 1 {
		t.Error("evicted although the consecutive count had reset")
	}
}

// Forge: total_drops_evicts_intermittently_slow_client.
func TestTotalDropsEvictIntermittentlySlowClient(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 1)
	s := mustRegister(t, r, "tn_a", "ses_1")
	drops := 0
	for batch := 0; ; batch++ {
		if batch > DefaultMaxTotalDrops {
			t.Fatal("never evicted by total drops")
		}
		if err := r.Send("ses_1", message("ok")); err != nil {
			t.Fatalf("batch %d: initial send: %v", batch, err)
		}
		for range DefaultMaxConsecutiveDrops - 1 {
			err := r.Send("ses_1", message("x"))
			drops++
			if errors.Is(err, ErrEvicted) {
				if drops != DefaultMaxTotalDrops {
					t.Errorf("evicted on drop %d, want %d", drops, DefaultMaxTotalDrops)
				}
				assertFinal(t, s, lagging)
				assertGone(t, r, "ses_1")
				return
			}
			if !errors.Is(err, ErrFull) {
				t.Fatalf("batch %d: err = %v", batch, err)
			}
		}
		s.Take(nil)
	}
}

// Forge: expired_token_session_is_evicted_on_push.
func TestSendExpiredToken(t *testing.T) {
	t.Parallel()
	r, c := newTestRegistry(t, 0)
	s, err := r.Register(Info{ID: "ses_1", TenantID: "tn_a", TokenExp: c.Now().Add(time.Minute)}, []string{"chat"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute) // now == exp: expired
	if err := r.Send("ses_1", message("1")); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("err = %v, want ErrTokenExpired", err)
	}
	assertFinal(t, s, AuthFailed("token expired"))
	assertGone(t, r, "ses_1")
	if got := s.Take(nil); len(got) != 0 {
		t.Errorf("expired session got %v", frameIDs(got))
	}
	if got := r.TenantStats("tn_a"); got.Evicted != 1 || got.Dropped != 0 || got.Subscriptions != 0 {
		t.Errorf("stats = %+v", got)
	}
}

// Forge: valid_token_session_is_not_evicted.
func TestSendValidToken(t *testing.T) {
	t.Parallel()
	r, c := newTestRegistry(t, 0)
	s, err := r.Register(Info{ID: "ses_1", TenantID: "tn_a", TokenExp: c.Now().Add(time.Hour)}, nil, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour - time.Nanosecond)
	if err := r.Send("ses_1", message("1")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if isDone(s) || r.Stats().Connections != 1 {
		t.Error("valid session closed")
	}
}

// Forge: try_send_to_missing_session_returns_not_found and
// try_send_to_closed_sender_returns_closed_and_evicts.
func TestSendToGoneSession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		gone func(r *Registry, s *Session)
		want error
	}{
		{"never registered", func(r *Registry, s *Session) {}, ErrNotFound},
		{"removed", func(r *Registry, s *Session) { r.Remove(s.ID()) }, ErrNotFound},
		{"closed", func(r *Registry, s *Session) { r.Close(s.ID(), nil) }, ErrNotFound},
		// Done closed while still registered: what Send finds in the moment between another
		// goroutine closing a session and taking it out.
		{"done but registered", func(r *Registry, s *Session) { s.close(nil) }, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestRegistry(t, 0)
			id := "ses_other"
			if tt.name != "never registered" {
				id = "ses_1"
			}
			s := mustRegister(t, r, "tn_a", "ses_1", "chat")
			tt.gone(r, s)
			if err := r.Send(id, message("1")); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if tt.name != "never registered" {
				assertGone(t, r, "ses_1")
				if got := r.Stats(); got.Connections != 0 || got.Subscriptions != 0 || got.Evicted != 0 {
					t.Errorf("stats = %+v", got)
				}
			}
		})
	}
}

func TestBroadcastRemovesClosedSession(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	a := mustRegister(t, r, "tn_a", "ses_1", "chat")
	mustRegister(t, r, "tn_a", "ses_2", "chat")
	a.close(nil)
	if got := r.Broadcast("tn_a", "chat", message("1")); got != 1 {
		t.Errorf("Broadcast reached %d, want 1", got)
	}
	assertGone(t, r, "ses_1")
	if got := r.Subscribers("tn_a", "chat"); got != 1 {
		t.Errorf("subscribers = %d, want 1", got)
	}
}

// Forge: remove_connection_purges_subscription_mappings.
func TestRemovePurgesReverseIndex(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	mustRegister(t, r, "tn_a", "ses_1", "a", "b")
	if got := r.Stats().Subscriptions; got != 2 {
		t.Fatalf("subscriptions = %d", got)
	}
	if got := r.Remove("ses_1"); len(got) != 2 {
		t.Errorf("Remove returned %v", got)
	}
	if got := r.Stats().Subscriptions; got != 0 {
		t.Errorf("subscriptions = %d", got)
	}
	if got := r.Channels("tn_a"); len(got) != 0 {
		t.Errorf("Channels = %v, want none", got)
	}
	for _, ch := range []string{"a", "b"} {
		if got := r.Broadcast("tn_a", ch, message("1")); got != 0 {
			t.Errorf("Broadcast %s reached %d", ch, got)
		}
	}
	if r.Remove("ses_1") != nil {
		t.Error("second Remove returned channels")
	}
}

// The swap-remove in the reverse index must keep every other session's position right.
func TestReverseIndexSurvivesChurn(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	ids := seqIDs("ses_", 100)
	for _, id := range ids {
		mustRegister(t, r, "tn_a", id, "chat", "other")
	}
	for i, id := range ids {
		if i%3 == 0 {
			r.Remove(id)
		} else if i%3 == 1 {
			if _, err := r.Unsubscribe(id, "chat"); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want []string
	for i, id := range ids {
		if i%3 == 2 {
			want = append(want, id)
		}
	}
	if got := r.Broadcast("tn_a", "chat", message("1")); got != len(want) {
		t.Fatalf("Broadcast reached %d, want %d", got, len(want))
	}
	// Every survivor on chat can still unsubscribe (its recorded position is valid), and
	// removing them leaves nobody on the channel.
	for _, id := range want {
		if removed, err := r.Unsubscribe(id, "chat"); err != nil || !removed {
			t.Fatalf("Unsubscribe(%s) = %v, %v", id, removed, err)
		}
	}
	if got := r.Subscribers("tn_a", "chat"); got != 0 {
		t.Errorf("chat subscribers = %d", got)
	}
	if got, wantN := r.Subscribers("tn_a", "other"), len(ids)-len(ids)/3-1; got != wantN {
		t.Errorf("other subscribers = %d, want %d", got, wantN)
	}
}

// Forge: add_subscription_to_unknown_session_errors.
func TestSubscribeUnknownSession(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	if _, err := r.Subscribe("ses_none", "chat", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
	if got := r.Stats().Subscriptions; got != 0 {
		t.Errorf("subscriptions = %d", got)
	}
}

// Forge: remove_unknown_subscription_is_noop.
func TestUnsubscribeUnknown(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	mustRegister(t, r, "tn_a", "ses_1", "chat")
	if removed, err := r.Unsubscribe("ses_1", "nope"); err != nil || removed {
		t.Errorf("Unsubscribe(not subscribed) = %v, %v; want false, nil", removed, err)
	}
	if got := r.Stats().Subscriptions; got != 1 {
		t.Errorf("subscriptions = %d, want 1", got)
	}
	if _, err := r.Unsubscribe("ses_none", "chat"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unsubscribe(unknown session) err = %v", err)
	}
}

// Forge: broadcast_delta_routes_to_subscribed_session and
// broadcast_delta_without_subscription_is_noop, now per tenant.
func TestBroadcastTenantIsolation(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	a1 := mustRegister(t, r, "tn_a", "ses_a1", "chat")
	a2 := mustRegister(t, r, "tn_a", "ses_a2", "news")
	b1 := mustRegister(t, r, "tn_b", "ses_b1", "chat")

	if got := r.Broadcast("tn_a", "chat", message("1")); got != 1 {
		t.Errorf("Broadcast reached %d, want 1", got)
	}
	if got := frameIDs(a1.Take(nil)); !slices.Equal(got, []string{"1"}) {
		t.Errorf("subscriber got %v", got)
	}
	if got := a2.Take(nil); len(got) != 0 {
		t.Errorf("other channel got %v", frameIDs(got))
	}
	if got := b1.Take(nil); len(got) != 0 {
		t.Errorf("other tenant's chat got %v", frameIDs(got))
	}
	if got := r.Broadcast("tn_a", "nobody", message("2")); got != 0 {
		t.Errorf("Broadcast to empty channel reached %d", got)
	}
	if got := r.Broadcast("tn_none", "chat", message("3")); got != 0 {
		t.Errorf("Broadcast to unknown tenant reached %d", got)
	}
}

func TestBroadcastSlowSessionDoesNotStopFast(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 4)
	slow := mustRegister(t, r, "tn_a", "ses_slow", "chat")
	fast := mustRegister(t, r, "tn_a", "ses_fast", "chat")
	var got []string
	var buf []*streamgate.Frame
	evictedAt := -1
	for i := range 30 {
		n := r.Broadcast("tn_a", "chat", message(string(rune('a'+i%26))+string(rune('0'+i/26))))
		if evictedAt < 0 && isDone(slow) {
			evictedAt = i
		}
		if n < 1 {
			t.Fatalf("event %d reached %d sessions", i, n)
		}
		buf = fast.Take(buf[:0])
		got = append(got, frameIDs(buf)...)
		fast.Wrote(len(buf))
	}
	if len(got) != 30 {
		t.Errorf("fast session got %d frames, want 30", len(got))
	}
	// 4 fill the buffer, 9 drops are tolerated, the 10th evicts: event index 13.
	if evictedAt != 13 {
		t.Errorf("slow session evicted at event %d, want 13", evictedAt)
	}
	assertFinal(t, slow, lagging)
	st := r.TenantStats("tn_a")
	if want := (TenantStats{Connections: 1, Subscriptions: 1, Delivered: 30, Dropped: 10, Evicted: 1}); st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
}

// Forge: test_session_stats, per tenant and node.
func TestStats(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 1)
	a := mustRegister(t, r, "tn_a", "ses_1", "x", "y")
	mustRegister(t, r, "tn_a", "ses_2", "x")
	mustRegister(t, r, "tn_b", "ses_3", "x")

	r.Broadcast("tn_a", "x", message("1")) // both tn_a sessions queue one
	r.Broadcast("tn_a", "x", message("2")) // both full: two drops
	a.Take(nil)
	a.Wrote(1)
	a.Wrote(0) // a ping: no delivery
	r.Broadcast("tn_b", "x", message("3"))

	want := NodeStats{
		NodeID: "node-1", Connections: 3, Subscriptions: 4, Delivered: 1, Dropped: 2,
		Tenants: map[string]TenantStats{
			"tn_a": {Connections: 2, Subscriptions: 3, Delivered: 1, Dropped: 2},
			"tn_b": {Connections: 1, Subscriptions: 1},
		},
	}
	got := r.Stats()
	if got.NodeID != want.NodeID || got.Connections != want.Connections || got.Subscriptions != want.Subscriptions ||
		got.Delivered != want.Delivered || got.Dropped != want.Dropped || got.Evicted != want.Evicted ||
		len(got.Tenants) != len(want.Tenants) || got.Tenants["tn_a"] != want.Tenants["tn_a"] ||
		got.Tenants["tn_b"] != want.Tenants["tn_b"] {
		t.Errorf("Stats =\n%+v\nwant\n%+v", got, want)
	}

	// Counters survive the tenant's sessions leaving; gauges drop to zero.
	r.Remove("ses_1")
	r.Remove("ses_2")
	if got, want := r.TenantStats("tn_a"), (TenantStats{Delivered: 1, Dropped: 2}); got != want {
		t.Errorf("tn_a after all left = %+v, want %+v", got, want)
	}
	if _, ok := r.Stats().Tenants["tn_a"]; !ok {
		t.Error("tenant with counters but no sessions missing from Stats")
	}
	if got := r.TenantStats("tn_none"); got != (TenantStats{}) {
		t.Errorf("unknown tenant = %+v", got)
	}
}

func TestSessionsAndLookup(t *testing.T) {
	t.Parallel()
	r, c := newTestRegistry(t, 1)
	t0 := c.Now()
	mustRegister(t, r, "tn_a", "ses_b", "z", "a")
	mustRegister(t, r, "tn_a", "ses_a") // same instant: ordered by id
	c.Advance(time.Second)
	mustRegister(t, r, "tn_a", "ses_0", "a")
	mustRegister(t, r, "tn_b", "ses_x", "a")
	r.Send("ses_b", message("1"))
	r.Send("ses_b", message("2")) // dropped

	got := r.Sessions("tn_a")
	want := []SessionInfo{
		{ID: "ses_a", TenantID: "tn_a", Sub: "user-ses_a", KeyID: "sig_1", ConnectedAt: t0},
		{ID: "ses_b", TenantID: "tn_a", Sub: "user-ses_b", KeyID: "sig_1", ConnectedAt: t0, Channels: []string{"a", "z"}, Dropped: 1},
		{ID: "ses_0", TenantID: "tn_a", Sub: "user-ses_0", KeyID: "sig_1", ConnectedAt: t0.Add(time.Second), Channels: []string{"a"}},
	}
	if len(got) != len(want) {
		t.Fatalf("Sessions = %+v", got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.TenantID != w.TenantID || g.Sub != w.Sub || g.KeyID != w.KeyID ||
			!g.ConnectedAt.Equal(w.ConnectedAt) || !slices.Equal(g.Channels, w.Channels) || g.Dropped != w.Dropped {
			t.Errorf("Sessions[%d] = %+v, want %+v", i, g, w)
		}
	}
	if got := r.Sessions("tn_none"); len(got) != 0 {
		t.Errorf("unknown tenant Sessions = %+v", got)
	}
	info, ok := r.Lookup("ses_x")
	if !ok || info.TenantID != "tn_b" || !slices.Equal(info.Channels, []string{"a"}) {
		t.Errorf("Lookup = %+v, %v", info, ok)
	}
	if _, ok := r.Lookup("ses_none"); ok {
		t.Error("Lookup(unknown) found something")
	}
}

func TestCloseVariants(t *testing.T) {
	t.Parallel()
	bye := Disconnect("tenant suspended", false)
	keyGone := AuthFailed("signing key deleted")
	type reg struct{ tn, id, kid string }
	all := []reg{
		{"tn_a", "ses_1", "sig_1"}, {"tn_a", "ses_2", "sig_2"}, {"tn_a", "ses_3", "sig_1"},
		{"tn_b", "ses_4", "sig_1"},
	}
	tests := []struct {
		name   string
		close  func(r *Registry) int
		final  *streamgate.Frame
		closed []string
	}{
		{"Close", func(r *Registry) int {
			if r.Close("ses_2", bye) {
				return 1
			}
			return 0
		}, bye, []string{"ses_2"}},
		{"CloseKey", func(r *Registry) int { return r.CloseKey("tn_a", "sig_1", keyGone) }, keyGone, []string{"ses_1", "ses_3"}},
		{"CloseTenant", func(r *Registry) int { return r.CloseTenant("tn_a", bye) }, bye, []string{"ses_1", "ses_2", "ses_3"}},
		{"CloseAll", func(r *Registry) int { return r.CloseAll(Disconnect("shutdown", true)) }, Disconnect("shutdown", true), []string{"ses_1", "ses_2", "ses_3", "ses_4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestRegistry(t, 0)
			sessions := map[string]*Session{}
			for _, x := range all {
				s, err := r.Register(Info{ID: x.id, TenantID: x.tn, KeyID: x.kid}, []string{"chat"}, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				sessions[x.id] = s
			}
			if got := tt.close(r); got != len(tt.closed) {
				t.Errorf("closed %d, want %d", got, len(tt.closed))
			}
			for id, s := range sessions {
				if slices.Contains(tt.closed, id) {
					assertFinal(t, s, tt.final)
					assertGone(t, r, id)
				} else if isDone(s) {
					t.Errorf("%s closed", id)
				}
			}
			st := r.Stats()
			if want := len(all) - len(tt.closed); st.Connections != want || st.Subscriptions != want {
				t.Errorf("connections, subscriptions = %d, %d; want %d", st.Connections, st.Subscriptions, want)
			}
			if st.Evicted != 0 {
				t.Errorf("admin close counted %d evictions", st.Evicted)
			}
		})
	}
	r, _ := newTestRegistry(t, 0)
	if r.Close("ses_none", nil) {
		t.Error("Close(unknown) = true")
	}
	s := mustRegister(t, r, "tn_a", "ses_1")
	r.Close("ses_1", bye)
	r.Close("ses_1", lagging)
	s.close(lagging) // first close wins
	assertFinal(t, s, bye)
}

// Forge: cleanup_stale_evicts_only_idle_sessions.
func TestCleanupStale(t *testing.T) {
	t.Parallel()
	r, c := newTestRegistry(t, 0)
	idle := mustRegister(t, r, "tn_a", "ses_idle", "chat")
	active := mustRegister(t, r, "tn_a", "ses_active", "chat")
	c.Advance(90 * time.Minute)
	active.Wrote(0)
	c.Advance(30 * time.Minute) // idle: 2h since registration; active: 30m since its write

	if got := r.CleanupStale(2*time.Hour - time.Nanosecond); !slices.Equal(got, []string{"ses_idle"}) {
		t.Errorf("CleanupStale = %v, want [ses_idle]", got)
	}
	assertFinal(t, idle, nil)
	assertGone(t, r, "ses_idle")
	if isDone(active) {
		t.Error("active session closed")
	}
	if got := r.Stats(); got.Connections != 1 || got.Subscriptions != 1 {
		t.Errorf("stats = %+v", got)
	}
	if got := r.CleanupStale(time.Hour); len(got) != 0 {
		t.Errorf("second CleanupStale = %v", got)
	}
}

// Forge: cleanup_expired_tokens_evicts_and_notifies, _skips_unauthenticated_sessions and
// _returns_empty_when_nothing_expired.
func TestExpireTokens(t *testing.T) {
	t.Parallel()
	r, c := newTestRegistry(t, 1)
	exp := c.Now().Add(time.Minute)
	reg := func(id string, exp time.Time) *Session {
		s, err := r.Register(Info{ID: id, TenantID: "tn_a", TokenExp: exp}, []string{"chat"}, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	expiring := reg("ses_exp", exp)
	expiring2 := reg("ses_exp2", exp.Add(-time.Second))
	valid := reg("ses_valid", exp.Add(time.Hour))
	never := reg("ses_never", time.Time{})
	r.Send("ses_exp", message("1")) // buffer full: the final frame must still get through

	if got := r.ExpireTokens(); len(got) != 0 {
		t.Fatalf("ExpireTokens before expiry = %v", got)
	}
	c.Advance(time.Minute)
	if got, want := r.ExpireTokens(), []string{"ses_exp", "ses_exp2"}; !slices.Equal(got, want) {
		t.Errorf("ExpireTokens = %v, want %v", got, want)
	}
	for _, s := range []*Session{expiring, expiring2} {
		assertFinal(t, s, AuthFailed("token expired"))
		assertGone(t, r, s.ID())
	}
	for _, s := range []*Session{valid, never} {
		if isDone(s) {
			t.Errorf("%s closed", s.ID())
		}
	}
	if got := r.TenantStats("tn_a"); got.Connections != 2 || got.Evicted != 2 {
		t.Errorf("stats = %+v", got)
	}
	if got := r.ExpireTokens(); len(got) != 0 {
		t.Errorf("second ExpireTokens = %v", got)
	}
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	r, c := newTestRegistry(t, 2)
	idle := mustRegister(t, r, "tn_a", "ses_idle")
	busy := mustRegister(t, r, "tn_a", "ses_busy")
	pending := mustRegister(t, r, "tn_a", "ses_pending")
	c.Advance(10 * time.Second)
	busy.Wrote(1)
	r.Send("ses_pending", message("1"))
	c.Advance(5 * time.Second) // idle, pending: 15s without a write; busy: 5s

	r.Heartbeat()
	r.Heartbeat() // a ping already pending: no second one
	if got := frameIDs(idle.Take(nil)); !slices.Equal(got, []string{"ping"}) {
		t.Errorf("idle got %v, want [ping]", got)
	}
	if got := busy.Take(nil); len(got) != 0 {
		t.Errorf("busy got %v", frameIDs(got))
	}
	if got := frameIDs(pending.Take(nil)); !slices.Equal(got, []string{"1"}) {
		t.Errorf("pending got %v, want just its message", got)
	}
	if got := r.Stats(); got.Dropped != 0 || got.Delivered != 1 {
		t.Errorf("heartbeat touched counters: %+v", got)
	}
	// Writing the ping resets the clock.
	idle.Wrote(0)
	r.Heartbeat()
	if got := idle.Take(nil); len(got) != 0 {
		t.Errorf("ping right after a write: %v", frameIDs(got))
	}
}

func TestTakeOrderAndReadiness(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	s := mustRegister(t, r, "tn_a", "ses_1", "chat")
	if isReady(s) {
		t.Error("Ready before anything was sent")
	}
	for _, id := range []string{"1", "2", "3"} {
		r.Broadcast("tn_a", "chat", message(id))
	}
	dst := []*streamgate.Frame{message("0")}
	if got := frameIDs(s.Take(dst)); !slices.Equal(got, []string{"0", "1", "2", "3"}) {
		t.Errorf("Take = %v", got)
	}
	if isReady(s) {
		t.Error("Ready still signalled after Take emptied the queue")
	}
	if got := s.Take(nil); len(got) != 0 {
		t.Errorf("second Take = %v", frameIDs(got))
	}
}

// A steady stream through Send and Take must allocate nothing per frame.
func TestSteadyStreamAllocatesNothing(t *testing.T) { // not parallel: AllocsPerRun refuses
	r, _ := newTestRegistry(t, 0)
	s := mustRegister(t, r, "tn_a", "ses_1", "chat")
	f := message("1")
	buf := make([]*streamgate.Frame, 0, 8)
	step := func() {
		r.Broadcast("tn_a", "chat", f)
		r.Broadcast("tn_a", "chat", f)
		buf = s.Take(buf[:0])
		s.Wrote(len(buf))
	}
	step() // grow the queue once
	if avg := testing.AllocsPerRun(100, step); avg != 0 {
		t.Errorf("allocs per step = %v, want 0", avg)
	}
}

func TestChannelsListsIndexedChannels(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	mustRegister(t, r, "tn_a", "ses_1", "chat")
	mustRegister(t, r, "tn_a", "ses_2", "chat")
	if got := r.Channels("tn_a"); !slices.Equal(got, []string{"chat"}) {
		t.Errorf("Channels = %v", got)
	}
	r.Remove("ses_1")
	r.Remove("ses_2")
	if got := r.Channels("tn_a"); len(got) != 0 {
		t.Errorf("Channels = %v", got)
	}
}

func TestNoticeFrames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    *streamgate.Frame
		want string
	}{
		{"lagging", lagging, "event: lagging\ndata: {\"reason\":\"client too slow: buffer full\"}\n\n"},
		{"auth_failed", AuthFailed("token expired"), "event: auth_failed\ndata: {\"reason\":\"token expired\"}\n\n"},
		{"auth_failed escaped", AuthFailed("a \"b\"\nevent: x"), "event: auth_failed\ndata: {\"reason\":\"a \\\"b\\\"\\nevent: x\"}\n\n"},
		{"disconnect", Disconnect("node shutting down", true), "event: disconnect\ndata: {\"reason\":\"node shutting down\",\"reconnect\":true}\n\n"},
		{"disconnect no reconnect", Disconnect("evicted by an operator", false), "event: disconnect\ndata: {\"reason\":\"evicted by an operator\",\"reconnect\":false}\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.f.Body); got != tt.want {
				t.Errorf("Body = %q, want %q", got, tt.want)
			}
			if tt.f.ID != "" || tt.f.Message {
				t.Errorf("ID = %q, Message = %v; want none, false", tt.f.ID, tt.f.Message)
			}
		})
	}
}

func TestSessionSubscribeRefusesATakenOverSession(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	old := mustRegister(t, r, "tn_a", "ses_1", "chat")
	r.Close("ses_1", nil)
	mustRegister(t, r, "tn_a", "ses_1", "chat") // a resume on this node takes the id over
	if _, err := old.Subscribe("news", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("old session Subscribe: %v, want ErrNotFound", err)
	}
	if _, err := old.Unsubscribe("chat"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old session Unsubscribe: %v, want ErrNotFound", err)
	}
	if got := r.Subscribers("tn_a", "news"); got != 0 {
		t.Errorf("the new session got the old one's channel: %d subscribers", got)
	}
	if got := r.Subscribers("tn_a", "chat"); got != 1 {
		t.Errorf("chat has %d subscribers, want the new session", got)
	}
}

func TestBroadcastAnyOncePerSession(t *testing.T) {
	t.Parallel()
	r, _ := newTestRegistry(t, 0)
	both := mustRegister(t, r, "tn_a", "ses_both", "a", "b")
	onlyA := mustRegister(t, r, "tn_a", "ses_a", "a")
	onlyB := mustRegister(t, r, "tn_a", "ses_b", "b", "c")
	other := mustRegister(t, r, "tn_a", "ses_c", "c", "d")
	elsewhere := mustRegister(t, r, "tn_b", "ses_x", "a", "b")

	if got := r.BroadcastAny("tn_a", []string{"a", "b", "nobody"}, message("1")); got != 3 {
		t.Errorf("BroadcastAny reached %d, want 3", got)
	}
	for _, tc := range []struct {
		s    *Session
		want []string
	}{
		{both, []string{"1"}}, {onlyA, []string{"1"}}, {onlyB, []string{"1"}}, {other, nil}, {elsewhere, nil},
	} {
		if got := frameIDs(tc.s.Take(nil)); !slices.Equal(got, tc.want) && (len(got) != 0 || tc.want != nil) {
			t.Errorf("%s got %v, want %v", tc.s.ID(), got, tc.want)
		}
	}
	if got := r.BroadcastAny("tn_a", nil, message("2")); got != 0 {
		t.Errorf("BroadcastAny to no channel reached %d", got)
	}
}

// The catch-up marker of a pub/sub reconnect reaches a session whose buffer is full: it is
// neither dropped nor counted as a drop (which could evict the session for the node's own
// reconnect), it keeps its place after the frames queued before it, and a second reconnect
// before the writer took it leaves one marker, the newer one, where the first gap began.
func TestResyncMarkerIsNeverDropped(t *testing.T) {
	t.Parallel()
	r := NewRegistry("node-1", Config{BufferSize: 2, MaxConsecutiveDrops: 2, MaxTotalDrops: 2})
	s := mustRegister(t, r, "tn_a", "ses_1", "chat")
	for _, id := range []string{"1", "2"} {
		if n := r.Broadcast("tn_a", "chat", message(id)); n != 1 {
			t.Fatalf("frame %s not queued", id)
		}
	}
	if err := r.Send("ses_1", message("3")); !errors.Is(err, ErrFull) {
		t.Fatalf("third frame: err = %v, want ErrFull", err)
	}
	first, second := &streamgate.Frame{Resync: true}, &streamgate.Frame{Resync: true}
	if n := r.Broadcast("tn_a", "chat", first); n != 1 {
		t.Fatalf("the marker was not queued into a full buffer (%d)", n)
	}
	if err := r.Send("ses_1", message("4")); !errors.Is(err, ErrEvicted) {
		// The marker took no message's place: the buffer is still full, and this is the
		// second drop, which evicts...
		t.Fatalf("frame after the marker: err = %v, want the second drop to evict", err)
	}
	// ...but only now: the marker itself counted nothing.
	if info := r.TenantStats("tn_a"); info.Dropped != 2 {
		t.Fatalf("dropped %d, want 2 (the marker is no drop)", info.Dropped)
	}
	got := s.Take(nil)
	if ids := frameIDs(got); !slices.Equal(ids, []string{"1", "2", "resync"}) {
		t.Fatalf("queued %v, want the two frames and the marker", ids)
	}

	// With room again, two reconnects before the writer wakes leave one marker, at the first
	// one's place, and it is the second one.
	r2 := NewRegistry("node-1", Config{BufferSize: 4})
	s2 := mustRegister(t, r2, "tn_a", "ses_2", "chat")
	r2.Broadcast("tn_a", "chat", message("1"))
	r2.Broadcast("tn_a", "chat", first)
	r2.Broadcast("tn_a", "chat", message("2"))
	r2.Broadcast("tn_a", "chat", second)
	for _, id := range []string{"3", "4"} {
		r2.Broadcast("tn_a", "chat", message(id))
	}
	got = s2.Take(nil)
	if ids := frameIDs(got); !slices.Equal(ids, []string{"1", "resync", "2", "3", "4"}) {
		t.Fatalf("queued %v, want one marker where the first gap began, and four frames", ids)
	}
	if got[1] != second {
		t.Fatal("the queued marker is the first reconnect's, want the newer one")
	}
	// Taken, the marker leaves: the next reconnect queues a new one.
	r2.Broadcast("tn_a", "chat", first)
	if ids := frameIDs(s2.Take(nil)); !slices.Equal(ids, []string{"resync"}) {
		t.Fatalf("after a Take, a marker queued %v", ids)
	}
}
