// Package keys builds every Redis key and pub/sub channel name Streamgate uses, so that tenant
// isolation can be reviewed in this one file.
//
// A tenant's keys share the hash tag {<tenant id>}: Redis Cluster keeps a tenant on one shard, and
// a script that touches several keys of one tenant stays legal there. Global keys are few: the API
// key, signing key and Mercure host indexes, the tenant list and the control channel.
package keys

import (
	"strconv"
	"strings"
)

const prefix = "sg:"

// tenantPrefix is "sg:{<tenant>}:", the start of every key of one tenant.
func tenantPrefix(tenantID string) string { return prefix + "{" + tenantID + "}:" }

// Tenant is the hash holding a tenant's name, creation time, suspension and limits.
func Tenant(tenantID string) string { return tenantPrefix(tenantID) + "tenant" }

// Tenants is the global set of tenant ids, for the admin views.
func Tenants() string { return prefix + "tenants" }

// APIKeys is the tenant's hash of API key id → key record (no secret, only its hash).
func APIKeys(tenantID string) string { return tenantPrefix(tenantID) + "apikeys" }

// APIKeysUsed is the tenant's hash of API key id → last use (Unix milliseconds).
func APIKeysUsed(tenantID string) string { return tenantPrefix(tenantID) + "apikeys:used" }

// APIKeyHash is the global index from an API key's SHA-256 (hex) to its tenant and key id.
func APIKeyHash(sha256hex string) string { return prefix + "apikey:" + sha256hex }

// SigningKeys is the tenant's hash of signing key id → key record (secret encrypted).
func SigningKeys(tenantID string) string { return tenantPrefix(tenantID) + "sigkeys" }

// SigningKeyIndex is the global index from a signing key id (a token's kid) to its tenant.
func SigningKeyIndex(keyID string) string { return prefix + "sigkey:" + keyID }

// IdentityProviders is the tenant's hash of identity provider id → provider record (issuer,
// audience, public key or JWKS URL).
func IdentityProviders(tenantID string) string { return tenantPrefix(tenantID) + "idps" }

// IdentityProviderIndex is the global index from an issuer and audience pair (the SHA-256, hex,
// of both) to the one tenant and provider that hold it: how a token without one of our kids
// finds its tenant.
func IdentityProviderIndex(pairSHA256hex string) string { return prefix + "idp:" + pairSHA256hex }

// Mercure is the tenant's Mercure hub configuration (JSON, keys encrypted).
func Mercure(tenantID string) string { return tenantPrefix(tenantID) + "mercure" }

// MercureHost is the global index from a Mercure host name to the tenant whose hub answers there.
func MercureHost(host string) string { return prefix + "mercurehost:" + host }

// MercureID is the index from a Mercure update id to its entry in the tenant's Mercure log (the
// history stream of its internal channel), expiring with the tenant's history window.
func MercureID(tenantID, updateID string) string { return tenantPrefix(tenantID) + "mid:" + updateID }

// Sequence is the tenant's hash of the event sequence: seq (last number), ms (last id time) and
// epoch (changes whenever the counter had to start again).
func Sequence(tenantID string) string { return tenantPrefix(tenantID) + "seq" }

// History is the stream holding a channel's recent events, its history window.
func History(tenantID, channel string) string { return tenantPrefix(tenantID) + "h:" + channel }

// Channel is the pub/sub channel carrying a tenant channel's live events.
func Channel(tenantID, channel string) string { return tenantPrefix(tenantID) + "ch:" + channel }

// Publish is the keys every publish's script takes, built in one allocation (a publish builds
// them on every request): Sequence, Trimmed, RateLimitPublishFull, and idem, which remembers the
// ids that a publish with this Idempotency-Key, or request id, returned.
func Publish(tenantID, idemKey string) (seq, idem, trimmed, rate string) {
	k := joined(tenantID, [][2]string{{"seq", ""}, {"idem:", idemKey}, {"trimmed", ""}, {"rl:publish", ""}})
	return k[0], k[1], k[2], k[3]
}

