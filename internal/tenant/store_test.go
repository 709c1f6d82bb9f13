package tenant

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamgate/streamgate/internal/keys"
)

func TestCreate(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	mustCreate(t, s, "Existing") // so that "nothing written" is measured against a non-empty Redis

	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"empty", "", true},
		{"101 characters", strings.Repeat("a", 101), true},
		{"blank", "   ", true},
		{"1 character", "A", false},
		{"100 characters", strings.Repeat("a", 100), false},
		{"100 two-byte characters", strings.Repeat("é", 100), false},
		{"101 two-byte characters", strings.Repeat("é", 101), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			before := redisDump(t, env.rdb)
			su, err := s.Create(ctx, tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Create = %+v, %v; want ErrInvalid", su, err)
				}
				if after := redisDump(t, env.rdb); !maps.Equal(before, after) {
					t.Errorf("a refused Create wrote to Redis: %d keys before, %d after", len(before), len(after))
				}
				return
			}
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			tn := su.Tenant
			if tn.Name != tc.in || !strings.HasPrefix(tn.ID, "tn_") || tn.Limits != DefaultLimits() || tn.Suspended ||
				tn.CreatedAt.IsZero() {
				t.Errorf("tenant = %+v", tn)
			}
			if !strings.HasPrefix(su.APIKey.ID, "key_") || !strings.HasPrefix(su.APIKey.Secret, "sgk_") ||
				!strings.HasPrefix(su.SigningKey.ID, "sig_") || su.SigningKey.Secret == "" {
				t.Errorf("keys = %+v, %+v", su.APIKey, su.SigningKey)
			}
			got, err := env.node(t).Get(ctx, tn.ID)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if got.ID != tn.ID || got.Name != tn.Name || !got.CreatedAt.Equal(tn.CreatedAt) || got.Limits != tn.Limits || got.Suspended {
				t.Errorf("Get = %+v, want %+v", got, tn)
			}
			// What signup returns works at once, on any node.
			if tt, _, err := env.node(t).Authenticate(ctx, su.APIKey.Secret); err != nil || tt.ID != tn.ID {
				t.Errorf("Authenticate(signup key) = %+v, %v", tt, err)
			}
			tok := signWith(t, jwt.SigningMethodHS256, su.SigningKey.ID, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Minute).Unix()}, su.SigningKey.Secret)
			if c, err := env.node(t).VerifyToken(ctx, tok); err != nil || c.TenantID != tn.ID {
				t.Errorf("VerifyToken(signup signing key) = %+v, %v", c, err)
			}
		})
	}
}

func TestCreateUsesStoreDefaults(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	defaults := DefaultLimits()
	defaults.MaxConnections = 7
	s, err := NewStore(env.rdb, env.secretKey, defaults)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	su := mustCreate(t, s, "Acme")
	got, err := s.Get(t.Context(), su.Tenant.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Limits != defaults || s.Defaults() != defaults {
		t.Errorf("limits = %+v, Defaults() = %+v; want %+v", got.Limits, s.Defaults(), defaults)
	}
}

func TestNewStoreRefusesBadConfig(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	bad := DefaultLimits()
	bad.HistorySeconds = 0
	tests := []struct {
		name     string
		key      []byte
		defaults Limits
	}{
		{"no secret key", nil, DefaultLimits()},
		{"31-byte secret key", make([]byte, 31), DefaultLimits()},
		{"33-byte secret key", make([]byte, 33), DefaultLimits()},
		{"16-byte secret key (AES-128)", make([]byte, 16), DefaultLimits()},
		{"invalid default limits", make([]byte, 32), bad},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := NewStore(env.rdb, tc.key, tc.defaults); err == nil || s != nil {
				t.Errorf("NewStore = %v, %v; want an error", s, err)
			}
		})
	}
}

func TestGetUnknownTenant(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	for _, get := range []func() (Tenant, error){
		func() (Tenant, error) { return env.store.Get(t.Context(), "tn_unknown") },
		func() (Tenant, error) { return env.store.Cached(t.Context(), "tn_unknown") },
	} {
		if got, err := get(); !errors.Is(err, ErrNotFound) {
			t.Errorf("= %+v, %v; want ErrNotFound", got, err)
		}
	}
}

