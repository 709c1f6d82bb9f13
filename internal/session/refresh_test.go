package session

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWarnTokensOncePerToken(t *testing.T) {
	t.Parallel()
	r, c := newTestRegistry(t, 4)
	exp := c.Now().Add(3 * time.Minute)
	soon, err := r.Register(Info{ID: "ses_soon", TenantID: "tn_a", KeyID: "sig_1", TokenExp: exp}, nil, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, r, "tn_a", "ses_never") // a token without expiry is never warned

	if got := r.WarnTokens(); len(got) != 0 {
		t.Fatalf("warned %v three minutes before expiry", got)
	}
	c.Advance(2*time.Minute + time.Second) // 59 s left
	if got := r.WarnTokens(); !slices.Equal(got, []string{"ses_soon"}) {
		t.Fatalf("warned %v, want [ses_soon]", got)
	}
	if got := r.WarnTokens(); len(got) != 0 {
		t.Fatalf("warned again: %v", got)
	}
	frames := soon.Take(nil)
	if len(frames) != 1 || !strings.Contains(string(frames[0].Body), "event: token_expiring\ndata: {\"expires_at\":\""+exp.Format(time.RFC3339Nano)+"\"}") {
		t.Fatalf("got %v, want one token_expiring with the token's expiry", frameIDs(frames))
	}

	// A refreshed token expires later, is warned again before that, and the old expiry no
	// longer closes the session.
	later := c.Now().Add(5 * time.Minute)
	if err := soon.Refresh(later, "sig_2"); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Minute)
	if got := r.ExpireTokens(); len(got) != 0 {
		t.Fatalf("the old expiry closed %v after a refresh", got)
	}
	if got := r.WarnTokens(); len(got) != 0 {
		t.Fatalf("warned %v three minutes before the new expiry", got)
	}
	c.Advance(2*time.Minute + time.Second)
	if got := r.WarnTokens(); !slices.Equal(got, []string{"ses_soon"}) {
		t.Fatalf("the refreshed token was not warned: %v", got)
	}
	// The new key decides which key deletion closes it.
	r.CloseKey("tn_a", "sig_1", nil)
	if isDone(soon) {
		t.Fatal("deleting the old key closed the refreshed session")
	}
	c.Advance(time.Minute)
	if got := r.ExpireTokens(); !slices.Equal(got, []string{"ses_soon"}) {
		t.Fatalf("expired %v at the new expiry, want [ses_soon]", got)
	}
	if err := soon.Refresh(later.Add(time.Hour), "sig_2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refresh of a closed session: %v, want ErrNotFound", err)
	}
}

func TestRefreshUpdatesTheSigningKey(t *testing.T) {
	t.Parallel()
	r, c := newTestRegistry(t, 4)
	s, err := r.Register(Info{ID: "ses_1", TenantID: "tn_a", KeyID: "sig_1", TokenExp: c.Now().Add(time.Hour)}, nil, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(c.Now().Add(time.Hour), "sig_2"); err != nil {
		t.Fatal(err)
	}
	if n := r.CloseKey("tn_a", "sig_2", nil); n != 1 {
		t.Fatalf("deleting the new key closed %d sessions, want 1", n)
	}
}