// PublishChannel is History and Channel of one channel, built in one allocation.
func PublishChannel(tenantID, channel string) (history, pubsub string) {
	k := joined(tenantID, [][2]string{{"h:", channel}, {"ch:", channel}})
	return k[0], k[1]
}

// joined returns the tenant's keys made of each kind and name, tenantPrefix(tenantID) + kind +
// name, as substrings of one string.
func joined(tenantID string, keys [][2]string) (k [4]string) {
	n := 0
	for _, kn := range keys {
		n += len(prefix) + len(tenantID) + len("{}:") + len(kn[0]) + len(kn[1])
	}
	var b strings.Builder
	b.Grow(n)
	for _, kn := range keys {
		b.WriteString(prefix + "{")
		b.WriteString(tenantID)
		b.WriteString("}:")
		b.WriteString(kn[0])
		b.WriteString(kn[1])
	}
	all := b.String()
	for i, kn := range keys {
		l := len(prefix) + len(tenantID) + len("{}:") + len(kn[0]) + len(kn[1])
		k[i], all = all[:l], all[l:]
	}
	return k
}

// ParseChannel splits a pub/sub channel name made by Channel back into tenant and channel.
func ParseChannel(name string) (tenantID, channel string, ok bool) {
	rest, ok := strings.CutPrefix(name, prefix+"{")
	if !ok {
		return "", "", false
	}
	tenantID, channel, ok = strings.Cut(rest, "}:ch:")
	return tenantID, channel, ok && tenantID != ""
}

// Control is the global pub/sub channel on which nodes tell each other about changes that
// affect live sessions (a deleted signing key or identity provider, a suspended tenant).
func Control() string { return prefix + "control" }

// Session is the record of a session that lets it resume on any node.
func Session(tenantID, sessionID string) string { return tenantPrefix(tenantID) + "ses:" + sessionID }

// Trimmed is the tenant's hash of channel → the newest event id trimmed from its history, which
// tells a resume whether its gap can still be replayed.
func Trimmed(tenantID string) string { return tenantPrefix(tenantID) + "trimmed" }

// Connections is the tenant's hash of node id → "<open streams>:<lease expiry, Unix ms>": the
// exact count behind max_connections, where a node's share stops counting when its lease ends.
func Connections(tenantID string) string { return tenantPrefix(tenantID) + "conns" }

// PresenceMembers is a presence channel's hash of sub → "<sessions> <info JSON>": who is there
// now, with how many sessions over the cluster and the info of the one that joined last.
func PresenceMembers(tenantID, channel string) string {
	return tenantPrefix(tenantID) + "pm:" + channel
}

// PresenceOrder is a presence channel's sorted set of subs by the time they joined (Unix ms).
func PresenceOrder(tenantID, channel string) string { return tenantPrefix(tenantID) + "pz:" + channel }

// PresenceHolder is one holder's hash of "<channel>\n<sub>" → sessions it holds there. A holder
// is one node's share of the tenant's presence; its entries live as long as its lease.
func PresenceHolder(tenantID, holder string) string { return tenantPrefix(tenantID) + "pn:" + holder }

// PresenceLeases is the tenant's hash of holder → lease expiry (Unix ms).
func PresenceLeases(tenantID string) string { return tenantPrefix(tenantID) + "pl" }

// PresenceChannels is the tenant's sorted set of the channels that have members now, each scored
// minus its member count: ZRANGE lists the busiest first, ties by name.
func PresenceChannels(tenantID string) string { return tenantPrefix(tenantID) + "pcz" }

// PresenceCount is the tenant's count of members now, summed over its channels (a user on two
// channels counts twice).
func PresenceCount(tenantID string) string { return tenantPrefix(tenantID) + "pmc" }

// PresenceLeaseIndex is the global sorted set of "<tenant>\n<holder>" by lease expiry (Unix
// ms), where live nodes find the leases of dead ones to clear their members.
func PresenceLeaseIndex() string { return prefix + "presence:leases" }

// Node is the pub/sub channel on which a node takes calls from other nodes.
func Node(nodeID string) string { return prefix + "node:" + nodeID }

// Nodes is the global sorted set of node ids by their last heartbeat (Unix milliseconds).
func Nodes() string { return prefix + "nodes" }

