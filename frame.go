// Package streamgate holds the few domain types and rules that several of Streamgate's packages
// share: the encoded SSE frame that fan-out hands to sessions, and the syntax of channel names,
// ids and channel patterns.
package streamgate

// Frame is one server-sent event, encoded once per node and shared, read-only, by every session
// that receives it. Nobody may modify a Frame or its Body after handing it on.
//
// A frame with an ID carries a cursor: its Body begins with ID, so the SSE writer emits
// "id: " + the session's cursor prefix and then Body, and each session gets its own cursor
// without a copy of the event. A frame without an ID is written as Body alone (comments, notices).
type Frame struct {
	// ID is the event's id in its tenant's order ("<ms>-<seq>"), or empty.
	ID string
	// Seq is the sequence part of ID: the tenant's own counter, which orders every event of a
	// tenant across all its channels. Zero when ID is empty.
	Seq uint64
	// Channel is the channel the event was published to, or empty for notices.
	Channel string
	// Body is the rest of the event: "<ID>\nevent: …\ndata: …\n\n" when ID is set, otherwise a
	// whole event or comment such as ": ping\n\n".
	Body []byte
	// Snapshot marks a job's or workflow's current state read from Redis (not received live):
	// its Seq is that of the state's last change, and it is exempt from the replay floor.
	Snapshot bool
	// Resync tells the stream that the node's pub/sub connection carrying its channels broke
	// and came back: events published meanwhile may be missing, so the writer reads them from
	// history. It carries no bytes and no Channel: one marker goes to every channel of the
	// connection, and the streams holding the same marker share their history reads.
	Resync bool
	// Message reports whether the frame counts as a delivered message in the stats
	// (events published to a channel do; heartbeats and notices do not).
	Message bool
	// Event is a notice's event name (Notice sets it), and Reason the reason a final notice
	// gives (lagging, auth_failed, disconnect), so that code reacting to how a stream ended
	// never parses Body. A notice is the native protocol's: a front end speaking another
	// protocol (Mercure) leaves every frame with an Event out.
	Event, Reason string
}
