package sim

import (
	"math"
	"slices"
	"time"
)

// Summary describes a sample of values.
type Summary struct {
	N                 int
	Mean, StdDev      float64
	Min, P5, P50, P95 float64
	P99, Max          float64
}

// summarize returns the summary of xs, which it sorts.
func summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	slices.Sort(xs)
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	sd := 0.0
	if len(xs) > 1 {
		sd = math.Sqrt(ss / float64(len(xs)-1))
	}
	q := func(p float64) float64 { return xs[min(len(xs)-1, int(p*float64(len(xs))))] }
	return Summary{N: len(xs), Mean: mean, StdDev: sd, Min: xs[0], P5: q(0.05), P50: q(0.5), P95: q(0.95), P99: q(0.99), Max: xs[len(xs)-1]}
}

// Latency summarizes a distribution of durations.
type Latency struct {
	N                        int64
	Mean, P50, P90, P99, Max time.Duration
}

// Histogram resolution: buckets 1 % wide from histMin up, so quantiles are
// within 1 % of the exact ones whatever the scale, in fixed memory.
const (
	histMin     = float64(time.Microsecond)
	histGrowth  = 1.01
	histBuckets = 2600 // up to histMin·1.01^2600 ≈ 1.8 × 10^5 s
)

// histogram counts durations in logarithmic buckets.
type histogram struct {
	counts   [histBuckets]int64
	n        int64
	sum, max float64
}

var logGrowth = math.Log(histGrowth)

func (h *histogram) add(d int64) {
	x := float64(d)
	h.n++
	h.sum += x
	h.max = max(h.max, x)
	i := 0
	if x > histMin {
		i = min(histBuckets-1, int(math.Log(x/histMin)/logGrowth)+1)
	}
	h.counts[i]++
}

// quantile returns the upper edge of the bucket holding quantile p,
// clamped to the largest value seen.
func (h *histogram) quantile(p float64) time.Duration {
	rank := int64(math.Ceil(p * float64(h.n)))
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank && c > 0 {
			edge := histMin * math.Pow(histGrowth, float64(i))
			return time.Duration(min(edge, h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) summary() Latency {
	if h.n == 0 {
		return Latency{}
	}
	return Latency{
		N:    h.n,
		Mean: time.Duration(h.sum / float64(h.n)),
		P50:  h.quantile(0.5),
		P90:  h.quantile(0.9),
		P99:  h.quantile(0.99),
		Max:  time.Duration(h.max),
	}
}
