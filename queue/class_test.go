package queue

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a manual clock for tests that step the queue by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// stepped opens a queue driven by hand: step prepares rounds, Next fills
// slots, on clk.
func stepped(t *testing.T, clk *clock, mod func(*Config)) (*Queue, *[]Outcome) {
	t.Helper()
	var mu sync.Mutex
	var outs []Outcome
	cfg := Config{
		Path:          filepath.Join(t.TempDir(), "q.db"),
		PayloadSize:   2030,
		SURBs:         &surbMint{owner: "A", delay: 100 * time.Millisecond},
		ForwardDelay:  time.Second,
		ReplyGrace:    time.Second,
		PacketPenalty: 20 * time.Millisecond,
		Now:           clk.Now,
		OnOutcome: func(o Outcome) {
			mu.Lock()
			outs = append(outs, o)
			mu.Unlock()
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q, &outs
}

// drain steps and fills slots until the queue has nothing to send, and
// returns the payloads.
func drain(t *testing.T, q *Queue, clk *clock) []Packet {
	t.Helper()
	var out []Packet
	for range 100000 {
		q.step(context.Background())
		p, ok := q.Next(clk.Now())
		if !ok {
			return out
		}
		out = append(out, p)
		clk.Add(time.Millisecond)
	}
	t.Fatal("queue never ran dry")
	return nil
}

type symbolsSeen struct {
	esis  map[uint32]bool
	surbs int
}

func inspect(t *testing.T, pkts []Packet) map[MsgID]*symbolsSeen {
	t.Helper()
	seen := map[MsgID]*symbolsSeen{}
	get := func(id MsgID) *symbolsSeen {
		if seen[id] == nil {
			seen[id] = &symbolsSeen{esis: map[uint32]bool{}}
		}
		return seen[id]
	}
	for _, p := range pkts {
		pl, err := Parse(p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range pl.Chunks {
			s := get(c.ID)
			for i := range c.Count() {
				if s.esis[c.ESI+uint32(i)] {
					t.Fatalf("ESI %d of %x sent twice", c.ESI+uint32(i), c.ID)
				}
				s.esis[c.ESI+uint32(i)] = true
			}
		}
		for _, s := range pl.SURBs {
			get(MsgID{}).surbs++
			_ = s
		}
	}
	return seen
}

// TestFastSendsOneRoundWithoutSURBs: a Fast message goes out as one round
// of K'+2 symbols plus the measured loss, carries no SURB, is reported sent,
// and is never resent.
func TestFastSendsOneRoundWithoutSURBs(t *testing.T) {
	clk := newClock()
	q, outs := stepped(t, clk, nil)
	q.SetLoss(0.2)
	body := randomBody(rand.New(rand.NewPCG(1, 1)), 40000)
	id, err := q.Put(context.Background(), "B", body, Fast)
	if err != nil {
		t.Fatal(err)
	}
	pkts := drain(t, q, clk)
	g, _ := planMessage(len(body), 2030)
	if want := fastPackets(g.packetsFor(g.kPrime+2), 0.2); len(pkts) != want {
		t.Fatalf("%d packets, want %d", len(pkts), want)
	}
	seen := inspect(t, pkts)
	if seen[MsgID{}] != nil {
		t.Fatal("a Fast message carried SURBs")
	}
	if len(seen[id].esis) != len(pkts)*g.per {
		t.Fatalf("%d symbols in %d packets", len(seen[id].esis), len(pkts))
	}
	q.step(context.Background())
	if len(*outs) != 1 || (*outs)[0].ID != id || (*outs)[0].Err != nil {
		t.Fatalf("outcomes %+v", *outs)
	}
	clk.Add(time.Hour)
	if more := drain(t, q, clk); len(more) != 0 {
		t.Fatalf("a Fast message was resent (%d packets)", len(more))
	}
	if s := q.Stats(); s.Sent != 1 || s.Resends != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReliableResendsWithBackoff: a Reliable round carries SURBs; without
// an ack it is resent as fresh repair symbols after ForwardDelay + SURB
// delay + ReplyGrace, then after twice that, and so on; an ack stops it;
// past its deadline it is given up with ErrGaveUp.
func TestReliableResendsWithBackoff(t *testing.T) {
	clk := newClock()
	q, outs := stepped(t, clk, func(c *Config) { c.Deadline = time.Minute })
	q.SetLoss(0.2)
	body := randomBody(rand.New(rand.NewPCG(1, 2)), 20000)
	id, err := q.Put(context.Background(), "B", body, Reliable)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := planMessage(len(body), 2030)
	first := drain(t, q, clk)
	n := reliablePackets(g.packetsFor(g.kPrime+2), 0.2, 0.95)
	if len(first) != n+surbCopies(0.2) {
		t.Fatalf("first round: %d packets, want %d chunk packets + %d SURB packets", len(first), n, surbCopies(0.2))
	}
	if s := inspect(t, first)[MsgID{}]; s == nil || s.surbs != surbCopies(0.2) {
		t.Fatal("first round carried no SURBs")
	}
	span := time.Second + 100*time.Millisecond + time.Second
	sent := clk.Now()
	var all []Packet
	all = append(all, first...)
	for i := range 3 {
		clk.Add(span<<i - 20*time.Millisecond)
		if more := drain(t, q, clk); len(more) != 0 {
			t.Fatalf("resend %d came early, %v after the round", i, clk.Now().Sub(sent))
		}
		clk.Add(20 * time.Millisecond)
		more := drain(t, q, clk)
		if len(more) == 0 {
			t.Fatalf("no resend %d after %v", i, clk.Now().Sub(sent))
		}
		all = append(all, more...)
		sent = clk.Now()
	}
	inspect(t, all) // fresh ESIs every round
	if s := q.Stats(); s.Resends != 3 {
		t.Fatalf("stats %+v", s)
	}

	// An ack for the message through our stream stops it.
	ack := Payload{Acks: []Ack{{Stream: id.Stream(), Cum: id.Seq() + 1}}}
	b, err := ack.Marshal(2030)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Handle("B", b); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if more := drain(t, q, clk); len(more) != 0 {
		t.Fatal("an acked message was resent")
	}
	if len(*outs) != 1 || (*outs)[0].Err != nil {
		t.Fatalf("outcomes %+v", *outs)
	}

	// Without an ack, the queue gives up at the deadline.
	id2, err := q.Put(context.Background(), "B", body, Reliable)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		drain(t, q, clk)
		clk.Add(10 * time.Second)
	}
	q.step(context.Background())
	if len(*outs) != 2 || (*outs)[1].ID != id2 || !errors.Is((*outs)[1].Err, ErrGaveUp) {
		t.Fatalf("outcomes %+v", *outs)
	}
}

// TestNeedRequestsMoreSymbols: a receiver that stalls short of decoding asks
// through a SURB for the symbols it lacks, and the sender answers at once
// with a round of fresh repair symbols.
func TestNeedRequestsMoreSymbols(t *testing.T) {
	clk := newClock()
	a, _ := stepped(t, clk, nil)
	b, _ := stepped(t, clk, func(c *Config) { c.NeedAfter = time.Second })
	body := randomBody(rand.New(rand.NewPCG(1, 3)), 60000)
	id, err := a.Put(context.Background(), "B", body, Reliable)
	if err != nil {
		t.Fatal(err)
	}
	pkts := drain(t, a, clk)
	// Deliver the SURB packet and all but 5 chunk packets: fewer than K'.
	dropped := 0
	for _, p := range pkts {
		pl, _ := Parse(p.Payload)
		if len(pl.Chunks) > 0 && dropped < 5 {
			dropped++
			continue
		}
		if _, err := b.Handle("A", p.Payload); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Stats().Delivered; got != 0 {
		t.Fatalf("decoded from %d packets", len(pkts)-dropped)
	}
	clk.Add(2 * time.Second)
	acks := drain(t, b, clk)
	if len(acks) != 1 || acks[0].SURB == nil {
		t.Fatalf("receiver sent %d packets, want one need request", len(acks))
	}
	pl, err := Parse(acks[0].Payload)
	if err != nil || len(pl.Acks) != 1 || len(pl.Acks[0].Entries) != 1 || pl.Acks[0].Entries[0].Need == 0 {
		t.Fatalf("need request %+v %v", pl, err)
	}
	if _, err := a.Handle("surb", acks[0].Payload); err != nil {
		t.Fatal(err)
	}
	more := drain(t, a, clk)
	if len(more) == 0 {
		t.Fatal("no symbols sent on a need request")
	}
	var msgs []Message
	for _, p := range more {
		m, err := b.Handle("A", p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m...)
	}
	if len(msgs) != 1 || msgs[0].ID != id || !bytes.Equal(msgs[0].Body, body) {
		t.Fatalf("after the need round: %d messages", len(msgs))
	}
}
