package queue

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// firstChunk returns the message of the first chunk of a packet.
func firstChunk(t *testing.T, p Packet) MsgID {
	t.Helper()
	pl, err := Parse(p.Payload)
	if err != nil || len(pl.Chunks) == 0 {
		t.Fatalf("packet without chunks: %v", err)
	}
	return pl.Chunks[0].ID
}

// TestSmallerFirst: messages queued together go out smallest first.
func TestSmallerFirst(t *testing.T) {
	clk := newClock()
	q, _ := stepped(t, clk, nil)
	rnd := rand.New(rand.NewPCG(5, 5))
	ctx := context.Background()
	var ids []MsgID
	for _, n := range []int{30000, 3000, 300} {
		id, err := q.Put(ctx, Recipient("R"+string(rune('a'+len(ids)))), randomBody(rnd, n), Fast)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var order []MsgID
	for _, p := range drain(t, q, clk) {
		if id := firstChunk(t, p); len(order) == 0 || order[len(order)-1] != id {
			order = append(order, id)
		}
	}
	want := []MsgID{ids[2], ids[1], ids[0]}
	if len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
		t.Fatalf("send order %x, want smallest first", order)
	}
}

// TestLargeNotStarved: a large message yields to small ones queued after
// it, but only to those queued less than its size × PacketPenalty later;
// under an endless stream of small messages it still completes.
func TestLargeNotStarved(t *testing.T) {
	clk := newClock()
	q, outs := stepped(t, clk, nil)
	rnd := rand.New(rand.NewPCG(6, 6))
	ctx := context.Background()
	big, err := q.Put(ctx, "B", randomBody(rnd, 64<<10), Fast)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := planMessage(64<<10, 2030)
	bigPackets := g.packetsFor(g.kPrime + 2)
	start := clk.Now()
	bigSent, smallSent, smallBeforeBig := 0, 0, 0
	for slot := 0; ; slot++ {
		if slot > 10*bigPackets {
			t.Fatalf("large message starved: %d of %d packets after %d slots", bigSent, bigPackets, slot)
		}
		// a new small message every slot, forever
		if _, err := q.Put(ctx, "C", randomBody(rnd, 200), Fast); err != nil {
			t.Fatal(err)
		}
		q.step(ctx)
		p, ok := q.Next(clk.Now())
		if !ok {
			t.Fatal("nothing to send")
		}
		if firstChunk(t, p) == big {
			bigSent++
		} else {
			smallSent++
			if bigSent == 0 {
				smallBeforeBig++
			}
		}
		clk.Add(10 * time.Millisecond)
		if bigSent == bigPackets {
			break
		}
	}
	q.step(ctx)
	done := false
	for _, o := range *outs {
		done = done || (o.ID == big && o.Err == nil)
	}
	if !done {
		t.Fatal("large message not reported sent")
	}
	if smallBeforeBig == 0 {
		t.Fatal("small messages never went ahead of the large one")
	}
	// Small messages queued after the large one's key (its queue time
	// plus its packets × PacketPenalty) never overtake it.
	aging := time.Duration(bigPackets) * 20 * time.Millisecond
	if limit := int(aging/(10*time.Millisecond)) + 1; smallSent > limit+bigPackets {
		t.Fatalf("%d small packets went while the large one waited (aging bound %d)", smallSent, limit)
	}
	t.Logf("large message (%d packets) done after %v; %d small messages went first", bigPackets, clk.Now().Sub(start), smallBeforeBig)
}
