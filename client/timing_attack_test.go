package client

import (
	"context"
	"crypto/ed25519"
	"math"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-mix/strata/transport"
)

// surbSource makes a payload slot a reply through one of a stock of SURBs
// with probability 1/2 (while the stock lasts), cover otherwise.
type surbSource struct {
	mu    sync.Mutex
	rng   *mrand.Rand
	stock []Destination
}

func (s *surbSource) Next(time.Time) (Destination, []byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.stock) == 0 || s.rng.IntN(2) == 0 {
		return Destination{}, nil, false
	}
	d := s.stock[len(s.stock)-1]
	s.stock = s.stock[:len(s.stock)-1]
	return d, []byte("a reply"), true
}

// TestRepliesLeaveLikeCover (attack, A1 on the client's link and A4 at the
// home): a client whose Source makes about half its payload slots replies
// through other people's SURBs — packets far cheaper to build than cover
// (symmetric crypto only, against four X25519 for a cover packet) — sends
// through its home, which records when each packet arrives. The lateness
// of a packet (arrival at the home minus its slot time) is distributed
// alike for replies and cover, in both directions (two-sample KS and a
// two-sided Mann–Whitney test, α = 0.001): a packet's build cost does not
// show on the wire, so the timing of the client's link does not tell the
// home, or anyone watching it, that the client is answering someone.
func TestRepliesLeaveLikeCover(t *testing.T) {
	n := mustNet(t, defaultNet())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The SURBs come from another client (another home); their replies
	// reach it, which does not matter here.
	owner := mustClient(t, n, 3, Rates{Payload: 1})
	src := &surbSource{rng: mrand.New(mrand.NewPCG(3, 4))}
	for range 400 {
		s, err := owner.NewSURB(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d, err := owner.ViaSURB(s.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		src.stock = append(src.stock, d)
	}
	recs := observeWire(t, n, 80, 6*time.Second, func(ctx context.Context, c *Client) { c.SetSource(src); <-ctx.Done() })
	real, cover := latenessOf(t, recs)
	med := medianSeconds
	d, crit := ksTwo(real, cover)
	z := mannWhitneyZ(real, cover)
	t.Logf("%d replies, %d cover: median lateness %v vs %v; two-sample KS %.4f (critical %.4f); Mann–Whitney z %.2f",
		len(real), len(cover), med(real), med(cover), d, crit, z)
	if d > crit {
		t.Fatalf("replies' lateness differs from cover's: two-sample KS %.4f > %.4f (medians %v vs %v)", d, crit, med(real), med(cover))
	}
	if math.Abs(z) > 3.29 {
		t.Fatalf("replies leave at other times than cover: Mann–Whitney z = %.2f (two-sided α = 0.001), medians %v vs %v", z, med(real), med(cover))
	}
}

// stallSource blocks its caller once, for stall, at its first call after
// armed is set — as a stopped process or a suspended machine stops the
// client — and sends cover otherwise.
type stallSource struct {
	stall time.Duration
	armed atomic.Bool
	ended atomic.Pointer[time.Time]
}

func (s *stallSource) Next(time.Time) (Destination, []byte, bool) {
	if s.armed.CompareAndSwap(true, false) {
		time.Sleep(s.stall)
		now := time.Now()
		s.ended.Store(&now)
	}
	return Destination{}, nil, false
}

// TestStalledClientSendsNoBurst (A1 on the client's link, P5 at the home):
// a client whose slot machinery stops for 1.5 s (a stopped process, a
// suspended laptop, a Source that blocks) does not send the slots it
// missed in a burst when it resumes — a burst an observer sees, which the
// home's rate limit would cut, losing whatever real packets it held — but
// skips them (Stats.Missed) and goes on at its rate.
func TestStalledClientSendsNoBurst(t *testing.T) {
	n := mustNet(t, defaultNet())
	const rate = 80.0
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	me := transport.NodeIDFromPublicKey(key.Public().(ed25519.PublicKey))
	var mu sync.Mutex
	var arrivals []time.Time
	n.relays[0].entered.Store(me, func(at time.Time) { mu.Lock(); arrivals = append(arrivals, at); mu.Unlock() })
	c, err := New(context.Background(), Config{Identity: key, DataDir: t.TempDir(), Home: n.homeInfo(0), Topology: n.Topology, Rates: &Rates{Payload: rate}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	src := &stallSource{stall: 1500 * time.Millisecond}
	c.SetSource(src)
	time.Sleep(time.Second)
	src.armed.Store(true)
	eventually(t, 10*time.Second, "the stall ends", func() bool { return src.ended.Load() != nil })
	end := *src.ended.Load()
	time.Sleep(time.Second)
	const window = 200 * time.Millisecond
	mu.Lock()
	after, later := 0, 0
	for _, at := range arrivals {
		switch d := at.Sub(end); {
		case d >= 0 && d < window:
			after++
		case d >= window:
			later++
		}
	}
	mu.Unlock()
	s := c.Stats()
	t.Logf("%d packets reached the home in the %v after a 1.5 s stall (%.0f expected at %v/s), %d in the %v after; %d slots missed",
		after, window, rate*window.Seconds(), rate, later, time.Second-window, s.Missed)
	if limit := int(3 * rate * window.Seconds()); after > limit {
		t.Fatalf("a burst of %d packets in the %v after the stall (more than %d): the missed slots were sent at once", after, window, limit)
	}
	if s.Missed < uint64(rate) {
		t.Fatalf("only %d slots counted missed in a 1.5 s stall at %v/s", s.Missed, rate)
	}
	if later < int(rate*(time.Second-window).Seconds()/3) {
		t.Fatalf("only %d packets in the %v after the stall: the client did not go on at its rate", later, time.Second-window)
	}
}
