package tenant

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// referenceClaims reads claims the way encoding/json does, claim by claim: what
// tokenClaims.UnmarshalJSON must agree with.
func referenceClaims(b []byte) (map[string]json.RawMessage, jwt.RegisteredClaims, bool) {
	var all map[string]json.RawMessage
	var rc jwt.RegisteredClaims
	if err := json.Unmarshal(b, &all); err != nil || all == nil {
		return nil, rc, false
	}
	fields := map[string]any{
		"iss": &rc.Issuer, "sub": &rc.Subject, "jti": &rc.ID, "aud": &rc.Audience,
		"exp": &rc.ExpiresAt, "nbf": &rc.NotBefore, "iat": &rc.IssuedAt,
	}
	for name, v := range fields {
		if raw, ok := all[name]; ok {
			if err := json.Unmarshal(raw, v); err != nil {
				return nil, rc, false
			}
		}
	}
	return all, rc, true
}

func sameDate(a, b *jwt.NumericDate) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(b.Time))
}

// checkAsEncodingJSON fails t unless tokenClaims reads b exactly as encoding/json does.
func checkAsEncodingJSON(t *testing.T, b []byte) {
	t.Helper()
	wantAll, want, wantOK := referenceClaims(b)
	var c tokenClaims
	err := c.UnmarshalJSON(b)
	if (err == nil) != wantOK {
		t.Fatalf("claims %q: error %v, encoding/json accepts them: %v", b, err, wantOK)
	}
	if !wantOK {
		return
	}
	if len(c.all) != len(wantAll) {
		t.Fatalf("claims %q: %d members, want %d", b, len(c.all), len(wantAll))
	}
	for name, raw := range wantAll {
		if !bytes.Equal(c.all[name], raw) {
			t.Fatalf("claims %q: member %q = %q, want %q", b, name, c.all[name], raw)
		}
	}
	got := c.RegisteredClaims
	if got.Issuer != want.Issuer || got.Subject != want.Subject || got.ID != want.ID ||
		len(got.Audience) != len(want.Audience) || !sameDate(got.ExpiresAt, want.ExpiresAt) ||
		!sameDate(got.NotBefore, want.NotBefore) || !sameDate(got.IssuedAt, want.IssuedAt) {
		t.Fatalf("claims %q: %+v, want %+v", b, got, want)
	}
	for i := range want.Audience {
		if got.Audience[i] != want.Audience[i] {
			t.Fatalf("claims %q: aud %q, want %q", b, got.Audience, want.Audience)
		}
	}
}

var claimSeeds = []string{
	`{"channels":["chat.*","job:*"],"sub":"user-42","iat":1796211426,"exp":1796215026}`,
	` { "sub" : "u" , "exp" : 1796215026.75 , "nbf" : "1796211426" } `,
	`{"sub":"caf\u00e9 \"quoted\" \\ /","iss":"https://idp.example","aud":["a","b"],"exp":1e9}`,
	`{"sub":null,"aud":null,"exp":null,"iat":-1.5,"info":{"name":"A","tags":["x","}"],"n":{"deep":[1,2,{"k":"]"}]}}}`,
	`{"sub":"a","sub":"b","s\u0075b":"c","Sub":"not the claim"}`,
	`{"aud":"one","jti":"id-1","roles":["admin"],"exp":1796215026}`,
	`{}`,
	`{"sub":42}`,
	`{"exp":"soon"}`,
	`{"exp":true}`,
	`{"exp":1e400}`,
	`{"exp":-0,"nbf":-1,"iat":0}`,
	`{"exp":999999999999999,"nbf":-999999999999999,"iat":9999999999999999}`,
	`{"exp":9007199254740993,"nbf":-9007199254740993,"iat":99999999999999999999}`,
	`{"aud":7}`,
	"{\"sub\":\"\xff\xfe\"}",
	`[]`,
	`null`,
	`"claims"`,
	`12`,
	`{"sub":"x"} {}`,
	`{"sub":"x",}`,
	`{"sub" "x"}`,
	`{"sub":"unterminated}`,
	``,
}

// The claims of a token read in one pass agree with encoding/json on every member, every
// registered claim and every refusal.
func TestClaimsReadAsEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range claimSeeds {
		if !json.Valid([]byte(s)) {
			// jwt hands over only valid JSON; invalid claims must still be refused.
			var c tokenClaims
			if err := c.UnmarshalJSON([]byte(s)); err == nil {
				t.Errorf("invalid claims %q accepted", s)
			}
			continue
		}
		checkAsEncodingJSON(t, []byte(s))
	}
}

func FuzzClaims(f *testing.F) {
	for _, s := range claimSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			var c tokenClaims
			_ = c.UnmarshalJSON(b) // must not panic; jwt never hands over invalid JSON
			return
		}
		checkAsEncodingJSON(t, b)
	})
}
