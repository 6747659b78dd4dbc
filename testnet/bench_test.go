package testnet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// BenchmarkEndToEndLatency measures the latency of messages between the two
// clients of a default-shape testnet at 50 ms mean per-hop delay: sender →
// 3 mixes → mailbox node (stored, fsynced) → push through the recipient's
// SURB → 3 mixes → home relay → recipient. Each iteration is one message;
// messages leave 100 ms apart, alternating direction. Run it with a fixed
// count: go test -run '^$' -bench EndToEnd -benchtime 200x ./testnet/
//
// λP = 20/s keeps the wait for a payload slot (mean 1/λP = 50 ms at the
// sender, and the mailbox pushes at once) small beside the six mix delays,
// whose sum alone has mean 300 ms and p99 ≈ 0.66 s. The benchmark also
// reports what the delay law predicts (predictedLatency): the measured
// figures minus these are processing, links, fsync and the mailbox push.
func BenchmarkEndToEndLatency(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := Start(ctx, Config{
		DataDir: b.TempDir(), MeanDelay: 50 * time.Millisecond, BlockInterval: 200 * time.Millisecond,
		EpochBlocks: 3000, LambdaP: 20, LambdaL: 2, LambdaD: 2, LambdaM: 2,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	// Warm up: mailboxes created and stocked.
	if _, err := n.Send(ctx, 0, 1, "warm-up"); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for n.Stats().Delivered < 1 {
		if time.Now().After(deadline) {
			b.Fatal("warm-up message not delivered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.stats = Stats{}
	b.ResetTimer()
	for i := range b.N {
		if _, err := n.Send(ctx, i%2, 1-i%2, fmt.Sprintf("bench %d", i)); err != nil {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline = time.Now().Add(60 * time.Second)
	for n.Stats().Delivered < uint64(b.N) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	c := n.Stats()
	b.ReportMetric(c.P50*1000, "p50-ms")
	b.ReportMetric(c.P99*1000, "p99-ms")
	b.ReportMetric(float64(c.Delivered)/float64(b.N)*100, "%delivered")
	p50, p99 := predictedLatency(sphinx.DelayPolicy{Mean: 50 * time.Millisecond}, 6, 20)
	b.ReportMetric(p50.Seconds()*1000, "predicted-p50-ms")
	b.ReportMetric(p99.Seconds()*1000, "predicted-p99-ms")
}

// predictedLatency is the latency law of a message whose hops delays
// follow policy (drawn by the hops' own sphinx.DelayPolicy.Sample) plus
// the wait for a payload slot at rate lambdaP: its p50 and p99 over a
// million draws. Processing, links and the mailbox's fsync are not in it.
func predictedLatency(policy sphinx.DelayPolicy, hops int, lambdaP float64) (p50, p99 time.Duration) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const n = 1_000_000
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = time.Duration(rnd.ExpFloat64() / lambdaP * float64(time.Second))
		for range hops {
			d[i] += policy.Sample(rnd.Uint64())
		}
	}
	slices.Sort(d)
	return d[n/2], d[n*99/100]
}
