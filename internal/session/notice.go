package session

import (
	"encoding/json"

	streamgate "github.com/streamgate/streamgate"
)

// Reasons the registry itself writes into final frames.
const (
	reasonLagging      = "client too slow: buffer full"
	reasonTokenExpired = "token expired"
)

// Final frames the registry hands out are built once: every eviction of a slow client would
// otherwise encode the same bytes again, at the moment the node is already under load.
var (
	lagging      = notice("lagging", reasonData{Reason: reasonLagging})
	tokenExpired = AuthFailed(reasonTokenExpired)
)

type reasonData struct {
	Reason string `json:"reason"`
}

type disconnectData struct {
	Reason    string `json:"reason"`
	Reconnect bool   `json:"reconnect"`
}

// Lagging returns the final frame for a session evicted because its client reads too slowly.
// The frame is shared: like every Frame, it must not be modified.
func Lagging() *streamgate.Frame {
	return lagging
}

// AuthFailed returns the final frame for a session whose credential no longer holds: its token
// expired, or the signing key it was signed with was deleted.
func AuthFailed(reason string) *streamgate.Frame {
	return notice("auth_failed", reasonData{Reason: reason})
}

// Disconnect returns the final frame for a session the server ends on purpose: node shutdown
// (reconnect true, so the client resumes elsewhere), admin eviction or tenant suspension
// (reconnect false).
func Disconnect(reason string, reconnect bool) *streamgate.Frame {
	return notice("disconnect", disconnectData{Reason: reason, Reconnect: reconnect})
}

// notice encodes an event without an id. The data goes through encoding/json so that any reason
// is escaped and stays on one line: a raw newline would end the SSE field and let a reason forge
// events.
func notice(event string, data any) *streamgate.Frame {
	b, err := json.Marshal(data)
	if err != nil {
		// Only plain structs of strings and bools reach here; they always encode.
		panic("session: encode notice: " + err.Error())
	}
	body := make([]byte, 0, len("event: \ndata: \n\n")+len(event)+len(b))
	body = append(body, "event: "...)
	body = append(body, event...)
	body = append(body, "\ndata: "...)
	body = append(body, b...)
	body = append(body, "\n\n"...)
	return &streamgate.Frame{Body: body}
}