// NodeReport is a node's last heartbeat, expiring when the node stops reporting.
func NodeReport(nodeID string) string { return prefix + "nodereport:" + nodeID }

// Counters is the tenant's hash of running totals: delivered, dropped, evicted.
func Counters(tenantID string) string { return tenantPrefix(tenantID) + "counters" }

// UpdatePartitions is how many partitions the update stream has. Each is its own stream with
// its own hash tag, so Redis Cluster spreads them over shards and a partition's scripts stay on
// one. A job's updates always go to the same partition. Changing it strands pending updates.
const UpdatePartitions = 16

func partitionPrefix(p int) string { return prefix + "{updates:" + strconv.Itoa(p) + "}" }

// Updates is one partition of the update stream.
func Updates(p int) string { return partitionPrefix(p) }

// UpdateCounter is a job's or workflow's next update number, in its partition's slot.
func UpdateCounter(p int, tenantID, kind, id string) string {
	return partitionPrefix(p) + ":seq:" + tenantID + ":" + kind + ":" + id
}

// UpdateLast is a job's or workflow's latest update as "<seq> <entry id>", in its partition's
// slot: each update records its predecessor's entry, so that a worker can tell a predecessor
// still pending with another worker from one that will never come.
func UpdateLast(p int, tenantID, kind, id string) string {
	return partitionPrefix(p) + ":last:" + tenantID + ":" + kind + ":" + id
}

// UpdateIdempotency remembers an update accepted with this Idempotency-Key (or request id) for
// that job or workflow, in its partition's slot. Ids cannot hold "|", so the key cannot be
// mistaken for another job's.
func UpdateIdempotency(p int, tenantID, kind, id, key string) string {
	return partitionPrefix(p) + ":idem:" + tenantID + ":" + kind + ":" + id + "|" + key
}

// DeadLetters is the partition's stream of updates that kept failing.
func DeadLetters(p int) string { return partitionPrefix(p) + ":dead" }

// JobState is the hash holding a job's current state.
func JobState(tenantID, id string) string { return tenantPrefix(tenantID) + "job:" + id }

// WorkflowState is the hash holding a workflow's current state.
func WorkflowState(tenantID, id string) string { return tenantPrefix(tenantID) + "workflow:" + id }

// Webhooks is the tenant's hash of webhook endpoint id → endpoint record (secrets encrypted).
func Webhooks(tenantID string) string { return tenantPrefix(tenantID) + "webhooks" }

// WebhookDeadStreaks is the tenant's hash of webhook endpoint id → dead deliveries in a row,
// which disables an endpoint when it reaches the contract's threshold.
func WebhookDeadStreaks(tenantID string) string { return tenantPrefix(tenantID) + "wh:streaks" }

// WebhookAttempts is an endpoint's hash of "<delivery id>:<attempt>" → one row of its delivery
// history; WebhookAttemptIndex orders those rows by time, so the newest can be kept.
func WebhookAttempts(tenantID, webhookID string) string {
	return tenantPrefix(tenantID) + "wh:" + webhookID + ":attempts"
}

// WebhookAttemptIndex is an endpoint's sorted set of attempt rows by time (Unix ms).
func WebhookAttemptIndex(tenantID, webhookID string) string {
	return tenantPrefix(tenantID) + "wh:" + webhookID + ":attempts:idx"
}

// WebhookDead is an endpoint's hash of delivery id → a delivery that exhausted its retries.
func WebhookDead(tenantID, webhookID string) string {
	return tenantPrefix(tenantID) + "wh:" + webhookID + ":dead"
}

// WebhookDeadIndex is an endpoint's sorted set of dead delivery ids by when they died (Unix ms).
func WebhookDeadIndex(tenantID, webhookID string) string {
	return tenantPrefix(tenantID) + "wh:" + webhookID + ":dead:idx"
}

// WebhookPartitions is how many partitions carry webhook deliveries. A tenant's deliveries all
// go to one partition; each partition has its own hash tag, so Redis Cluster spreads them over
// shards and a partition's scripts (queue, schedule, in-flight leases) stay on one. Changing it
// strands queued deliveries.
const WebhookPartitions = 8

