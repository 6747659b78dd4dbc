package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// TestConcurrentSenders: 500 goroutines Send at once; every Send returns
// and every packet reaches the mailbox, in payload slots.
func TestConcurrentSenders(t *testing.T) {
	n := mustNet(t, defaultNet())
	c := mustClient(t, n, 0, Rates{Payload: 400, Loop: 5, Drop: 5})
	mb := n.mboxes[0]
	const senders = 500
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i := range senders {
		wg.Go(func() {
			if _, err := c.Send(ctx, ToMailbox(mb.id()), fmt.Appendf(nil, "msg %d", i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for len(got) < senders {
		select {
		case m := <-mb.inbox:
			got[string(m)] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d packets reached the mailbox; stats %+v", len(got), senders, c.Stats())
		}
	}
	if s := c.Stats(); s.Real != senders {
		t.Fatalf("stats %+v", s)
	}
}

// TestSendTimesArePoisson: the times packets leave on the payload stream
// follow Exp(1/λP) (Kolmogorov–Smirnov) whether the client is idle (every
// slot cover) or busy (every slot real): sending does not change timing.
func TestSendTimesArePoisson(t *testing.T) {
	n := mustNet(t, defaultNet())
	const rate, dur = 50.0, 6 * time.Second
	run := func(t *testing.T, busy bool) {
		var mu sync.Mutex
		var times, dues []time.Time
		var real, cover int
		key, err := transport.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(context.Background(), Config{
			Identity: key, DataDir: t.TempDir(), Home: n.homeInfo(0), Topology: n.Topology,
			Rates: &Rates{Payload: rate},
			trace: func(s Slot, r bool) {
				now := time.Now()
				mu.Lock()
				defer mu.Unlock()
				if s.Stream != PayloadStream {
					t.Errorf("a %v packet with only the payload stream on", s.Stream)
				}
				times = append(times, now)
				dues = append(dues, s.Due)
				if r {
					real++
				} else {
					cover++
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), dur)
		var wg sync.WaitGroup
		if busy {
			// Keep the queue full: more senders than slots.
			for range 8 {
				wg.Go(func() {
					for ctx.Err() == nil {
						c.Send(ctx, ToMailbox(n.mboxes[0].id()), []byte("busy"))
					}
				})
			}
		}
		<-ctx.Done()
		wg.Wait()
		cancel()
		c.Close()
		mu.Lock()
		defer mu.Unlock()
		if len(times) < 150 {
			t.Fatalf("only %d payload packets in %v at %v/s", len(times), dur, rate)
		}
		// A busy client's few cover packets are the slots before its
		// senders started.
		if busy && cover*20 > real || !busy && real > 0 {
			t.Fatalf("busy=%v: %d real, %d cover", busy, real, cover)
		}
		// The first and last slots may straddle the busy senders' start
		// and end; skip them.
		gaps := func(ts []time.Time) []float64 {
			var g []float64
			for i := 2; i < len(ts)-1; i++ {
				g = append(g, ts[i].Sub(ts[i-1]).Seconds())
			}
			return g
		}
		var late []time.Duration
		for i := range times {
			late = append(late, times[i].Sub(dues[i]))
		}
		slices.Sort(late)
		spread := late[len(late)*9/10] - late[len(late)/10]
		crit := 1.95 / math.Sqrt(float64(len(times)-3)) // α = 0.001
		// The slots the client used are the Poisson process: sending real
		// packets neither adds, skips nor moves slots.
		if d := ksExp(gaps(dues), rate); d > crit {
			t.Fatalf("busy=%v: slot times: KS distance %.4f > %.4f", busy, d, crit)
		}
		// What an observer of the link sees: the packets leave at their
		// slots, a packet's build time after them. A constant build time
		// does not change the gaps; on a machine too loaded to keep up
		// (other tests running) the lateness varies and packets bunch,
		// and then only the slot law above is checked.
		d := ksExp(gaps(times), rate)
		t.Logf("busy=%v: %d packets, lateness p50 %v, p10–p90 spread %v, KS %.4f (critical %.4f)", busy, len(times), late[len(late)/2], spread, d, crit)
		if spread < 5*time.Millisecond && d > crit {
			t.Fatalf("busy=%v: send times: KS distance %.4f > %.4f: gaps are not Exp(1/%v)", busy, d, crit, rate)
		}
		// The test has the power to see a wrong rate.
		if d := ksExp(gaps(dues), 2*rate); d < crit {
			t.Fatalf("busy=%v: KS cannot tell %v/s from %v/s", busy, rate, 2*rate)
		}
	}
	t.Run("idle", func(t *testing.T) { t.Parallel(); run(t, false) })
	t.Run("busy", func(t *testing.T) { t.Parallel(); run(t, true) })
}

// TestRoutesAreUniform: the client's route choice is uniform over the
// valid routes of a restricted topology (3 strata of 3 relays, 2 links
// each: 12 routes), by a χ² test, and every route it picks is valid.
func TestRoutesAreUniform(t *testing.T) {
	n := &testNet{params: pki.DefaultParams()}
	n.params.Layers, n.params.Successors = 3, 2
	fake := func() *testRelay {
		r := &testRelay{}
		rand.Read(r.info.IdentityKey[:])
		r.info.ID = sphinx.NodeID(transport.NodeIDFromPublicKey(r.info.IdentityKey[:]))
		rand.Read(r.info.MixKey[:])
		return r
	}
	var relays []*testRelay
	for range 9 {
		relays = append(relays, fake())
	}
	mb := fake()
	top, err := n.topology(1, relays, []*testRelay{mb})
	if err != nil {
		t.Fatal(err)
	}
	g := top.Graph()
	c := &Client{rng: mrand.New(mrand.NewChaCha8([32]byte{7}))}
	counts := map[[3]sphinx.NodeID]int{}
	const draws = 24000
	for range draws {
		path, err := c.path(top, mailboxHop(mb.info.ID))
		if err != nil {
			t.Fatal(err)
		}
		if len(path) != 4 || path[3].ID != mb.info.ID || path[3].Key != mb.info.MixKey {
			t.Fatalf("path %v", path)
		}
		route := [3]sphinx.NodeID{path[0].ID, path[1].ID, path[2].ID}
		if !g.ValidRoute(route[:]) {
			t.Fatalf("invalid route %v", route)
		}
		for i, h := range path[:3] {
			if r, _ := top.Relay(h.ID); r.MixKey != h.Key || r.Layer != i {
				t.Fatalf("hop %d: %v", i, h)
			}
		}
		counts[route]++
	}
	const routes = 3 * 2 * 2
	if len(counts) != routes {
		t.Fatalf("%d distinct routes, want %d", len(counts), routes)
	}
	want := float64(draws) / routes
	var chi2 float64
	for _, k := range counts {
		chi2 += (float64(k) - want) * (float64(k) - want) / want
	}
	// χ²(11) at α = 0.001 is 31.26.
	if chi2 > 31.26 {
		t.Fatalf("χ² = %.1f over %d routes: not uniform (%v)", chi2, routes, counts)
	}
}

// TestSetHome: after switching home, loops and new SURBs come back through
// the new home; a reply to a SURB that names the old home is lost there
// (dropped and counted as an unknown token), as the design accepts.
func TestSetHome(t *testing.T) {
	n := mustNet(t, defaultNet())
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	a := mustClient(t, n, 0, Rates{Payload: 50, Loop: 20})
	b := mustClient(t, n, 3, Rates{Payload: 50})
	old, err := a.NewSURB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetHome(ctx, n.homeInfo(4)); err != nil {
		t.Fatal(err)
	}
	if a.Home() != n.relays[4].id() {
		t.Fatalf("home %v", a.Home())
	}
	eventually(t, 10*time.Second, "the old home forgets the client", func() bool {
		return !n.relays[0].home.bound(a.ID())
	})
	fresh, err := a.NewSURB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []SURB{old, fresh} {
		d, err := b.ViaSURB(s.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Send(ctx, d, []byte("to "+fmt.Sprint(s.ID[:2]))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-a.Receive():
		if r.SURB != fresh.ID {
			t.Fatalf("reply through %x, want the new home's SURB %x", r.SURB, fresh.ID)
		}
	case <-ctx.Done():
		t.Fatalf("no reply through the new home: %+v", a.Stats())
	}
	// The old home drops it, or (when the old home is also a first hop
	// the client sends through, so connected again) pushes it and the
	// client refuses a push from a relay that is not its home.
	eventually(t, 10*time.Second, "the reply through the old home lost", func() bool {
		return testutil.ToFloat64(n.relays[0].home.drops.WithLabelValues("unknown_token")) >= 1 ||
			a.Stats().FramesRejected >= 1
	})
	before := testutil.ToFloat64(n.relays[4].home.pushed)
	eventually(t, 20*time.Second, "loops through the new home", func() bool {
		return testutil.ToFloat64(n.relays[4].home.pushed) >= before+3
	})
}

// TestSURBsExpireWithTheirEpoch: when the topology moves two epochs on,
// the keys of SURBs made under the old epoch are deleted; those of the
// previous epoch stay (replies may be in flight).
func TestSURBsExpireWithTheirEpoch(t *testing.T) {
	n := mustNet(t, defaultNet())
	c := mustClient(t, n, 0, Rates{Payload: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.NewSURB(ctx); err != nil {
		t.Fatal(err)
	}
	next := func(epoch uint64) {
		t.Helper()
		top, err := n.topology(epoch, n.relays, n.mboxes)
		if err != nil {
			t.Fatal(err)
		}
		n.top.Store(top)
	}
	next(2)
	if _, err := c.NewSURB(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a few slots see epoch 2
	if k, _ := c.store.Len(); k != 2 {
		t.Fatalf("%d SURBs in epoch 2, want 2", k)
	}
	next(3)
	eventually(t, 10*time.Second, "the epoch-1 SURB expired", func() bool { k, _ := c.store.Len(); return k == 1 })
}

// TestSourceFillsPayloadSlots: with nothing queued by Send, payload slots
// ask the Source; what it returns reaches the mailbox.
func TestSourceFillsPayloadSlots(t *testing.T) {
	n := mustNet(t, defaultNet())
	c := mustClient(t, n, 0, Rates{Payload: 100})
	src := &countingSource{dest: ToMailbox(n.mboxes[0].id()), left: 5}
	c.SetSource(src)
	for i := range 5 {
		select {
		case m := <-n.mboxes[0].inbox:
			if !bytes.HasPrefix(m, []byte("from the source")) {
				t.Fatalf("message %d: %q", i, m)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of 5 source packets arrived", i)
		}
	}
	c.SetSource(nil)
	if got := src.asked.Load(); got < 5 {
		t.Fatalf("source asked %d times", got)
	}
}

type countingSource struct {
	dest  Destination
	left  int
	mu    sync.Mutex
	asked atomic.Int64
}

func (s *countingSource) Next(time.Time) (Destination, []byte, bool) {
	s.asked.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left == 0 {
		return Destination{}, nil, false
	}
	s.left--
	return s.dest, []byte("from the source"), true
}