func TestListInCreationOrder(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	clock := time.Now()
	s.now = func() time.Time { return clock }
	var want []string
	for _, name := range []string{"Zeta", "Alpha", "Mu", "Beta", "Omega", "Kappa", "Delta", "Eta"} {
		clock = clock.Add(time.Millisecond)
		want = append(want, mustCreate(t, s, name).Tenant.ID)
	}
	for _, n := range []struct {
		name  string
		store *Store
	}{{"this node", s}, {"other node", env.node(t)}} {
		got, err := n.store.List(t.Context())
		if err != nil {
			t.Fatalf("%s: List: %v", n.name, err)
		}
		var ids []string
		for _, tn := range got {
			ids = append(ids, tn.ID)
		}
		if strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Errorf("%s: List = %v, want creation order %v", n.name, ids, want)
		}
	}
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	b := mustCreate(t, s, "Beta")
	second, err := s.CreateAPIKey(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	if !strings.HasPrefix(second.ID, "key_") || !strings.HasPrefix(second.Secret, "sgk_") ||
		second.Secret == a.APIKey.Secret || second.ID == a.APIKey.ID {
		t.Fatalf("CreateAPIKey = %+v", second)
	}

	t.Run("secrets stored only as SHA-256 hashes", func(t *testing.T) {
		for _, k := range []APIKey{a.APIKey, second, b.APIKey} {
			assertNotInRedis(t, env.rdb, "API key secret "+k.ID, k.Secret)
			sum := sha256.Sum256([]byte(k.Secret))
			if n, err := env.rdb.Exists(ctx, keys.APIKeyHash(hex.EncodeToString(sum[:]))).Result(); err != nil || n != 1 {
				t.Errorf("%s: no index under its SHA-256 (%d, %v)", k.ID, n, err)
			}
		}
	})

	tests := []struct {
		name       string
		secret     string
		wantTenant string // "" : refused with ErrUnauthorized
		wantKey    string
	}{
		{"signup key", a.APIKey.Secret, a.Tenant.ID, a.APIKey.ID},
		{"created key", second.Secret, a.Tenant.ID, second.ID},
		{"other tenant's key", b.APIKey.Secret, b.Tenant.ID, b.APIKey.ID},
		{"empty", "", "", ""},
		{"prefix only", "sgk_", "", ""},
		{"unknown secret", "sgk_" + strings.Repeat("A", 43), "", ""},
		{"a key's prefix as shown in listings", a.APIKey.Prefix, "", ""},
		{"secret with a character changed", a.APIKey.Secret[:len(a.APIKey.Secret)-1] + "#", "", ""},
		{"secret without its prefix", strings.TrimPrefix(a.APIKey.Secret, "sgk_"), "", ""},
		{"secret with Bearer left in", "Bearer " + a.APIKey.Secret, "", ""},
		{"signing key secret", a.SigningKey.Secret, "", ""},
		{"over-long", "sgk_" + strings.Repeat("A", 1000), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tn, keyID, err := s.Authenticate(t.Context(), tc.secret)
			if tc.wantTenant == "" {
				if !errors.Is(err, ErrUnauthorized) {
					t.Errorf("Authenticate = %+v, %q, %v; want ErrUnauthorized", tn, keyID, err)
				}
				return
			}
			if err != nil || tn.ID != tc.wantTenant || keyID != tc.wantKey {
				t.Errorf("Authenticate = %s, %s, %v; want %s, %s", tn.ID, keyID, err, tc.wantTenant, tc.wantKey)
			}
		})
	}
}

