package sim

import (
	"math/rand/v2"
	"time"
)

// kind is the stream a message belongs to.
type kind uint8

const (
	kindReal kind = iota
	kindPayloadCover
	kindLoop
	kindDrop
	kindRelayLoop
	numKinds
)

// source is a kind of event that starts traffic.
type source uint8

const (
	srcPayload   source = iota // a client's payload slot
	srcLoop                    // a client's loop slot
	srcDrop                    // a client's drop slot
	srcRelayLoop               // a relay's loop slot
	srcQueue                   // a client's user queues a real message
	numSources
)

// sources is every Poisson process of the network merged into one. The
// clients' streams and the relays' loops are independent Poisson processes,
// so their union is a Poisson process of the summed rate in which each
// event belongs to a process with probability proportional to its rate,
// and to each client or relay of that process uniformly. Drawing it so
// keeps a single pending source event instead of one per stream per client.
type sources struct {
	// cum[i] is the summed rate of sources 0..i, per second.
	cum   [numSources]float64
	total float64
	// queues[c] holds the times client c's queued real messages were
	// queued, oldest first from head[c].
	queues [][]int64
	head   []int32
	relays int
}

func newSources(c Config) sources {
	n, r := float64(c.Clients), float64(c.Relays)
	rates := [numSources]float64{
		srcPayload:   n * c.LambdaP,
		srcLoop:      n * c.LambdaL,
		srcDrop:      n * c.LambdaD,
		srcRelayLoop: r * c.LambdaM,
		srcQueue:     n * c.LambdaR,
	}
	var s sources
	for i, v := range rates {
		s.total += v
		s.cum[i] = s.total
	}
	s.queues = make([][]int64, c.Clients)
	s.head = make([]int32, c.Clients)
	s.relays = c.Relays
	return s
}

// next returns the time of the source event after now.
func (s *sources) next(rng *rand.Rand, now int64) int64 {
	return now + int64(rng.ExpFloat64()/s.total*float64(time.Second)+0.5)
}

// pick draws which process the event belongs to.
func (s *sources) pick(rng *rand.Rand) source {
	u := rng.Float64() * s.total
	for i := range numSources - 1 {
		if u < s.cum[i] {
			return i
		}
	}
	return numSources - 1
}

// emit runs the source event due now.
func (s *sim) emit() {
	switch s.src.pick(s.rng) {
	case srcPayload:
		c := s.rng.IntN(len(s.src.queues))
		q, h := s.src.queues[c], s.src.head[c]
		if int(h) == len(q) {
			s.send(kindPayloadCover, 0, false)
			return
		}
		queued := q[h]
		if h++; int(h) == len(q) {
			s.src.queues[c], h = q[:0], 0
		}
		s.src.head[c] = h
		s.send(kindReal, queued, s.dueTarget())
	case srcLoop:
		s.send(kindLoop, 0, false)
	case srcDrop:
		s.send(kindDrop, 0, false)
	case srcRelayLoop:
		s.send(kindRelayLoop, 0, false)
	case srcQueue:
		c := s.rng.IntN(len(s.src.queues))
		s.src.queues[c] = append(s.src.queues[c], s.now)
	}
}

// dueTarget reports whether the real message sent now is a target: every
// every-th real message sent after the warmup, until Targets are picked or
// the drain begins. Picking by count, not by clock, matters: the first
// message after a fixed time tends to end a long gap in the traffic, during
// which pools drained, so it would see smaller pools than a typical message
// does (the inspection paradox; it costs 0.07 bits at λ·d = 10). A message
// picked by its rank sees the pools every message sees.
func (s *sim) dueTarget() bool {
	if s.now < s.warm || s.now > s.lastTarget || len(s.anon.entropy) >= s.cfg.Targets {
		return false
	}
	s.realSeen++
	return s.realSeen%s.every == 0
}
