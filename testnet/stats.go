package testnet

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// latencyBounds are the histogram's bucket upper bounds, in seconds.
var latencyBounds = [...]float64{0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10}

// maxSamples bounds the latencies kept for quantiles: the most recent ones.
const maxSamples = 1 << 16

// Stats counts the testnet's end-to-end messages and their latencies. It
// is safe for concurrent use.
type Stats struct {
	mu        sync.Mutex
	sent      uint64
	delivered uint64
	lost      uint64
	counts    [len(latencyBounds) + 1]uint64
	samples   []float64 // ring of the last maxSamples latencies, seconds
	next      int
}

// Sent counts a message handed to the network.
func (s *Stats) Sent() {
	s.mu.Lock()
	s.sent++
	s.mu.Unlock()
}

// Lost counts a message the sender gave up on.
func (s *Stats) Lost() {
	s.mu.Lock()
	s.lost++
	s.mu.Unlock()
}

// Delivered counts a message that arrived after latency d.
func (s *Stats) Delivered(d time.Duration) {
	sec := d.Seconds()
	i, _ := slices.BinarySearch(latencyBounds[:], sec)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered++
	s.counts[i]++
	if len(s.samples) < maxSamples {
		s.samples = append(s.samples, sec)
		return
	}
	s.samples[s.next] = sec
	s.next = (s.next + 1) % maxSamples
}

// Snapshot returns the counters, quantiles and histogram.
func (s *Stats) Snapshot() (Counters, Histogram) {
	s.mu.Lock()
	c := Counters{Sent: s.sent, Delivered: s.delivered, Lost: s.lost}
	h := Histogram{Bounds: latencyBounds[:], Counts: slices.Clone(s.counts[:])}
	xs := slices.Clone(s.samples)
	s.mu.Unlock()
	c.P50, c.P99 = quantile(xs, 0.5), quantile(xs, 0.99)
	return c, h
}

// quantile returns the q-quantile of xs (nearest rank), sorting xs; 0 for
// an empty sample.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(q*float64(len(xs))+0.5) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// expRand returns a draw from Exp(1).
func expRand() float64 { return rand.ExpFloat64() }
