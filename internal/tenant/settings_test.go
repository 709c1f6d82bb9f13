package tenant

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamgate/streamgate/internal/keys"
)

func TestTokenInfoClaim(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	a := mustCreate(t, s, "Acme")
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name string
		info any
		want string // compacted info; "-" for a refusal
	}{
		{"absent", nil, ""},
		{"null", "null", ""},
		{"an object, compacted", `{ "name": "Ada", "avatar": "https://x.example/a.png" }`, `{"name":"Ada","avatar":"https://x.example/a.png"}`},
		{"exactly 1 KiB", `{"n":"` + strings.Repeat("x", 1024-8) + `"}`, `{"n":"` + strings.Repeat("x", 1024-8) + `"}`},
		{"over 1 KiB", `{"n":"` + strings.Repeat("x", 1024-7) + `"}`, "-"},
		{"a string", `"Ada"`, "-"},
		{"an array", `[1]`, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := jwt.MapClaims{"sub": "u", "exp": exp, "channels": []string{"*"}}
			if raw, ok := tc.info.(string); ok {
				claims["info"] = jsonRaw(raw)
			}
			got, err := s.VerifyToken(t.Context(), signWith(t, jwt.SigningMethodHS256, a.SigningKey.ID, claims, a.SigningKey.Secret))
			switch {
			case tc.want == "-":
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("err = %v, want ErrUnauthorized", err)
				}
			case err != nil:
				t.Fatalf("VerifyToken: %v", err)
			case string(got.Info) != tc.want:
				t.Fatalf("info %q, want %q", got.Info, tc.want)
			}
		})
	}
}

// jsonRaw is a claim value that the JWT library writes as the JSON it holds.
type jsonRaw string

func (j jsonRaw) MarshalJSON() ([]byte, error) { return []byte(j), nil }

func TestPutSettings(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	s := env.store
	a := mustCreate(t, s, "Acme")
	ctx := t.Context()
	if got, err := s.Get(ctx, a.Tenant.ID); err != nil || len(got.Settings.PresenceChannels) != 0 {
		t.Fatalf("a new tenant's settings: %+v, %v; want no presence channels", got.Settings, err)
	}
	got, err := s.PutSettings(ctx, a.Tenant.ID, Settings{PresenceChannels: []string{"room.*", "doc:*", "room.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"room.*", "doc:*"}; !slices.Equal(got.Settings.PresenceChannels, want) {
		t.Fatalf("settings %v, want %v (duplicates once)", got.Settings.PresenceChannels, want)
	}
	if !got.Settings.Presence("room.1") || got.Settings.Presence("lobby") {
		t.Fatal("Presence does not follow the patterns")
	}
	// Another node sees them.
	if other, err := env.node(t).Cached(ctx, a.Tenant.ID); err != nil || !slices.Equal(other.Settings.PresenceChannels, got.Settings.PresenceChannels) {
		t.Fatalf("another node: %+v, %v", other.Settings, err)
	}

	before := redisDump(t, env.rdb)
	tooMany := make([]string, MaxPresencePatterns+1)
	for i := range tooMany {
		tooMany[i] = "c" + strings.Repeat("x", i%5)
	}
	for _, bad := range []Settings{{PresenceChannels: tooMany}, {PresenceChannels: []string{"bad name"}}, {PresenceChannels: []string{""}}} {
		if _, err := s.PutSettings(ctx, a.Tenant.ID, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutSettings(%v) = %v, want ErrInvalid", bad.PresenceChannels, err)
		}
	}
	if after := redisDump(t, env.rdb); !maps.Equal(before, after) {
		t.Errorf("refused settings changed Redis: %v", after[keys.Tenant(a.Tenant.ID)])
	}
	if _, err := s.PutSettings(ctx, "tn_none", Settings{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("settings of an unknown tenant: %v, want ErrNotFound", err)
	}
	if cleared, err := s.PutSettings(ctx, a.Tenant.ID, Settings{}); err != nil || cleared.Settings.PresenceChannels == nil || len(cleared.Settings.PresenceChannels) != 0 {
		t.Errorf("cleared: %+v, %v; want an empty list", cleared.Settings, err)
	}
}
