package streamgate

import (
	"strings"
	"testing"
)

func TestValidChannel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"chat", true},
		{"a-Z_0.9:@=,", true},
		{"job:42", true},
		{strings.Repeat("c", 200), true},
		{"", false},
		{strings.Repeat("c", 201), false},
		{"has space", false},
		{"line\nbreak", false},
		{"carriage\rreturn", false},
		{"nul\x00", false},
		{"star*", false},
		{"slash/", false},
		{"ünïcode", false},
	} {
		if got := ValidChannel(tc.in); got != tc.want {
			t.Errorf("ValidChannel(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"job-1.a:b_c", true},
		{strings.Repeat("i", 128), true},
		{strings.Repeat("i", 129), false},
		{"", false},
		{"a@b", false},
		{"a,b", false},
		{"a b", false},
	} {
		if got := ValidID(tc.in); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidEventName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"chat.message", true},
		{`quote"and\backslash`, true},
		{"", false},
		{"two words", false},
		{"new\nline", false},
		{"cr\r", false},
		{strings.Repeat("e", 101), false},
	} {
		if got := ValidEventName(tc.in); got != tc.want {
			t.Errorf("ValidEventName(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestMatchPattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, channel string
		want             bool
	}{
		{"*", "anything", true},
		{"chat.*", "chat.room", true},
		{"chat.*", "chat.", true},
		{"chat.*", "chat", false},
		{"chat.*", "news.chat.room", false},
		{"job:*", "job:42", true},
		{"job:*", "workflow:42", false},
		{"*.admin", "team.admin", true},
		{"*.admin", "team.admins", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXcYYb", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"**", "", true},
		{"a**b", "ab", true},
		{strings.Repeat("*a", 50), strings.Repeat("a", 49) + "b", false},
	} {
		if got := MatchPattern(tc.pattern, tc.channel); got != tc.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tc.pattern, tc.channel, got, tc.want)
		}
	}
}

func TestReserved(t *testing.T) {
	t.Parallel()
	for ch, want := range map[string]bool{"job:1": true, "workflow:x": true, "jobs:1": false, "chat": false, "job": false} {
		if got := Reserved(ch); got != want {
			t.Errorf("Reserved(%q) = %v, want %v", ch, got, want)
		}
	}
}

// FuzzMatchPattern checks the matcher against a simple recursive definition and that it
// never blows up, whatever the pattern.
func FuzzMatchPattern(f *testing.F) {
	for _, s := range [][2]string{{"*", "a"}, {"chat.*", "chat.x"}, {"a*b*c", "abc"}, {"**a", "ba"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, channel string) {
		if len(pattern) > 40 || len(channel) > 40 {
			return // the reference is exponential
		}
		if got, want := MatchPattern(pattern, channel), refMatch(pattern, channel); got != want {
			t.Fatalf("MatchPattern(%q, %q) = %v, want %v", pattern, channel, got, want)
		}
		if ValidPattern(pattern) && !strings.Contains(pattern, "*") && MatchPattern(pattern, channel) != (pattern == channel) {
			t.Fatalf("a pattern without * must match only itself")
		}
	})
}

func refMatch(p, s string) bool {
	if p == "" {
		return s == ""
	}
	if p[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if refMatch(p[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && p[0] == s[0] && refMatch(p[1:], s[1:])
}

func FuzzValidChannel(f *testing.F) {
	for _, s := range []string{"chat", "a\nb", "", "x\r", "job:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidChannel(s) && strings.ContainsAny(s, "\r\n\x00 *{}") {
			t.Fatalf("ValidChannel accepted %q, which could break framing or keys", s)
		}
	})
}
