package main

// ledger is the publisher's record of a run, sent to every worker at the end so that each can
// tell lost events from events that were never accepted: events 0…Handed-1 were handed to
// publishers, and Failed lists those among them that got no 2xx (an error, a timeout, or not
// sent before the deadline). A failed publish that reaches a subscriber all the same (a timeout
// after the server accepted it) is delivered, never lost.
type ledger struct {
	Handed int64   `json:"handed"`
	Failed []int64 `json:"failed,omitempty"`
}

// expectation answers, per channel, which events a subscriber must receive.
type expectation struct {
	plan     plan
	handed   int64
	failed   map[int64]bool
	failedOn map[int]int64 // channel → failed events on it
}

func newExpectation(p plan, l ledger) *expectation {
	e := &expectation{plan: p, handed: l.Handed, failed: make(map[int64]bool, len(l.Failed)), failedOn: map[int]int64{}}
	for _, i := range l.Failed {
		if i >= 0 && i < l.Handed && !e.failed[i] {
			e.failed[i] = true
			e.failedOn[p.channelOfEvent(i)]++
		}
	}
	return e
}

// accepted is the number of events published to channel c that the server accepted.
func (e *expectation) accepted(c int) int64 {
	C := int64(e.plan.channels())
	if int64(c) >= e.handed {
		return 0
	}
	return (e.handed-int64(c)+C-1)/C - e.failedOn[c]
}

// tally is one session's record of what it received. Only the session's reader goroutine
// writes it; it is read once the reader has stopped.
type tally struct {
	channel   int
	seen      []uint64 // bit k: the channel's k-th event arrived
	delivered int64    // every message of this run, duplicates included
	dup       int64    // arrivals of an event already seen
	foreign   int64    // events of this run for another channel: misrouted
	firstRecv int64    // unix ns of the first arrival, 0 before it
	lastRecv  int64    // unix ns of the latest arrival
}

// record counts the arrival of event i at now (unix ns) and reports whether it was a duplicate.
func (t *tally) record(p plan, i, now int64) (dup bool) {
	t.delivered++
	if t.firstRecv == 0 {
		t.firstRecv = now
	}
	t.lastRecv = max(t.lastRecv, now)
	if p.channelOfEvent(i) != t.channel {
		t.foreign++
		return false
	}
	k := p.seqOfEvent(i)
	w, bit := int(k/64), uint64(1)<<(k%64)
	if w >= len(t.seen) {
		t.seen = append(t.seen, make([]uint64, w+1-len(t.seen))...)
	}
	if t.seen[w]&bit != 0 {
		t.dup++
		return true
	}
	t.seen[w] |= bit
	return false
}

// lost is the number of accepted events of the session's channel that it never received.
func (t *tally) lost(e *expectation) int64 {
	var got int64
	C := int64(e.plan.channels())
	for w, word := range t.seen {
		for b := 0; word != 0; b++ {
			if word&1 != 0 {
				i := int64(t.channel) + (int64(w)*64+int64(b))*C
				if i < e.handed && !e.failed[i] {
					got++
				}
			}
			word >>= 1
		}
	}
	return e.accepted(t.channel) - got
}
