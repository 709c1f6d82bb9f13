package keys

import (
	"strconv"
	"testing"
)

func TestChannelRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ tenant, channel string }{
		{"tn_a", "chat"},
		{"tn_a", "job:42"},
		{"tn_b", "a}:ch:b"}, // channel names cannot hold braces, but the parser must not be fooled
	} {
		gotT, gotC, ok := ParseChannel(Channel(tc.tenant, tc.channel))
		if !ok || gotT != tc.tenant || gotC != tc.channel {
			t.Errorf("ParseChannel(Channel(%q, %q)) = %q, %q, %v", tc.tenant, tc.channel, gotT, gotC, ok)
		}
	}
	for _, bad := range []string{"", "sg:control", "sg:{tn_a}:h:chat", "sg:{}:ch:x"} {
		if _, _, ok := ParseChannel(bad); ok {
			t.Errorf("ParseChannel(%q) ok, want refused", bad)
		}
	}
}

func TestTenantKeysShareHashTag(t *testing.T) {
	t.Parallel()
	for _, k := range []string{Tenant("tn_x"), APIKeys("tn_x"), SigningKeys("tn_x"), Sequence("tn_x"),
		History("tn_x", "c"), idemKey("tn_x", "k"), Channel("tn_x", "c"), APIKeysUsed("tn_x"),
		IdentityProviders("tn_x"),
		Webhooks("tn_x"), WebhookDeadStreaks("tn_x"), WebhookAttempts("tn_x", "wh"), WebhookAttemptIndex("tn_x", "wh"),
		WebhookDead("tn_x", "wh"), WebhookDeadIndex("tn_x", "wh"), Occupancy("tn_x", "c"),

		PresenceMembers("tn_x", "c"), PresenceOrder("tn_x", "c"), PresenceHolder("tn_x", "h"), PresenceLeases("tn_x"), PresenceChannels("tn_x"), PresenceCount("tn_x"),
		RateLimitPublishFull("tn_x")} {
		if got := k[3:9]; got != "{tn_x}" {
			t.Errorf("%s: hash tag %q, want {tn_x}", k, got)
		}
	}
}

func TestWebhookPartitionKeysShareHashTag(t *testing.T) {
	t.Parallel()
	for p := range WebhookPartitions {
		want := "{wh:" + string(rune('0'+p)) + "}"
		for _, k := range []string{WebhookEvents(p), WebhookDue(p), WebhookQueue(p, "tn_x", "wh_1"),
			WebhookDeliveries(p, "tn_x", "wh_1"), WebhookInFlight(p, "tn_x", "wh_1")} {
			if got := k[3 : 3+len(want)]; got != want {
				t.Errorf("%s: hash tag %q, want %s", k, got, want)
			}
		}
	}
}

// An update's scripts touch its partition's stream and its job's counter, last entry and
// idempotency record together: on a cluster they must share one slot.
func TestUpdatePartitionKeysShareHashTag(t *testing.T) {
	t.Parallel()
	for p := range UpdatePartitions {
		want := "{updates:" + strconv.Itoa(p) + "}"
		for _, k := range []string{Updates(p), UpdateCounter(p, "tn_x", "job", "j"), UpdateLast(p, "tn_x", "job", "j"),
			UpdateIdempotency(p, "tn_x", "job", "j", "k"), DeadLetters(p)} {
			if got := k[3 : 3+len(want)]; got != want {
				t.Errorf("%s: hash tag %q, want %s", k, got, want)
			}
		}
	}
}

// The publish script counts the publish rate in the key where the rate limiter's store, which
// prefixes its keys, counts job and workflow updates: one count for both.
func TestRateLimitPublishFull(t *testing.T) {
	t.Parallel()
	if got, want := RateLimitStorePrefix+":"+RateLimitPublish("tn_x"), RateLimitPublishFull("tn_x"); got != want {
		t.Errorf("the store counts in %q, the publish script in %q", got, want)
	}
}

// The keys a publish builds at once are the ones each key's own function builds.
func TestPublishKeys(t *testing.T) {
	t.Parallel()
	seq, idem, trimmed, rate := Publish("tn_x", "~k1")
	if seq != Sequence("tn_x") || idem != "sg:{tn_x}:idem:~k1" || trimmed != Trimmed("tn_x") || rate != RateLimitPublishFull("tn_x") {
		t.Errorf("Publish = %q %q %q %q", seq, idem, trimmed, rate)
	}
	history, pubsub := PublishChannel("tn_x", "chat.room")
	if history != History("tn_x", "chat.room") || pubsub != Channel("tn_x", "chat.room") {
		t.Errorf("PublishChannel = %q %q", history, pubsub)
	}
}

func idemKey(tenantID, key string) string {
	_, idem, _, _ := Publish(tenantID, key)
	return idem
}
