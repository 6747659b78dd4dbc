package node

import (
	"context"
	"crypto/ed25519"
	"testing"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// TestMailboxFirstHopsAreTheRoutesFirstStratum checks the first-hop rule
// RunMailbox gives its mailbox.Node (NodeConfig.FirstHop = the routes'
// MaySend) on a node started mid-epoch, as startChain installs it: the
// current topology first, then the previous one. A SURB made just before
// the epoch change names a relay of the previous first stratum — here one
// that is in the second stratum now — and must be allowed, as it is in the
// send pool; before, the node's separate FirstHops held only the current
// epoch after a start, and refused it. Relays of later strata of either
// epoch, other nodes and the node itself are refused; two epochs on, the
// old first stratum is refused and leaves the pool.
func TestMailboxFirstHopsAreTheRoutesFirstStratum(t *testing.T) {
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
	ids := func(n int) []sphinx.NodeID {
		out := make([]sphinx.NodeID, n)
		for i := range out {
			k, err := transport.GenerateIdentity()
			if err != nil {
				t.Fatal(err)
			}
			p := transport.PeerInfo{PublicKey: k.Public().(ed25519.PublicKey), Addrs: []string{"/ip4/127.0.0.1/tcp/9"}}
			out[i] = sphinx.NodeID(transport.NodeIDFromPublicKey(p.PublicKey))
			peers[out[i]] = p
		}
		return out
	}
	a, b, c := ids(3), ids(3), ids(3)
	other := ids(2) // another mailbox node, and a node of no topology
	viewOf := func(epoch uint64, layers ...[]sphinx.NodeID) *relay.View {
		g, err := pki.NewGraphFromLayers(layers, 2, [32]byte{byte(epoch)})
		if err != nil {
			t.Fatal(err)
		}
		return &relay.View{Epoch: epoch, Graph: g, Mailboxes: []sphinx.NodeID{self, other[0]}}
	}
	// Epoch 4: L₀ = a. Epoch 5: a moved to L₁ and L₂, L₀ = b.
	v4 := viewOf(4, a, b, c)
	v5 := viewOf(5, b, []sphinx.NodeID{a[0], c[0], c[1]}, []sphinx.NodeID{a[1], a[2], c[2]})
	delete(peers, other[1])

	rt := newRouting(host, nil)
	rt.update(v5, peers) // startChain: the current topology,
	rt.update(v4, peers) // then the previous one
	firstHop := rt.routes.MaySend
	check := func(what string, allowed, refused []sphinx.NodeID) {
		t.Helper()
		pool := rt.pooledPeers()
		for _, id := range allowed {
			if !firstHop(id) {
				t.Errorf("%s: %v refused as first hop", what, id)
			}
			if !pool[id] {
				t.Errorf("%s: %v allowed but not in the send pool", what, id)
			}
		}
		for _, id := range refused {
			if firstHop(id) {
				t.Errorf("%s: %v allowed as first hop", what, id)
			}
			if pool[id] {
				t.Errorf("%s: %v in the send pool", what, id)
			}
		}
		if len(pool) != len(allowed) {
			t.Errorf("%s: pool holds %d nodes, want the %d allowed first hops", what, len(pool), len(allowed))
		}
	}
	check("started in epoch 5", append(append([]sphinx.NodeID{}, a...), b...), append(append([]sphinx.NodeID{self}, c...), other...))

	// Epoch 6: epoch 4's first stratum is gone (its SURBs are dead).
	v6 := viewOf(6, c, b, a)
	rt.update(v6, peers)
	check("epoch 6", append(append([]sphinx.NodeID{}, b...), c...), append(append([]sphinx.NodeID{self}, a...), other...))
}
