package session

import (
	"time"

	streamgate "github.com/streamgate/streamgate"
)

// Final frames the registry hands out are built once: every eviction of a slow client would
// otherwise encode the same bytes again, at the moment the node is already under load.
var (
	lagging      = final(streamgate.EventLagging, streamgate.ReasonLagging, reasonData{Reason: streamgate.ReasonLagging})
	tokenExpired = AuthFailed(streamgate.ReasonTokenExpired)
)

type reasonData struct {
	Reason string `json:"reason"`
}

type disconnectData struct {
	Reason    string `json:"reason"`
	Reconnect bool   `json:"reconnect"`
}

// AuthFailed returns the final frame for a session whose credential no longer holds: its token
// expired, or the signing key it was signed with was deleted.
func AuthFailed(reason string) *streamgate.Frame {
	return final(streamgate.EventAuthFailed, reason, reasonData{Reason: reason})
}

// Disconnect returns the final frame for a session the server ends on purpose: node shutdown
// (reconnect true, so the client resumes elsewhere), admin eviction or tenant suspension
// (reconnect false).
func Disconnect(reason string, reconnect bool) *streamgate.Frame {
	return final(streamgate.EventDisconnect, reason, disconnectData{Reason: reason, Reconnect: reconnect})
}

type expiringData struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// TokenExpiring returns the notice that a session's token expires at exp: the client should
// refresh it (POST /v1/sessions/{id}/token) before then.
func TokenExpiring(exp time.Time) *streamgate.Frame {
	return streamgate.Notice(streamgate.EventTokenExpiring, expiringData{ExpiresAt: exp.UTC()})
}

// final is a notice that ends a session, with its reason kept beside the bytes.
func final(event, reason string, data any) *streamgate.Frame {
	f := streamgate.Notice(event, data)
	f.Reason = reason
	return f
}
