package delivery

import (
	"testing"

	streamgate "github.com/streamgate/streamgate"
	"github.com/streamgate/streamgate/internal/session"
)

// The final notices that tell a tenant's backend of an eviction (session.evicted), and those
// that do not.
func TestEvictionReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		final   *streamgate.Frame
		reason  string
		evicted bool
	}{
		{&streamgate.Frame{Event: streamgate.EventLagging, Reason: streamgate.ReasonLagging}, streamgate.ReasonLagging, true}, // as the registry makes it
		{session.AuthFailed(streamgate.ReasonTokenExpired), streamgate.ReasonTokenExpired, true},
		{session.AuthFailed(streamgate.ReasonKeyDeleted), streamgate.ReasonKeyDeleted, true},
		{session.Disconnect(streamgate.ReasonEvicted, false), streamgate.ReasonEvicted, true},
		{session.Disconnect(streamgate.ReasonShutdown, true), "", false},
		{session.Disconnect(streamgate.ReasonSuspended, false), "", false},
		{session.Disconnect(streamgate.ReasonResumedElsewhere, false), "", false},
		{streamgate.Ping, "", false},
	} {
		reason, evicted := evictionReason(tc.final)
		if evicted != tc.evicted || evicted && reason != tc.reason {
			t.Errorf("%q: %q, %v; want %q, %v", tc.final.Body, reason, evicted, tc.reason, tc.evicted)
		}
	}
}
