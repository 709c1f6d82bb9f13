package main

import "strconv"

// Channel modes.
const (
	modeBroadcast = "broadcast" // one channel per tenant that all its sessions subscribe to
	modePerConn   = "per-conn"  // one channel per session
)

// plan lays a run out: which tenant, node and channel each session uses, and where each event
// goes. The coordinator and every worker derive the same layout from the same plan, so no
// per-session table has to travel between them.
//
// Sessions are numbered 0…Conns-1. Session j belongs to tenant j mod T and connects to node
// (j div T) mod U, so tenants and nodes are both spread evenly. Channels are numbered too: in
// broadcast mode channel c is tenant c's, in per-conn mode channel c is session c's. Event i
// goes to channel i mod C as that channel's (i div C)-th event, through node i mod U.
type plan struct {
	Conns   int    `json:"conns"`
	Tenants int    `json:"tenants"`
	Nodes   int    `json:"nodes"`
	Mode    string `json:"mode"`
	Prefix  string `json:"prefix"` // channel names start with it; unique per run
}

// channels is the number of channels events are spread over.
func (p plan) channels() int {
	if p.Mode == modePerConn {
		return max(p.Conns, 1)
	}
	return p.Tenants
}

// sessionTenant, sessionNode and sessionChannel place session j.
func (p plan) sessionTenant(j int) int { return j % p.Tenants }
func (p plan) sessionNode(j int) int   { return (j / p.Tenants) % p.Nodes }
func (p plan) sessionChannel(j int) int {
	if p.Mode == modePerConn {
		return j
	}
	return j % p.Tenants
}

// channelTenant is the tenant that owns channel c.
func (p plan) channelTenant(c int) int {
	if p.Mode == modePerConn {
		return c % p.Tenants
	}
	return c
}

// channelName is channel c's name, unique to the run.
func (p plan) channelName(c int) string {
	if p.Mode == modePerConn {
		return p.Prefix + ".c" + strconv.Itoa(c)
	}
	return p.Prefix + ".all"
}

// channelOfEvent and seqOfEvent place event i: its channel and its position on that channel.
func (p plan) channelOfEvent(i int64) int { return int(i % int64(p.channels())) }
func (p plan) seqOfEvent(i int64) int64   { return i / int64(p.channels()) }
func (p plan) eventNode(i int64) int      { return int(i % int64(p.Nodes)) }

// Where the sessions' tokens come from.
const (
	tokensPerUser = "per-user" // each session its own, signed with the tenant's signing key
	tokensShared  = "shared"   // one per tenant, minted through POST /v1/tokens
)
