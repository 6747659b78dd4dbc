package sphinx

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"
	"time"
)

// ksStatistic returns the Kolmogorov–Smirnov distance between the sample xs
// and the CDF cdf.
func ksStatistic(xs []float64, cdf func(float64) float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	n := float64(len(xs))
	var d float64
	for i, x := range xs {
		f := cdf(x)
		d = max(d, math.Abs(float64(i+1)/n-f), math.Abs(f-float64(i)/n))
	}
	return d
}

// ksCritical001 is the KS critical value at significance 0.001 for n samples.
func ksCritical001(n int) float64 { return 1.95 / math.Sqrt(float64(n)) }

func expCDF(mean float64) func(float64) float64 {
	return func(x float64) float64 { return 1 - math.Exp(-x/mean) }
}

// TestPacketDelaysFollowExponential checks, over many packets, that the delays
// hops apply are Exp(mean): the draw comes from each packet's key stream.
func TestPacketDelaysFollowExponential(t *testing.T) {
	f := testFormat(t)
	rnd := testRand(20)
	nodes := testNodes(t, rnd, 2)
	policy := DelayPolicy{Mean: 40 * time.Millisecond}
	const n = 2000
	delays := make([]float64, 0, n)
	var res Result
	for range n {
		pkt, route, err := f.NewPacket(rnd, pathOf(nodes), DropCover(), policy, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Unwrap(nodes[0].priv, policy, pkt, &res); err != nil {
			t.Fatal(err)
		}
		if res.Delay != route.Delays[0] {
			t.Fatalf("hop delay %v, sender predicted %v", res.Delay, route.Delays[0])
		}
		delays = append(delays, float64(res.Delay))
	}
	d := ksStatistic(delays, expCDF(float64(policy.Mean)))
	if crit := ksCritical001(n); d > crit {
		t.Fatalf("KS distance %.4f exceeds critical value %.4f: delays are not Exp(%v)", d, crit, policy.Mean)
	}
	// The test can fail: the same sample is far from Exp(2·mean).
	if d := ksStatistic(delays, expCDF(2*float64(policy.Mean))); d < ksCritical001(n) {
		t.Fatalf("KS test cannot tell Exp(mean) from Exp(2·mean) (distance %.4f)", d)
	}
}

func TestDelaySampleMapping(t *testing.T) {
	p := DelayPolicy{Mean: time.Second}
	if got := p.Sample(0); got != DefaultDelayCap*time.Second {
		t.Errorf("smallest word gives %v, want the cap %v", got, DefaultDelayCap*time.Second)
	}
	if got := p.Sample(math.MaxUint64); got != 0 {
		t.Errorf("largest word gives %v, want 0", got)
	}
	if got := (DelayPolicy{Mean: time.Second, Max: 3 * time.Second}).Sample(0); got != 3*time.Second {
		t.Errorf("explicit cap gives %v", got)
	}
	if got := (DelayPolicy{}).Sample(12345); got != 0 {
		t.Errorf("zero mean gives %v", got)
	}
	// The median word maps to mean·ln 2 = 693.147180 ms.
	if got, want := p.Sample(1<<63), time.Duration(693147180); got < want-time.Microsecond || got > want+time.Microsecond {
		t.Errorf("median word gives %v, want %v", got, want)
	}
	// Over many uniform words the mapping is Exp(mean) capped.
	rnd := testRand(21)
	const n = 20000
	xs := make([]float64, n)
	for i := range xs {
		var b [8]byte
		rnd.Read(b[:])
		xs[i] = float64(p.Sample(binary.LittleEndian.Uint64(b[:])))
	}
	if d := ksStatistic(xs, expCDF(float64(time.Second))); d > ksCritical001(n) {
		t.Fatalf("KS distance %.4f", d)
	}
}
