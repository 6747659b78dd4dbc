package client

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// oldPublicToken is the delivery token rule before issue 15, a public
// function of the client's and the home's node ids: anyone could compute
// it. The attack tests try it against homes.
func oldPublicToken(client, home sphinx.NodeID, epoch uint64) sphinx.DeliveryToken {
	h := sha256.New()
	h.Write([]byte("strata-home-token-v1"))
	h.Write(client[:])
	h.Write(home[:])
	h.Write(binary.BigEndian.AppendUint64(nil, epoch))
	var t sphinx.DeliveryToken
	copy(t[:], h.Sum(nil))
	return t
}

// relayInLayer returns a relay of n in stratum layer of top other than
// not, or nil.
func (n *testNet) relayInLayer(top *pki.Topology, layer int, not ...*testRelay) *testRelay {
next:
	for _, r := range n.relays {
		for _, x := range not {
			if r == x {
				continue next
			}
		}
		if tr, _ := top.Relay(r.id()); tr.Layer == layer {
			return r
		}
	}
	return nil
}

// TestFirstStratumSeesOnlyHomes (attack, A2 at a first-stratum relay): a
// relay of the first stratum that is not the clients' home records the
// sender of every packet its transport hands it, across an epoch change.
// It never has a connection to either client, every packet it gets comes
// from their home, and two clients of that home give it the same sender:
// it has no identifier of its own for a client, so it cannot link two of
// a client's packets (nor tell the two clients apart). Meanwhile both
// clients' loops and messages go through as usual.
func TestFirstStratumSeesOnlyHomes(t *testing.T) {
	n := mustNet(t, defaultNet())
	top := n.Topology()
	home := n.relayInLayer(top, 2)
	spy := n.relayInLayer(top, 0)
	var mu sync.Mutex
	from := map[transport.NodeID]int{}
	seen := func(id transport.NodeID) { mu.Lock(); from[id]++; mu.Unlock() }
	spy.seen.Store(&seen)
	homeIdx := 0
	for i, r := range n.relays {
		if r == home {
			homeIdx = i
		}
	}
	rates := Rates{Payload: 40, Loop: 20, Drop: 20}
	a := mustClient(t, n, homeIdx, rates)
	b := mustClient(t, n, homeIdx, rates)
	clients := []*Client{a, b}
	check := func(stage string) {
		t.Helper()
		for _, c := range clients {
			if spy.host.IsConnected(c.host.ID()) || len(spy.host.Conns(c.host.ID())) != 0 {
				t.Fatalf("%s: the first-stratum relay has a connection to client %v", stage, c.ID())
			}
			// The client's own host holds exactly one connection: its home.
			for _, r := range append(n.relays, n.mboxes...) {
				if r != home && c.host.IsConnected(r.host.ID()) {
					t.Fatalf("%s: client %v is connected to %v, not only its home", stage, c.ID(), r.id())
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for id, k := range from {
			if id != home.host.ID() {
				t.Fatalf("%s: the first-stratum relay got %d packets from %v, not the home", stage, k, id)
			}
		}
	}
	loopsBack := func(stage string) {
		t.Helper()
		for _, c := range clients {
			base := c.Stats().LoopsReturned
			eventually(t, 30*time.Second, stage+": loops back", func() bool { return c.Stats().LoopsReturned >= base+10 })
		}
	}
	loopsBack("epoch 1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Send(ctx, ToMailbox(n.mboxes[0].id()), []byte("epoch 1")); err != nil {
		t.Fatal(err)
	}
	check("epoch 1")
	mu.Lock()
	before := from[home.host.ID()]
	mu.Unlock()
	if before == 0 {
		t.Fatal("the first-stratum relay saw no packet: the test observes nothing")
	}
	next, err := n.topology(2, n.relays, n.mboxes)
	if err != nil {
		t.Fatal(err)
	}
	n.setTopology(next)
	// Watch a relay of the new epoch's first stratum (strata are drawn
	// again each epoch); it may be the same relay.
	spy.seen.Store(nil)
	time.Sleep(time.Second) // packets of epoch 1 still in the strata land
	mu.Lock()
	clear(from)
	mu.Unlock()
	if spy = n.relayInLayer(next, 0, home); spy == nil {
		t.Fatal("no first-stratum relay but the home")
	}
	spy.seen.Store(&seen)
	loopsBack("epoch 2")
	if _, err := b.Send(ctx, ToMailbox(n.mboxes[0].id()), []byte("epoch 2")); err != nil {
		t.Fatal(err)
	}
	check("epoch 2")
	mu.Lock()
	after := 0
	for _, k := range from {
		after += k
	}
	mu.Unlock()
	if after == 0 {
		t.Fatal("no packet seen in epoch 2")
	}
	for _, want := range []string{"epoch 1", "epoch 2"} {
		select {
		case m := <-n.mboxes[0].inbox:
			if string(m) != want {
				t.Fatalf("mailbox got %q, want %q", m, want)
			}
		case <-ctx.Done():
			t.Fatalf("message %q never arrived", want)
		}
	}
}

// TestGuessedTokensAreRefused (attack, A5 pushing to a client): an
// adversary that knows client A's node id and home builds DeliverClient
// packets for it — the old public token formula, random tokens, A's
// tokens for another home, a second client's tokens — and sends them
// through the strata to A's home. The home refuses every one as
// unknown_token and pushes nothing to A, while a reply through A's own
// SURB is delivered.
func TestGuessedTokensAreRefused(t *testing.T) {
	n := mustNet(t, defaultNet())
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	rates := Rates{Payload: 50, Loop: 0, Drop: 0}
	aKey, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.newClient(ctx, t.TempDir(), aKey, 0, rates)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	other := mustClient(t, n, 1, rates) // another client, another home
	adv := mustClient(t, n, 3, rates)   // the adversary: a client of its own home
	home := n.relays[0]
	top := n.Topology()
	var random sphinx.DeliveryToken
	rand.Read(random[:])
	guesses := []sphinx.DeliveryToken{
		oldPublicToken(a.ID(), home.id(), top.Epoch),
		random,
		DeriveHomeSecret(aKey, n.relays[1].id()).Token(top.Epoch), // A's token at another home
		other.home.Load().secret.Token(top.Epoch),                 // another client's token (at its home)
	}
	unknown0 := testutil.ToFloat64(home.home.m.drops.WithLabelValues("unknown_token"))
	pushed0 := testutil.ToFloat64(home.home.m.pushed)
	for _, tok := range guesses {
		path, err := adv.path(top, func(top *pki.Topology) (sphinx.Hop, error) {
			r, _ := top.Relay(home.id())
			return sphinx.Hop{ID: home.id(), Key: r.MixKey}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var id sphinx.SURBID
		rand.Read(id[:])
		pkt, _, err := adv.format.NewPacket(rand.Reader, path, sphinx.DeliverToClient(tok, id), adv.delay(top), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := adv.transmit(path[0].ID, pkt); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "every guessed token refused", func() bool {
		return testutil.ToFloat64(home.home.m.drops.WithLabelValues("unknown_token")) >= unknown0+float64(len(guesses))
	})
	if got := testutil.ToFloat64(home.home.m.pushed); got != pushed0 {
		t.Fatalf("the home pushed %v packets of guessed tokens", got-pushed0)
	}
	// A's own SURB works.
	surb, err := a.NewSURB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dest, err := other.ViaSURB(surb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Send(ctx, dest, []byte("a genuine reply")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-a.Receive():
		if r.SURB != surb.ID || string(r.Payload) != "a genuine reply" {
			t.Fatalf("reply %+v", r)
		}
	case <-ctx.Done():
		t.Fatalf("the genuine reply was not delivered: %+v", a.Stats())
	}
	if s := a.Stats(); s.RepliesUnknown != 0 || s.FramesRejected != 0 {
		t.Fatalf("guessed packets reached the client: %+v", s)
	}
}
