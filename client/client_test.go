package client

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// TestLoopsComeBackThroughTheStrata: a client's loops go through one relay
// per stratum to its home, which pushes them down the client's connection;
// the client measures their round trip.
func TestLoopsComeBackThroughTheStrata(t *testing.T) {
	n := mustNet(t, defaultNet())
	c := mustClient(t, n, 0, Rates{Payload: 10, Loop: 30, Drop: 5})
	eventually(t, 30*time.Second, "10 loops back", func() bool { return c.Stats().LoopsReturned >= 10 })
	s := c.Stats()
	if s.Cover == 0 || s.Loops < s.LoopsReturned {
		t.Fatalf("stats %+v", s)
	}
	// Three relays each hold a loop for Exp(5 ms): a loop cannot beat the
	// links, and on loopback it takes well under a second.
	if s.LoopLatency <= 0 || s.LoopLatency > 2*time.Second {
		t.Fatalf("loop latency %v", s.LoopLatency)
	}
	if s.LoopLoss != 0 || s.RecentLoopLoss != 0 || s.RecentLoopLatency <= 0 {
		t.Fatalf("loops lost on loopback: %+v", s)
	}
	if got := testutil.ToFloat64(n.relays[0].home.m.pushed); got < 10 {
		t.Fatalf("home pushed %v packets", got)
	}
}

// TestLoopsMeasureLoss: when a relay of the middle stratum goes down, the
// loops routed through it do not come back, and the client counts them
// lost once their expected return plus the grace has passed.
func TestLoopsMeasureLoss(t *testing.T) {
	n := mustNet(t, defaultNet())
	c := mustClient(t, n, 0, Rates{Payload: 5, Loop: 40})
	eventually(t, 20*time.Second, "loops back", func() bool { return c.Stats().LoopsReturned >= 5 })
	top := n.Topology()
	for _, r := range n.relays {
		if tr, _ := top.Relay(r.id()); tr.Layer == 1 && r != n.relays[0] {
			r.host.Close() // down: nothing reaches it any more
			break
		}
	}
	// Half the routes cross the dead relay.
	eventually(t, 30*time.Second, "loops counted lost", func() bool {
		s := c.Stats()
		return s.LoopsLost >= 20 && s.RecentLoopLoss > 0.2
	})
	if s := c.Stats(); s.RecentLoopLoss > 0.8 || s.LoopsReturned < 10 {
		t.Fatalf("half the routes are alive, yet %+v", s)
	}
}

