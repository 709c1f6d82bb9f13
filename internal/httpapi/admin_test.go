package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/webhook"
)

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type adminPresenceView struct {
	PresenceChannels int64 `json:"presence_channels"`
	PresenceMembers  int64 `json:"presence_members"`
	Channels         []struct {
		Channel string `json:"channel"`
		Members int64  `json:"members"`
	} `json:"channels"`
	Truncated bool `json:"truncated"`
}

func (p adminPresenceView) String() string {
	out := fmt.Sprintf("%d channels, %d members:", p.PresenceChannels, p.PresenceMembers)
	for _, c := range p.Channels {
		out += fmt.Sprintf(" %s %d", c.Channel, c.Members)
	}
	if p.Truncated {
		out += " …"
	}
	return out
}

type adminStatsView struct {
	Totals struct {
		PresenceMembers int64 `json:"presence_members"`
		WebhooksDead    int64 `json:"webhooks_dead"`
	} `json:"totals"`
	Tenants []struct {
		ID               string `json:"id"`
		PresenceChannels int64  `json:"presence_channels"`
		PresenceMembers  int64  `json:"presence_members"`
		WebhooksDead     int64  `json:"webhooks_dead"`
	} `json:"tenants"`
}

// The operator reads a tenant's presence per channel, and the members now per tenant in the
// stats and the tenant view.
func TestAdminPresence(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	acme, globex := s.signup(t, "Acme"), s.signup(t, "Globex")
	s.do(t, call{method: "PUT", path: "/v1/settings", auth: acme.APIKey, body: `{"presence_channels":["room.*"]}`}).want(t, 200)
	admin := func(path string, v any) {
		t.Helper()
		s.do(t, call{method: "GET", path: "/admin/api" + path, auth: testAdminToken}).want(t, 200).decode(t, v)
	}

	s.openStream(t, s.token(t, acme, "ada", "room.*", "lobby"), "room.1", "room.2", "lobby")
	s.openStream(t, s.token(t, acme, "bob", "room.*"), "room.1")
	s.openStream(t, s.token(t, acme, "bob", "room.*"), "room.1")  // a second tab: still one member
	s.openStream(t, s.token(t, globex, "cy", "room.*"), "room.1") // Globex keeps no presence
	const want = "2 channels, 3 members: room.1 2 room.2 1"
	var p adminPresenceView
	eventually(t, 5*time.Second, "Acme's presence", func() bool {
		admin("/tenants/"+acme.TenantID+"/presence", &p)
		return p.String() == want
	})
	admin("/tenants/"+globex.TenantID+"/presence", &p)
	if p.String() != "0 channels, 0 members:" || p.Channels == nil {
		t.Errorf("Globex's presence %s (channels %v)", p, p.Channels)
	}

	var view struct {
		PresenceChannels int64 `json:"presence_channels"`
		PresenceMembers  int64 `json:"presence_members"`
	}
	admin("/tenants/"+acme.TenantID, &view)
	if view.PresenceChannels != 2 || view.PresenceMembers != 3 {
		t.Errorf("tenant view: %d channels, %d members; want 2 and 3", view.PresenceChannels, view.PresenceMembers)
	}
	var st adminStatsView
	eventually(t, 5*time.Second, "the stats to count Acme's members", func() bool {
		admin("/stats", &st)
		return st.Totals.PresenceMembers == 3
	})
	for _, tn := range st.Tenants {
		if want := map[string]int64{acme.TenantID: 3, globex.TenantID: 0}[tn.ID]; tn.PresenceMembers != want {
			t.Errorf("stats of %s: %d members, want %d", tn.ID, tn.PresenceMembers, want)
		}
	}
}

type adminWebhooksView struct {
	Webhooks []struct {
		ID             string          `json:"id"`
		URL            string          `json:"url"`
		Disabled       bool            `json:"disabled"`
		DisabledReason *string         `json:"disabled_reason"`
		DeadInARow     int64           `json:"dead_in_a_row"`
		Dead           int64           `json:"dead"`
		LastSuccess    json.RawMessage `json:"last_success"`
		LastFailure    *struct {
			Status         string `json:"status"`
			ResponseStatus *int   `json:"response_status"`
			Error          string `json:"error"`
		} `json:"last_failure"`
	} `json:"webhooks"`
	RecentFailures []struct {
		WebhookID      string    `json:"webhook_id"`
		URL            string    `json:"url"`
		ID             string    `json:"id"`
		Attempt        int       `json:"attempt"`
		Status         string    `json:"status"`
		ResponseStatus *int      `json:"response_status"`
		Error          string    `json:"error"`
		CreatedAt      time.Time `json:"created_at"`
	} `json:"recent_failures"`
	Dead int64 `json:"dead"`
}

