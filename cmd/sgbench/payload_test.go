package main

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		p    payload
		size int
	}{
		{payload{0, 0}, 0},
		{payload{7, 1_780_000_000_123_456_789}, 100},
		{payload{123_456, 1_780_000_000_000_000_000}, 1024},
		{payload{1, 2}, 33}, // just long enough for an empty pad
	} {
		data := appendData(nil, tt.p, tt.size)
		if !json.Valid(data) {
			t.Fatalf("data %s is not JSON", data)
		}
		if min := len(appendData(nil, tt.p, 0)); tt.size >= min+len(`,"pad":""`) && len(data) != tt.size {
			t.Errorf("data for size %d is %d bytes", tt.size, len(data))
		}
		// What a subscriber receives: the server's message envelope around the compacted data.
		msg, _ := json.Marshal(map[string]any{
			"channel": "sgb-1.all", "event": "sgbench", "data": json.RawMessage(data), "published_at": "2026-11-27T17:26:10.769878496Z",
		})
		got, err := parseMessage(string(msg))
		if err != nil || got != tt.p {
			t.Errorf("parseMessage(%s) = %+v, %v; want %+v", msg, got, err, tt.p)
		}
	}
}

func TestPublishBodyIsWhatTheAPITakes(t *testing.T) {
	var body struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	b := appendPublishBody(nil, payload{Index: 5, Sent: 9}, 64)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	if body.Event != "sgbench" || len(body.Data) != 64 {
		t.Errorf("body %s: event %q, data %d bytes; want sgbench and 64", b, body.Event, len(body.Data))
	}
}

func TestParseMessageFallsBackAndRejects(t *testing.T) {
	for _, tt := range []struct {
		msg  string
		want payload
		err  error
	}{
		// Keys reordered (a server that re-encodes data): the slow path still finds them.
		{`{"channel":"c","data":{"t":42,"i":3,"sgb":1},"event":"m"}`, payload{3, 42}, nil},
		{`{"channel":"c","data":{"sgb":1,"i":3,"pad":"x","t":42}}`, payload{3, 42}, nil},
		{`{"channel":"c","data":{"text":"hello"}}`, payload{}, errNotBench},
		{`{"channel":"c","data":{"sgb":2,"i":3,"t":4}}`, payload{}, errNotBench},
		{`{"channel":"c","data":{"sgb":1,"i":-3,"t":4}}`, payload{}, errNotBench},
		{`{"channel":"c","data":{"sgb":1,"i":3}}`, payload{}, errNotBench},
		{`not json`, payload{}, errNotBench},
		// An index past int64 on the fast path must not wrap around.
		{`{"data":{"sgb":1,"i":9999999999999999999,"t":4}}`, payload{}, errNotBench},
	} {
		got, err := parseMessage(tt.msg)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("parseMessage(%s) = %+v, %v; want %+v, %v", tt.msg, got, err, tt.want, tt.err)
		}
	}
}
