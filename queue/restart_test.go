package queue

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestRestartResends: messages queued (Put returned) while the network is
// down survive closing the queue; after reopening, they are resent with
// fresh encoding symbol ids and delivered, and acked ones are not resent.
func TestRestartResends(t *testing.T) {
	net := newTestNet(t, 1.0, 5*time.Millisecond) // everything is lost
	dir := t.TempDir()
	cfgA := testConfig(dir, "A")
	a := net.add("A", cfgA)
	b := net.add("B", testConfig(dir, "B"))
	rnd := rand.New(rand.NewPCG(8, 8))
	want := map[MsgID][]byte{}
	for i := range 20 {
		body := randomBody(rnd, 1+i*997)
		id, err := a.q.Put(context.Background(), "B", body, Reliable)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = body
	}
	waitFor(t, 30*time.Second, "a first round of every message", func() bool {
		return a.q.Stats().Rounds >= 20
	})
	a.stop()
	if err := a.q.Close(); err != nil {
		t.Fatal(err)
	}

	q, err := Open(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	if s := q.Stats(); s.InFlight != 20 {
		t.Fatalf("%d messages back after the restart, want 20", s.InFlight)
	}
	sent := 0
	for _, m := range q.msgs {
		// A clean Close recorded exactly how far each message got: it
		// resumes there, with ESIs never sent before.
		if m.nextESI != m.mark || m.nextESI > 1<<12 {
			t.Fatalf("after a restart: next ESI %d, mark %d", m.nextESI, m.mark)
		}
		if m.nextESI > 0 {
			sent++
		}
	}
	if sent == 0 {
		t.Fatal("no message resumes past ESI 0")
	}
	_ = q.Close()

	net.mu.Lock()
	net.loss = 0
	net.mu.Unlock()
	a2 := net.add("A", cfgA)
	waitFor(t, 30*time.Second, "every message acked after the restart", func() bool {
		a2.mu.Lock()
		defer a2.mu.Unlock()
		return len(a2.outcomes) == 20
	})
	b.mu.Lock()
	for id, body := range want {
		if !bytes.Equal(b.got[id], body) {
			t.Errorf("message %x not delivered intact", id)
		}
	}
	b.mu.Unlock()
	for id, err := range a2.outcomes {
		if err != nil {
			t.Errorf("%x: %v", id, err)
		}
	}
	// Acked messages are gone from the database.
	waitFor(t, 10*time.Second, "finished messages deleted", func() bool {
		n := 0
		_ = a2.q.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(bucketMsgs).Stats().KeyN
			return nil
		})
		return n == 0
	})
}

// TestRoundTripSizes: messages from 1 byte to 4 MiB, over a lossless
// channel with packets shuffled and duplicated, decode intact, once.
func TestRoundTripSizes(t *testing.T) {
	sizes := []int{1, 7, 100, 1000, 1300, 1700, 2000, 5000, 19920, 19921, 65536, 1 << 20, 4 << 20}
	if testing.Short() {
		sizes = sizes[:11]
	}
	clk := newClock()
	a, _ := stepped(t, clk, nil)
	b, _ := stepped(t, clk, nil)
	rnd := rand.New(rand.NewPCG(9, 9))
	for _, n := range sizes {
		body := randomBody(rnd, n)
		id, err := a.Put(context.Background(), "B", body, Fast)
		if err != nil {
			t.Fatal(err)
		}
		pkts := drain(t, a, clk)
		sent := len(pkts)
		// shuffle, duplicate a third
		for i := range len(pkts) / 3 {
			pkts = append(pkts, pkts[i])
		}
		rnd.Shuffle(len(pkts), func(i, j int) { pkts[i], pkts[j] = pkts[j], pkts[i] })
		var got []Message
		for _, p := range pkts {
			if len(p.Payload) > 2030 {
				t.Fatalf("payload of %d bytes", len(p.Payload))
			}
			ms, err := b.Handle("A", p.Payload)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ms...)
		}
		if len(got) != 1 || got[0].ID != id || !bytes.Equal(got[0].Body, body) {
			t.Fatalf("%d bytes: %d messages back", n, len(got))
		}
		g, _ := planMessage(n, 2030)
		t.Logf("%7d bytes: T=%d K=%d K'=%d, %d symbols a packet, %d packets", n, g.t, g.k, g.kPrime, g.per, sent)
	}
}

// TestPutRejects: bad classes, oversized messages and empty recipients are
// refused before anything is stored.
func TestPutRejects(t *testing.T) {
	clk := newClock()
	q, _ := stepped(t, clk, func(c *Config) { c.MaxMessage = 1000 })
	ctx := context.Background()
	if _, err := q.Put(ctx, "B", make([]byte, 1001), Fast); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if _, err := q.Put(ctx, "B", []byte("x"), Class(9)); err == nil {
		t.Error("unknown class accepted")
	}
	if _, err := q.Put(ctx, "", []byte("x"), Fast); err == nil {
		t.Error("empty recipient accepted")
	}
	if _, err := q.Put(ctx, "B", nil, Fast); err == nil {
		t.Error("empty message accepted")
	}
	if s := q.Stats(); s.Queued != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}
