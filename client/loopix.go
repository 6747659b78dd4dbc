package client

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Stream names one of the client's Loopix streams.
type Stream uint8

// The Loopix streams of a client.
const (
	// PayloadStream carries the client's real packets, and cover when it
	// has none queued, at rate λP.
	PayloadStream Stream = iota
	// LoopStream sends packets around the mixnet back to the client at
	// rate λL, measuring loss and latency.
	LoopStream
	// DropStream sends packets that the last hop discards, at rate λD.
	DropStream
	numStreams
)

// String returns the stream's name.
func (s Stream) String() string {
	switch s {
	case PayloadStream:
		return "payload"
	case LoopStream:
		return "loop"
	case DropStream:
		return "drop"
	}
	return fmt.Sprintf("stream(%d)", uint8(s))
}

// Rates are the Loopix send rates of a client, in packets per second; the
// PKI publishes them as network parameters. A zero rate turns its stream off.
type Rates struct {
	Payload, Loop, Drop float64
}

// Validate rejects negative or non-finite rates.
func (r Rates) Validate() error {
	for _, v := range []float64{r.Payload, r.Loop, r.Drop} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("client: bad Loopix rates %+v", r)
		}
	}
	return nil
}

func (r Rates) of(s Stream) float64 {
	return [numStreams]float64{r.Payload, r.Loop, r.Drop}[s]
}

// A Slot is one send opportunity of a stream. Every stream's slots form a
// Poisson process: the gaps between Due times are independent draws from
// Exp(1/λ), whatever the client has to send, so real packets and cover are
// sent at the same times and cannot be told apart by timing.
type Slot struct {
	Stream Stream
	Due    time.Time
}

// Scheduler draws the slots of a client's streams. It holds no goroutine;
// Run drives it in real time.
type Scheduler struct {
	rates Rates
	rng   *rand.Rand
	next  [numStreams]time.Time
}

// NewScheduler returns a scheduler whose first slots follow start. seed keys
// its randomness (use 32 bytes from crypto/rand: slot times must be
// unpredictable to an observer).
func NewScheduler(rates Rates, seed [32]byte, start time.Time) (*Scheduler, error) {
	if err := rates.Validate(); err != nil {
		return nil, err
	}
	s := &Scheduler{rates: rates, rng: rand.New(rand.NewChaCha8(seed))}
	for st := range numStreams {
		s.next[st] = s.after(st, start)
	}
	return s, nil
}

// after returns the slot of stream st following t, or the zero time if st
// is off.
func (s *Scheduler) after(st Stream, t time.Time) time.Time {
	r := s.rates.of(st)
	if r == 0 {
		return time.Time{}
	}
	return t.Add(time.Duration(s.rng.ExpFloat64() / r * float64(time.Second)))
}

// Next returns the earliest pending slot and draws that stream's following
// one. It reports false when every stream is off.
func (s *Scheduler) Next() (Slot, bool) {
	best := -1
	for st, t := range s.next {
		if !t.IsZero() && (best < 0 || t.Before(s.next[best])) {
			best = st
		}
	}
	if best < 0 {
		return Slot{}, false
	}
	slot := Slot{Stream: Stream(best), Due: s.next[best]}
	s.next[best] = s.after(Stream(best), slot.Due)
	return slot, true
}

// Run calls send for every slot at its due time until ctx ends. Due times
// are absolute, so a slow send delays the next call but does not shift the
// schedule: the process stays Poisson.
func (s *Scheduler) Run(ctx context.Context, send func(Slot)) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		slot, ok := s.Next()
		if !ok {
			<-ctx.Done()
			return ctx.Err()
		}
		timer.Reset(time.Until(slot.Due))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		send(slot)
	}
}
