package tenant

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamgate/streamgate/internal/keys"
)

// pemPublicKey returns the PEM (PKIX) encoding of a public key.
func pemPublicKey(tb testing.TB, pub any) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatalf("marshal public key: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func ecKey(tb testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	return k
}

func TestSetMercureRefusesBadConfigs(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	if _, err := s.SetMercure(ctx, a.Tenant.ID, MercureConfig{Hosts: []string{"hub.acme.example"}, PublisherKey: "pub", SubscriberKey: "sub"}); err != nil {
		t.Fatalf("SetMercure: %v", err)
	}
	p256 := pemPublicKey(t, &ecKey(t, elliptic.P256()).PublicKey)
	p384 := pemPublicKey(t, &ecKey(t, elliptic.P384()).PublicKey)
	ok := MercureConfig{PublisherKey: "pub", SubscriberKey: "sub"}
	with := func(mod func(*MercureConfig)) MercureConfig {
		c := ok
		mod(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  MercureConfig
	}{
		{"no publisher key", with(func(c *MercureConfig) { c.PublisherKey = "" })},
		{"no subscriber key and not anonymous", with(func(c *MercureConfig) { c.SubscriberKey = "" })},
		{"unknown algorithm", with(func(c *MercureConfig) { c.Algorithm = "none" })},
		{"lower-case algorithm", with(func(c *MercureConfig) { c.Algorithm = "hs256" })},
		{"host with a port", with(func(c *MercureConfig) { c.Hosts = []string{"hub.acme.example:443"} })},
		{"host with a scheme", with(func(c *MercureConfig) { c.Hosts = []string{"https://hub.acme.example"} })},
		{"host with a path", with(func(c *MercureConfig) { c.Hosts = []string{"hub.acme.example/x"} })},
		{"host with an empty label", with(func(c *MercureConfig) { c.Hosts = []string{"hub..example"} })},
		{"empty host", with(func(c *MercureConfig) { c.Hosts = []string{""} })},
		{"too many hosts", with(func(c *MercureConfig) {
			for i := range 21 {
				c.Hosts = append(c.Hosts, "h"+strings.Repeat("x", i)+".example")
			}
		})},
		{"origin with a path", with(func(c *MercureConfig) { c.CORSOrigins = []string{"https://acme.example/app"} })},
		{"origin without a scheme", with(func(c *MercureConfig) { c.CORSOrigins = []string{"acme.example"} })},
		{"RS256 with a secret", with(func(c *MercureConfig) { c.Algorithm = AlgRS256 })},
		{"ES256 with a P-384 key", with(func(c *MercureConfig) { c.Algorithm, c.PublisherKey, c.SubscriberKey = AlgES256, p384, p384 })},
		{"RS256 with an EC key", with(func(c *MercureConfig) { c.Algorithm, c.PublisherKey, c.SubscriberKey = AlgRS256, p256, p256 })},
		{"ES256 with a bad subscriber key", with(func(c *MercureConfig) { c.Algorithm, c.PublisherKey, c.SubscriberKey = AlgES256, p256, "x" })},
		{"oversized key", with(func(c *MercureConfig) { c.PublisherKey = strings.Repeat("k", maxMercureKey+1) })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := redisDump(t, env.rdb)
			got, err := s.SetMercure(ctx, a.Tenant.ID, tc.cfg)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("SetMercure = %+v, %v; want ErrInvalid", got, err)
			}
			if after := redisDump(t, env.rdb); !maps.Equal(before, after) {
				t.Errorf("a refused configuration changed Redis")
			}
		})
	}
}

