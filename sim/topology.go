package sim

import (
	"fmt"
	"math/rand/v2"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
)

// network is the simulated relays: the PKI's graph for random VRF outputs,
// flattened into index tables so that the event loop neither allocates nor
// looks up maps. Relay r is index r everywhere.
type network struct {
	graph *pki.Graph
	// ids[r] is relay r's node id.
	ids []sphinx.NodeID
	// layer[r] is relay r's stratum.
	layer []int
	// strata[i] are the relays of stratum i in the graph's order.
	strata [][]int32
	// next[r] are the relays of the next stratum that r links to, as
	// pki.Graph.Next gives them; nil in the last stratum.
	next [][]int32
	// corrupt[r] reports whether relay r works for the adversary.
	corrupt []bool
}

// newNetwork draws relay ids and VRF outputs from rng, sorts them into
// strata with pki.NewGraph and marks a random Corrupt fraction of the relays.
func newNetwork(c Config, rng *rand.Rand) (*network, error) {
	ranked := make([]pki.Ranked, c.Relays)
	for i := range ranked {
		fill(rng, ranked[i].ID[:])
		fill(rng, ranked[i].VRF[:])
	}
	var beacon [32]byte
	fill(rng, beacon[:])
	g, err := pki.NewGraph(ranked, c.Layers, c.successors(), beacon)
	if err != nil {
		return nil, fmt.Errorf("sim: topology: %w", err)
	}
	n := &network{
		graph:   g,
		ids:     make([]sphinx.NodeID, 0, c.Relays),
		layer:   make([]int, 0, c.Relays),
		strata:  make([][]int32, len(g.Layers)),
		next:    make([][]int32, 0, c.Relays),
		corrupt: make([]bool, c.Relays),
	}
	index := make(map[sphinx.NodeID]int32, c.Relays)
	for i, stratum := range g.Layers {
		for _, id := range stratum {
			r := int32(len(n.ids))
			index[id] = r
			n.ids = append(n.ids, id)
			n.layer = append(n.layer, i)
			n.strata[i] = append(n.strata[i], r)
		}
	}
	for i, stratum := range g.Layers {
		for j := range stratum {
			var succ []int32
			for _, id := range g.Next(i, j) {
				succ = append(succ, index[id])
			}
			n.next = append(n.next, succ)
		}
	}
	bad := int(c.Corrupt*float64(c.Relays) + 0.5)
	for _, r := range rng.Perm(c.Relays)[:bad] {
		n.corrupt[r] = true
	}
	return n, nil
}

// fill writes random bytes from rng into b.
func fill(rng *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		w := rng.Uint64()
		for j := i; j < len(b) && j < i+8; j++ {
			b[j] = byte(w)
			w >>= 8
		}
	}
}

// last reports whether relay r is in the exit stratum.
func (n *network) last(r int32) bool { return n.next[r] == nil }
