package tenant

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// UnmarshalJSON reads a token's claims in one pass over the object, without reflection: every
// claim by name, raw (for the channels claim an identity provider names, and for info), and the
// registered claims (RFC 7519, names matched exactly) typed as encoding/json would have them.
// A token is checked on every connect: through reflection (and jwt's NumericDate, which nests
// a second json.Unmarshal) this took 8.5 µs and 82 allocations of BenchmarkVerifyToken, and it
// was the deepest point of a connect, where its goroutine's stack grew.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	return c.read(append([]byte(nil), b...)) // b is the caller's, and the members outlive the call
}

// read is UnmarshalJSON of a b that it keeps: the claims' raw values are slices of it.
// parseToken gives it the claims it has just decoded, which nothing else holds.
func (c *tokenClaims) read(b []byte) error {
	all, err := jsonMembers(b)
	if err != nil {
		return err
	}
	var rc jwt.RegisteredClaims
	for name, raw := range all {
		switch name {
		case "iss":
			rc.Issuer, err = jsonString(raw)
		case "sub":
			rc.Subject, err = jsonString(raw)
		case "jti":
			rc.ID, err = jsonString(raw)
		case "aud":
			err = rc.Audience.UnmarshalJSON(raw) // a string or a list; rare, off the hot path
		case "exp":
			rc.ExpiresAt, err = numericDate(raw)
		case "nbf":
			rc.NotBefore, err = numericDate(raw)
		case "iat":
			rc.IssuedAt, err = numericDate(raw)
		}
		if err != nil {
			return fmt.Errorf("claim %s: %w", name, err)
		}
	}
	c.all, c.RegisteredClaims = all, rc
	return nil
}

var errClaimsObject = errors.New("claims must be a JSON object")

// jsonMembers returns the members of the JSON object b by name (the last of a repeated name),
// each with its value's raw text, a slice of b.
func jsonMembers(b []byte) (map[string]json.RawMessage, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errClaimsObject
	}
	out := make(map[string]json.RawMessage, 8)
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return nil, errClaimsObject
			}
			end, err := valueEnd(b, i)
			if err != nil {
				return nil, err
			}
			name, err := jsonString(b[i:end])
			if err != nil {
				return nil, err
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return nil, errClaimsObject
			}
			i = skipSpace(b, i+1)
			if end, err = valueEnd(b, i); err != nil {
				return nil, err
			}
			out[name] = b[i:end:end]
			i = skipSpace(b, end)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return nil, errClaimsObject
		}
	}
	if skipSpace(b, i) != len(b) {
		return nil, errClaimsObject
	}
	return out, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns where the JSON value starting at b[i] ends. The text has been through
// encoding/json's scanner (parseToken checks the claims and the header with json.Valid first,
// as json.Unmarshal does before it calls UnmarshalJSON); what is checked here only keeps a bad
// input from being misread.
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errClaimsObject
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, errClaimsObject
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			case '"':
				end, err := valueEnd(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			}
		}
		return 0, errClaimsObject
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return 0, errClaimsObject
	}
	return j, nil
}

// jsonString is a JSON string claim as encoding/json reads one into a string: null is empty,
// another type an error.
func jsonString(raw []byte) (string, error) {
	if string(raw) == "null" {
		return "", nil
	}
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		s := raw[1 : len(raw)-1]
		plain := utf8.Valid(s)
		for _, c := range s {
			if c == '\\' || c == '"' || c < 0x20 {
				plain = false
				break
			}
		}
		if plain {
			return string(s), nil
		}
	}
	var s string
	err := json.Unmarshal(raw, &s) // escapes, invalid UTF-8 (replaced), or not a string
	return s, err
}

// numericDate is a NumericDate claim as jwt reads one: null is absent; a number is seconds,
// fractions kept to jwt.TimePrecision.
func numericDate(raw []byte) (*jwt.NumericDate, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	if len(raw) == 0 {
		return nil, errClaimsObject
	}
	if n, ok := smallInt(raw); ok {
		return jwt.NewNumericDate(time.Unix(n, 0)), nil
	}
	if c := raw[0]; c == '-' || c >= '0' && c <= '9' {
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return nil, fmt.Errorf("could not convert json number value to float: %w", err)
		}
		round, frac := math.Modf(f)
		return jwt.NewNumericDate(time.Unix(int64(round), int64(frac*1e9))), nil
	}
	d := new(jwt.NumericDate) // a number in a string, as jwt accepts, or an error
	if err := d.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	return d, nil
}

// smallInt reads an integer of at most 15 digits, which a float64 holds exactly, so that it is
// what ParseFloat and Modf would make of it. Times are such integers: read by hand, they leave
// out ParseFloat's large frame, which was a connect's deepest call and grew its stack.
func smallInt(raw []byte) (int64, bool) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if raw[0] == '-' {
		n = -n
	}
	return n, true
}
