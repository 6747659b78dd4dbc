package queue

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestPrepareFinishRace: Run preparing a round (building the message's
// encoder) while an ack finishes the same message, many times over. Under
// -race this found the unsynchronised write of outMsg.enc in prepare
// against the one in finish.
func TestPrepareFinishRace(t *testing.T) {
	clk := newClock()
	q, outs := stepped(t, clk, nil)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(17, 3))
	const n = 200
	for i := range n {
		id, err := q.Put(ctx, "B", randomBody(rnd, 1+i*331%(64<<10)), Reliable)
		if err != nil {
			t.Fatal(err)
		}
		b := newBuilder(2030)
		if b.ack(&Ack{Stream: id.Stream(), Cum: id.Seq() + 1}) != 0 {
			t.Fatal("ack does not fit")
		}
		var wg sync.WaitGroup
		wg.Go(func() { q.step(ctx) })
		wg.Go(func() {
			if _, err := q.Handle("acks", b.buf); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		q.step(ctx)
		if q.Holds(id) {
			t.Fatalf("message %d still held after its ack", i)
		}
	}
	q.step(ctx)
	if len(*outs) != n {
		t.Fatalf("%d outcomes, want %d", len(*outs), n)
	}
	for _, o := range *outs {
		if o.Err != nil {
			t.Fatalf("%x: %v", o.ID, o.Err)
		}
	}
}
