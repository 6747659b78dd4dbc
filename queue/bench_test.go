package queue

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// BenchmarkEncodePack64KiB: a 64 KiB Fast message from Put to its last
// packed payload (encoding, symbols, packing; the fsync of Put excluded by
// timing only the slots).
func BenchmarkEncodePack64KiB(b *testing.B) { benchEncodePack(b, 64<<10) }

// BenchmarkEncodePack1MiB: the same for 1 MiB.
func BenchmarkEncodePack1MiB(b *testing.B) { benchEncodePack(b, 1<<20) }

func benchEncodePack(b *testing.B, size int) {
	clk := newClock()
	q, _ := stepped(&testing.T{}, clk, nil)
	defer q.Close()
	body := randomBody(rand.New(rand.NewPCG(1, 1)), size)
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	packets := 0
	for b.Loop() {
		b.StopTimer()
		if _, err := q.Put(ctx, "B", body, Fast); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		q.step(ctx)
		for {
			_, ok := q.Next(clk.Now())
			if !ok {
				break
			}
			packets++
		}
		b.StopTimer()
		q.step(ctx) // delete the sent message (an fsync) outside the timing
		b.StartTimer()
	}
	b.ReportMetric(float64(packets)/float64(b.N), "packets/op")
}

// BenchmarkReassemble64KiB: receiving a 64 KiB message from its packets
// (repair symbols only after the first 10 %: the usual case under loss).
func BenchmarkReassemble64KiB(b *testing.B) { benchReassemble(b, 64<<10) }

// BenchmarkReassemble1MiB: the same for 1 MiB.
func BenchmarkReassemble1MiB(b *testing.B) { benchReassemble(b, 1<<20) }

func benchReassemble(b *testing.B, size int) {
	clk := newClock()
	a, _ := stepped(&testing.T{}, clk, nil)
	defer a.Close()
	a.SetLoss(0.1)
	body := randomBody(rand.New(rand.NewPCG(1, 2)), size)
	if _, err := a.Put(context.Background(), "B", body, Fast); err != nil {
		b.Fatal(err)
	}
	a.step(context.Background())
	var pkts [][]byte
	for {
		p, ok := a.Next(clk.Now())
		if !ok {
			break
		}
		pkts = append(pkts, p.Payload)
	}
	// drop every tenth packet: 10 % loss, repaired by repair symbols
	var keep [][]byte
	for i, p := range pkts {
		if i%10 != 3 {
			keep = append(keep, p)
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		r, _ := stepped(&testing.T{}, clk, nil)
		b.StartTimer()
		got := 0
		for _, p := range keep {
			ms, err := r.Handle("A", p)
			if err != nil {
				b.Fatal(err)
			}
			got += len(ms)
		}
		b.StopTimer()
		if got != 1 {
			b.Fatalf("%d messages decoded", got)
		}
		_ = r.Close()
		b.StartTimer()
	}
}

// BenchmarkNextIdle: the cost of a slot with nothing queued (cover).
func BenchmarkNextIdle(b *testing.B) {
	clk := newClock()
	q, _ := stepped(&testing.T{}, clk, nil)
	defer q.Close()
	b.ReportAllocs()
	for b.Loop() {
		q.Next(clk.Now())
	}
}

// BenchmarkNextSlot: the cost of a slot that carries a chunk, with 1,000
// messages to 100 recipients waiting (symbol generation included).
func BenchmarkNextSlot(b *testing.B) {
	clk := newClock()
	q, _ := stepped(&testing.T{}, clk, func(c *Config) { c.Deadline = 1000 * time.Hour })
	defer q.Close()
	rnd := rand.New(rand.NewPCG(1, 3))
	ctx := context.Background()
	refill := func() {
		bodies := make([][]byte, 1000)
		for i := range bodies {
			bodies[i] = randomBody(rnd, mixedSize(rnd))
		}
		var wg sync.WaitGroup
		for w := range 50 { // concurrent Puts share fsyncs
			wg.Go(func() {
				for i := w; i < len(bodies); i += 50 {
					if _, err := q.Put(ctx, Recipient(rune('a'+i%100)), bodies[i], Fast); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
		q.step(ctx)
	}
	refill()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := q.Next(clk.Now()); !ok {
			b.StopTimer()
			refill()
			b.StartTimer()
		}
	}
}
