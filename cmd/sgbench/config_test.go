package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseRamp(t *testing.T) {
	for _, tt := range []struct {
		in    string
		conns int
		want  float64
		bad   bool
	}{
		{"500", 10_000, 500, false},
		{"0", 10_000, 0, false},
		{"2.5", 10, 2.5, false},
		{"10s", 10_000, 1000, false},
		{"500ms", 100, 200, false},
		{"0s", 100, 0, false},
		{"-1", 100, 0, true},
		{"-5s", 100, 0, true},
		{"NaN", 100, 0, true},
		{"fast", 100, 0, true},
	} {
		got, err := parseRamp(tt.in, tt.conns)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("parseRamp(%q, %d) = %g, %v; want %g, error %t", tt.in, tt.conns, got, err, tt.want, tt.bad)
		}
	}
}

func TestParseConfig(t *testing.T) {
	c, err := parseConfig(strings.Fields("-url http://127.0.0.1:18090/,http://localhost:18091 -signup -tenants 2 -conns 50 -ramp 5s -channels per-conn -events 10 -rate 5 -pids 10,11"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.URLs) != 2 || c.URLs[0] != "http://127.0.0.1:18090" || c.Ramp != 10 || c.Mode != modePerConn || len(c.Pids) != 2 || c.Duration != 2*time.Minute {
		t.Errorf("config = %+v", c)
	}
	c, err = parseConfig([]string{"-api-key", "sgk_a, sgk_b"}, io.Discard)
	if err != nil || c.Tenants != 2 || c.Signup {
		t.Errorf("two API keys: tenants %d, signup %t, err %v; want 2 tenants from the keys", c.Tenants, c.Signup, err)
	}

	for _, tt := range []struct {
		args, want string
	}{
		{"-conns 5", "-api-key"},
		{"-signup -api-key k", "not both"},
		{"-api-key a,b -tenants 3", "-tenants is 3"},
		{"-signup -url ftp://x", "-url"},
		{"-signup -url http://x?y=1", "-url"},
		{"-signup -channels fanout", "-channels"},
		{"-signup -events 10 -rate 0", "-rate"},
		{"-signup -conns -1", "-conns"},
		{"-signup -pids 12,abc", "-pids"},
		{"-signup -duration 0s", "-duration"},
		{"-signup extra", "unexpected argument"},
	} {
		if _, err := parseConfig(strings.Fields(tt.args), io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseConfig(%q) error = %v, want one mentioning %q", tt.args, err, tt.want)
		}
	}
}

func TestWorkerCount(t *testing.T) {
	for _, tt := range []struct {
		conns, procs int
		nofile       uint64
		want         int
	}{
		{0, 0, 20_000, 0},
		{10, 4, 20_000, 4},
		{3, 8, 20_000, 3},
		{10_000, 0, 20_000, 1},
		{40_000, 0, 20_000, 3},
		{10_000, 0, 1_024, 11}, // a default soft limit: 960 sessions each
		{10_000, 0, 0, 1},      // unknown limit
	} {
		if got := workerCount(tt.conns, tt.procs, tt.nofile); got != tt.want {
			t.Errorf("workerCount(%d, %d, %d) = %d, want %d", tt.conns, tt.procs, tt.nofile, got, tt.want)
		}
	}
}

func TestLimitWarnings(t *testing.T) {
	cfg := config{URLs: []string{"http://a", "http://b"}, Tenants: 2, Conns: 30_000, Events: 10, Rate: 500, Payload: 100}
	tenants := []tenantCreds{
		{ID: "tn_small", Limits: limits{MaxConnections: 10_000, PublishPerSecond: 100, MaxMessageBytes: 64}},
		{ID: "tn_big", Limits: limits{MaxConnections: 100_000, PublishPerSecond: 1_000, MaxMessageBytes: 65536}},
	}
	got := strings.Join(limitWarnings(cfg, tenants), "\n")
	for _, want := range []string{"tn_small allows 10000 connections", "tn_small allows 100 publishes/s", "tn_small allows 64-byte"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "tn_big") {
		t.Errorf("warnings %q name a tenant whose limits suffice", got)
	}
}

func TestParseSoakConfig(t *testing.T) {
	t.Parallel()
	c, err := parseSoakConfig([]string{"-url", "http://127.0.0.1:8080/", "-duration", "90s", "-users", "5"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://127.0.0.1:8080" || c.Duration != 90*time.Second || c.Users != 5 || c.Rooms != 20 || c.Settle != 65*time.Second {
		t.Errorf("parsed %+v", c)
	}
	for _, args := range [][]string{
		{"-duration", "0s"},
		{"-users", "0"},
		{"-rate", "-1"},
		{"-hold", "1ms"},
		{"-url", "ftp://x"},
		{"extra"},
	} {
		if _, err := parseSoakConfig(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
