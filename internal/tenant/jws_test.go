package tenant

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwsFixture is a key, a clock and the two ways of reading a token that must agree: parseToken
// and jwt's own parser with the options VerifyToken gave it before parseToken took over.
type jwsFixture struct {
	secret []byte
	now    time.Time
}

func newJWSFixture() jwsFixture {
	return jwsFixture{secret: []byte("0123456789abcdef0123456789abcdef"), now: time.Unix(1_800_000_000, 0)}
}

// token builds a compact JWS of header and claims, each taken as it is (not necessarily JSON):
// mode 0 signs it with the fixture's secret, 1 puts tail as its signature, 2 signs it and adds
// tail after the signature, and 3 is tail alone.
func (x jwsFixture) token(header, claims []byte, mode uint8, tail string) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	m := hmac.New(sha256.New, x.secret)
	m.Write([]byte(signed))
	sig := enc.EncodeToString(m.Sum(nil))
	switch mode % 4 {
	case 1:
		return signed + "." + tail
	case 2:
		return signed + "." + sig + tail
	case 3:
		return tail
	}
	return signed + "." + sig
}

// key is what both readers' key functions return: the secret for HS256 with the kid "k1" or
// none, a refusal otherwise, so that a kid or alg read differently changes the outcome.
func (x jwsFixture) key(alg, kid string, kidNotString bool) (any, error) {
	switch {
	case kidNotString:
		return nil, &refusal{"the token's kid must be a string"}
	case kid != "" && kid != "k1":
		return nil, &refusal{"token signed with an unknown or deleted key"}
	case alg != "HS256":
		return nil, &refusal{"not HS256"}
	}
	return x.secret, nil
}

func (x jwsFixture) ours(raw string) (tokenClaims, error) {
	v := jwt.NewValidator(jwt.WithLeeway(TokenLeeway), jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return x.now }))
	var c tokenClaims
	err := parseToken(raw, &c, tokenAlgs, v, func(h tokenHeader, _ *tokenClaims) (any, error) {
		return x.key(h.alg, h.kid, h.kidNotString)
	})
	return c, err
}

func (x jwsFixture) jwts(raw string) (tokenClaims, error) {
	p := jwt.NewParser(jwt.WithValidMethods(tokenAlgs), jwt.WithLeeway(TokenLeeway), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return x.now }))
	var c tokenClaims
	_, err := p.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, ok := t.Header["kid"].(string)
		return x.key(t.Method.Alg(), kid, !ok && t.Header["kid"] != nil)
	})
	return c, err
}

// agree fails t unless both readers accept raw with the same claims, or both refuse it for
// the same reason.
func (x jwsFixture) agree(t *testing.T, raw string) {
	t.Helper()
	ours, errOurs := x.ours(raw)
	theirs, errTheirs := x.jwts(raw)
	if (errOurs == nil) != (errTheirs == nil) {
		t.Fatalf("token %q: parseToken says %v, jwt says %v", raw, errOurs, errTheirs)
	}
	if errOurs != nil {
		if a, b := tokenReason(errOurs), tokenReason(errTheirs); a != b {
			t.Fatalf("token %q refused for %q by parseToken (%v), for %q by jwt (%v)", raw, a, errOurs, b, errTheirs)
		}
		var ra, rb *refusal
		if errors.As(errOurs, &ra) != errors.As(errTheirs, &rb) || ra != nil && ra.reason != rb.reason {
			t.Fatalf("token %q: key refusals differ: %v against %v", raw, errOurs, errTheirs)
		}
		return
	}
	if !reflect.DeepEqual(ours, theirs) {
		t.Fatalf("token %q: parseToken read %+v, jwt read %+v", raw, ours, theirs)
	}
}

