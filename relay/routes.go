package relay

import (
	"errors"
	"slices"
	"sync/atomic"

	"github.com/strata-mix/strata/sphinx"
)

// Route errors: a packet off its epoch's restricted routes. Test with
// errors.Is.
var (
	// ErrRouteFrom means the sending node may not send this packet to this
	// node: it is not a predecessor of this node in the packet's epoch (or,
	// before unwrapping, in any epoch the relay holds).
	ErrRouteFrom = errors.New("relay: sender may not send to this node")
	// ErrRoute means a packet would leave the restricted routes: its next
	// hop is not one this node may forward to in the packet's epoch, or
	// the routes hold no such epoch.
	ErrRoute = errors.New("relay: next hop is off the restricted routes")
)

// RoutePolicy decides which packets follow the network's restricted routes
// (Config.Routes). Its methods run on the packet path for every packet:
// they must be cheap, never block and never allocate. Routes implements it
// from the epochs' Views.
type RoutePolicy interface {
	// Self is the node the policy is for; packets handed to Inject come
	// from it.
	Self() sphinx.NodeID
	// MayReceive reports whether from may send packets to this node under
	// any epoch the policy holds: the check before unwrapping.
	MayReceive(from sphinx.NodeID) bool
	// Check reports whether a packet unwrapped under epoch's key, received
	// from from, whose routing command is cmd, follows that epoch's
	// routes: nil, or an error wrapping ErrRouteFrom or ErrRoute.
	Check(epoch uint64, from sphinx.NodeID, cmd *sphinx.Command) error
}

// nodeSet is a set of node ids.
type nodeSet map[sphinx.NodeID]struct{}

func (s nodeSet) has(id sphinx.NodeID) bool { _, ok := s[id]; return ok }

func (s nodeSet) add(ids ...sphinx.NodeID) {
	for _, id := range ids {
		s[id] = struct{}{}
	}
}

// epochRoutes are one epoch's rules for one node.
type epochRoutes struct {
	epoch uint64
	// forwardFrom may send this node packets it forwards; finalFrom
	// packets that end here.
	forwardFrom, finalFrom nodeSet
	// next are the nodes this node forwards to; empty: none.
	next nodeSet
}

// routeTables is one immutable snapshot of a node's routes.
type routeTables struct {
	epochs []epochRoutes
	from   nodeSet // union of every epoch's forwardFrom and finalFrom
	to     nodeSet // union of every epoch's next and first stratum
}

// Routes is the RoutePolicy of one node (a relay or a mailbox node) built
// from the Views of the epochs it holds keys for. The rules of an epoch,
// with its graph's strata L₀ … Lₙ (pki.Graph) and its mailbox nodes M:
//
//   - a relay of Lᵢ, i < n, forwards only to its successors in Lᵢ₊₁
//     (Graph.Next); a relay of Lₙ only to mailbox nodes and relays (homes,
//     and relays ending their own loops); a relay in no stratum and a
//     mailbox node forward nothing;
//   - a relay of L₀ takes packets to forward from any relay (home relays
//     forwarding their clients' packets, relays sending loops) and any
//     mailbox node (SURB replies); a relay of Lᵢ, i > 0, only from its
//     predecessors in Lᵢ₋₁, those whose successors it is;
//   - packets that end at a node (DeliverClient, Loop, Drop,
//     DeliverMailbox) are taken only from relays of Lₙ or from the node
//     itself.
//
// A packet is judged by the epoch of the key it was unwrapped under. Set
// swaps the whole snapshot; readers never lock or allocate. Until the
// first Set, every packet is refused.
type Routes struct {
	self sphinx.NodeID
	t    atomic.Pointer[routeTables]
}

var _ RoutePolicy = (*Routes)(nil)

// NewRoutes returns the routes of node self, holding no epoch yet.
func NewRoutes(self sphinx.NodeID) *Routes {
	r := &Routes{self: self}
	r.t.Store(&routeTables{from: nodeSet{}, to: nodeSet{}})
	return r
}

