package mercure

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestUpdateValidate(t *testing.T) {
	t.Parallel()
	ok := func(mod func(*Update)) Update {
		u := Update{Topics: []string{"https://example.com/books/1"}, Data: "x"}
		mod(&u)
		return u
	}
	for _, tc := range []struct {
		name string
		u    Update
		want error
	}{
		{"valid", ok(func(*Update) {}), nil},
		{"given id and type", ok(func(u *Update) { u.ID, u.Type, u.Retry = "urn:x", "t", 10 }), nil},
		{"no topic", ok(func(u *Update) { u.Topics = nil }), ErrInvalid},
		{"empty topic", ok(func(u *Update) { u.Topics = []string{""} }), ErrInvalid},
		{"topic too long", ok(func(u *Update) { u.Topics = []string{strings.Repeat("t", MaxSelectorLen+1)} }), ErrInvalid},
		{"too many topics", ok(func(u *Update) { u.Topics = make([]string, MaxSelectors+1) }), ErrInvalid},
		{"reserved topic", ok(func(u *Update) { u.Topics = []string{"a", "/.well-known/mercure/subscriptions/x/y"} }), ErrForbidden},
		{"id with a line break", ok(func(u *Update) { u.ID = "a\ndata: evil" }), ErrInvalid},
		{"id with NUL", ok(func(u *Update) { u.ID = "a\x00" }), ErrInvalid},
		{"id too long", ok(func(u *Update) { u.ID = strings.Repeat("i", MaxIDLen+1) }), ErrInvalid},
		{"type with CR", ok(func(u *Update) { u.Type = "a\rb" }), ErrInvalid},
		{"negative retry", ok(func(u *Update) { u.Retry = -1 }), ErrInvalid},
	} {
		err := tc.u.Validate()
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: Validate = %v, want %v", tc.name, err, tc.want)
		}
	}
	big := ok(func(u *Update) { u.Retry = 1 << 62 })
	if err := big.Validate(); err != nil || big.Retry != maxRetry {
		t.Errorf("a huge retry: %v, %d", err, big.Retry)
	}
}

func TestUpdateIDsAndEncoding(t *testing.T) {
	t.Parallel()
	given := Update{ID: "urn:given", Topics: []string{"a"}}
	given.AssignID()
	if given.ID != "urn:given" {
		t.Errorf("AssignID replaced a given id: %s", given.ID)
	}
	uuid := regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		u := Update{Topics: []string{"a"}}
		u.AssignID()
		if !uuid.MatchString(u.ID) || seen[u.ID] {
			t.Fatalf("fresh id %q: not a new UUIDv7 URN", u.ID)
		}
		seen[u.ID] = true
	}
	if got := newUUIDv7(time.UnixMilli(0x0123456789ab)); !strings.HasPrefix(got, "01234567-89ab-7") {
		t.Errorf("UUIDv7 of 0x0123456789ab ms = %s", got)
	}

	u := Update{ID: "id-1", Topics: []string{"a", "b"}, Private: true, Type: "t", Retry: 5, Data: "line1\nline2"}
	back, ok := DecodeUpdate(string(u.Encode()))
	if !ok || back.ID != u.ID || strings.Join(back.Topics, ",") != "a,b" || !back.Private || back.Type != "t" || back.Retry != 5 || back.Data != u.Data {
		t.Errorf("round trip: %+v, %v", back, ok)
	}
	for _, bad := range []string{"", "{", `{"id":"x"}`, `{"topics":"a"}`} {
		if _, ok := DecodeUpdate(bad); ok {
			t.Errorf("DecodeUpdate(%q) accepted it", bad)
		}
	}
	f := (&Update{ID: "urn:x", Topics: []string{"a"}}).Frame("#m", "5-2", 2)
	if string(f.Body) != "id: urn:x\ndata: \n\n" || f.ID != "5-2" || f.Seq != 2 || f.Channel != "#m" || !f.Message {
		t.Errorf("frame %+v %q", f, f.Body)
	}
}
