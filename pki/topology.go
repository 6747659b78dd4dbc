package pki

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/strata-mix/strata/sphinx"
)

// Defaults of the topology rules.
const (
	// DefaultLayers is the number of strata a packet crosses.
	DefaultLayers = 3
	// DefaultSuccessors is k, the number of next-layer relays each relay
	// links to.
	DefaultSuccessors = 8
)

// VRFOutputSize is the size of an ECVRF-EDWARDS25519-SHA512-ELL2 output.
const VRFOutputSize = 64

// Ranked is a relay as the strata assignment sees it: its id and its VRF
// output on the epoch beacon.
type Ranked struct {
	ID  sphinx.NodeID
	VRF [VRFOutputSize]byte
}

// ErrTopology reports impossible topology parameters.
var ErrTopology = errors.New("pki: bad topology")

// Graph is an epoch's stratified topology: the relays of each layer in
// order, and the restricted-route rule linking layer i to layer i+1. It is
// a pure function of the admitted relays' VRF outputs and the beacon, so
// every party derives the same graph.
type Graph struct {
	// Layers[i] are the relays of stratum i, in VRF order.
	Layers [][]sphinx.NodeID
	// K is the number of successors of each relay; a relay links to every
	// relay of the next layer when K is at least that layer's size.
	K int
	// succ[i] holds the successor slots of layer i's relays, min(K, m) a
	// relay, in slot order (see links).
	succ  [][]int32
	index map[sphinx.NodeID]position
}

type position struct{ layer, slot int }

// NewGraph sorts relays into layers strata by VRF output (ties, which an
// honest VRF never produces, broken by id) and cuts them into strata whose
// sizes differ by at most one, the earlier strata taking the extra relays.
// Links from layer i to layer i+1 are drawn from the beacon as in
// NewGraphFromLayers.
func NewGraph(relays []Ranked, layers, k int, beacon [32]byte) (*Graph, error) {
	if layers < 1 {
		return nil, fmt.Errorf("%w: %d layers", ErrTopology, layers)
	}
	if k < 1 {
		return nil, fmt.Errorf("%w: k = %d", ErrTopology, k)
	}
	if len(relays) < layers {
		return nil, fmt.Errorf("%w: %d relays cannot fill %d layers", ErrTopology, len(relays), layers)
	}
	sorted := slices.Clone(relays)
	slices.SortFunc(sorted, func(a, b Ranked) int {
		if c := bytes.Compare(a.VRF[:], b.VRF[:]); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	cut := make([][]sphinx.NodeID, layers)
	next := 0
	for i := range cut {
		size := len(sorted) / layers
		if i < len(sorted)%layers {
			size++
		}
		for _, r := range sorted[next : next+size] {
			cut[i] = append(cut[i], r.ID)
		}
		next += size
	}
	return NewGraphFromLayers(cut, k, beacon)
}

// NewGraphFromLayers builds a graph whose strata are given, in order (a
// static topology file, or a simulator). The links from layer i to layer
// i+1 are a bipartite graph drawn from the beacon and i: each relay links
// to min(k, m) distinct relays of the next layer of m, and the next
// layer's in-degrees differ by at most one (docs/pki.md, "Restricted
// routes").
func NewGraphFromLayers(layers [][]sphinx.NodeID, k int, beacon [32]byte) (*Graph, error) {
	if len(layers) < 1 {
		return nil, fmt.Errorf("%w: no layers", ErrTopology)
	}
	if k < 1 {
		return nil, fmt.Errorf("%w: k = %d", ErrTopology, k)
	}
	g := &Graph{Layers: make([][]sphinx.NodeID, len(layers)), K: k, succ: make([][]int32, len(layers)-1), index: map[sphinx.NodeID]position{}}
	for i, layer := range layers {
		if len(layer) == 0 {
			return nil, fmt.Errorf("%w: layer %d is empty", ErrTopology, i)
		}
		g.Layers[i] = slices.Clone(layer)
		for j, id := range layer {
			if _, dup := g.index[id]; dup {
				return nil, fmt.Errorf("%w: relay %v listed twice", ErrTopology, id)
			}
			g.index[id] = position{i, j}
		}
	}
	for i := range g.succ {
		var prev []int32
		kPrev := 0
		if i > 0 {
			prev, kPrev = g.succ[i-1], min(k, len(g.Layers[i]))
		}
		g.succ[i] = chooseLinks(beacon, i, len(g.Layers[i]), len(g.Layers[i+1]), k, prev, kPrev)
	}
	return g, nil
}

// Next returns the relays of layer+1 that relay slot j of layer links to.
func (g *Graph) Next(layer, j int) []sphinx.NodeID {
	if layer < 0 || layer+1 >= len(g.Layers) || j < 0 || j >= len(g.Layers[layer]) {
		return nil
	}
	next := g.Layers[layer+1]
	k := min(g.K, len(next))
	slots := g.succ[layer][j*k : (j+1)*k]
	ids := make([]sphinx.NodeID, len(slots))
	for t, s := range slots {
		ids[t] = next[s]
	}
	return ids
}

// Position returns the layer and slot of relay id.
func (g *Graph) Position(id sphinx.NodeID) (layer, slot int, ok bool) {
	p, ok := g.index[id]
	return p.layer, p.slot, ok
}

// ValidRoute reports whether route crosses the layers in order, one relay a
// layer, each hop a link of the graph.
func (g *Graph) ValidRoute(route []sphinx.NodeID) bool {
	if len(route) != len(g.Layers) {
		return false
	}
	for i, id := range route {
		p, ok := g.index[id]
		if !ok || p.layer != i {
			return false
		}
		if i > 0 && !slices.Contains(g.Next(i-1, g.index[route[i-1]].slot), id) {
			return false
		}
	}
	return true
}

// RandomRoute draws a route uniformly among the valid ones, with intn(n)
// returning a uniform integer in [0, n): every relay of a layer has the
// same out-degree, so each first hop begins the same number of valid
// routes and choosing each hop uniformly gives every valid route the same
// probability. (A relay's share of routes is not uniform: it follows its
// in-degree, which differs by at most one within a layer.)
func (g *Graph) RandomRoute(intn func(int) int) []sphinx.NodeID {
	route := make([]sphinx.NodeID, len(g.Layers))
	slot := intn(len(g.Layers[0]))
	route[0] = g.Layers[0][slot]
	for i := 1; i < len(g.Layers); i++ {
		next := g.Next(i-1, slot)
		route[i] = next[intn(len(next))]
		slot = g.index[route[i]].slot
	}
	return route
}
