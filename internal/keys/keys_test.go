package keys

import "testing"

func TestChannelRoundTrip(t *testing.T) {
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
	for _, k := range []string{Tenant("tn_x"), APIKeys("tn_x"), SigningKeys("tn_x"), Sequence("tn_x"),
		History("tn_x", "c"), Idempotency("tn_x", "k"), Channel("tn_x", "c"), APIKeysUsed("tn_x"),
		PresenceMembers("tn_x", "c"), PresenceOrder("tn_x", "c"), PresenceHolder("tn_x", "h"), PresenceLeases("tn_x"), PresenceChannels("tn_x")} {
		if got := k[3:9]; got != "{tn_x}" {
			t.Errorf("%s: hash tag %q, want {tn_x}", k, got)
		}
	}
}
