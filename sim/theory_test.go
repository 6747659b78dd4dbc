package sim

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// singleMix returns a run of one Poisson mix: 1000 clients whose payload
// slots together arrive at rate rho per second, a quarter of them real, no
// other cover, mean delay 1s, and targets picked about every second.
func singleMix(rho float64, targets int, seed uint64) Config {
	c := DefaultConfig()
	c.Clients, c.Relays, c.Layers, c.Successors = 1000, 1, 1, 1
	c.LambdaP = rho / float64(c.Clients)
	c.LambdaL, c.LambdaD, c.LambdaM = 0, 0, 0
	c.LambdaR = c.LambdaP / 4
	c.Delay = sphinx.DelayPolicy{Mean: time.Second}
	c.Targets = targets
	c.Seed = seed
	c.Duration = c.warmup() + c.drain() + time.Duration(targets)*time.Second
	return c
}

func TestSinglePoissonMixMatchesTheory(t *testing.T) {
	for _, tc := range []struct {
		rho     float64
		targets int
	}{{10, 4000}, {100, 1000}, {1000, 200}, {10000, 30}} {
		res, err := Run(context.Background(), singleMix(tc.rho, tc.targets, 7))
		if err != nil {
			t.Fatal(err)
		}
		h := res.Entropy.Mean
		loopix, exact := LoopixEntropy(tc.rho), PoissonMixEntropy(tc.rho)
		t.Logf("λ·d = %5g: simulated %.4f bits (sd %.3f, %d targets), log2(λd)+log2(e) = %.4f (Δ %+.4f), exact M/M/∞ %.4f (Δ %+.4f); %d events in %v",
			tc.rho, h, res.Entropy.StdDev, res.Entropy.N, loopix, h-loopix, exact, h-exact, res.Events, res.Wall.Round(time.Millisecond))
		if res.TargetsUnfinished != 0 || res.Entropy.N < tc.targets*9/10 {
			t.Errorf("λ·d = %g: %d targets finished, %d unfinished", tc.rho, res.Entropy.N, res.TargetsUnfinished)
		}
		if math.Abs(h-loopix) > 0.05 {
			t.Errorf("λ·d = %g: entropy %.4f bits, theory log2(λd)+log2(e) = %.4f", tc.rho, h, loopix)
		}
		if math.Abs(h-exact) > 0.05 {
			t.Errorf("λ·d = %g: entropy %.4f bits, exact M/M/∞ value %.4f", tc.rho, h, exact)
		}
	}
}

func TestPoissonMixEntropyAgreesWithLoopixAboveTen(t *testing.T) {
	for _, rho := range []float64{10, 30, 100, 1000, 10000} {
		if d := PoissonMixEntropy(rho) - LoopixEntropy(rho); math.Abs(d) > 0.002 {
			t.Errorf("ρ = %g: exact − Loopix = %.4f bits", rho, d)
		}
	}
	// With about one message in the pool the first-order formula is off:
	// a lone target leaves with certainty far more often than it predicts.
	if d := PoissonMixEntropy(1) - LoopixEntropy(1); d < 0.05 {
		t.Errorf("ρ = 1: exact − Loopix = %.4f bits, want a visible gap", d)
	}
	for _, bad := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if !math.IsNaN(PoissonMixEntropy(bad)) {
			t.Errorf("PoissonMixEntropy(%v) is a number", bad)
		}
	}
}

// TestLatencyAndOverheadMatchQueueing checks the other two measurements
// against closed forms: a client's real messages wait in an M/M/1 queue
// served by its payload slots (mean sojourn 1/(λP−λR)), each hop adds
// Exp(d) capped at 10d (mean d·(1−e⁻¹⁰)), and every stream sends at its rate.
func TestLatencyAndOverheadMatchQueueing(t *testing.T) {
	c := DefaultConfig()
	c.Clients, c.Relays, c.Successors = 2000, 9, 3
	c.Duration = 3 * time.Minute
	c.Targets = 0
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Delay.Mean.Seconds()
	wantMix := float64(c.Layers) * d * (1 - math.Exp(-10))
	wantE2E := 1/(c.LambdaP-c.LambdaR) + wantMix
	gotMix, gotE2E := res.MixLatency.Mean.Seconds(), res.Latency.Mean.Seconds()
	if math.Abs(gotMix/wantMix-1) > 0.01 {
		t.Errorf("mean mix latency %.4fs, want %.4fs", gotMix, wantMix)
	}
	if math.Abs(gotE2E/wantE2E-1) > 0.02 {
		t.Errorf("mean end-to-end latency %.4fs, want %.4fs", gotE2E, wantE2E)
	}
	if max := float64(c.Layers) * 10 * d; res.MixLatency.Max.Seconds() > max+1e-9 {
		t.Errorf("mix latency reached %v, above %d capped hops", res.MixLatency.Max, c.Layers)
	}
	cover := (c.LambdaP - c.LambdaR + c.LambdaL + c.LambdaD + c.LambdaM*float64(c.Relays)/float64(c.Clients)) / c.LambdaR
	if got := res.Packets.CoverPerReal(); math.Abs(got/cover-1) > 0.02 {
		t.Errorf("cover per real packet %.3f, want %.3f", got, cover)
	}
	t.Logf("latency mean %v p50 %v p99 %v (mix mean %v), cover per real %.3f, %.0f B/s per client",
		res.Latency.Mean, res.Latency.P50, res.Latency.P99, res.MixLatency.Mean, res.Packets.CoverPerReal(), res.ClientBandwidth())
}
