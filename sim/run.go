package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// progressEvery is how many events pass between checks of the context and
// calls of Config.Progress.
const progressEvery = 1 << 16

// message is a packet in flight. Messages live in a slice reused through a
// free list, so a run allocates only while the network fills up.
type message struct {
	relay int32
	kind  kind
	// queued is when a real message was queued at its sender, sent when
	// it left the sender (nanoseconds).
	queued, sent int64
	shares       []share
}

// sim is one run's state.
type sim struct {
	cfg   Config
	rng   *rand.Rand
	net   *network
	anon  *anonymity
	src   sources
	q     eventQueue
	now   int64
	end   int64
	warm  int64
	msgs  []message
	free  []int32
	held  []int32
	count [numKinds]int64
	// lat and mixLat collect the latencies of real messages queued after
	// the warmup.
	lat, mixLat histogram
	events      int64
	// Targets are every every-th real message sent between warm and
	// lastTarget; realSeen counts the real messages sent there so far.
	every, realSeen int64
	lastTarget      int64
}

// Run simulates the network c describes and measures it. It fails before
// simulating anything if c is invalid, and stops early with ctx's error.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	s, err := newSim(c)
	if err != nil {
		return nil, err
	}
	if err := s.loop(ctx); err != nil {
		return nil, err
	}
	return s.result(time.Since(start)), nil
}

func newSim(c Config) (*sim, error) {
	rng := rand.New(rand.NewPCG(c.Seed, 0x5354524154412d53)) // "STRATA-S"
	net, err := newNetwork(c, rng)
	if err != nil {
		return nil, err
	}
	s := &sim{
		cfg:  c,
		rng:  rng,
		net:  net,
		anon: newAnonymity(c.Relays, c.Targets),
		src:  newSources(c),
		end:  int64(c.Duration),
		warm: int64(c.warmup()),
		held: make([]int32, c.Relays),
	}
	s.lastTarget = int64(c.Duration - c.drain())
	if c.Targets > 0 {
		window := (c.Duration - c.warmup() - c.drain()).Seconds()
		s.every = max(1, int64(float64(c.Clients)*c.LambdaR*window/float64(c.Targets)))
	}
	// A network holds about (total rate × layers × mean delay) messages;
	// reserving that avoids regrowing while it fills.
	inFlight := int(s.src.total*float64(c.Layers)*c.Delay.Mean.Seconds()*1.5) + 64
	s.msgs = make([]message, 0, inFlight)
	s.free = make([]int32, 0, inFlight)
	s.q.h = make([]event, 0, inFlight)
	return s, nil
}

// loop runs events in time order until the end of the run. The next source
// event and the earliest departure compete; a tie goes to the departure.
func (s *sim) loop(ctx context.Context) error {
	nextSrc := s.src.next(s.rng, 0)
	for {
		if s.events%progressEvery == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("sim: stopped at %v of %v: %w", time.Duration(s.now), s.cfg.Duration, err)
			}
			if s.cfg.Progress != nil {
				s.cfg.Progress(time.Duration(s.now), s.cfg.Duration)
			}
		}
		s.events++
		if s.q.len() > 0 && s.q.top().at <= nextSrc {
			e := s.q.pop()
			if e.at > s.end {
				break
			}
			s.now = e.at
			s.depart(e.msg)
			continue
		}
		if nextSrc > s.end {
			break
		}
		s.now = nextSrc
		s.emit()
		nextSrc = s.src.next(s.rng, s.now)
	}
	s.events--
	if s.cfg.Progress != nil {
		s.cfg.Progress(s.cfg.Duration, s.cfg.Duration)
	}
	return nil
}

// alloc returns a free message slot.
func (s *sim) alloc() int32 {
	if n := len(s.free); n > 0 {
		m := s.free[n-1]
		s.free = s.free[:n-1]
		return m
	}
	s.msgs = append(s.msgs, message{})
	return int32(len(s.msgs) - 1)
}

// send puts a new message of kind k on a route: a uniformly random relay
// of the first stratum, as pki.Graph.RandomRoute starts.
func (s *sim) send(k kind, queued int64, target bool) {
	m := s.alloc()
	msg := &s.msgs[m]
	msg.kind, msg.queued, msg.sent = k, queued, s.now
	msg.shares = msg.shares[:0]
	if target {
		msg.shares = append(msg.shares, s.anon.target(s.now))
	}
	if s.now >= s.warm {
		s.count[k]++
	}
	first := s.net.strata[0]
	s.arrive(m, first[s.rng.IntN(len(first))])
}

// arrive hands message m to relay r, which holds it for the delay the
// sphinx delay rule draws from a uniformly random 64-bit word, as the hop's
// key stream would give it.
func (s *sim) arrive(m int32, r int32) {
	msg := &s.msgs[m]
	msg.relay = r
	s.held[r]++
	if len(msg.shares) > 0 && !s.net.corrupt[r] {
		msg.shares = s.anon.enter(r, msg.shares)
	}
	d := s.cfg.Delay.Sample(s.rng.Uint64())
	s.q.push(event{at: s.now + int64(d), msg: m})
}

// depart moves message m out of its relay: to a uniformly random successor
// (the hop-by-hop draw of pki.Graph.RandomRoute), or out of the network
// from the last stratum.
func (s *sim) depart(m int32) {
	msg := &s.msgs[m]
	r := msg.relay
	if !s.net.corrupt[r] {
		msg.shares = s.anon.leave(r, s.held[r], msg.shares)
	}
	s.held[r]--
	next := s.net.next[r]
	if next != nil {
		n := next[0]
		if len(next) > 1 {
			n = next[s.rng.IntN(len(next))]
		}
		s.arrive(m, n)
		return
	}
	if len(msg.shares) > 0 {
		s.anon.exit(msg.shares, s.now)
	}
	if msg.kind == kindReal && msg.queued >= s.warm {
		s.lat.add(s.now - msg.queued)
		s.mixLat.add(s.now - msg.sent)
	}
	s.free = append(s.free, m)
}

// result gathers the measurements.
func (s *sim) result(wall time.Duration) *Result {
	c := s.cfg
	c.Progress = nil
	bad := 0
	for _, b := range s.net.corrupt {
		if b {
			bad++
		}
	}
	r := &Result{
		Config:  c,
		K:       c.successors(),
		Corrupt: bad,
		Targets: len(s.anon.entropy),
		Packets: Packets{
			Real:         s.count[kindReal],
			PayloadCover: s.count[kindPayloadCover],
			Loop:         s.count[kindLoop],
			Drop:         s.count[kindDrop],
			RelayLoop:    s.count[kindRelayLoop],
		},
		Measured:   time.Duration(s.end - s.warm),
		Latency:    s.lat.summary(),
		MixLatency: s.mixLat.summary(),
		Events:     s.events,
		Wall:       wall,
	}
	var hs []float64
	var lost float64
	var life int64
	for t, h := range s.anon.entropy {
		if s.anon.done[t] < 0 {
			r.TargetsUnfinished++
			continue
		}
		hs = append(hs, h)
		lost += s.anon.lost[t]
		life += s.anon.done[t] - s.anon.sent[t]
	}
	r.Entropy = summarize(hs)
	if n := len(hs); n > 0 {
		r.LostMass = lost / float64(n)
		r.TargetLifetime = time.Duration(life / int64(n))
	}
	return r
}
