package queue

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// TestClassPerMessage: one sender interleaves Fast and Reliable messages to
// the same recipient (as an application would mix typing notices with chat
// messages): each is delivered in the class it was put in; the Fast ones
// are reported sent after their one round and never acked, carrying no
// SURB for their stream; the Reliable ones are acked through SURBs of
// theirs.
func TestClassPerMessage(t *testing.T) {
	clk := newClock()
	a, outs := stepped(t, clk, nil)
	b, _ := stepped(t, clk, nil)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(4, 4))
	want := map[MsgID]Class{}
	bodies := map[MsgID][]byte{}
	for i := range 40 {
		c := Fast
		if i%3 == 0 {
			c = Reliable
		}
		body := randomBody(rnd, 1+rnd.IntN(5000))
		id, err := a.Put(ctx, "B", body, c)
		if err != nil {
			t.Fatal(err)
		}
		want[id], bodies[id] = c, body
	}
	fastStream := a.recips["B"].streams[0]
	got := map[MsgID]Class{}
	for range 20 {
		for _, p := range drain(t, a, clk) {
			pl, err := Parse(p.Payload)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range pl.SURBs {
				if s.Stream == fastStream {
					t.Fatal("a SURB on the Fast stream")
				}
			}
			ms, err := b.Handle("A", p.Payload)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if !bytes.Equal(m.Body, bodies[m.ID]) {
					t.Fatalf("%x corrupted", m.ID)
				}
				got[m.ID] = m.Class
			}
		}
		for { // b's acks back to a
			p, ok := b.Next(clk.Now())
			if !ok {
				break
			}
			if p.SURB == nil {
				t.Fatal("b sent a chunk")
			}
			if _, err := a.Handle("acks", p.Payload); err != nil {
				t.Fatal(err)
			}
		}
		a.step(ctx)
		if a.Stats().InFlight == 0 {
			break
		}
		clk.Add(10 * time.Second)
	}
	if len(got) != len(want) {
		t.Fatalf("%d of %d delivered", len(got), len(want))
	}
	for id, c := range want {
		if got[id] != c {
			t.Errorf("%x put %s, delivered %s", id, c, got[id])
		}
	}
	s := a.Stats()
	if s.Sent != 26 || s.Acked != 14 || s.GaveUp != 0 || s.InFlight != 0 {
		t.Fatalf("sender stats %+v", s)
	}
	for _, o := range *outs {
		if o.Err != nil || o.Class != want[o.ID] {
			t.Fatalf("outcome %+v", o)
		}
	}
}