func TestAPIKeyListing(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	mustCreate(t, s, "Beta") // its key must not show up in Acme's list
	second, err := s.CreateAPIKey(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}

	list := func() []APIKey {
		t.Helper()
		got, err := s.APIKeys(ctx, a.Tenant.ID)
		if err != nil {
			t.Fatalf("APIKeys: %v", err)
		}
		b, _ := json.Marshal(got)
		for _, k := range []APIKey{a.APIKey, second} {
			if strings.Contains(string(b), k.Secret) {
				t.Errorf("listing shows the secret of %s: %s", k.ID, b)
			}
		}
		for _, k := range got {
			if k.Secret != "" {
				t.Errorf("listing carries the secret of %s", k.ID)
			}
		}
		return got
	}

	got := list()
	want := []APIKey{a.APIKey, second}
	if len(got) != len(want) {
		t.Fatalf("APIKeys = %+v, want %d keys", got, len(want))
	}
	for i, k := range got {
		w := want[i]
		if k.ID != w.ID || k.Prefix != w.Secret[:10] || !k.CreatedAt.Equal(w.CreatedAt) || k.LastUsedAt != nil {
			t.Errorf("key %d = %+v, want id %s, prefix %q, created_at %v, never used", i, k, w.ID, w.Secret[:10], w.CreatedAt)
		}
	}
	var fields map[string]any
	b, _ := json.Marshal(got[0])
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "prefix", "created_at", "last_used_at"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("listing JSON %s lacks %q", b, f)
		}
	}

	before := time.Now().Truncate(time.Millisecond)
	if _, _, err := s.Authenticate(ctx, second.Secret); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	after := time.Now()
	got = list()
	if got[0].LastUsedAt != nil {
		t.Errorf("unused key %s has last_used_at %v", got[0].ID, got[0].LastUsedAt)
	}
	if lu := got[1].LastUsedAt; lu == nil || lu.Before(before) || lu.After(after) {
		t.Errorf("used key: last_used_at = %v, want between %v and %v", lu, before, after)
	}
}

func TestRevokeAPIKey(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	b := mustCreate(t, s, "Beta")
	doomed, err := s.CreateAPIKey(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	cached := env.node(t) // another node that has just authenticated the key
	for _, st := range []*Store{s, cached} {
		if _, _, err := st.Authenticate(ctx, doomed.Secret); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}

	t.Run("unknown or foreign key: not found, nothing changes", func(t *testing.T) {
		for _, c := range []struct{ tenant, key string }{
			{a.Tenant.ID, "key_unknown"},
			{a.Tenant.ID, b.APIKey.ID}, // B's key, revoked as A
			{b.Tenant.ID, doomed.ID},   // A's key, revoked as B
			{"tn_unknown", doomed.ID},
		} {
			before := redisDump(t, env.rdb)
			if err := s.RevokeAPIKey(ctx, c.tenant, c.key); !errors.Is(err, ErrNotFound) {
				t.Errorf("RevokeAPIKey(%s, %s) = %v, want ErrNotFound", c.tenant, c.key, err)
			}
			if after := redisDump(t, env.rdb); !maps.Equal(before, after) {
				t.Errorf("RevokeAPIKey(%s, %s) changed Redis", c.tenant, c.key)
			}
		}
		for _, k := range []APIKey{b.APIKey, doomed} {
			if _, _, err := s.Authenticate(ctx, k.Secret); err != nil {
				t.Errorf("%s no longer authenticates: %v", k.ID, err)
			}
		}
	})

	if err := s.RevokeAPIKey(ctx, a.Tenant.ID, doomed.ID); err != nil {
		t.Fatalf("RevokeAPIKey: %v", err)
	}
	revoked := time.Now()

	if _, _, err := s.Authenticate(ctx, doomed.Secret); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("revoking node: Authenticate = %v, want ErrUnauthorized at once", err)
	}
	if _, _, err := env.node(t).Authenticate(ctx, doomed.Secret); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("fresh node: Authenticate = %v, want ErrUnauthorized at once", err)
	}
	refusedAfter := pollRefused(t, 3*time.Second, func() error {
		_, _, err := cached.Authenticate(ctx, doomed.Secret)
		return err
	}, revoked)
	if refusedAfter > time.Second {
		t.Errorf("node with a cached key refused it %v after revocation, want at most 1 s", refusedAfter)
	}

	list, err := s.APIKeys(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("APIKeys: %v", err)
	}
	if len(list) != 1 || list[0].ID != a.APIKey.ID {
		t.Errorf("after revocation APIKeys = %+v, want only %s", list, a.APIKey.ID)
	}
	for _, k := range []APIKey{a.APIKey, b.APIKey} {
		if _, _, err := cached.Authenticate(ctx, k.Secret); err != nil {
			t.Errorf("untouched key %s: %v", k.ID, err)
		}
	}
	if err := s.RevokeAPIKey(ctx, a.Tenant.ID, doomed.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking twice = %v, want ErrNotFound", err)
	}
	for k := range redisDump(t, env.rdb) {
		if strings.Contains(k, doomed.ID) {
			t.Errorf("revoked key left %s in Redis", k)
		}
	}
}

