package relay

import (
	"errors"
	"slices"
	"testing"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
)

// testIDs returns n distinct node ids starting with prefix.
func testIDs(prefix byte, n int) []sphinx.NodeID {
	out := make([]sphinx.NodeID, n)
	for i := range out {
		out[i][0], out[i][1] = prefix, byte(i)
	}
	return out
}

// testView is a 3-stratum epoch of 4 relays a stratum, k = 2 (so a relay
// has predecessors and non-predecessors), and 2 mailbox nodes.
func testView(t testing.TB, epoch uint64, beacon byte) *View {
	t.Helper()
	layers := [][]sphinx.NodeID{testIDs(0xa0, 4), testIDs(0xb0, 4), testIDs(0xc0, 4)}
	g, err := pki.NewGraphFromLayers(layers, 2, [32]byte{beacon})
	if err != nil {
		t.Fatal(err)
	}
	return &View{Epoch: epoch, Graph: g, Mailboxes: testIDs(0xd0, 2)}
}

// successorSet returns the graph's successors of id (pki's rule).
func successorSet(g *pki.Graph, id sphinx.NodeID) []sphinx.NodeID {
	layer, slot, _ := g.Position(id)
	return g.Next(layer, slot)
}

func isPred(g *pki.Graph, from, to sphinx.NodeID) bool {
	return slices.Contains(successorSet(g, from), to)
}

// TestRoutesFollowTheGraph checks every edge of an epoch, for every node
// as the receiving one, against the rules of Routes, with the graph's own
// Next as the authority on successors.
func TestRoutesFollowTheGraph(t *testing.T) {
	v := testView(t, 7, 1)
	g := v.Graph
	client := sphinx.NodeID{0xee}
	var relays []sphinx.NodeID
	for _, l := range g.Layers {
		relays = append(relays, l...)
	}
	all := append(append(slices.Clone(relays), v.Mailboxes...), client)
	last := len(g.Layers) - 1
	fwd := func(next sphinx.NodeID) *sphinx.Command { c := sphinx.ForwardTo(next); return &c }
	finals := []sphinx.Command{sphinx.DeliverToMailbox(), sphinx.DropCover(), sphinx.LoopBack(sphinx.LoopID{1}),
		sphinx.DeliverToClient(sphinx.DeliveryToken{}, sphinx.SURBID{})}

	for _, self := range append(slices.Clone(relays), v.Mailboxes...) {
		r := NewRoutes(self)
		r.Set(v)
		layer, _, isRelay := g.Position(self)
		for _, from := range append(slices.Clone(all), self) {
			fromLayer, _, fromRelay := g.Position(from)
			fromMailbox := slices.Contains(v.Mailboxes, from)
			// Packets this node forwards.
			var wantFwdFrom bool
			switch {
			case !isRelay:
			case layer == 0:
				wantFwdFrom = fromRelay || fromMailbox
			default:
				wantFwdFrom = fromRelay && fromLayer == layer-1 && isPred(g, from, self)
			}
			wantFinalFrom := from == self || (fromRelay && fromLayer == last)
			if got := r.MayReceive(from); got != (wantFwdFrom || wantFinalFrom) {
				t.Errorf("%v (layer %d) MayReceive(%v) = %v", self, layer, from, got)
			}
			for _, c := range finals {
				err := r.Check(7, from, &c)
				if wantFinalFrom != (err == nil) || (err != nil && !errors.Is(err, ErrRouteFrom)) {
					t.Errorf("%v: final %v from %v: %v", self, c.Kind, from, err)
				}
			}
			for _, next := range all {
				var wantNext bool
				switch {
				case !isRelay:
				case layer == last:
					wantNext = slices.Contains(relays, next) || slices.Contains(v.Mailboxes, next)
				default:
					wantNext = slices.Contains(successorSet(g, self), next)
				}
				err := r.Check(7, from, fwd(next))
				switch {
				case !wantFwdFrom:
					if !errors.Is(err, ErrRouteFrom) {
						t.Errorf("%v: forward from %v to %v: %v, want ErrRouteFrom", self, from, next, err)
					}
				case !wantNext:
					if !errors.Is(err, ErrRoute) {
						t.Errorf("%v: forward from %v to %v: %v, want ErrRoute", self, from, next, err)
					}
				case err != nil:
					t.Errorf("%v: forward from %v to %v on a valid route: %v", self, from, next, err)
				}
				// The pool holds the next hops and the first stratum.
				wantPool := next != self && (wantNext || slices.Contains(g.Layers[0], next))
				if got := r.MaySend(next); got != wantPool {
					t.Errorf("%v: MaySend(%v) = %v, want %v", self, next, got, wantPool)
				}
			}
		}
		if err := r.Check(8, g.Layers[last][0], &finals[0]); !errors.Is(err, ErrRoute) {
			t.Errorf("a packet of an epoch the routes do not hold: %v, want ErrRoute", err)
		}
	}
}