// Set replaces the epochs the routes hold with those of views (the
// current epoch's and the previous one's during its grace period); nil
// views are skipped, and of two views of one epoch the first is kept.
func (r *Routes) Set(views ...*View) {
	t := &routeTables{from: nodeSet{}, to: nodeSet{}}
	for _, v := range views {
		if v == nil || slices.ContainsFunc(t.epochs, func(e epochRoutes) bool { return e.epoch == v.Epoch }) {
			continue
		}
		e := epochRoutesOf(r.self, v)
		t.epochs = append(t.epochs, e)
		for id := range e.forwardFrom {
			t.from[id] = struct{}{}
		}
		for id := range e.finalFrom {
			t.from[id] = struct{}{}
		}
		for id := range e.next {
			t.to[id] = struct{}{}
		}
		if v.Graph != nil {
			t.to.add(v.Graph.Layers[0]...)
		}
	}
	delete(t.to, r.self)
	r.t.Store(t)
}

// epochRoutesOf applies the rules of Routes to one view.
func epochRoutesOf(self sphinx.NodeID, v *View) epochRoutes {
	e := epochRoutes{epoch: v.Epoch, forwardFrom: nodeSet{}, finalFrom: nodeSet{self: {}}, next: nodeSet{}}
	g := v.Graph
	if g == nil || len(g.Layers) == 0 {
		return e
	}
	last := len(g.Layers) - 1
	e.finalFrom.add(g.Layers[last]...)
	layer, slot, ok := g.Position(self)
	if !ok {
		return e // in no stratum, or a mailbox node: forwards nothing
	}
	everyone := nodeSet{}
	for _, l := range g.Layers {
		everyone.add(l...)
	}
	everyone.add(v.Mailboxes...)
	if layer == 0 {
		e.forwardFrom = everyone
	} else {
		for j, pred := range g.Layers[layer-1] {
			if slices.Contains(g.Next(layer-1, j), self) {
				e.forwardFrom.add(pred)
			}
		}
	}
	if layer == last {
		e.next = everyone
	} else {
		e.next.add(g.Next(layer, slot)...)
	}
	return e
}

// Self returns the node the routes are for.
func (r *Routes) Self() sphinx.NodeID { return r.self }

// MayReceive reports whether from may send to this node in any epoch held.
func (r *Routes) MayReceive(from sphinx.NodeID) bool { return r.t.Load().from.has(from) }

// MaySend reports whether this node may send to to in any epoch held: a
// next hop of its own, or a relay of the first stratum (where home relays,
// loops and mailbox nodes' replies enter). The node's send pool holds
// exactly these nodes (Peers).
func (r *Routes) MaySend(to sphinx.NodeID) bool { return r.t.Load().to.has(to) }

// Peers returns the nodes MaySend allows, in no particular order.
func (r *Routes) Peers() []sphinx.NodeID {
	t := r.t.Load()
	out := make([]sphinx.NodeID, 0, len(t.to))
	for id := range t.to {
		out = append(out, id)
	}
	return out
}

// Epochs returns the epochs the routes hold.
func (r *Routes) Epochs() []uint64 {
	t := r.t.Load()
	out := make([]uint64, len(t.epochs))
	for i, e := range t.epochs {
		out[i] = e.epoch
	}
	return out
}

// Check reports whether a packet of epoch from from with command cmd
// follows that epoch's routes.
func (r *Routes) Check(epoch uint64, from sphinx.NodeID, cmd *sphinx.Command) error {
	t := r.t.Load()
	for i := range t.epochs {
		e := &t.epochs[i]
		if e.epoch != epoch {
			continue
		}
		if cmd.Kind.Final() {
			if !e.finalFrom.has(from) {
				return ErrRouteFrom
			}
			return nil
		}
		if !e.forwardFrom.has(from) {
			return ErrRouteFrom
		}
		if !e.next.has(cmd.NextHop()) {
			return ErrRoute
		}
		return nil
	}
	return ErrRoute
}
