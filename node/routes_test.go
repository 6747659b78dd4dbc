package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// TestSendPoolHoldsOnlyWhereTheRoutesLead: a node's transport pool holds
// its successors (the last stratum: every relay and mailbox node) and the
// first stratum, of the current and previous epoch; nodes that are no
// longer among them, or that left the topology, are removed; the link
// refuses any other node before the transport.
func TestSendPoolHoldsOnlyWhereTheRoutesLead(t *testing.T) {
	idk, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	host, err := transport.New(context.Background(), transport.Config{Identity: idk, PacketSize: sphinx.DefaultGeometry().PacketSize(),
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	self := sphinx.NodeID(host.ID())
	peers := map[sphinx.NodeID]transport.PeerInfo{}
	newNode := func() sphinx.NodeID {
		k, err := transport.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		p := transport.PeerInfo{PublicKey: k.Public().(ed25519.PublicKey), Addrs: []string{"/ip4/127.0.0.1/tcp/9"}}
		id := sphinx.NodeID(transport.NodeIDFromPublicKey(p.PublicKey))
		peers[id] = p
		return id
	}
	ids := func(n int) []sphinx.NodeID {
		out := make([]sphinx.NodeID, n)
		for i := range out {
			out[i] = newNode()
		}
		return out
	}
	l0, l1, l2, mb := ids(3), ids(3), ids(3), ids(2)
	l1[1] = self
	viewOf := func(epoch uint64, beacon byte, layers [][]sphinx.NodeID, mailboxes []sphinx.NodeID) *relay.View {
		g, err := pki.NewGraphFromLayers(layers, 2, [32]byte{beacon})
		if err != nil {
			t.Fatal(err)
		}
		return &relay.View{Epoch: epoch, Graph: g, Mailboxes: mailboxes}
	}
	want := func(views ...*relay.View) map[sphinx.NodeID]bool {
		out := map[sphinx.NodeID]bool{}
		for _, v := range views {
			g := v.Graph
			for _, id := range g.Layers[0] {
				out[id] = true
			}
			layer, slot, ok := g.Position(self)
			switch {
			case !ok:
			case layer == len(g.Layers)-1:
				for _, l := range g.Layers {
					for _, id := range l {
						out[id] = true
					}
				}
				for _, id := range v.Mailboxes {
					out[id] = true
				}
			default:
				for _, id := range g.Next(layer, slot) {
					out[id] = true
				}
			}
		}
		delete(out, self)
		return out
	}
	rt := newRouting(host, nil)
	check := func(what string, views ...*relay.View) {
		t.Helper()
		if got, w := rt.pooledPeers(), want(views...); !maps.Equal(got, w) {
			t.Errorf("%s: pool has %d nodes, want %d", what, len(got), len(w))
		}
	}

	v1 := viewOf(1, 1, [][]sphinx.NodeID{l0, l1, l2}, mb)
	rt.update(v1, peers)
	check("a middle-stratum relay", v1)
	for _, id := range append(slices.Clone(l1), mb...) {
		if id != self && rt.pooledPeers()[id] {
			t.Errorf("a middle-stratum relay pools %v, which it may not send to", id)
		}
	}

	// Epoch 2: self moves to the last stratum and one first-stratum relay
	// leaves the topology. Both epochs' nodes are pooled.
	gone := l0[2]
	v2 := viewOf(2, 2, [][]sphinx.NodeID{{l0[0], l0[1], l1[0]}, {l2[0], l2[1], l1[2]}, {l2[2], self}}, mb)
	rt.update(v2, peers)
	check("last stratum, previous epoch in its grace period", v2, v1)

	// Epoch 3: epoch 1's routes end; its nodes that epoch 3 does not reach
	// leave the pool and the transport.
	v3 := viewOf(3, 3, [][]sphinx.NodeID{{l0[0], l0[1], self}, {l1[0], l2[0], l2[1]}, {l1[2], l2[2]}}, mb)
	rt.update(v3, peers)
	check("first stratum after two epochs", v3, v2)
	if rt.pooledPeers()[gone] {
		t.Error("a node that left the topology is still pooled")
	}
	if err := host.TrySend(transport.NodeID(gone), make([]byte, sphinx.DefaultGeometry().PacketSize())); !errors.Is(err, transport.ErrUnknownPeer) {
		t.Errorf("send to a removed node: %v, want ErrUnknownPeer", err)
	}

	link := relayLink(self, rt.routes, host, func([]byte) error { return nil })
	if err := link.Send(context.Background(), gone, make([]byte, sphinx.DefaultGeometry().PacketSize())); !errors.Is(err, relay.ErrRoute) {
		t.Errorf("link to a node off the routes: %v, want relay.ErrRoute", err)
	}
}

// TestRelayLinkTellsUnreachablePeers: once the transport has found a
// successor unreachable, the relay's link fails at once with an error
// wrapping relay.ErrLinkDown, so the relay counts the drop as
// reason="peer_down" (not "send").
func TestRelayLinkTellsUnreachablePeers(t *testing.T) {
	idk, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	host, err := transport.New(context.Background(), transport.Config{Identity: idk, PacketSize: sphinx.DefaultGeometry().PacketSize(),
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	self := sphinx.NodeID(host.ID())
	k, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	// Port 9 on loopback: nothing listens, the dial is refused.
	dead := transport.PeerInfo{PublicKey: k.Public().(ed25519.PublicKey), Addrs: []string{"/ip4/127.0.0.1/tcp/9"}}
	deadID := sphinx.NodeID(transport.NodeIDFromPublicKey(dead.PublicKey))
	g, err := pki.NewGraphFromLayers([][]sphinx.NodeID{{self}, {deadID}}, 1, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	rt := newRouting(host, nil)
	rt.update(&relay.View{Epoch: 1, Graph: g}, map[sphinx.NodeID]transport.PeerInfo{deadID: dead})
	link := relayLink(self, rt.routes, host, func([]byte) error { return nil })
	pkt := make([]byte, sphinx.DefaultGeometry().PacketSize())
	if err := link.Send(context.Background(), deadID, pkt); err != nil {
		t.Fatalf("first send (queued, then dialled): %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := link.Send(context.Background(), deadID, pkt)
		if errors.Is(err, transport.ErrUnreachable) {
			if !errors.Is(err, relay.ErrLinkDown) {
				t.Fatalf("send to an unreachable successor: %v, want it to wrap relay.ErrLinkDown", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the successor never became unreachable: last error %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
