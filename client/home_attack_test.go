package client

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// TestRefusingHomeKeepsNoConnection (attack, A2 as a would-be home): a
// relay that accepts the client's connection but refuses its registration
// (it runs no home service, or lies) must not keep a connection from the
// client: that connection would give it the client's address and identity
// while the client sends through another home. SetHome to it fails, the
// client drops the connection it opened, keeps its home, and its loops
// still come back through it.
func TestRefusingHomeKeepsNoConnection(t *testing.T) {
	n := mustNet(t, defaultNet())
	a := mustClient(t, n, 0, Rates{Payload: 20, Loop: 20})
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	// The refusing relay: a real host that answers no registration.
	liar, err := transport.New(context.Background(), transport.Config{
		Identity: key, PacketSize: n.format.Geometry().PacketSize(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer liar.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = a.SetHome(ctx, liar.PeerInfo())
	if err == nil {
		t.Fatal("SetHome to a relay that refuses the registration succeeded")
	}
	if !errors.Is(err, transport.ErrRequestRefused) {
		t.Logf("SetHome: %v", err)
	}
	eventually(t, 5*time.Second, "the connection to the refusing relay closed", func() bool {
		return !liar.IsConnected(a.host.ID()) && !a.host.IsConnected(liar.ID())
	})
	if a.Home() != n.relays[0].id() {
		t.Fatalf("home %v after a failed SetHome", a.Home())
	}
	base := a.Stats().LoopsReturned
	eventually(t, 20*time.Second, "loops back through the old home", func() bool { return a.Stats().LoopsReturned >= base+5 })
	if liar.IsConnected(a.host.ID()) {
		t.Fatal("the refusing relay is connected to the client again")
	}
}

// TestFreshIdentitiesGetNoBurst (attack, A5 at the home, P5): one machine
// makes a fresh client identity, connects, registers, sends as many entry
// frames as its link takes, disconnects, and starts over. Each identity is
// a new client to the home; if each got a full bucket (EntryBurst, 64 by
// default, five seconds of its rate at the default λs) the churn would
// multiply one machine's entry rate by 64 per handshake. The home gives a
// newly registered client only entryStart packets at once: each identity
// gets through at most that plus its rate over its lifetime, while an
// honest client of the same home sending at its rate keeps every packet.
func TestFreshIdentitiesGetNoBurst(t *testing.T) {
	const rate = 16.0 // the fixture's rates (2 + 1 + 1) × DefaultRateMultiple
	f := newHomeFixture(t, 1, HomeConfig{})
	pkt := make([]byte, f.geo.PacketSize())
	honest, _ := f.connect(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	sent := 0
	wg.Go(func() { // Poisson at a quarter of its entry rate
		for ctx.Err() == nil {
			time.Sleep(time.Duration(mrand.ExpFloat64() / (rate / 4) * float64(time.Second)))
			if honest.TrySendVia(f.host.ID(), f.first.ID(), pkt) == nil {
				sent++
			}
		}
	})
	const identities, frames = 30, 200
	start := time.Now()
	var lived time.Duration
	forwarded := testutil.ToFloat64(f.home.m.entries)
	for range identities {
		key := newKey(t)
		born := time.Now()
		h, _ := f.connect(t, key)
		for range frames {
			for h.TrySendVia(f.host.ID(), f.first.ID(), pkt) != nil {
				time.Sleep(50 * time.Microsecond)
			}
		}
		// Every frame counted by the home (forwarded or dropped) before
		// the identity goes.
		fw, dr := uint64(0), uint64(0)
		eventually(t, 10*time.Second, "the identity's frames counted", func() bool {
			fw, dr = f.home.entryCounts(sphinx.NodeID(h.ID()))
			return fw+dr == frames
		})
		h.Close()
		eventually(t, 10*time.Second, "the identity forgotten", func() bool { return !f.home.bound(sphinx.NodeID(h.ID())) })
		lived += time.Since(born)
	}
	churn := time.Since(start)
	got := testutil.ToFloat64(f.home.m.entries) - forwarded
	honestSoFar, _ := f.home.entryCounts(sphinx.NodeID(honest.ID()))
	got -= float64(honestSoFar)       // the honest client's, up to here
	time.Sleep(3*time.Second - churn) // the honest client sends ≈ 12 packets in all
	cancel()
	wg.Wait()
	var hfw, hdr uint64
	eventually(t, 10*time.Second, "the honest client's packets counted", func() bool {
		hfw, hdr = f.home.entryCounts(sphinx.NodeID(honest.ID()))
		return int(hfw+hdr) == sent
	})
	t.Logf("%d identities in %v (%.0f/s): %.0f of %d frames forwarded, %.1f per identity (%.0f packets/s through one machine; its rate limit is %.0f/s); honest: %d of %d forwarded",
		identities, churn, identities/churn.Seconds(), got, identities*frames, got/identities, got/churn.Seconds(), rate, hfw, sent)
	if limit := float64(identities*entryStart) + rate*lived.Seconds() + identities; got > limit {
		t.Fatalf("fresh identities got %.0f frames through, more than %.0f (%d each at once plus their rate over their lifetimes)", got, limit, entryStart)
	}
	if hdr != 0 || sent < 3 {
		t.Fatalf("honest client: %d of %d forwarded", hfw, sent)
	}
}

// TestStaleDisconnectKeepsRegistration (fault, A9): the transport checks
// that a node's last connection is gone and then calls the home's
// Disconnected hook; a client that reconnects and registers in between
// (a quick reconnect on a loaded machine) must not be forgotten by the
// late call, or it would sit connected, registered in its own view, while
// the home drops its entry frames and pushes (unknown_token) until the
// next disconnect — forever on a stable link. A Disconnected for a node
// that is connected is ignored; one for a node that is gone still forgets
// it.
func TestStaleDisconnectKeepsRegistration(t *testing.T) {
	f := newHomeFixture(t, 1, HomeConfig{EntryRate: 10000})
	key := newKey(t)
	c, got := f.connect(t, key)
	id := sphinx.NodeID(c.ID())
	f.home.Disconnected(c.ID()) // late: the client is connected and registered
	if !f.home.bound(id) {
		t.Fatal("a stale Disconnected forgot a connected, registered client")
	}
	var sid sphinx.SURBID
	sid[0] = 7
	f.home.Deliver(f.token(key, 1), sid, f.payload(7))
	f.expectPush(t, got, sid, f.payload(7))
	c.Close()
	eventually(t, 10*time.Second, "a client that left forgotten", func() bool { return !f.home.bound(id) })
}
