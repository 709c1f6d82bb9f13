package delivery

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/tenant"
)

func TestRefreshTokenTrimsChannelsAndMovesTheExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	old := f.claims("u1", f.clock.Now().Add(time.Minute), "*")
	st, c := f.open(old, "", "a", "b", "c")
	c.expect(streamgate.EventConnected)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	renewed := f.claims("u1", f.clock.Now().Add(time.Hour), "a", "c")
	if err := f.svc.RefreshToken(ctx, renewed, f.tenant, st.SessionID()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if ev := c.expect(streamgate.EventUnsubscribed)[0]; ev.Data != `{"channel":"b"}` {
		t.Fatalf("unsubscribed %s, want b", ev.Data)
	}
	f.publish(true, "b", 1)
	f.publish(true, "c", 1)
	c.expect("e:c")
	rec, err := f.svc.Records.Load(ctx, f.tenant.ID, st.SessionID())
	if err != nil || !slices.Equal(rec.Channels, []string{"a", "c"}) {
		t.Fatalf("record channels %v (%v), want [a c]: a resume must use them", rec.Channels, err)
	}
	// The old token's expiry passes without ending the stream; the new one's ends it.
	f.clock.advance(2 * time.Minute)
	f.reg.ExpireTokens()
	f.publish(true, "a", 1)
	c.expect("e:a")
	f.clock.advance(time.Hour)
	f.reg.ExpireTokens()
	c.expect(streamgate.EventAuthFailed)
	c.ended()
}

func TestRefreshTokenOfADisconnectedSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultLimits())
	claims := f.claims("u1", time.Now().Add(time.Hour), "*")
	st, c := f.open(claims, "", "a", "b")
	c.expect(streamgate.EventConnected)
	f.publish(true, "a", 1)
	cursor := lastID(c.expect("e:a"))
	st.Close()
	c.ended()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	for _, tc := range []struct {
		name    string
		claims  tenant.Claims
		session string
		want    error
	}{
		{"another user", f.claims("u2", time.Now().Add(time.Hour), "*"), st.SessionID(), ErrForbidden},
		{"unknown session", claims, "ses_unknown", ErrNotFound},
	} {
		if err := f.svc.RefreshToken(ctx, tc.claims, f.tenant, tc.session); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	renewed := f.claims("u1", time.Now().Add(2*time.Hour), "b")
	if err := f.svc.RefreshToken(ctx, renewed, f.tenant, st.SessionID()); err != nil {
		t.Fatalf("refresh of a resumable session: %v", err)
	}
	// The resume under the new token has the channels it still grants.
	_, c2 := f.open(renewed, cursor)
	hello := c2.expect(streamgate.EventConnected)[0]
	if hello.Data != `{"session_id":"`+st.SessionID()+`","node_id":"node-a","channels":["b"]}` {
		t.Fatalf("resumed as %s, want the same session on [b]", hello.Data)
	}
}
