package relay

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/strata-mix/strata/sphinx"
)

// DefaultSchedulerCapacity is how many packets a scheduler holds by
// default: 262,144 packets, 614 MB of packet buffers.
const DefaultSchedulerCapacity = 1 << 18

// scheduled is one held packet.
type scheduled struct {
	due  int64 // unix nanoseconds
	next sphinx.NodeID
	buf  *[]byte
}

// Scheduler holds packets for their per-hop delay: a binary min-heap by due
// time (O(log n) insertion), drained by one goroutine that sleeps until the
// earliest due time and releases everything due in one batch. It holds at
// most Capacity packets: one more is dropped (the newest, since dropping a
// held packet instead would cost the same anonymity and break a delay
// already promised) and counted. Packets due now skip the heap.
type Scheduler struct {
	forward  func(next sphinx.NodeID, buf *[]byte)
	capacity int

	mu   sync.Mutex
	heap []scheduled
	wake chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	lateness prometheus.Histogram
	depth    prometheus.GaugeFunc
}

// NewScheduler starts a scheduler that calls forward for each packet at its
// due time. capacity ≤ 0 means DefaultSchedulerCapacity.
func NewScheduler(capacity int, forward func(next sphinx.NodeID, buf *[]byte), reg prometheus.Registerer) (*Scheduler, error) {
	if capacity <= 0 {
		capacity = DefaultSchedulerCapacity
	}
	// The heap is allocated whole (48 bytes a slot) so that growing it never
	// copies under the lock and stalls releases.
	s := &Scheduler{forward: forward, capacity: capacity, heap: make([]scheduled, 0, capacity), wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.lateness = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "strata_relay_scheduler_lateness_seconds",
		Help: "How late a delayed packet was released after its due time.", Buckets: prometheus.ExponentialBuckets(10e-6, 2, 14)})
	s.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strata_relay_scheduler_packets", Help: "Packets held for their delay."},
		func() float64 { return float64(s.Len()) })
	if reg != nil {
		for _, c := range []prometheus.Collector{s.lateness, s.depth} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	s.wg.Go(s.run)
	return s, nil
}

// Add holds buf until due and then forwards it to next. It reports false,
// keeping nothing, when the scheduler is full.
func (s *Scheduler) Add(due time.Time, next sphinx.NodeID, buf *[]byte) bool {
	if !due.After(time.Now()) {
		s.forward(next, buf)
		return true
	}
	item := scheduled{due: due.UnixNano(), next: next, buf: buf}
	s.mu.Lock()
	if len(s.heap) >= s.capacity {
		s.mu.Unlock()
		return false
	}
	s.push(item)
	earliest := s.heap[0].due == item.due
	s.mu.Unlock()
	if earliest {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// Len returns the number of packets held.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.heap)
}

// Close stops the scheduler and returns the packets it still held.
func (s *Scheduler) Close() []*[]byte {
	close(s.done)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*[]byte, len(s.heap))
	for i, it := range s.heap {
		out[i] = it.buf
	}
	s.heap = nil
	return out
}

func (s *Scheduler) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []scheduled
	for {
		now := time.Now().UnixNano()
		batch = batch[:0]
		s.mu.Lock()
		for len(s.heap) > 0 && s.heap[0].due <= now {
			batch = append(batch, s.pop())
		}
		wait := time.Hour
		if len(s.heap) > 0 {
			wait = time.Duration(s.heap[0].due - now)
		}
		s.mu.Unlock()
		for _, it := range batch {
			s.lateness.Observe(float64(now-it.due) / 1e9)
			s.forward(it.next, it.buf)
		}
		if len(batch) > 0 {
			continue // forwarding took time: look again before sleeping
		}
		timer.Reset(wait)
		select {
		case <-s.done:
			return
		case <-s.wake:
			timer.Stop() // Go ≥ 1.23: no stale tick survives Stop
		case <-timer.C:
		}
	}
}

func (s *Scheduler) push(it scheduled) {
	s.heap = append(s.heap, it)
	i := len(s.heap) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s.heap[p].due <= it.due {
			break
		}
		s.heap[i] = s.heap[p]
		i = p
	}
	s.heap[i] = it
}

func (s *Scheduler) pop() scheduled {
	top := s.heap[0]
	last := s.heap[len(s.heap)-1]
	s.heap = s.heap[:len(s.heap)-1]
	n := len(s.heap)
	if n == 0 {
		return top
	}
	i := 0
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && s.heap[c+1].due < s.heap[c].due {
			c++
		}
		if last.due <= s.heap[c].due {
			break
		}
		s.heap[i] = s.heap[c]
		i = c
	}
	s.heap[i] = last
	return top
}
