package main

import (
	"strings"
	"testing"
	"time"
)

// TestDevModeRoundTrip starts the api the way make run does: no REDIS_URL, no secret key, no
// admin token. It must come up on the embedded Redis, say so, print the admin token and a
// signup command, and serve a publish → stream round trip.
func TestDevModeRoundTrip(t *testing.T) {
	t.Parallel()
	n := bootNode(t, nil, map[string]string{"STREAMGATE_ADDR": "127.0.0.1:0"})
	if !strings.Contains(n.logs.String(), "DEV MODE") {
		t.Errorf("dev mode is not said loudly in the log:\n%s", n.logs)
	}
	out := n.stdout.String()
	if !strings.Contains(out, "Admin token") || !strings.Contains(out, "curl -s -X POST http://") {
		t.Errorf("first start must print the admin token and a signup command, got:\n%s", out)
	}
	a := n.signup(t, "Acme")
	s := n.openStream(t, n.token(t, a, "u", []string{"chat.*"}, 0), "chat.lobby")
	id := n.publish(t, a, "chat.lobby", map[string]string{"hello": "dev"})
	ev := s.next(5 * time.Second)
	if m := decodeMessage(t, ev); string(m.Data) != `{"hello":"dev"}` || eventID(t, ev.ID) != id {
		t.Errorf("got %+v id %s, want the published event %s", m, ev.ID, id)
	}
	// Secrets never reach the log.
	for _, secret := range []string{a.APIKey, a.SigningKey} {
		if strings.Contains(n.logs.String(), secret) {
			t.Errorf("a secret appears in the log")
		}
	}
}
