package main

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// The latency histogram is log-linear, in the manner of HdrHistogram: values below 128 have a
// bucket each, and every power of two above is split into 64 buckets, so a bucket's width is at
// most 1/64 of its lower bound (a relative error under 1.6%) across the whole int64 range, in a
// fixed array of 3,712 counters. Fixed buckets make merging across worker processes exact: they
// send their counts and the coordinator adds them up.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits // values below this are exact
	histHalf    = histSub / 2      // buckets per power of two above histSub
	histBuckets = histSub + (63-histSubBits)*histHalf
)

// bucketOf is the bucket holding v; negative values count as 0.
func bucketOf(v int64) int {
	if v < histSub {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - histSubBits // ≥ 1 since v ≥ 128
	m := int(uint64(v) >> shift)                 // in [histHalf, histSub)
	return histSub + (shift-1)*histHalf + m - histHalf
}

// bucketBounds returns the lowest and highest value bucket i holds.
func bucketBounds(i int) (lo, hi int64) {
	if i < histSub {
		return int64(i), int64(i)
	}
	j := i - histSub
	shift := j/histHalf + 1
	lo = int64(j%histHalf+histHalf) << shift
	return lo, lo + 1<<shift - 1
}

// histogram records values from many goroutines at once without a lock. Its zero value is
// empty and ready to use.
type histogram struct {
	counts [histBuckets]atomic.Int64
	n, sum atomic.Int64
	hi     atomic.Int64
	loInv  atomic.Int64 // MaxInt64 − the minimum, so that the zero value means "none yet"
}

// raise sets a to v if v is larger, without a lock.
func raise(a *atomic.Int64, v int64) {
	for cur := a.Load(); v > cur && !a.CompareAndSwap(cur, v); cur = a.Load() {
	}
}

// record adds one value (clamped at 0).
func (h *histogram) record(v int64) {
	v = max(v, 0)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	raise(&h.hi, v)
	raise(&h.loInv, math.MaxInt64-v)
}

// snapshot copies the histogram into its mergeable, sparse form. Values recorded meanwhile may
// or may not be included.
func (h *histogram) snapshot() histData {
	d := histData{Count: h.n.Load(), Sum: h.sum.Load(), Max: h.hi.Load()}
	if d.Count > 0 {
		d.Min = math.MaxInt64 - h.loInv.Load()
	}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			d.Buckets = append(d.Buckets, [2]int64{int64(i), c})
		}
	}
	return d
}

// histData is a histogram as it travels between processes: the non-zero buckets as
// [index, count] pairs, plus exact count, sum, min and max.
type histData struct {
	Buckets [][2]int64 `json:"buckets,omitempty"`
	Count   int64      `json:"count"`
	Sum     int64      `json:"sum"`
	Min     int64      `json:"min"`
	Max     int64      `json:"max"`
}

// merge adds o into d. Merging is exact: the result is what one histogram recording both sets
// of values would hold.
func (d *histData) merge(o histData) {
	if o.Count == 0 {
		return
	}
	if d.Count == 0 || o.Min < d.Min {
		d.Min = o.Min
	}
	d.Max = max(d.Max, o.Max)
	d.Count += o.Count
	d.Sum += o.Sum
	counts := make(map[int64]int64, len(d.Buckets)+len(o.Buckets))
	for _, b := range d.Buckets {
		counts[b[0]] += b[1]
	}
	for _, b := range o.Buckets {
		counts[b[0]] += b[1]
	}
	d.Buckets = d.Buckets[:0]
	for i := range int64(histBuckets) {
		if c := counts[i]; c > 0 {
			d.Buckets = append(d.Buckets, [2]int64{i, c})
		}
	}
}

// quantile returns the value at or below which a fraction q of the values lie: the upper bound
// of the bucket holding the value of rank ceil(q·count), kept within [Min, Max]. It is 0 for an
// empty histogram.
func (d histData) quantile(q float64) int64 {
	if d.Count == 0 {
		return 0
	}
	rank := min(max(int64(math.Ceil(q*float64(d.Count))), 1), d.Count)
	var seen int64
	for _, b := range d.Buckets {
		seen += b[1]
		if seen >= rank {
			_, hi := bucketBounds(int(b[0]))
			return min(max(hi, d.Min), d.Max)
		}
	}
	return d.Max
}

// mean is the exact arithmetic mean, 0 for an empty histogram.
func (d histData) mean() float64 {
	if d.Count == 0 {
		return 0
	}
	return float64(d.Sum) / float64(d.Count)
}