func TestMercureConfigRoundTrip(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")

	if _, err := s.Mercure(ctx, a.Tenant.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Mercure before any configuration: %v, want ErrNotFound", err)
	}
	p256 := ecKey(t, elliptic.P256())
	subPEM := pemPublicKey(t, &p256.PublicKey)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pemPublicKey(t, &rsaKey.PublicKey)

	got, err := s.SetMercure(ctx, a.Tenant.ID, MercureConfig{
		Hosts:        []string{"Hub.Acme.Example", "hub.acme.example", "localhost"},
		PublisherKey: "publisher-secret-0123456789", SubscriberKey: "subscriber-secret-0123456789",
		CORSOrigins: []string{"https://acme.example/", "*"}, SubscriptionsAPI: true,
	})
	if err != nil {
		t.Fatalf("SetMercure: %v", err)
	}
	want := MercureConfig{Hosts: []string{"hub.acme.example", "localhost"}, Algorithm: AlgHS256,
		SubscriptionsAPI: true, CORSOrigins: []string{"https://acme.example", "*"}}
	if !equalMercure(got, want) {
		t.Errorf("SetMercure returned %+v, want %+v", got, want)
	}
	if stored, err := s.Mercure(ctx, a.Tenant.ID); err != nil || !equalMercure(stored, want) {
		t.Errorf("Mercure = %+v, %v; want %+v", stored, err, want)
	}
	assertNotInRedis(t, env.rdb, "publisher key", "publisher-secret-0123456789")
	assertNotInRedis(t, env.rdb, "subscriber key", "subscriber-secret-0123456789")

	hub, err := env.node(t).MercureHub(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("MercureHub: %v", err)
	}
	if string(hub.PublisherKey.([]byte)) != "publisher-secret-0123456789" || string(hub.SubscriberKey.([]byte)) != "subscriber-secret-0123456789" {
		t.Errorf("hub keys = %q, %q", hub.PublisherKey, hub.SubscriberKey)
	}
	for _, h := range []string{"hub.acme.example", "localhost"} {
		if id, err := env.node(t).MercureHost(ctx, h); err != nil || id != a.Tenant.ID {
			t.Errorf("MercureHost(%s) = %q, %v", h, id, err)
		}
	}

	// Another algorithm: keys are parsed for it; an anonymous hub needs no subscriber key.
	if _, err := s.SetMercure(ctx, a.Tenant.ID, MercureConfig{Algorithm: AlgES256, PublisherKey: subPEM, Anonymous: true}); err != nil {
		t.Fatalf("SetMercure ES256: %v", err)
	}
	hub, err = env.node(t).MercureHub(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("MercureHub: %v", err)
	}
	if k, ok := hub.PublisherKey.(*ecdsa.PublicKey); !ok || !k.Equal(&p256.PublicKey) || hub.SubscriberKey != nil || !hub.Config.Anonymous {
		t.Errorf("ES256 hub = %+v", hub)
	}
	if _, err := env.node(t).MercureHost(ctx, "localhost"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a host the configuration no longer lists still resolves: %v", err)
	}
	if _, err := s.SetMercure(ctx, a.Tenant.ID, MercureConfig{Algorithm: AlgRS256, PublisherKey: rsaPEM, SubscriberKey: rsaPEM}); err != nil {
		t.Fatalf("SetMercure RS256: %v", err)
	}
	if hub, err := env.node(t).MercureHub(ctx, a.Tenant.ID); err != nil || !hub.SubscriberKey.(*rsa.PublicKey).Equal(&rsaKey.PublicKey) {
		t.Errorf("RS256 hub = %+v, %v", hub, err)
	}

	if err := s.DeleteMercure(ctx, a.Tenant.ID); err != nil {
		t.Fatalf("DeleteMercure: %v", err)
	}
	if err := s.DeleteMercure(ctx, a.Tenant.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteMercure: %v, want ErrNotFound", err)
	}
	if _, err := env.node(t).MercureHub(ctx, a.Tenant.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("MercureHub after delete: %v", err)
	}
}

func equalMercure(a, b MercureConfig) bool {
	return slices.Equal(a.Hosts, b.Hosts) && a.Algorithm == b.Algorithm && a.Anonymous == b.Anonymous &&
		a.SubscriptionsAPI == b.SubscriptionsAPI && slices.Equal(a.CORSOrigins, b.CORSOrigins) &&
		a.PublisherKey == b.PublisherKey && a.SubscriberKey == b.SubscriberKey
}

