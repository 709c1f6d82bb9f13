package tenant

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"testing"

	"github.com/streamgate/streamgate/internal/keys"
)

// apiDefaults is the limits object of API.md, "Tenants and keys", verbatim.
const apiDefaults = `{"max_connections": 10000, "max_subscriptions_per_session": 100, "publish_per_second": 100,
 "max_message_bytes": 65536, "history_events": 10000, "history_seconds": 300}`

func TestDefaultLimitsMatchAPI(t *testing.T) {
	t.Parallel()
	var want Limits
	dec := json.NewDecoder(bytes.NewReader([]byte(apiDefaults)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("decode API.md defaults into Limits: %v", err)
	}
	if got := DefaultLimits(); got != want {
		t.Errorf("DefaultLimits() = %+v, want %+v", got, want)
	}
	// And they travel under the contract's field names, all of them.
	var gotJSON, wantJSON map[string]any
	b, _ := json.Marshal(DefaultLimits())
	if err := json.Unmarshal(b, &gotJSON); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(apiDefaults), &wantJSON); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(gotJSON, wantJSON) {
		t.Errorf("DefaultLimits() as JSON = %s, want %s", b, apiDefaults)
	}
	if err := DefaultLimits().Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

func TestLimitsValidate(t *testing.T) {
	t.Parallel()
	with := func(mod func(*Limits)) Limits {
		l := DefaultLimits()
		mod(&l)
		return l
	}
	tests := []struct {
		name    string
		in      Limits
		wantErr bool
	}{
		{"defaults", DefaultLimits(), false},
		{"all at 1", Limits{1, 1, 1, 1, 1, 1}, false},
		{"zero value", Limits{}, true},
		{"max_connections 0", with(func(l *Limits) { l.MaxConnections = 0 }), true},
		{"max_connections -1", with(func(l *Limits) { l.MaxConnections = -1 }), true},
		{"max_connections 10 000 000", with(func(l *Limits) { l.MaxConnections = 10_000_000 }), false},
		{"max_connections 10 000 001", with(func(l *Limits) { l.MaxConnections = 10_000_001 }), true},
		{"max_subscriptions_per_session 0", with(func(l *Limits) { l.MaxSubscriptionsPerSession = 0 }), true},
		{"max_subscriptions_per_session 10 000", with(func(l *Limits) { l.MaxSubscriptionsPerSession = 10_000 }), false},
		{"max_subscriptions_per_session 10 001", with(func(l *Limits) { l.MaxSubscriptionsPerSession = 10_001 }), true},
		{"publish_per_second 0", with(func(l *Limits) { l.PublishPerSecond = 0 }), true},
		{"publish_per_second 10 000 001", with(func(l *Limits) { l.PublishPerSecond = 10_000_001 }), true},
		{"max_message_bytes 0", with(func(l *Limits) { l.MaxMessageBytes = 0 }), true},
		{"max_message_bytes 1 MiB", with(func(l *Limits) { l.MaxMessageBytes = 1 << 20 }), false},
		{"max_message_bytes 1 MiB + 1", with(func(l *Limits) { l.MaxMessageBytes = 1<<20 + 1 }), true},
		{"history_events 0", with(func(l *Limits) { l.HistoryEvents = 0 }), true},
		{"history_events 1 000 000", with(func(l *Limits) { l.HistoryEvents = 1_000_000 }), false},
		{"history_events 1 000 001", with(func(l *Limits) { l.HistoryEvents = 1_000_001 }), true},
		{"history_seconds 0", with(func(l *Limits) { l.HistorySeconds = 0 }), true},
		{"history_seconds a week", with(func(l *Limits) { l.HistorySeconds = 7 * 24 * 3600 }), false},
		{"history_seconds a week + 1 s", with(func(l *Limits) { l.HistorySeconds = 7*24*3600 + 1 }), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.in.Validate()
			if tc.wantErr && !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate(%+v) = %v, want ErrInvalid", tc.in, err)
			}
			if !tc.wantErr && err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tc.in, err)
			}
		})
	}
}