func TestAuthenticateSuspendedTenant(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	if _, err := s.Update(ctx, a.Tenant.ID, LimitsPatch{}, ptr(true)); err != nil {
		t.Fatalf("suspend: %v", err)
	}
	for _, n := range []*Store{s, env.node(t)} {
		tn, _, err := n.Authenticate(ctx, a.APIKey.Secret)
		if !errors.Is(err, ErrSuspended) || tn.ID != a.Tenant.ID {
			t.Errorf("Authenticate = %+v, %v; want the tenant and ErrSuspended", tn, err)
		}
	}
	if _, err := s.Update(ctx, a.Tenant.ID, LimitsPatch{}, ptr(false)); err != nil {
		t.Fatalf("unsuspend: %v", err)
	}
	if _, _, err := s.Authenticate(ctx, a.APIKey.Secret); err != nil {
		t.Errorf("after unsuspending: %v", err)
	}
}

func TestSigningKeySecretsEncryptedAtRest(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	second, err := s.CreateSigningKey(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("CreateSigningKey: %v", err)
	}
	for _, k := range []SigningKey{a.SigningKey, second} {
		if len(k.Secret) < 32 {
			t.Errorf("%s: secret %d characters, want at least 32", k.ID, len(k.Secret))
		}
		assertNotInRedis(t, env.rdb, "signing key secret "+k.ID, k.Secret)
		// The stored form is still the key: a token signed with the secret verifies.
		tok := signWith(t, jwt.SigningMethodHS256, k.ID, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Minute).Unix()}, k.Secret)
		if c, err := env.node(t).VerifyToken(ctx, tok); err != nil || c.KeyID != k.ID {
			t.Errorf("%s: VerifyToken = %+v, %v", k.ID, c, err)
		}
	}
}

// A node started with another STREAMGATE_SECRET_KEY cannot read the signing keys: it must fail
// (and never panic, nor accept the token).
func TestSigningKeysNeedTheSameSecretKey(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := t.Context()
	a := mustCreate(t, env.store, "Acme")
	tok, _, err := env.store.MintToken(ctx, a.Tenant.ID, "u", nil, time.Hour)
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	wrong, err := NewStore(env.rdb, randomKey(t), DefaultLimits())
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	if c, err := wrong.VerifyToken(ctx, tok); err == nil {
		t.Errorf("VerifyToken with another secret key accepted the token: %+v", c)
	}
	if tok, _, err := wrong.MintToken(ctx, a.Tenant.ID, "u", nil, time.Hour); err == nil || tok != "" {
		t.Errorf("MintToken with another secret key = %q, %v; want an error", tok, err)
	}
	// A ciphertext moved to another key id does not decrypt either (it is bound to its key).
	raw, err := env.rdb.HGet(ctx, keys.SigningKeys(a.Tenant.ID), a.SigningKey.ID).Result()
	if err != nil {
		t.Fatalf("HGet: %v", err)
	}
	forged, err := env.store.CreateSigningKey(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("CreateSigningKey: %v", err)
	}
	var rec sigKeyRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatal(err)
	}
	rec.ID = forged.ID
	moved, _ := json.Marshal(rec)
	if err := env.rdb.HSet(ctx, keys.SigningKeys(a.Tenant.ID), forged.ID, moved).Err(); err != nil {
		t.Fatal(err)
	}
	tok2 := signWith(t, jwt.SigningMethodHS256, forged.ID, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Minute).Unix()}, a.SigningKey.Secret)
	if c, err := env.node(t).VerifyToken(ctx, tok2); err == nil {
		t.Errorf("a ciphertext copied to another key id decrypted: %+v", c)
	}
}

