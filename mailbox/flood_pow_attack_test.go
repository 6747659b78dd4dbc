package mailbox

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// floodWork is the difficulty of the flood test's node: lower than
// DefaultPutWork to keep the race-detector run short; the benchmarks below
// measure the default.
const floodWork = 12

// TestJunkFloodNeedsWork: an outsider who knows a victim's mailbox id (and
// nothing else) floods it through the mixnet. Puts without work, with a
// made-up nonce or with work below the node's difficulty are all refused
// before the store is touched (no bbolt transaction, read or write), with
// the answer a Put to an unknown mailbox gets. Puts with the required work
// are stored up to the mailbox's quota and refused after it, and the
// flooder's cost per accepted item is measured. Two honest contacts putting
// (with work) during the flood have every message stored and delivered to
// the owner.
func TestJunkFloodNeedsWork(t *testing.T) {
	const quota = 120
	tb := newTestbedWork(t, Config{MaxMessages: quota}, 4096, floodWork)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	o, _ := newOwner(t, tb, OwnerConfig{Stock: 16})
	if err := o.Create(ctx); err != nil {
		t.Fatal(err)
	}
	box := o.ID()
	flooder := tb.newUser()
	var unknown ID
	rand.Read(unknown[:])

	// Phase 1: no work. The owner is not running yet, so nothing else
	// touches the store.
	// The create's own writes (its SURB stock) settle first.
	before := tb.store.db.Stats()
	for {
		time.Sleep(300 * time.Millisecond)
		now := tb.store.db.Stats()
		if d := now.Sub(&before); d.TxN == 0 && d.TxStats.GetWrite() == 0 {
			break
		}
		before = now
	}
	put := func(to ID, surbs [][]byte, msg []byte, scheme byte, sign func([]byte) ([]byte, error)) {
		b, err := tb.codec.EncodeRequest(&Request{Op: OpPut, Mailbox: to, Type: 7, SURBs: surbs, Message: msg, Scheme: scheme}, sign)
		if err != nil {
			t.Fatal(err)
		}
		tb.sendRaw(b)
	}
	short := func(signed []byte) ([]byte, error) { // work of fewer bits than required
		for i := uint64(0); ; i++ {
			nonce := []byte{0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)}
			if WorkBits(box, signed, nonce) < floodWork {
				return nonce, nil
			}
		}
	}
	weak := func(signed []byte) ([]byte, error) {
		nonce, _, err := Work{Bits: floodWork - 4}.solve(ctx, box, signed)
		if err == nil && WorkBits(box, signed, nonce) >= floodWork {
			return short(signed)
		}
		return nonce, err
	}
	// With SURBs: the victim's refusal and an unknown mailbox's are the
	// same answer.
	put(box, tb.surbs(flooder, 1), []byte("probe"), 0, nil)
	a := tb.next(flooder)
	put(unknown, tb.surbs(flooder, 1), []byte("probe"), 0, nil)
	b := tb.next(flooder)
	if a.Op != OpError || a.Code != CodeRefused || b.Op != a.Op || b.Code != a.Code || b.Text != a.Text || b.For != a.For {
		t.Fatalf("answers without work: victim %s code %d %q, unknown %s code %d %q; want the same refusal", opName(a.Op), a.Code, a.Text, opName(b.Op), b.Code, b.Text)
	}
	refused := 2
	for i := range 200 {
		put(box, nil, fmt.Appendf(nil, "junk without work %d", i), 0, nil)
		refused++
	}
	for i := range 50 {
		put(box, nil, fmt.Appendf(nil, "junk with a made-up nonce %d", i), WorkScheme, short)
		put(box, nil, fmt.Appendf(nil, "junk with %d bits of work %d", floodWork-4, i), WorkScheme, weak)
		refused += 2
	}
	// A flood faster than the worker is partly dropped as busy before it
	// is even decoded; the rest is refused for want of work.
	waitUntil(t, "every Put without enough work is refused", func() bool { d := tb.dropped(); return d["work"]+d["busy"] == float64(refused) })
	busy1 := int(tb.dropped()["busy"])
	after := tb.store.db.Stats()
	if d := after.Sub(&before); d.TxN != 0 || d.TxStats.GetWrite() != 0 || d.TxStats.GetPageCount() != 0 {
		t.Fatalf("%d refused Puts cost the store %d read transactions, %d writes", refused, d.TxN, d.TxStats.GetWrite())
	}
	if ms, err := tb.store.Fetch(box, 0, 10); err != nil || len(ms) != 0 {
		t.Fatalf("after the flood without work the mailbox holds %d messages (%v)", len(ms), err)
	}

	// Phase 2: work at the node's difficulty, honest contacts alongside.
	got := make(chan Message, 4*quota)
	go o.Run(ctx)
	go func() {
		for {
			select {
			case m := <-o.Messages():
				got <- m
			case <-ctx.Done():
				return
			}
		}
	}()
	honest := []*user{tb.newUser(), tb.newUser()}
	want := map[string]bool{}
	var hashes atomic.Uint64
	var working time.Duration
	const flood = quota + 40
	var wg sync.WaitGroup
	for i := range flood {
		if i%8 == 0 && len(want) < 10 {
			u := honest[len(want)%2]
			msg := fmt.Sprintf("honest %d", len(want))
			want[msg] = true
			// As the queue layer does: resend (with fresh work) until
			// the node answers "stored"; the node may drop a Put when
			// the mailbox's worker is busy with the flood.
			wg.Go(func() {
				for ctx.Err() == nil {
					if _, err := PutWithWork(ctx, tbMix{tb, u}, tb.codec, sphinx.NodeID{}, box, 7, []byte(msg), Work{Bits: floodWork}); err != nil {
						t.Error(err)
						return
					}
					select {
					case r := <-u.ch:
						if r.Op == OpOK && r.For == OpPut {
							return
						}
						t.Errorf("honest Put answered %s code %d %q", opName(r.Op), r.Code, r.Text)
						return
					case <-time.After(5 * time.Second):
					}
				}
			})
		}
		put(box, tb.surbs(flooder, 1), fmt.Appendf(nil, "junk with work %d", i), WorkScheme, func(signed []byte) ([]byte, error) {
			start := time.Now()
			nonce, n, err := Work{Bits: floodWork}.solve(ctx, box, signed)
			working += time.Since(start)
			hashes.Add(n)
			return nonce, err
		})
	}
	wg.Wait()
	stored, full := 0, 0
	for answered := false; !answered; {
		select {
		case r := <-flooder.ch:
			switch {
			case r.Op == OpOK && r.For == OpPut:
				stored++
			case r.Op == OpError && r.Code == CodeQuota:
				full++
			default:
				t.Fatalf("flooder's Put answered %s code %d %q", opName(r.Op), r.Code, r.Text)
			}
		case <-time.After(3 * time.Second):
			answered = true
		}
	}
	seen := map[string]bool{}
	for len(seen) < len(want) {
		select {
		case m := <-got:
			if want[string(m.Data)] {
				seen[string(m.Data)] = true
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d honest messages delivered during the flood", len(seen), len(want))
		}
	}
	// Every Put the flood's worker did not drop as busy is answered.
	busy := int(tb.dropped()["busy"]) - busy1
	if full == 0 || stored+len(want) != quota || stored+full > flood || stored+full+busy < flood {
		t.Fatalf("flood with work: %d stored, %d refused as over quota, %d dropped busy of %d; want %d stored, then refusals", stored, full, busy, flood, quota-len(want))
	}
	if ms, err := tb.store.Fetch(box, 0, 2*quota); err != nil || len(ms) != quota {
		t.Fatalf("the mailbox holds %d messages (%v), want its quota %d", len(ms), err, quota)
	}
	if q := tb.dropped()["quota"]; q != float64(full) {
		t.Fatalf("%v Puts refused over quota, the flooder heard %d", q, full)
	}
	t.Logf("%d Puts without enough work refused untouched (%d of them dropped busy); with %d-bit work: %d stored, %d over quota, %d dropped busy; flooder's cost per stored item %.0f hashes, %v of work (%d hashes in %v for %d Puts)",
		refused, busy1, floodWork, stored, full, busy, float64(hashes.Load())/float64(stored), working/time.Duration(stored), hashes.Load(), working, flood)
}