// TestRoutesJudgeEachEpochByItsGraph: with two epochs held, a packet is
// judged by the graph of the epoch whose key opened it, and MayReceive
// and MaySend take both epochs' edges.
func TestRoutesJudgeEachEpochByItsGraph(t *testing.T) {
	// Two epochs with the same relays but different beacons: different
	// link offsets.
	var v1, v2 *View
	var self, succ1 sphinx.NodeID
	found := false
	for b := byte(1); b < 255 && !found; b++ {
		v1, v2 = testView(t, 1, 1), testView(t, 2, b)
		for _, id := range v1.Graph.Layers[1] {
			s1, s2 := successorSet(v1.Graph, id), successorSet(v2.Graph, id)
			for _, s := range s1 {
				if !slices.Contains(s2, s) {
					self, succ1, found = id, s, true
				}
			}
		}
	}
	if !found {
		t.Fatal("no two beacons give different links")
	}
	var pred1 sphinx.NodeID
	for _, p := range v1.Graph.Layers[0] {
		if isPred(v1.Graph, p, self) {
			pred1 = p
		}
	}
	r := NewRoutes(self)
	if r.MayReceive(pred1) || r.Check(1, pred1, new(sphinx.ForwardTo(succ1))) == nil {
		t.Fatal("routes without an epoch accept packets")
	}
	r.Set(v2, v1)
	if err := r.Check(1, pred1, new(sphinx.ForwardTo(succ1))); err != nil {
		t.Errorf("epoch 1 packet on an epoch 1 route: %v", err)
	}
	if err := r.Check(2, pred1, new(sphinx.ForwardTo(succ1))); err == nil {
		t.Error("epoch 2 packet on a route only epoch 1 has passed")
	}
	if !r.MayReceive(pred1) || !r.MaySend(succ1) {
		t.Error("the previous epoch's edges are not in the pre-unwrap and pool sets")
	}
	if got := r.Epochs(); !slices.Equal(got, []uint64{2, 1}) {
		t.Errorf("epochs %v", got)
	}
	r.Set(v2)
	if err := r.Check(1, pred1, new(sphinx.ForwardTo(succ1))); !errors.Is(err, ErrRoute) {
		t.Errorf("after the previous epoch is dropped: %v, want ErrRoute", err)
	}
	if r.MaySend(succ1) && !slices.Contains(successorSet(v2.Graph, self), succ1) {
		t.Error("a node no longer a successor is still in the pool")
	}
}

// BenchmarkRouteCheck is the route checks' cost per packet on a relay of
// the middle stratum of a 3 × 100-relay epoch with 20 mailbox nodes:
// MayReceive before unwrap, Check after.
func BenchmarkRouteCheck(b *testing.B) {
	layers := [][]sphinx.NodeID{testIDs(0xa0, 100), testIDs(0xb0, 100), testIDs(0xc0, 100)}
	g, err := pki.NewGraphFromLayers(layers, pki.DefaultSuccessors, [32]byte{9})
	if err != nil {
		b.Fatal(err)
	}
	v := &View{Epoch: 5, Graph: g, Mailboxes: testIDs(0xd0, 20)}
	self := layers[1][50]
	r := NewRoutes(self)
	r.Set(v, &View{Epoch: 4, Graph: g, Mailboxes: v.Mailboxes})
	var from sphinx.NodeID
	for _, p := range layers[0] {
		if isPred(g, p, self) {
			from = p
		}
	}
	cmd := sphinx.ForwardTo(successorSet(g, self)[3])
	var policy RoutePolicy = r
	b.ReportAllocs()
	for b.Loop() {
		if !policy.MayReceive(from) {
			b.Fatal("refused")
		}
		if err := policy.Check(5, from, &cmd); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pkt")
}