func TestLimitsPatchApply(t *testing.T) {
	t.Parallel()
	base := Limits{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name  string
		patch LimitsPatch
		want  Limits
	}{
		{"empty patch", LimitsPatch{}, base},
		{"max_connections", LimitsPatch{MaxConnections: ptr(10)}, Limits{10, 2, 3, 4, 5, 6}},
		{"max_subscriptions_per_session", LimitsPatch{MaxSubscriptionsPerSession: ptr(20)}, Limits{1, 20, 3, 4, 5, 6}},
		{"publish_per_second", LimitsPatch{PublishPerSecond: ptr(30)}, Limits{1, 2, 30, 4, 5, 6}},
		{"max_message_bytes", LimitsPatch{MaxMessageBytes: ptr(40)}, Limits{1, 2, 3, 40, 5, 6}},
		{"history_events", LimitsPatch{HistoryEvents: ptr(50)}, Limits{1, 2, 3, 4, 50, 6}},
		{"history_seconds", LimitsPatch{HistorySeconds: ptr(60)}, Limits{1, 2, 3, 4, 5, 60}},
		{"set to zero is set", LimitsPatch{PublishPerSecond: ptr(0)}, Limits{1, 2, 0, 4, 5, 6}},
		{"all", LimitsPatch{ptr(7), ptr(8), ptr(9), ptr(10), ptr(11), ptr(12)}, Limits{7, 8, 9, 10, 11, 12}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := base
			if got := tc.patch.Apply(in); got != tc.want {
				t.Errorf("Apply = %+v, want %+v", got, tc.want)
			}
			if in != base {
				t.Errorf("Apply changed its argument to %+v", in)
			}
		})
	}
	// A patch decoded from the admin API's JSON sets only the fields present.
	var p LimitsPatch
	if err := json.Unmarshal([]byte(`{"history_seconds": 600}`), &p); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Apply(base), (Limits{1, 2, 3, 4, 5, 600}); got != want {
		t.Errorf("JSON patch: Apply = %+v, want %+v", got, want)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	a := mustCreate(t, s, "Acme")
	b := mustCreate(t, s, "Beta")

	tests := []struct {
		name      string
		tenant    string
		patch     LimitsPatch
		suspended *bool
		wantErr   error
		want      func(*Tenant) // applied to the tenant as it was; nil with wantErr
	}{
		{"one limit", a.Tenant.ID, LimitsPatch{MaxConnections: ptr(5)}, nil, nil,
			func(t *Tenant) { t.Limits.MaxConnections = 5 }},
		{"two limits, others kept", a.Tenant.ID, LimitsPatch{PublishPerSecond: ptr(7), HistorySeconds: ptr(60)}, nil, nil,
			func(t *Tenant) { t.Limits.PublishPerSecond, t.Limits.HistorySeconds = 7, 60 }},
		{"suspend", a.Tenant.ID, LimitsPatch{}, ptr(true), nil, func(t *Tenant) { t.Suspended = true }},
		{"limits of a suspended tenant keep it suspended", a.Tenant.ID, LimitsPatch{HistoryEvents: ptr(9)}, nil, nil,
			func(t *Tenant) { t.Limits.HistoryEvents = 9 }},
		{"unsuspend", a.Tenant.ID, LimitsPatch{}, ptr(false), nil, func(t *Tenant) { t.Suspended = false }},
		{"invalid limit", a.Tenant.ID, LimitsPatch{MaxConnections: ptr(0)}, nil, ErrInvalid, nil},
		{"one valid, one invalid limit", a.Tenant.ID, LimitsPatch{PublishPerSecond: ptr(50), MaxMessageBytes: ptr(2 << 20)}, nil, ErrInvalid, nil},
		{"invalid limit with a suspension", a.Tenant.ID, LimitsPatch{HistorySeconds: ptr(-1)}, ptr(true), ErrInvalid, nil},
		{"unknown tenant", "tn_unknown", LimitsPatch{MaxConnections: ptr(5)}, ptr(true), ErrNotFound, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			before := redisDump(t, env.rdb)
			var was Tenant
			if tc.wantErr != ErrNotFound {
				var err error
				if was, err = s.Get(ctx, tc.tenant); err != nil {
					t.Fatalf("Get: %v", err)
				}
			}
			got, err := s.Update(ctx, tc.tenant, tc.patch, tc.suspended)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Update = %+v, %v; want %v", got, err, tc.wantErr)
				}
				if after := redisDump(t, env.rdb); !maps.Equal(before, after) {
					t.Errorf("a refused Update changed Redis:\nbefore %v\nafter  %v", before[keys.Tenant(tc.tenant)], after[keys.Tenant(tc.tenant)])
				}
				if tc.wantErr == ErrInvalid {
					// Neither Redis nor this node's view changed.
					for _, n := range []*Store{s, env.node(t)} {
						if now, err := n.Cached(ctx, tc.tenant); err != nil || !reflect.DeepEqual(now, was) {
							t.Errorf("after a refused Update: %+v, %v; want %+v", now, err, was)
						}
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			want := was
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Update = %+v, want %+v", got, want)
			}
			reread, err := env.node(t).Get(ctx, tc.tenant)
			if err != nil || !reflect.DeepEqual(reread, want) {
				t.Errorf("re-read from Redis: %+v, %v; want %+v", reread, err, want)
			}
		})
	}
	// The other tenant was never touched.
	if got, err := s.Get(t.Context(), b.Tenant.ID); err != nil || !reflect.DeepEqual(got, b.Tenant) {
		t.Errorf("tenant B = %+v, %v; want %+v", got, err, b.Tenant)
	}
}
