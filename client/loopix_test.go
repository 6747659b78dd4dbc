package client

import (
	"math"
	"slices"
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

// ksTwo returns the two-sample Kolmogorov–Smirnov distance between a and b,
// and its critical value at α = 0.001.
func ksTwo(a, b []float64) (d, crit float64) {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	i, j := 0, 0
	for i < len(x) && j < len(y) {
		v := min(x[i], y[j])
		for i < len(x) && x[i] <= v {
			i++
		}
		for j < len(y) && y[j] <= v {
			j++
		}
		d = max(d, math.Abs(float64(i)/float64(len(x))-float64(j)/float64(len(y))))
	}
	n, m := float64(len(x)), float64(len(y))
	return d, 1.95 * math.Sqrt((n+m)/(n*m))
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