// BenchmarkPutWork measures a sender's (or flooder's) cost of one Put's
// proof of work at several difficulties: ns/op is the time per Put on this
// machine, hashes/op the SHA-256 computations (2^bits on average).
func BenchmarkPutWork(b *testing.B) {
	var box ID
	rand.Read(box[:])
	for _, bits := range []int{12, DefaultPutWork, 20} {
		b.Run(fmt.Sprintf("bits=%d", bits), func(b *testing.B) {
			signed := make([]byte, 1024)
			var hashes uint64
			for i := 0; b.Loop(); i++ {
				signed[0], signed[1], signed[2] = byte(i), byte(i>>8), byte(i>>16)
				_, n, err := Work{Bits: bits}.solve(context.Background(), box, signed)
				if err != nil {
					b.Fatal(err)
				}
				hashes += n
			}
			b.ReportMetric(float64(hashes)/float64(b.N), "hashes/op")
		})
	}
}

// BenchmarkVerifyWork measures the node's cost of checking a Put's work.
func BenchmarkVerifyWork(b *testing.B) {
	var box ID
	signed := make([]byte, 1024)
	nonce, _, err := Work{Bits: DefaultPutWork}.solve(context.Background(), box, signed)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := VerifyWork(box, signed, nonce, DefaultPutWork); err != nil {
			b.Fatal(err)
		}
	}
}