func webhookPartition(p int) string { return prefix + "{wh:" + strconv.Itoa(p) + "}" }

// WebhookEvents is one partition's stream of emitted events, which workers read in a consumer
// group and fan out to the endpoints that want them.
func WebhookEvents(p int) string { return webhookPartition(p) + ":events" }

// WebhookDue is one partition's sorted set of "<tenant>/<webhook id>" → when that endpoint next
// has a delivery to make (Unix ms): what the workers' schedulers poll.
func WebhookDue(p int) string { return webhookPartition(p) + ":due" }

// WebhookQueue is an endpoint's sorted set of delivery ids by when each is next due (Unix ms).
func WebhookQueue(p int, tenantID, webhookID string) string {
	return webhookPartition(p) + ":q:" + tenantID + ":" + webhookID
}

// WebhookDeliveries is an endpoint's hash of delivery id → the queued delivery (body, attempt).
func WebhookDeliveries(p int, tenantID, webhookID string) string {
	return webhookPartition(p) + ":d:" + tenantID + ":" + webhookID
}

// WebhookInFlight is an endpoint's sorted set of delivery ids being sent → lease expiry (Unix
// ms): its size is the endpoint's concurrency, and a dead worker's leases run out.
func WebhookInFlight(p int, tenantID, webhookID string) string {
	return webhookPartition(p) + ":busy:" + tenantID + ":" + webhookID
}

// Occupancy is the hash of the node instances holding a tenant channel (instance → "1"): the
// channel is occupied, cluster-wide, while it has a field.
func Occupancy(tenantID, channel string) string { return tenantPrefix(tenantID) + "occ:" + channel }

// OccupancyHeld is the global set of "<tenant>\n<channel>" that one node instance holds, so that
// its fields can be removed when it dies.
func OccupancyHeld(instance string) string { return prefix + "occ:held:" + instance }

// OccupancyHolders is the global sorted set of node instances that hold channels → when each
// last said it is alive (Unix ms).
func OccupancyHolders() string { return prefix + "occ:holders" }

// RateLimitStorePrefix is what the rate limiter's store writes, with a colon, before every key
// it is given: the RateLimit* keys below are relative to it, so that in Redis they read
// sg:{<tenant>}:rl:<what> (on the tenant's shard) or sg:rl:<what>:<client>.
const RateLimitStorePrefix = "sg"

// rateLimitKey makes a full key relative to RateLimitStorePrefix.
func rateLimitKey(full string) string { return strings.TrimPrefix(full, RateLimitStorePrefix+":") }

// RateLimitPublish counts a tenant's published events in the current second.
func RateLimitPublish(tenantID string) string { return rateLimitKey(RateLimitPublishFull(tenantID)) }

// RateLimitPublishFull is RateLimitPublish as Redis has it, without the store's prefix
// convention: the key the publish script counts in itself, which the rate limiter's store
// counts job and workflow updates and Mercure publishes in too.
func RateLimitPublishFull(tenantID string) string { return tenantPrefix(tenantID) + "rl:publish" }

// RateLimitStreamTenant counts a tenant's stream connects in the current window.
func RateLimitStreamTenant(tenantID string) string {
	return rateLimitKey(RateLimitStreamTenantFull(tenantID))
}

// RateLimitStreamTenantFull is RateLimitStreamTenant as Redis has it: the key a stream's
// admission counts in itself, which the rate limiter's store counts Mercure subscriptions in too.
func RateLimitStreamTenantFull(tenantID string) string { return tenantPrefix(tenantID) + "rl:stream" }

// RateLimitTokens counts a tenant's minted tokens in the current window.
func RateLimitTokens(tenantID string) string {
	return rateLimitKey(tenantPrefix(tenantID) + "rl:tokens")
}

// RateLimitSignup counts signups from one client address (an IPv6 client by its /64).
func RateLimitSignup(client string) string { return rateLimitKey(prefix + "rl:signup:" + client) }

// RateLimitStreamClient counts stream connects from one client address.
func RateLimitStreamClient(client string) string { return rateLimitKey(prefix + "rl:stream:" + client) }
