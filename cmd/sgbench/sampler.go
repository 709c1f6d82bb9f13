package main

import (
	"fmt"
	"time"
)

// phase is a moment of the run at which the server processes are sampled.
type phase int

const (
	phaseBefore    phase = iota // before any session connects
	phaseConnected              // every session connected, after -settle; publishing starts
	phaseEnd                    // deliveries drained
	phaseLeft                   // -after-leave after every session left
	numPhases
)

// sampler keeps /proc samples of the api servers and Redis at each phase.
type sampler struct {
	pids  []int
	redis int

	api   [numPhases][]procSample
	red   [numPhases]procSample
	ok    [numPhases]bool
	when  [numPhases]time.Time
	lastE error
	// afterLeave is how long after the sessions left phaseLeft was taken.
	afterLeave time.Duration
}

// take samples every process. A failure at phaseBefore means a wrong pid: it is returned so the
// run stops before it starts. Later, a failed phase is left out of the report.
func (s *sampler) take(ph phase) error {
	if len(s.pids) == 0 && s.redis == 0 {
		return nil
	}
	s.when[ph] = time.Now()
	api, err := sampleAll(s.pids)
	if err == nil && s.redis != 0 {
		s.red[ph], err = readProc(s.redis)
		if err != nil {
			err = fmt.Errorf("sample redis pid %d: %w", s.redis, err)
		}
	}
	if err != nil {
		s.lastE = err
		return err
	}
	s.api[ph], s.ok[ph] = api, true
	return nil
}

// apiDelta sums the api processes' change between two phases: CPU seconds and RSS KiB.
func (s *sampler) apiDelta(from, to phase) (cpu float64, rss int64, ok bool) {
	if len(s.pids) == 0 || !s.ok[from] || !s.ok[to] {
		return 0, 0, false
	}
	for k := range s.pids {
		cpu += s.api[to][k].CPU - s.api[from][k].CPU
		rss += s.api[to][k].RSSKiB - s.api[from][k].RSSKiB
	}
	return cpu, rss, true
}

// apiRSS is the api processes' total RSS at a phase.
func (s *sampler) apiRSS(ph phase) int64 {
	var n int64
	for _, a := range s.api[ph] {
		n += a.RSSKiB
	}
	return n
}

// redisCPU is Redis's CPU seconds between two phases.
func (s *sampler) redisCPU(from, to phase) (float64, bool) {
	if s.redis == 0 || !s.ok[from] || !s.ok[to] {
		return 0, false
	}
	return s.red[to].CPU - s.red[from].CPU, true
}