// TestSendToMailbox: a real packet goes through three strata to the
// mailbox node, intact, arriving at about the Expected time the client
// predicted from the route's delays, along a valid route.
func TestSendToMailbox(t *testing.T) {
	o := defaultNet()
	o.meanDelay = 50 * time.Millisecond
	n := mustNet(t, o)
	c := mustClient(t, n, 1, Rates{Payload: 50})
	mb := n.mboxes[0]
	top := n.Topology()
	for i := range 5 {
		msg := []byte{'m', byte(i)}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		sent, err := c.Send(ctx, ToMailbox(mb.id()), msg)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(sent.Route) != 4 || sent.Route[3] != mb.id() || !top.Graph().ValidRoute(sent.Route[:3]) {
			t.Fatalf("route %v", sent.Route)
		}
		select {
		case got := <-mb.inbox:
			now := time.Now()
			if !bytes.Equal(got, msg) {
				t.Fatalf("mailbox got %q, want %q", got, msg)
			}
			// The links add a little; under -race on a loaded machine, more.
			if early := sent.Expected.Sub(now); early > 5*time.Millisecond {
				t.Fatalf("arrived %v before the expected time", early)
			}
			if late := now.Sub(sent.Expected); late > 2*time.Second {
				t.Fatalf("arrived %v after the expected time", late)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("packet %d never reached the mailbox; stats %+v", i, c.Stats())
		}
	}
	if c.Stats().Real != 5 {
		t.Fatalf("stats %+v", c.Stats())
	}
}

// TestSURBReplyRoundTrip: client A makes a SURB, client B (another home)
// replies through it, A decrypts the reply; a replay of the reply is
// dropped by the first relay, and a reply to a SURB whose keys are gone is
// dropped and counted.
func TestSURBReplyRoundTrip(t *testing.T) {
	n := mustNet(t, defaultNet())
	rates := Rates{Payload: 50, Loop: 2, Drop: 2}
	a := mustClient(t, n, 0, rates)
	b := mustClient(t, n, 5, rates)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	surb, err := a.NewSURB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if surb.Epoch != 1 || surb.Delay <= 0 {
		t.Fatalf("SURB %+v", surb)
	}
	dest, err := ViaSURB(surb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("a reply through three mixes")
	sent, err := b.Send(ctx, dest, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sent.Route) != 1 {
		t.Fatalf("reply route %v", sent.Route)
	}
	select {
	case r := <-a.Receive():
		if r.SURB != surb.ID || !bytes.Equal(r.Payload, msg) {
			t.Fatalf("reply %x %q, want %x %q", r.SURB, r.Payload, surb.ID, msg)
		}
	case <-ctx.Done():
		t.Fatalf("no reply; A %+v, B %+v", a.Stats(), b.Stats())
	}

	// A SURB whose keys are gone (expired, or used): the reply reaches A,
	// which drops and counts it.
	gone, err := a.NewSURB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.store.Take(gone.ID); err != nil {
		t.Fatal(err)
	}
	dest, err = b.ViaSURB(gone.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(ctx, dest, msg); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the unknown reply counted", func() bool { return a.Stats().RepliesUnknown == 1 })
	select {
	case r := <-a.Receive():
		t.Fatalf("reply to an unknown SURB delivered: %+v", r)
	default:
	}
	if s := a.Stats(); s.Replies != 1 || s.RepliesBad != 0 {
		t.Fatalf("A %+v", s)
	}
}

// TestRestartKeepsSURBKeys: the keys of a SURB handed out before a crash
// open its reply after the restart (same identity and data directory, so
// the same home token).
func TestRestartKeepsSURBKeys(t *testing.T) {
	n := mustNet(t, defaultNet())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rates := Rates{Payload: 50}
	a, err := n.newClient(ctx, dir, key, 2, rates)
	if err != nil {
		t.Fatal(err)
	}
	surb, err := a.NewSURB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.Send(ctx, ToMailbox(n.mboxes[0].id()), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	a, err = n.newClient(ctx, dir, key, 2, rates)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := mustClient(t, n, 3, rates)
	dest, err := b.ViaSURB(surb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(ctx, dest, []byte("after the restart")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-a.Receive():
		if r.SURB != surb.ID || string(r.Payload) != "after the restart" {
			t.Fatalf("reply %+v", r)
		}
	case <-ctx.Done():
		t.Fatalf("no reply after restart: %+v", a.Stats())
	}
}

// TestMalformedFramesFromTheHome: frames that are not replies of ours are
// counted and dropped, never delivered and never a panic.
func TestMalformedFramesFromTheHome(t *testing.T) {
	n := mustNet(t, defaultNet())
	c := mustClient(t, n, 0, Rates{Payload: 50})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	home := n.relays[0].host
	size := n.format.Geometry().PacketSize()
	push := func(from *transport.Host, frame []byte) {
		t.Helper()
		if err := from.Send(ctx, c.host.ID(), frame); err != nil {
			t.Fatal(err)
		}
	}

	// An id the client never made.
	junk := make([]byte, size)
	copy(junk, "not a SURB id of ours")
	push(home, junk)
	eventually(t, 10*time.Second, "unknown id counted", func() bool { return c.Stats().RepliesUnknown == 1 })

	// A SURB of ours, but a payload that does not decrypt.
	surb, err := c.NewSURB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad := make([]byte, size)
	copy(bad, surb.ID[:])
	copy(bad[sphinx.SURBIDSize:], "tampered")
	push(home, bad)
	eventually(t, 10*time.Second, "bad reply counted", func() bool { return c.Stats().RepliesBad == 1 })

	// Bytes after the payload must be zero.
	trail := make([]byte, size)
	trail[size-1] = 1
	push(home, trail)
	eventually(t, 10*time.Second, "trailing bytes rejected", func() bool { return c.Stats().FramesRejected == 1 })

	// A frame from a node that is not the home. The client holds no other
	// connection (it sends everything through the home), so only the
	// receive path can be handed one.
	if _, err := c.Send(ctx, ToMailbox(n.mboxes[0].id()), []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, r := range n.relays {
		if r.host != home && r.host.IsConnected(c.host.ID()) {
			t.Fatalf("relay %v is connected to the client", r.id())
		}
	}
	c.handle(n.relays[1].host.ID(), junk)
	eventually(t, 10*time.Second, "foreign frame rejected", func() bool { return c.Stats().FramesRejected == 2 })
	select {
	case r := <-c.Receive():
		t.Fatalf("delivered %+v", r)
	default:
	}
}

// TestNoRoute: a topology without relays, or a mailbox the epoch does not
// list, fails Send with ErrNoRoute and counts it, and the cover streams
// keep running without panicking.
func TestNoRoute(t *testing.T) {
	n := mustNet(t, defaultNet())
	c := mustClient(t, n, 0, Rates{Payload: 100, Loop: 50, Drop: 50})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Send(ctx, ToMailbox(sphinx.NodeID{9}), []byte("x")); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("send to an unknown mailbox: %v", err)
	}
	empty, err := n.topology(1, nil, n.mboxes)
	if err != nil {
		t.Fatal(err)
	}
	n.top.Store(empty)
	if _, err := c.Send(ctx, ToMailbox(n.mboxes[0].id()), []byte("x")); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("send without relays: %v", err)
	}
	if _, err := c.NewSURB(ctx); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("SURB without relays: %v", err)
	}
	eventually(t, 10*time.Second, "cover slots without a route counted", func() bool { return c.Stats().NoRoute > 10 })
	if _, err := ViaSURB([]byte("short")); err == nil {
		t.Fatal("a malformed SURB was accepted")
	}
	if _, err := c.Send(ctx, ToMailbox(n.mboxes[0].id()), make([]byte, c.PayloadSize()+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized payload: %v", err)
	}
	var _ *pki.Topology = empty
}
