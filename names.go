package streamgate

import "strings"

// Limits on names, from the public contract.
const (
	MaxChannelLen   = 200
	MaxIDLen        = 128
	MaxEventNameLen = 100
	MaxSubLen       = 256
)

// Reserved channel prefixes: only the job tracker publishes there.
const (
	JobChannelPrefix      = "job:"
	WorkflowChannelPrefix = "workflow:"
)

// ValidChannel reports whether s is a channel name: 1 to 200 characters of
// A-Z a-z 0-9 _ - . : @ = ,
func ValidChannel(s string) bool {
	if len(s) == 0 || len(s) > MaxChannelLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !channelByte(s[i]) {
			return false
		}
	}
	return true
}

// ValidID reports whether s is a job, workflow or step id: 1 to 128 characters of
// A-Z a-z 0-9 _ - . :
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idByte(s[i]) {
			return false
		}
	}
	return true
}

// ValidEventName reports whether s can name an event: 1 to 100 printable ASCII characters
// other than space, so it can never break the SSE framing.
func ValidEventName(s string) bool {
	if len(s) == 0 || len(s) > MaxEventNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Reserved reports whether channel belongs to the job tracker (job:<id> or workflow:<id>).
func Reserved(channel string) bool {
	return strings.HasPrefix(channel, JobChannelPrefix) || strings.HasPrefix(channel, WorkflowChannelPrefix)
}

// ValidPattern reports whether p is a channel pattern: a channel name in which '*' may stand
// anywhere, any number of times.
func ValidPattern(p string) bool {
	if len(p) == 0 || len(p) > MaxChannelLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '*' && !channelByte(p[i]) {
			return false
		}
	}
	return true
}

// MatchPattern reports whether channel matches pattern, in which '*' matches any run of
// characters, including none. It runs in O(len(pattern)·len(channel)) at worst, never
// exponentially, whatever the pattern.
func MatchPattern(pattern, channel string) bool {
	// Greedy matching with a single backtrack point, the classic wildcard algorithm.
	p, c := 0, 0
	star, mark := -1, 0
	for c < len(channel) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, c
			p++
		case p < len(pattern) && pattern[p] == channel[c]:
			p++
			c++
		case star >= 0:
			p = star + 1
			mark++
			c = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Granted reports whether any of patterns matches channel.
func Granted(patterns []string, channel string) bool {
	for _, p := range patterns {
		if MatchPattern(p, channel) {
			return true
		}
	}
	return false
}

func channelByte(b byte) bool {
	return idByte(b) || b == '@' || b == '=' || b == ','
}

func idByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '_' || b == '-' || b == '.' || b == ':'
}
