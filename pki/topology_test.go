package pki

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/strata-mix/strata/sphinx"
)

func rankedRelays(rnd *rand.Rand, n int) []Ranked {
	rs := make([]Ranked, n)
	for i := range rs {
		for j := range rs[i].ID {
			rs[i].ID[j] = byte(rnd.Uint32())
		}
		for j := range rs[i].VRF {
			rs[i].VRF[j] = byte(rnd.Uint32())
		}
	}
	return rs
}

func TestGraphSortsByVRFIntoEqualStrata(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	relays := rankedRelays(rnd, 10)
	g, err := NewGraph(relays, 3, 8, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{len(g.Layers[0]), len(g.Layers[1]), len(g.Layers[2])}
	if !slices.Equal(sizes, []int{4, 3, 3}) {
		t.Fatalf("strata sizes %v, want [4 3 3]", sizes)
	}
	// The lowest VRF output opens layer 0, the highest closes layer 2.
	low, high := relays[0], relays[0]
	for _, r := range relays {
		if string(r.VRF[:]) < string(low.VRF[:]) {
			low = r
		}
		if string(r.VRF[:]) > string(high.VRF[:]) {
			high = r
		}
	}
	if g.Layers[0][0] != low.ID || g.Layers[2][2] != high.ID {
		t.Fatal("layers are not in VRF order")
	}
	// Input order does not matter.
	shuffled := slices.Clone(relays)
	rnd.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	g2, err := NewGraph(shuffled, 3, 8, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.Layers {
		if !slices.Equal(g.Layers[i], g2.Layers[i]) {
			t.Fatal("graph depends on input order")
		}
	}
}

func TestSmallNetworkIsFullMesh(t *testing.T) {
	g, err := NewGraph(rankedRelays(rand.New(rand.NewPCG(3, 4)), 9), 3, DefaultSuccessors, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		for j := range 3 {
			next := g.Next(i, j)
			slices.SortFunc(next, compareIDs)
			want := slices.Clone(g.Layers[i+1])
			slices.SortFunc(want, compareIDs)
			if !slices.Equal(next, want) {
				t.Fatalf("relay %d of layer %d links to %d of %d next relays", j, i, len(next), len(want))
			}
		}
	}
}

func compareIDs(a, b sphinx.NodeID) int {
	return slices.Compare(a[:], b[:])
}

func TestRestrictedRoutesHaveBalancedDegrees(t *testing.T) {
	for _, c := range []struct{ n, layers, k int }{{3000, 3, 8}, {100, 3, 8}, {31, 3, 4}, {1000, 4, 5}} {
		g, err := NewGraph(rankedRelays(rand.New(rand.NewPCG(uint64(c.n), 5)), c.n), c.layers, c.k, [32]byte{9})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < c.layers; i++ {
			n, m := len(g.Layers[i]), len(g.Layers[i+1])
			in := map[sphinx.NodeID]int{}
			for j := range n {
				next := g.Next(i, j)
				if len(next) != min(c.k, m) {
					t.Fatalf("%+v: out-degree %d", c, len(next))
				}
				for _, id := range next {
					in[id]++
				}
			}
			lo := min(c.k, m) * n / m
			for _, id := range g.Layers[i+1] {
				if d := in[id]; d < lo || d > lo+1 {
					t.Fatalf("%+v layer %d: in-degree %d, want %d or %d", c, i+1, d, lo, lo+1)
				}
			}
		}
	}
}

func TestRandomRouteIsUniformOverValidRoutes(t *testing.T) {
	g, err := NewGraph(rankedRelays(rand.New(rand.NewPCG(7, 8)), 15), 3, 2, [32]byte{3})
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(9, 10))
	const samples = 40000
	counts := map[[3]sphinx.NodeID]int{}
	for range samples {
		r := g.RandomRoute(rnd.IntN)
		if !g.ValidRoute(r) {
			t.Fatalf("drew invalid route %v", r)
		}
		counts[[3]sphinx.NodeID(r)]++
	}
	routes := 5 * 2 * 2
	if len(counts) != routes {
		t.Fatalf("drew %d distinct routes, want %d", len(counts), routes)
	}
	expected := float64(samples) / float64(routes)
	var chi2 float64
	for _, c := range counts {
		chi2 += (float64(c) - expected) * (float64(c) - expected) / expected
	}
	// Chi-square with 19 degrees of freedom: 43.8 is the 0.001 critical value.
	if chi2 > 43.8 {
		t.Fatalf("route distribution chi-square %.1f: not uniform", chi2)
	}
}

func TestValidRouteRejectsWrongRoutes(t *testing.T) {
	g, err := NewGraph(rankedRelays(rand.New(rand.NewPCG(11, 12)), 60), 3, 2, [32]byte{4})
	if err != nil {
		t.Fatal(err)
	}
	good := g.RandomRoute(rand.New(rand.NewPCG(1, 1)).IntN)
	notLinked := slices.Clone(good)
	for _, id := range g.Layers[1] {
		if !slices.Contains(g.Next(0, mustSlot(t, g, good[0])), id) {
			notLinked[1] = id
			break
		}
	}
	for name, r := range map[string][]sphinx.NodeID{
		"too short":   good[:2],
		"wrong order": {good[1], good[0], good[2]},
		"unknown":     {good[0], good[1], {0xff}},
		"not linked":  notLinked,
	} {
		if g.ValidRoute(r) {
			t.Errorf("%s route accepted", name)
		}
	}
}

func mustSlot(t *testing.T, g *Graph, id sphinx.NodeID) int {
	t.Helper()
	_, slot, ok := g.Position(id)
	if !ok {
		t.Fatal("relay not in graph")
	}
	return slot
}

func TestNewGraphRejectsImpossibleParameters(t *testing.T) {
	relays := rankedRelays(rand.New(rand.NewPCG(5, 6)), 6)
	dup := append(slices.Clone(relays), relays[0])
	for name, c := range map[string]struct {
		relays    []Ranked
		layers, k int
	}{
		"no layers":       {relays, 0, 8},
		"zero k":          {relays, 3, 0},
		"too few relays":  {relays[:2], 3, 8},
		"duplicate relay": {dup, 3, 8},
	} {
		if _, err := NewGraph(c.relays, c.layers, c.k, [32]byte{}); !errors.Is(err, ErrTopology) {
			t.Errorf("%s: %v, want ErrTopology", name, err)
		}
	}
}

func TestBeaconRotatesLinks(t *testing.T) {
	relays := rankedRelays(rand.New(rand.NewPCG(13, 14)), 300)
	a, _ := NewGraph(relays, 3, 8, [32]byte{1})
	b, _ := NewGraph(relays, 3, 8, [32]byte{2})
	if slices.Equal(a.Next(0, 0), b.Next(0, 0)) && slices.Equal(a.Next(1, 0), b.Next(1, 0)) {
		t.Fatal("links do not depend on the beacon")
	}
}

// BenchmarkNewGraph measures deriving an epoch's topology for 100,000 relays.
func BenchmarkNewGraph(b *testing.B) {
	relays := rankedRelays(rand.New(rand.NewPCG(1, 1)), 100_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewGraph(relays, 3, DefaultSuccessors, [32]byte{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRandomRoute measures a client's route choice.
func BenchmarkRandomRoute(b *testing.B) {
	g, err := NewGraph(rankedRelays(rand.New(rand.NewPCG(1, 1)), 10_000), 3, DefaultSuccessors, [32]byte{})
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(2, 2))
	b.ReportAllocs()
	for b.Loop() {
		g.RandomRoute(rnd.IntN)
	}
}
