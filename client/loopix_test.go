package client

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

// ksExp returns the Kolmogorov–Smirnov distance between gaps and Exp(rate).
func ksExp(gaps []float64, rate float64) float64 {
	xs := slices.Clone(gaps)
	slices.Sort(xs)
	n := float64(len(xs))
	var d float64
	for i, x := range xs {
		f := 1 - math.Exp(-rate*x)
		d = max(d, math.Abs(float64(i+1)/n-f), math.Abs(f-float64(i)/n))
	}
	return d
}

// gapsOf returns the gaps in seconds between a stream's slots.
func gapsOf(slots []Slot, st Stream) []float64 {
	var gaps []float64
	var last time.Time
	for _, s := range slots {
		if s.Stream != st {
			continue
		}
		if !last.IsZero() {
			gaps = append(gaps, s.Due.Sub(last).Seconds())
		}
		last = s.Due
	}
	return gaps
}

func TestStreamsArePoisson(t *testing.T) {
	rates := Rates{Payload: 10, Loop: 2, Drop: 1}
	s, err := NewScheduler(rates, [32]byte{1}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	var slots []Slot
	for range 40000 {
		slot, ok := s.Next()
		if !ok {
			t.Fatal("no slot")
		}
		if len(slots) > 0 && slot.Due.Before(slots[len(slots)-1].Due) {
			t.Fatal("slots out of order")
		}
		slots = append(slots, slot)
	}
	for _, st := range []Stream{PayloadStream, LoopStream, DropStream} {
		gaps := gapsOf(slots, st)
		crit := 1.95 / math.Sqrt(float64(len(gaps)))
		if d := ksExp(gaps, rates.of(st)); d > crit {
			t.Errorf("%v stream: KS distance %.4f > %.4f: gaps are not Exp(%v)", st, d, crit, rates.of(st))
		}
		if d := ksExp(gaps, 1.5*rates.of(st)); d < crit {
			t.Errorf("%v stream: KS test cannot tell rate %v from %v", st, rates.of(st), 1.5*rates.of(st))
		}
		// Each stream's share of slots matches its rate.
		share := float64(len(gaps)+1) / float64(len(slots))
		if want := rates.of(st) / 13; math.Abs(share-want) > 0.01 {
			t.Errorf("%v stream has %.3f of the slots, want %.3f", st, share, want)
		}
	}
}

// TestRealTrafficDoesNotChangeTiming runs the scheduler in real time twice,
// once with every slot costing the work of a real packet and once with
// none: the slots follow the same law, and so do the send times unless
// the machine is too loaded to keep up (then the lateness varies and only
// the slot law is checked), so an observer cannot tell whether the client
// is talking. TestSendTimesArePoisson does the same through a Client.
func TestRealTrafficDoesNotChangeTiming(t *testing.T) {
	const rate = 100.0
	run := func(busy bool) (sent, dues []time.Time) {
		s, err := NewScheduler(Rates{Payload: rate}, [32]byte{2}, time.Now())
		if err != nil {
			t.Error(err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
		defer cancel()
		var mu sync.Mutex
		s.Run(ctx, func(slot Slot) {
			now := time.Now()
			if busy {
				// A real packet costs the client some work to build.
				for time.Since(now) < 200*time.Microsecond {
				}
			}
			mu.Lock()
			sent = append(sent, now) // what an observer of the link sees
			dues = append(dues, slot.Due)
			mu.Unlock()
		})
		return sent, dues
	}
	gaps := func(ts []time.Time) []float64 {
		var g []float64
		for i := 1; i < len(ts); i++ {
			g = append(g, ts[i].Sub(ts[i-1]).Seconds())
		}
		return g
	}
	for _, busy := range []bool{false, true} {
		t.Run(map[bool]string{false: "idle", true: "busy"}[busy], func(t *testing.T) {
			t.Parallel()
			sent, dues := run(busy)
			if len(sent) < 150 {
				t.Fatalf("only %d slots in 2.5 s at %v/s", len(sent), rate)
			}
			crit := 1.95 / math.Sqrt(float64(len(sent)-1))
			if d := ksExp(gaps(dues), rate); d > crit {
				t.Fatalf("slots: KS distance %.4f > %.4f", d, crit)
			}
			late := make([]time.Duration, len(sent))
			for i := range sent {
				late[i] = sent[i].Sub(dues[i])
			}
			slices.Sort(late)
			spread := late[len(late)*9/10] - late[len(late)/10]
			d := ksExp(gaps(sent), rate)
			t.Logf("busy=%v: lateness p10–p90 spread %v, send-time KS %.4f (critical %.4f)", busy, spread, d, crit)
			if spread < 2*time.Millisecond && d > crit {
				t.Fatalf("send times: KS distance %.4f > %.4f", d, crit)
			}
		})
	}
}

func TestSchedulerRejectsBadRates(t *testing.T) {
	for _, r := range []Rates{{Payload: -1}, {Loop: math.NaN()}, {Drop: math.Inf(1)}} {
		if _, err := NewScheduler(r, [32]byte{}, time.Now()); err == nil {
			t.Errorf("rates %+v accepted", r)
		}
	}
	s, _ := NewScheduler(Rates{}, [32]byte{}, time.Now())
	if _, ok := s.Next(); ok {
		t.Fatal("all streams off, yet a slot")
	}
}

// BenchmarkSchedulerNext measures drawing one slot.
func BenchmarkSchedulerNext(b *testing.B) {
	s, _ := NewScheduler(Rates{Payload: 10, Loop: 10, Drop: 10}, [32]byte{}, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		s.Next()
	}
}