// The operator sees a tenant's failing endpoint: its failed attempts, newest first, its dead
// delivery (also counted in the stats), and why it is disabled once it is.
func TestAdminWebhookHealth(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	acme, globex := s.signup(t, "Acme"), s.signup(t, "Globex")
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(failing.Close)
	admin := func(path string, v any) {
		t.Helper()
		s.do(t, call{method: "GET", path: "/admin/api" + path, auth: testAdminToken}).want(t, 200).decode(t, v)
	}

	var h adminWebhooksView
	admin("/tenants/"+acme.TenantID+"/webhooks", &h)
	if h.Webhooks == nil || len(h.Webhooks) != 0 || h.RecentFailures == nil || len(h.RecentFailures) != 0 || h.Dead != 0 {
		t.Fatalf("before any endpoint: %+v", h)
	}
	var created struct {
		Webhook struct{ ID string } `json:"webhook"`
	}
	s.do(t, call{method: "POST", path: "/v1/webhooks", auth: acme.APIKey,
		body: `{"url":"` + failing.URL + `/hooks","events":["job.finished"]}`}).want(t, 201).decode(t, &created)
	id := created.Webhook.ID
	var queued struct {
		DeliveryID string `json:"delivery_id"`
	}
	s.do(t, call{method: "POST", path: "/v1/webhooks/" + id + "/test", auth: acme.APIKey}).want(t, 202).decode(t, &queued)

	// One retry, at once: the delivery fails twice and is dead.
	d := webhook.NewDispatcher(s.webhooks, webhook.DispatcherConfig{Schedule: []time.Duration{time.Millisecond}, Poll: 20 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("dispatcher: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the dispatcher did not stop")
		}
	})
	eventually(t, 10*time.Second, "the dead delivery", func() bool {
		admin("/tenants/"+acme.TenantID+"/webhooks", &h)
		return h.Dead == 1
	})
	if len(h.Webhooks) != 1 {
		t.Fatalf("webhooks %+v", h.Webhooks)
	}
	w := h.Webhooks[0]
	if w.ID != id || w.URL != failing.URL+"/hooks" || w.Disabled || w.DisabledReason != nil || w.Dead != 1 || w.DeadInARow != 1 ||
		string(w.LastSuccess) != "null" || w.LastFailure == nil || w.LastFailure.Status != "dead" ||
		w.LastFailure.ResponseStatus == nil || *w.LastFailure.ResponseStatus != 503 || w.LastFailure.Error == "" {
		t.Errorf("endpoint %+v (last failure %+v)", w, w.LastFailure)
	}
	if len(h.RecentFailures) != 2 {
		t.Fatalf("recent failures %+v, want both attempts", h.RecentFailures)
	}
	for i, f := range h.RecentFailures {
		if f.WebhookID != id || f.URL != failing.URL+"/hooks" || f.ID != queued.DeliveryID || f.Attempt != 2-i ||
			f.Status != []string{"dead", "failed"}[i] || f.ResponseStatus == nil || *f.ResponseStatus != 503 || f.CreatedAt.IsZero() {
			t.Errorf("failure %d: %+v", i, f)
		}
	}

	var st adminStatsView
	eventually(t, 5*time.Second, "the stats to count the dead delivery", func() bool {
		admin("/stats", &st)
		return st.Totals.WebhooksDead == 1
	})
	for _, tn := range st.Tenants {
		if want := map[string]int64{acme.TenantID: 1, globex.TenantID: 0}[tn.ID]; tn.WebhooksDead != want {
			t.Errorf("stats of %s: %d dead, want %d", tn.ID, tn.WebhooksDead, want)
		}
	}
	admin("/tenants/"+globex.TenantID+"/webhooks", &h)
	if len(h.Webhooks) != 0 || len(h.RecentFailures) != 0 || h.Dead != 0 {
		t.Errorf("another tenant's webhooks %+v", h)
	}

	s.do(t, call{method: "PATCH", path: "/v1/webhooks/" + id, auth: acme.APIKey, body: `{"disabled":true}`}).want(t, 200)
	admin("/tenants/"+acme.TenantID+"/webhooks", &h)
	if w := h.Webhooks[0]; !w.Disabled || w.DisabledReason == nil || *w.DisabledReason != "tenant" {
		t.Errorf("disabled by the tenant: %+v", w)
	}
}
