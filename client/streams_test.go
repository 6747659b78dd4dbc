package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
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

// wireRecord is one payload packet: its slot, whether it was real, when
// the client's link took it, and when the home received it.
type wireRecord struct {
	due, wire, arrived time.Time
	real               bool
}

// observeWire runs a payload-only client at rate on relay 0 of n for dur,
// with feed (if set) keeping it busy, and returns its packets matched to
// their arrival at the home, as an observer of the client's link sees
// them. Every packet the home received must be a slot's packet, in order,
// and the home must have received all but the last few (in flight when
// the client closed).
func observeWire(t *testing.T, n *testNet, rate float64, dur time.Duration, feed func(ctx context.Context, c *Client)) []wireRecord {
	t.Helper()
	var mu sync.Mutex
	var recs []wireRecord
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	me := transport.NodeIDFromPublicKey(key.Public().(ed25519.PublicKey))
	var arrivals []time.Time
	home := n.relays[0]
	home.entered.Store(me, func(at time.Time) {
		mu.Lock()
		arrivals = append(arrivals, at)
		mu.Unlock()
	})
	defer home.entered.Delete(me)
	c, err := New(context.Background(), Config{
		Identity: key, DataDir: t.TempDir(), Home: n.homeInfo(0), Topology: n.Topology,
		Rates: &Rates{Payload: rate},
		trace: func(s Slot, r bool, wire time.Time) {
			if s.Stream != PayloadStream {
				t.Errorf("a %v packet with only the payload stream on", s.Stream)
			}
			if wire.IsZero() {
				return // not sent (link full): not on the wire
			}
			mu.Lock()
			recs = append(recs, wireRecord{due: s.Due, wire: wire, real: r})
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	var wg sync.WaitGroup
	if feed != nil {
		wg.Go(func() { feed(ctx, c) })
	}
	<-ctx.Done()
	wg.Wait()
	cancel()
	c.Close()
	time.Sleep(300 * time.Millisecond) // the last frames reach the home
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) > len(recs) || len(recs)-len(arrivals) > 5 {
		t.Fatalf("%d packets left the client, the home got %d: packets outside the slots, or lost", len(recs), len(arrivals))
	}
	recs = recs[:len(arrivals)]
	for i := range recs {
		recs[i].arrived = arrivals[i]
		if arrivals[i].Before(recs[i].due) {
			t.Fatalf("packet %d reached the home %v before its slot", i, recs[i].due.Sub(arrivals[i]))
		}
	}
	return recs
}

// gapsOfTimes returns the gaps in seconds between successive times.
func gapsOfTimes(ts []time.Time) []float64 {
	var g []float64
	for i := 1; i < len(ts); i++ {
		g = append(g, ts[i].Sub(ts[i-1]).Seconds())
	}
	return g
}

// TestSendTimesArePoisson: a payload-only client idle (every slot cover)
// and one busy (every slot real) run side by side on one home, which
// records when each of their packets arrives. In both the slots are
// Exp(1/λP) (Kolmogorov–Smirnov, α = 0.001, and the test can tell λ from
// 2λ), every packet the home gets is a slot's packet, and the gaps the
// home sees for the busy client are distributed as those of the idle one
// (two-sample KS, α = 0.001): sending real packets does not change what
// an observer of the link sees. The two-sample test holds on a loaded
// machine too, since the load delays both clients alike.
func TestSendTimesArePoisson(t *testing.T) {
	n := mustNet(t, defaultNet())
	const rate, dur = 50.0, 8 * time.Second
	runs := make([][]wireRecord, 2)
	var wg sync.WaitGroup
	for i, busy := range []bool{false, true} {
		wg.Go(func() {
			var feed func(context.Context, *Client)
			if busy {
				feed = func(ctx context.Context, c *Client) {
					// Keep the queue full: more senders than slots.
					var senders sync.WaitGroup
					for range 8 {
						senders.Go(func() {
							for ctx.Err() == nil {
								c.Send(ctx, ToMailbox(n.mboxes[0].id()), []byte("busy"))
							}
						})
					}
					senders.Wait()
				}
			}
			runs[i] = observeWire(t, n, rate, dur, feed)
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	arrivalGaps := make([][]float64, 2)
	for i, recs := range runs {
		busy := i == 1
		if len(recs) < 250 {
			t.Fatalf("busy=%v: only %d payload packets in %v at %v/s", busy, len(recs), dur, rate)
		}
		real := 0
		var dues, arr []time.Time
		var late []time.Duration
		for _, r := range recs {
			if r.real {
				real++
			}
			dues = append(dues, r.due)
			arr = append(arr, r.arrived)
			late = append(late, r.arrived.Sub(r.due))
		}
		// A busy client's few cover packets are the slots before its
		// senders started.
		if busy && (len(recs)-real)*5 > real || !busy && real > 0 {
			t.Fatalf("busy=%v: %d real of %d", busy, real, len(recs))
		}
		crit := 1.95 / math.Sqrt(float64(len(recs)-1))
		if d := ksExp(gapsOfTimes(dues), rate); d > crit {
			t.Fatalf("busy=%v: slot times: KS distance %.4f > %.4f", busy, d, crit)
		}
		if d := ksExp(gapsOfTimes(dues), 2*rate); d < crit {
			t.Fatalf("busy=%v: KS cannot tell %v/s from %v/s", busy, rate, 2*rate)
		}
		arrivalGaps[i] = gapsOfTimes(arr)
		slices.Sort(late)
		var build, link []time.Duration
		for _, r := range recs {
			build = append(build, r.wire.Sub(r.due))
			link = append(link, r.arrived.Sub(r.wire))
		}
		slices.Sort(build)
		slices.Sort(link)
		t.Logf("busy=%v: %d packets, slot-to-home lateness p50 %v, p99 %v (slot to link p50 %v p99 %v, link to home p50 %v p99 %v); arrival gaps vs Exp: KS %.4f (critical %.4f)",
			busy, len(recs), late[len(late)/2], late[len(late)*99/100], build[len(build)/2], build[len(build)*99/100], link[len(link)/2], link[len(link)*99/100], ksExp(arrivalGaps[i], rate), crit)
	}
	if d, crit := ksTwo(arrivalGaps[0], arrivalGaps[1]); d > crit {
		t.Fatalf("the home sees the busy client's gaps differ from the idle one's: two-sample KS %.4f > %.4f", d, crit)
	}
}

// TestRealTrafficDoesNotChangeTiming: one client whose Source makes about
// half its payload slots real (a coin per slot) sends through its home,
// which records when each packet arrives. The lateness of a packet — its
// arrival at the home minus its slot time, so after the packet was built
// and handed to the link — is distributed alike for real and cover
// packets (two-sample KS, α = 0.001), and real packets are not later than
// cover: a real packet leaves at its
// slot like cover, so its timing does not tell the home, or anyone on the
// link, that the client is talking. Load on the machine delays both kinds
// alike, so the test does not depend on it; a client that sent real
// packets later than their slots (more work to build them, a queue
// before the link) fails it, by the KS test or by a one-sided
// Mann–Whitney test (α = 0.001) for real packets being later.
func TestRealTrafficDoesNotChangeTiming(t *testing.T) {
	o := defaultNet()
	n := mustNet(t, o)
	src := &coinSource{dest: ToMailbox(n.mboxes[0].id()), rng: mrand.New(mrand.NewPCG(1, 2))}
	recs := observeWire(t, n, 80, 6*time.Second, func(ctx context.Context, c *Client) { c.SetSource(src); <-ctx.Done() })
	real, cover := latenessOf(t, recs)
	med := medianSeconds
	d, crit := ksTwo(real, cover)
	t.Logf("%d real, %d cover: median lateness %v vs %v; two-sample KS %.4f (critical %.4f)", len(real), len(cover), med(real), med(cover), d, crit)
	if d > crit {
		t.Fatalf("real packets' lateness differs from cover's: two-sample KS %.4f > %.4f", d, crit)
	}
	// The one-sided rank test is the more powerful for a shift: real
	// packets later than cover at α = 0.001.
	if z := mannWhitneyZ(real, cover); z > 3.09 {
		t.Fatalf("real packets leave later than cover: Mann–Whitney z = %.2f > 3.09 (medians %v vs %v)", z, med(real), med(cover))
	}
}

// latenessOf splits the records' lateness at the home (arrival − slot
// due, in seconds) into real and cover packets, and fails the test when
// either has fewer than 100 for the statistics.
func latenessOf(t *testing.T, recs []wireRecord) (real, cover []float64) {
	t.Helper()
	for _, r := range recs {
		l := r.arrived.Sub(r.due).Seconds()
		if r.real {
			real = append(real, l)
		} else {
			cover = append(cover, l)
		}
	}
	if len(real) < 100 || len(cover) < 100 {
		t.Fatalf("%d real and %d cover packets: too few", len(real), len(cover))
	}
	return real, cover
}

// medianSeconds is the median of x, seconds, as a duration.
func medianSeconds(x []float64) time.Duration {
	x = slices.Clone(x)
	slices.Sort(x)
	return time.Duration(x[len(x)/2] * float64(time.Second))
}

// mannWhitneyZ returns the normal approximation of the Mann–Whitney U
// statistic for x being larger than y (positive: x tends to be larger).
func mannWhitneyZ(x, y []float64) float64 {
	type obs struct {
		v float64
		x bool
	}
	all := make([]obs, 0, len(x)+len(y))
	for _, v := range x {
		all = append(all, obs{v, true})
	}
	for _, v := range y {
		all = append(all, obs{v, false})
	}
	slices.SortFunc(all, func(a, b obs) int { return cmp.Compare(a.v, b.v) })
	var rx float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // mean rank of the ties, ranks from 1
		for k := i; k < j; k++ {
			if all[k].x {
				rx += rank
			}
		}
		i = j
	}
	n, m := float64(len(x)), float64(len(y))
	u := rx - n*(n+1)/2
	return (u - n*m/2) / math.Sqrt(n*m*(n+m+1)/12)
}

// coinSource makes a payload slot real with probability 1/2.
type coinSource struct {
	dest Destination
	mu   sync.Mutex
	rng  *mrand.Rand
}

func (s *coinSource) Next(time.Time) (Destination, []byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dest, []byte("real"), s.rng.IntN(2) == 0
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
// the new home, and the client's one connection is to the new home; a
// reply to a SURB that names the old home is lost there (dropped and
// counted as an unknown token), as the design accepts.
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
	// The old home drops it: the client left it, so its registration is gone.
	eventually(t, 10*time.Second, "the reply through the old home lost", func() bool {
		return testutil.ToFloat64(n.relays[0].home.m.drops.WithLabelValues("unknown_token")) >= 1
	})
	if n.relays[0].host.IsConnected(a.host.ID()) {
		t.Fatal("the client is still connected to its old home")
	}
	before := testutil.ToFloat64(n.relays[4].home.m.pushed)
	eventually(t, 20*time.Second, "loops through the new home", func() bool {
		return testutil.ToFloat64(n.relays[4].home.m.pushed) >= before+3
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
