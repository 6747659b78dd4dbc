package queue

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// mixedSize draws a message size: mostly short texts, some documents, a few
// larger files.
func mixedSize(rnd *rand.Rand) int {
	switch r := rnd.Float64(); {
	case r < 0.6:
		return 1 + rnd.IntN(1500)
	case r < 0.9:
		return 1500 + rnd.IntN(15000)
	default:
		return 16000 + rnd.IntN(48000)
	}
}

// TestLossyNetwork: 1,000 Reliable messages of mixed sizes over a channel
// that loses 20 % of packets (acks included) and reorders: at least 99.9 %
// arrive intact, each exactly once, and every one is acked.
func TestLossyNetwork(t *testing.T) {
	const total, loss = 1000, 0.2
	net := newTestNet(t, loss, 20*time.Millisecond)
	dir := t.TempDir()
	a := net.add("A", testConfig(dir, "A"))
	b := net.add("B", testConfig(dir, "B"))
	a.q.SetLoss(loss)
	b.q.SetLoss(loss)

	rnd := rand.New(rand.NewPCG(3, 4))
	want := map[MsgID][]byte{}
	minPackets := 0
	ctx := context.Background()
	for range total {
		body := randomBody(rnd, mixedSize(rnd))
		id, err := a.q.Put(ctx, "B", body, Reliable)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = body
		g, _ := planMessage(len(body), 2030)
		minPackets += (len(body) + g.per*g.t - 1) / (g.per * g.t)
	}
	waitFor(t, 100*time.Second, "every message acked", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.outcomes) == total
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	delivered := 0
	for id, body := range want {
		got, ok := b.got[id]
		if !ok {
			continue
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("message %x corrupted", id)
		}
		if b.gotCount[id] != 1 {
			t.Fatalf("message %x delivered %d times", id, b.gotCount[id])
		}
		delivered++
	}
	if delivered*1000 < total*999 {
		t.Fatalf("%d of %d messages delivered", delivered, total)
	}
	a.mu.Lock()
	for id, err := range a.outcomes {
		if err != nil {
			t.Errorf("message %x: %v", id, err)
		}
	}
	a.mu.Unlock()
	sa, sb := a.q.Stats(), b.q.Stats()
	t.Logf("%d/%d delivered; sender: %d packets (%.2f per message, no-loss minimum %.2f), %d rounds, %d resends, %d SURBs; receiver: %d ack packets, %d duplicate symbols; network dropped %d of %d",
		delivered, total, sa.Packets, float64(sa.Packets)/total, float64(minPackets)/total, sa.Rounds, sa.Resends, sa.SURBItems, sb.AckPackets, sb.Duplicates, net.dropped.Load(), net.sent.Load())
	if sa.Acked != total || sa.InFlight != 0 {
		t.Fatalf("sender stats: %+v", sa)
	}
}
