package delivery

import (
	"context"
	"errors"
	"testing"
	"time"

	streamgate "github.com/streamgate/streamgate"
)

func TestReadHistory(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	claims := f.claims("u1", time.Now().Add(time.Hour), "a")
	_, c := f.open(claims, "", "a")
	c.expect(streamgate.EventConnected)
	ids := f.publish(true, "a", 3)
	cursor := c.expect("e:a")[0].ID
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	for _, tc := range []struct {
		name   string
		reader Reader
		after  string
		want   []string
	}{
		{"backend, whole window", Reader{Tenant: f.tenant}, "", ids},
		{"end user, after an event id", Reader{Tenant: f.tenant, Claims: &claims}, ids[0], ids[1:]},
		{"end user, after a stream's cursor", Reader{Tenant: f.tenant, Claims: &claims}, cursor, ids[1:]},
	} {
		page, err := f.svc.ReadHistory(ctx, tc.reader, "a", tc.after, 10)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, m := range page.Messages {
			got = append(got, m.ID)
		}
		if len(got) != len(tc.want) || page.Truncated {
			t.Fatalf("%s: %v truncated %v, want %v", tc.name, got, page.Truncated, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
	}
	if _, err := f.svc.ReadHistory(ctx, Reader{Tenant: f.tenant, Claims: &claims}, "b", "", 10); !errors.Is(err, ErrForbidden) {
		t.Errorf("a channel the token does not grant: %v, want ErrForbidden", err)
	}
	if _, err := f.svc.ReadHistory(ctx, Reader{Tenant: f.tenant}, "a", "ses_x:nothex!:1-1", 10); !errors.Is(err, ErrInvalid) {
		t.Errorf("a malformed position: %v, want ErrInvalid", err)
	}
}