func TestMercureHostsBelongToOneTenant(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	b := mustCreate(t, s, "Beta")
	cfg := func(hosts ...string) MercureConfig {
		return MercureConfig{Hosts: hosts, PublisherKey: "p", Anonymous: true}
	}
	if _, err := s.SetMercure(ctx, a.Tenant.ID, cfg("hub.acme.example", "shared.example")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetMercure(ctx, b.Tenant.ID, cfg("hub.beta.example")); err != nil {
		t.Fatal(err)
	}
	before := redisDump(t, env.rdb)
	_, err := s.SetMercure(ctx, b.Tenant.ID, cfg("new.beta.example", "shared.example"))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("claiming another tenant's host: %v, want ErrConflict", err)
	}
	if after := redisDump(t, env.rdb); !maps.Equal(before, after) {
		t.Errorf("a refused claim changed Redis")
	}
	for host, want := range map[string]string{"shared.example": a.Tenant.ID, "hub.beta.example": b.Tenant.ID} {
		if id, err := env.node(t).MercureHost(ctx, host); id != want {
			t.Errorf("MercureHost(%s) = %q, %v; want %s", host, id, err, want)
		}
	}
	// Once A lets the host go, B may take it.
	if _, err := s.SetMercure(ctx, a.Tenant.ID, cfg("hub.acme.example")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetMercure(ctx, b.Tenant.ID, cfg("shared.example")); err != nil {
		t.Fatalf("claiming a freed host: %v", err)
	}
	if id, _ := env.node(t).MercureHost(ctx, "shared.example"); id != b.Tenant.ID {
		t.Errorf("shared.example is %q's, want %s", id, b.Tenant.ID)
	}
	if err := s.DeleteMercure(ctx, b.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetMercure(ctx, a.Tenant.ID, cfg("shared.example")); err != nil {
		t.Fatalf("claiming a host freed by DeleteMercure: %v", err)
	}
}

func TestMercureChangesReachOtherNodes(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := t.Context()
	a := mustCreate(t, env.store, "Acme")
	other := env.node(t)
	if _, err := other.MercureHost(ctx, "hub.acme.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MercureHost before: %v", err)
	}
	if _, err := other.MercureHub(ctx, a.Tenant.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MercureHub before: %v", err)
	}
	// The other node has cached "no hub"; the contract gives it 2 s to notice.
	if _, err := env.store.SetMercure(ctx, a.Tenant.ID, MercureConfig{Hosts: []string{"hub.acme.example"}, PublisherKey: "p", Anonymous: true}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		id, err1 := other.MercureHost(ctx, "hub.acme.example")
		_, err2 := other.MercureHub(ctx, a.Tenant.ID)
		if id == a.Tenant.ID && err1 == nil && err2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other node still sees %q, %v, %v after 2 s", id, err1, err2)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMercureControlEvents(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	sub := env.rdb.Subscribe(ctx, keys.Control())
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	msgs := sub.Channel()
	set := func(cfg MercureConfig) {
		t.Helper()
		if _, err := s.SetMercure(ctx, a.Tenant.ID, cfg); err != nil {
			t.Fatal(err)
		}
	}
	base := MercureConfig{PublisherKey: "p", SubscriberKey: "s1"}
	changed := Event{Type: EventMercureChanged, TenantID: a.Tenant.ID}
	steps := []struct {
		name   string
		change func()
		want   bool
	}{
		{"first configuration", func() { set(base) }, false},
		{"CORS and publisher key only", func() {
			c := base
			c.PublisherKey, c.CORSOrigins = "p2", []string{"https://acme.example"}
			set(c)
		}, false},
		{"subscriber key", func() {
			c := base
			c.SubscriberKey = "s2"
			set(c)
		}, true},
		{"anonymous turned on", func() {
			c := base
			c.SubscriberKey, c.Anonymous = "s2", true
			set(c)
		}, false},
		{"anonymous turned off", func() {
			c := base
			c.SubscriberKey = "s2"
			set(c)
		}, true},
		{"deleted", func() {
			if err := s.DeleteMercure(ctx, a.Tenant.ID); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, st := range steps {
		st.change()
		// A marker published after the change: whatever the change announced comes before it.
		if err := env.rdb.Publish(ctx, keys.Control(), "marker").Err(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for done := false; !done; {
			select {
			case m := <-msgs:
				if m.Payload == "marker" {
					done = true
				} else {
					got = append(got, m.Payload)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: the marker never came", st.name)
			}
		}
		want := 0
		if st.want {
			want = 1
		}
		if len(got) != want {
			t.Fatalf("%s: control events %q, want %d", st.name, got, want)
		}
		if want == 1 {
			var ev Event
			if err := json.Unmarshal([]byte(got[0]), &ev); err != nil || ev != changed {
				t.Errorf("%s: event %s, want %+v", st.name, got[0], changed)
			}
		}
	}
}

// A node that missed the control message of a hub turned off learns of it when it re-checks its
// sessions' credentials.
func TestRevocationsCatchAHubTurnedOff(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	creds := map[string][]string{a.Tenant.ID: {MercureKeyID}}
	if _, err := s.SetMercure(ctx, a.Tenant.ID, MercureConfig{PublisherKey: "p", Anonymous: true}); err != nil {
		t.Fatal(err)
	}
	if evs, err := s.Revocations(ctx, creds); err != nil || len(evs) != 0 {
		t.Fatalf("Revocations with the hub on: %+v, %v", evs, err)
	}
	other := env.node(t)
	if _, err := other.MercureHub(ctx, a.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMercure(ctx, a.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	evs, err := other.Revocations(ctx, creds)
	if err != nil || len(evs) != 1 || evs[0] != (Event{Type: EventMercureChanged, TenantID: a.Tenant.ID}) {
		t.Fatalf("Revocations after the hub was turned off: %+v, %v", evs, err)
	}
	if _, err := other.MercureHub(ctx, a.Tenant.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the node still caches the hub: %v", err)
	}
}