var (
	jwsHeaderSeeds = []string{
		`{"alg":"HS256","typ":"JWT","kid":"k1"}`,
		`{"alg":"HS256"}`,
		`{"alg":"HS256","kid":"k2"}`,
		`{"alg":"HS256","kid":5}`,
		`{"alg":"HS256","kid":null}`,
		`{"alg":"HS256","kid":""}`,
		`{"kid":"k1","alg":"HS\u0032\u00356"}`,
		`{"alg":"HS256","alg":"none"}`,
		`{"alg":"none","alg":"HS256"}`,
		`{"alg":"none"}`,
		`{"alg":"RS256","kid":"k1"}`,
		`{"alg":"HS384","kid":"k1"}`,
		`{"alg":"XX1"}`,
		`{"alg":5}`,
		`{"alg":null}`,
		`{"ALG":"HS256"}`,
		`{}`,
		`null`,
		` null `,
		`[]`,
		`"HS256"`,
		`{"alg":"HS256"`,
		`{"alg":"HS256",}`,
		"{\"alg\":\"HS256\",\"kid\":\"k\xff1\"}",
		`{"alg":"HS256","kid":"k1","x":1e400}`,
		`{"alg":"HS256","kid":"k1","x":{"y":[1,"1e400",-1e999]}}`,
		`{"alg":"HS256","kid":"k1","x":[-0.5e-400,1.5E+300,"\"1e400"]}`,
		``,
	}
	jwsClaimSeeds = []string{
		`{"sub":"u","exp":1800000100}`,
		`{"sub":"u","exp":1800000100,"channels":["chat.*"],"info":{"a":1}}`,
		`{"sub":"u","exp":1799999997}`,
		`{"sub":"u","exp":1799999990}`,
		`{"sub":"u","exp":1800000100,"nbf":1800000004}`,
		`{"sub":"u","exp":1800000100,"nbf":1800000010}`,
		`{"sub":"u"}`,
		`{"sub":"u","exp":"1800000100"}`,
		`{"sub":"u","exp":null}`,
		`{"sub":"u","Exp":1800000100}`,
		`{"sub":"u","exp":1800000100,"iat":"x"}`,
		`{"sub":5,"exp":1800000100}`,
		`{}`,
		`null`,
		`[]`,
		`{"sub":"u","exp":1800000100`,
		``,
	}
)

// Every header and claims of the seeds, signed, badly signed and broken, reads the same
// through parseToken as through jwt's parser.
func TestParseTokenAsJWT(t *testing.T) {
	t.Parallel()
	x := newJWSFixture()
	for _, h := range jwsHeaderSeeds {
		for _, c := range jwsClaimSeeds {
			for mode, tail := range []string{"", "AAAA", ".x", "x"} {
				x.agree(t, x.token([]byte(h), []byte(c), uint8(mode), tail))
			}
			x.agree(t, x.token([]byte(h), []byte(c), 1, "@@"))
			x.agree(t, x.token([]byte(h), []byte(c), 1, ""))
			x.agree(t, x.token([]byte(h), []byte(c), 2, "="))
		}
	}
	for _, raw := range []string{"", ".", "..", "...", "a.b", "a.b.c", "a.b.c.d", "e30.e30.", "e30.e30.e30"} {
		x.agree(t, raw)
	}
	// And it does accept a good token, and reads it.
	c, err := x.ours(x.token([]byte(jwsHeaderSeeds[0]), []byte(jwsClaimSeeds[1]), 0, ""))
	if err != nil || c.Subject != "u" || c.ExpiresAt == nil || c.ExpiresAt.Unix() != 1800000100 || string(c.all["info"]) != `{"a":1}` {
		t.Fatalf("a good token: %+v, %v", c, err)
	}
}

func FuzzParseTokenAsJWT(f *testing.F) {
	x := newJWSFixture()
	for i, h := range jwsHeaderSeeds {
		c := jwsClaimSeeds[i%len(jwsClaimSeeds)]
		f.Add([]byte(h), []byte(c), uint8(i%4), "")
		f.Add([]byte(jwsHeaderSeeds[0]), []byte(c), uint8(0), "")
	}
	f.Add([]byte(jwsHeaderSeeds[0]), []byte(jwsClaimSeeds[0]), uint8(3), "e30.e30.e30")
	f.Fuzz(func(t *testing.T, header, claims []byte, mode uint8, tail string) {
		x.agree(t, x.token(header, claims, mode, tail))
	})
}
