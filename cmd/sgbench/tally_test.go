package main

import "testing"

func TestLossAndDuplicateAccounting(t *testing.T) {
	broadcast := plan{Conns: 4, Tenants: 1, Nodes: 1, Mode: modeBroadcast}
	perConn := plan{Conns: 3, Tenants: 1, Nodes: 1, Mode: modePerConn}
	for _, tt := range []struct {
		name       string
		plan       plan
		channel    int
		ledger     ledger
		received   []int64
		wantLost   int64
		wantDup    int64
		wantForeig int64
	}{
		{"all arrive", broadcast, 0, ledger{Handed: 5}, []int64{0, 1, 2, 3, 4}, 0, 0, 0},
		{"two lost", broadcast, 0, ledger{Handed: 5}, []int64{0, 2, 4}, 2, 0, 0},
		{"a duplicate is not a delivery twice", broadcast, 0, ledger{Handed: 3}, []int64{0, 1, 1, 2, 1}, 0, 2, 0},
		{"failed publishes are not lost", broadcast, 0, ledger{Handed: 5, Failed: []int64{1, 3}}, []int64{0, 2, 4}, 0, 0, 0},
		{"a failed publish that arrives anyway", broadcast, 0, ledger{Handed: 3, Failed: []int64{1}}, []int64{0, 1}, 1, 0, 0},
		{"per-conn: only my channel counts", perConn, 1, ledger{Handed: 7}, []int64{1, 4}, 0, 0, 0},
		{"per-conn: one lost", perConn, 1, ledger{Handed: 8}, []int64{1, 4}, 1, 0, 0},
		{"per-conn: misrouted", perConn, 1, ledger{Handed: 7}, []int64{1, 4, 2}, 0, 0, 1},
		{"per-conn: channel beyond the events", perConn, 2, ledger{Handed: 2}, nil, 0, 0, 0},
		{"nothing published", broadcast, 0, ledger{}, nil, 0, 0, 0},
		{"past 64 events", broadcast, 0, ledger{Handed: 200}, seq(0, 200, 2), 100, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tl := tally{channel: tt.channel}
			var dups int64
			for _, i := range tt.received {
				if tl.record(tt.plan, i, 1) {
					dups++
				}
			}
			e := newExpectation(tt.plan, tt.ledger)
			if got := tl.lost(e); got != tt.wantLost {
				t.Errorf("lost = %d, want %d", got, tt.wantLost)
			}
			if tl.dup != tt.wantDup || dups != tt.wantDup {
				t.Errorf("duplicates = %d (reported %d), want %d", tl.dup, dups, tt.wantDup)
			}
			if tl.foreign != tt.wantForeig {
				t.Errorf("misrouted = %d, want %d", tl.foreign, tt.wantForeig)
			}
			if got, want := tl.delivered, int64(len(tt.received)); got != want {
				t.Errorf("delivered = %d, want %d", got, want)
			}
		})
	}
}

func TestExpectedDeliveries(t *testing.T) {
	p := plan{Conns: 6, Tenants: 2, Nodes: 1, Mode: modeBroadcast}
	// 10 events over 2 tenant channels: 5 each; event 2 (channel 0) failed.
	l := ledger{Handed: 10, Failed: []int64{2, 2}}
	perChannel := map[int]int64{0: 3, 1: 2} // one session of channel 1 failed to connect
	if got, want := expectedDeliveries(p, l, perChannel), int64(4*3+5*2); got != want {
		t.Errorf("expected deliveries = %d, want %d", got, want)
	}
}

func TestPlanSpreadsEvenly(t *testing.T) {
	p := plan{Conns: 12, Tenants: 2, Nodes: 3, Mode: modePerConn, Prefix: "sgb-x"}
	perNode := map[int]int{}
	pairs := map[[2]int]int{}
	for j := range p.Conns {
		perNode[p.sessionNode(j)]++
		pairs[[2]int{p.sessionTenant(j), p.sessionNode(j)}]++
		if c := p.sessionChannel(j); p.channelTenant(c) != p.sessionTenant(j) {
			t.Errorf("session %d is tenant %d's but its channel %d is tenant %d's", j, p.sessionTenant(j), c, p.channelTenant(c))
		}
	}
	for n := range p.Nodes {
		if perNode[n] != 4 {
			t.Errorf("node %d has %d sessions, want 4", n, perNode[n])
		}
	}
	if len(pairs) != 6 {
		t.Errorf("sessions use %d (tenant, node) pairs, want all 6", len(pairs))
	}
	if got, want := p.channelName(5), "sgb-x.c5"; got != want {
		t.Errorf("channel name = %q, want %q", got, want)
	}
	for i := range int64(30) {
		if c, s := p.channelOfEvent(i), p.seqOfEvent(i); int64(c)+s*int64(p.channels()) != i {
			t.Errorf("event %d → channel %d seq %d does not map back", i, c, s)
		}
	}
}

func seq(from, to, step int64) []int64 {
	var out []int64
	for i := from; i < to; i += step {
		out = append(out, i)
	}
	return out
}