func TestSigningKeysListAndDelete(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	clock := time.Now()
	s.now = func() time.Time { return clock }
	a := mustCreate(t, s, "Acme")
	b := mustCreate(t, s, "Beta")
	clock = clock.Add(time.Millisecond)
	second, err := s.CreateSigningKey(ctx, a.Tenant.ID)
	if err != nil {
		t.Fatalf("CreateSigningKey: %v", err)
	}

	list := func(tenantID string) []SigningKey {
		t.Helper()
		got, err := s.SigningKeys(ctx, tenantID)
		if err != nil {
			t.Fatalf("SigningKeys: %v", err)
		}
		return got
	}
	got := list(a.Tenant.ID)
	want := []SigningKey{a.SigningKey, second}
	if len(got) != len(want) {
		t.Fatalf("SigningKeys = %+v, want %d keys", got, len(want))
	}
	for i, k := range got {
		if k.ID != want[i].ID || !k.CreatedAt.Equal(want[i].CreatedAt) || k.Secret != "" {
			t.Errorf("key %d = %+v, want id %s created %v and no secret", i, k, want[i].ID, want[i].CreatedAt)
		}
	}
	if js, _ := json.Marshal(got); strings.Contains(string(js), a.SigningKey.Secret) || strings.Contains(string(js), second.Secret) {
		t.Errorf("listing JSON shows a secret: %s", js)
	}

	for _, c := range []struct{ tenant, key string }{
		{a.Tenant.ID, "sig_unknown"},
		{a.Tenant.ID, b.SigningKey.ID},
		{b.Tenant.ID, second.ID},
		{"tn_unknown", second.ID},
	} {
		before := redisDump(t, env.rdb)
		if err := s.DeleteSigningKey(ctx, c.tenant, c.key); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteSigningKey(%s, %s) = %v, want ErrNotFound", c.tenant, c.key, err)
		}
		if after := redisDump(t, env.rdb); !maps.Equal(before, after) {
			t.Errorf("DeleteSigningKey(%s, %s) changed Redis", c.tenant, c.key)
		}
	}
	bTok := signWith(t, jwt.SigningMethodHS256, b.SigningKey.ID, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Minute).Unix()}, b.SigningKey.Secret)
	if _, err := env.node(t).VerifyToken(ctx, bTok); err != nil {
		t.Errorf("tenant B's key after A tried to delete it: %v", err)
	}

	if err := s.DeleteSigningKey(ctx, a.Tenant.ID, a.SigningKey.ID); err != nil {
		t.Fatalf("DeleteSigningKey: %v", err)
	}
	if got := list(a.Tenant.ID); len(got) != 1 || got[0].ID != second.ID {
		t.Errorf("after deletion SigningKeys = %+v, want only %s", got, second.ID)
	}
	if got := list(b.Tenant.ID); len(got) != 1 || got[0].ID != b.SigningKey.ID {
		t.Errorf("tenant B's SigningKeys = %+v", got)
	}
	if err := s.DeleteSigningKey(ctx, a.Tenant.ID, a.SigningKey.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting twice = %v, want ErrNotFound", err)
	}
	for k := range redisDump(t, env.rdb) {
		if strings.Contains(k, a.SigningKey.ID) {
			t.Errorf("deleted key left %s in Redis", k)
		}
	}
}

// Changes that affect live sessions are announced on the control channel, so every node can act.
func TestControlEvents(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	ctx := t.Context()
	a := mustCreate(t, s, "Acme")
	sub := env.rdb.Subscribe(ctx, keys.Control())
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatalf("subscribe: %v", err)
	}
	msgs := sub.Channel()

	tests := []struct {
		name   string
		change func() error
		want   Event
	}{
		{"limits changed", func() error {
			_, err := s.Update(ctx, a.Tenant.ID, LimitsPatch{MaxConnections: ptr(5)}, nil)
			return err
		}, Event{Type: EventLimitsChanged, TenantID: a.Tenant.ID}},
		{"suspended", func() error {
			_, err := s.Update(ctx, a.Tenant.ID, LimitsPatch{}, ptr(true))
			return err
		}, Event{Type: EventSuspended, TenantID: a.Tenant.ID}},
		{"signing key deleted", func() error {
			return s.DeleteSigningKey(ctx, a.Tenant.ID, a.SigningKey.ID)
		}, Event{Type: EventSigningKeyDeleted, TenantID: a.Tenant.ID, KeyID: a.SigningKey.ID}},
	}
	for _, tc := range tests {
		if err := tc.change(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		select {
		case m := <-msgs:
			var got Event
			if err := json.Unmarshal([]byte(m.Payload), &got); err != nil || got != tc.want {
				t.Errorf("%s: control event %s (%v), want %+v", tc.name, m.Payload, err, tc.want)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: no control event", tc.name)
		}
	}
}
