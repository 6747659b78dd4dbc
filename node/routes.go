package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// routing keeps a relay's or mailbox node's restricted routes and its
// transport send pool in step with the topology: the routes hold the
// current epoch's view and the previous one's (packets made under the old
// keys are still in flight during its grace period), and the pool holds
// exactly the nodes those routes let this node send to (Routes.Peers: its
// successors, the last stratum's mailbox nodes and relays, and the first
// stratum). Nodes that leave that set are removed from the pool, so the
// host never dials a node it may not send to.
type routing struct {
	routes *relay.Routes
	host   *transport.Host
	log    *slog.Logger

	mu                  sync.Mutex
	cur, prev           *relay.View
	curPeers, prevPeers map[sphinx.NodeID]transport.PeerInfo // their nodes' addresses
	pooled              map[sphinx.NodeID]bool
}

func newRouting(host *transport.Host, log *slog.Logger) *routing {
	return &routing{
		routes: relay.NewRoutes(sphinx.NodeID(host.ID())), host: host, log: log,
		pooled: map[sphinx.NodeID]bool{},
	}
}

// update installs the view of a topology, with its nodes' transport
// addresses. A view of a later epoch moves the current one to previous (an
// epoch after the next drops it); one of the same epoch replaces it (epoch
// 0 grows as nodes are admitted); one of the epoch before (the previous
// topology, read at start) becomes the previous one.
func (rt *routing) update(v *relay.View, peers map[sphinx.NodeID]transport.PeerInfo) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	switch {
	case rt.cur == nil || v.Epoch == rt.cur.Epoch:
		rt.cur, rt.curPeers = v, peers
	case v.Epoch == rt.cur.Epoch+1:
		rt.prev, rt.prevPeers = rt.cur, rt.curPeers
		rt.cur, rt.curPeers = v, peers
	case v.Epoch > rt.cur.Epoch:
		rt.prev, rt.prevPeers = nil, nil
		rt.cur, rt.curPeers = v, peers
	case v.Epoch+1 == rt.cur.Epoch:
		rt.prev, rt.prevPeers = v, peers
	default:
		return
	}
	rt.routes.Set(rt.cur, rt.prev)
	rt.syncPool()
}

// syncPool adds to the host's pool the nodes the routes may send to and
// removes the ones it added that they no longer may.
func (rt *routing) syncPool() {
	want := map[sphinx.NodeID]bool{}
	for _, id := range rt.routes.Peers() {
		info, ok := rt.curPeers[id]
		if !ok {
			info, ok = rt.prevPeers[id]
		}
		if !ok {
			continue // no address: the node only ever dials us
		}
		want[id] = true
		if err := rt.host.AddPeer(info); err != nil {
			rt.log.Warn("topology peer rejected", "node", id, "err", err)
			delete(want, id)
		}
	}
	for id := range rt.pooled {
		if !want[id] {
			rt.host.RemovePeer(transport.NodeID(id))
		}
	}
	rt.pooled = want
}

// pooledPeers returns the nodes routing put in the pool (tests).
func (rt *routing) pooledPeers() map[sphinx.NodeID]bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := make(map[sphinx.NodeID]bool, len(rt.pooled))
	for id := range rt.pooled {
		out[id] = true
	}
	return out
}

// staticPeers returns a topology file's nodes by id.
func staticPeers(e *Epoch) map[sphinx.NodeID]transport.PeerInfo {
	out := make(map[sphinx.NodeID]transport.PeerInfo, len(e.Peers))
	for _, p := range e.Peers {
		out[sphinx.NodeID(transport.NodeIDFromPublicKey(p.PublicKey))] = p
	}
	return out
}

// relayLink is a relay's relay.Link: packets to itself stay in the process
// (Inject), others go to the transport without waiting, only to nodes the
// routes allow (so no packet makes the host dial anyone else), and the
// transport's errors are told apart for the relay's drop counters.
func relayLink(self sphinx.NodeID, routes *relay.Routes, host *transport.Host, inject func([]byte) error) relay.LinkFunc {
	return func(_ context.Context, to sphinx.NodeID, pkt []byte) error {
		if to == self {
			return inject(pkt)
		}
		if !routes.MaySend(to) {
			return fmt.Errorf("node: send to %v: %w", to, relay.ErrRoute)
		}
		return linkError(host.TrySend(transport.NodeID(to), pkt))
	}
}

// linkError wraps a transport send error into the relay's Link errors.
func linkError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, transport.ErrQueueFull):
		return fmt.Errorf("%w: %w", relay.ErrLinkFull, err)
	case errors.Is(err, transport.ErrUnreachable):
		return fmt.Errorf("%w: %w", relay.ErrLinkDown, err)
	}
	return err
}

// startChain installs a node's first verified topology and, during its
// first epochs after epoch 0, the previous epoch's (read from the chain,
// verified), whose routes judge the packets still in flight under the
// previous keys.
func (rt *routing) startChain(ctx context.Context, m *Membership, top *pki.Topology) {
	rt.update(view(top), topologyPeers(top))
	if top.Epoch == 0 {
		return
	}
	prev, err := m.Topology(ctx, top.Epoch-1)
	if err != nil {
		rt.log.Info("previous epoch's topology unavailable; its packets are dropped as off-route", "epoch", top.Epoch-1, "err", err)
		return
	}
	rt.update(view(prev), topologyPeers(prev))
}
