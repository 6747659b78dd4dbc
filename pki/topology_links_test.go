package pki

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestLinksAreDistinctAndBalanced checks the link rule on layer sizes that
// divide and do not divide each other, k below, at and above the next
// layer's size: every slot gets exactly min(k, m) distinct successors and
// the next layer's in-degrees differ by at most one.
func TestLinksAreDistinctAndBalanced(t *testing.T) {
	rnd := rand.New(rand.NewPCG(21, 22))
	cases := []struct{ n, m, k int }{{30, 30, 8}, {34, 33, 8}, {33, 34, 8}, {7, 3, 8}, {5, 5, 5}, {10, 9, 9}, {1, 40, 8}, {40, 1, 3}, {100, 7, 6}, {3, 100, 99}}
	for range 200 {
		cases = append(cases, struct{ n, m, k int }{1 + rnd.IntN(60), 1 + rnd.IntN(60), 1 + rnd.IntN(12)})
	}
	for _, c := range cases {
		var beacon [32]byte
		beacon[0] = byte(rnd.Uint32())
		out := links(beacon, rnd.IntN(3), rnd.IntN(3), c.n, c.m, c.k)
		k := min(c.k, c.m)
		if len(out) != c.n*k {
			t.Fatalf("%+v: %d links, want %d", c, len(out), c.n*k)
		}
		in := make([]int, c.m)
		for j := range c.n {
			w := slices.Clone(out[j*k : (j+1)*k])
			slices.Sort(w)
			if len(slices.Compact(w)) != k {
				t.Fatalf("%+v: slot %d links to %v, not %d distinct", c, j, out[j*k:(j+1)*k], k)
			}
			for _, s := range w {
				if s < 0 || int(s) >= c.m {
					t.Fatalf("%+v: successor %d out of range", c, s)
				}
				in[s]++
			}
		}
		if lo, hi := slices.Min(in), slices.Max(in); hi-lo > 1 || lo != c.n*k/c.m {
			t.Fatalf("%+v: in-degrees from %d to %d, want %d or %d", c, lo, hi, c.n*k/c.m, c.n*k/c.m+1)
		}
	}
}

// ringReach is what the previous rule (k consecutive slots from ⌊j·m/n⌋,
// "strata-topology-v1") reached from an L1 slot of a 3-layer network with
// n relays a layer and offsets 0: 2k − 1 slots. It is here only for the
// comparison logged below.
func ringReach(n, k int) int {
	seen := map[int]bool{}
	for a := range k {
		for b := range k {
			seen[(a+b)%n] = true
		}
	}
	return len(seen)
}

// TestRoutesReachMostOfTheLastLayer is the mixing property issue 16 asks
// for: with 30 relays a stratum and k = 8, every L1 relay reaches at least
// 90 % of L3 through L2, on every one of many beacons.
func TestRoutesReachMostOfTheLastLayer(t *testing.T) {
	relays := rankedRelays(rand.New(rand.NewPCG(23, 24)), 90)
	worst, sum, count := 30, 0, 0
	for b := range 200 {
		g, err := NewGraph(relays, 3, 8, [32]byte{byte(b), 0x5a})
		if err != nil {
			t.Fatal(err)
		}
		for j := range g.Layers[0] {
			reach := map[int]bool{}
			for _, mid := range g.Next(0, j) {
				for _, id := range g.Next(1, mustSlot(t, g, mid)) {
					reach[mustSlot(t, g, id)] = true
				}
			}
			worst = min(worst, len(reach))
			sum += len(reach)
			count++
		}
	}
	t.Logf("L3 reachable from one L1 relay (30 a stratum, k = 8, 200 beacons): min %d, mean %.1f of 30; ring lattice %d",
		worst, float64(sum)/float64(count), ringReach(30, 8))
	if worst < 27 {
		t.Fatalf("an L1 relay reaches only %d of 30 L3 relays, want at least 27", worst)
	}
}

// TestAdjacentRelaysShareFewSuccessors checks that neighbouring slots (and
// any two relays) of a layer share few successors: with 30 a stratum and
// k = 8 the ring lattice made neighbours share 7 of 8.
func TestAdjacentRelaysShareFewSuccessors(t *testing.T) {
	relays := rankedRelays(rand.New(rand.NewPCG(25, 26)), 90)
	var adjacent, adjacentPairs, any, anyPairs int
	for b := range 50 {
		g, err := NewGraph(relays, 3, 8, [32]byte{byte(b), 0xa5})
		if err != nil {
			t.Fatal(err)
		}
		for layer := range 2 {
			for j := range g.Layers[layer] {
				for j2 := j + 1; j2 < len(g.Layers[layer]); j2++ {
					shared := 0
					for _, id := range g.Next(layer, j) {
						if slices.Contains(g.Next(layer, j2), id) {
							shared++
						}
					}
					any += shared
					anyPairs++
					if j2 == j+1 {
						adjacent += shared
						adjacentPairs++
					}
				}
			}
		}
	}
	meanAdjacent, meanAny := float64(adjacent)/float64(adjacentPairs), float64(any)/float64(anyPairs)
	t.Logf("successors shared (30 a stratum, k = 8): adjacent slots %.2f, any two relays %.2f of 8 (independent random sets: %.2f)",
		meanAdjacent, meanAny, 8.0*8/30)
	if meanAdjacent > 3 || meanAny > 3 {
		t.Fatalf("relays share %.2f (adjacent) and %.2f (any) of 8 successors, want few", meanAdjacent, meanAny)
	}
}

// TestLinksAreDeterministic checks that every verifier derives the same
// links from the same beacon, and that another beacon or another layer
// index gives other links.
func TestLinksAreDeterministic(t *testing.T) {
	relays := rankedRelays(rand.New(rand.NewPCG(27, 28)), 90)
	a, _ := NewGraph(relays, 3, 8, [32]byte{7})
	b, _ := NewGraph(slices.Clone(relays), 3, 8, [32]byte{7})
	c, _ := NewGraph(relays, 3, 8, [32]byte{8})
	differ := 0
	for layer := range 2 {
		for j := range a.Layers[layer] {
			if !slices.Equal(a.Next(layer, j), b.Next(layer, j)) {
				t.Fatalf("same beacon, different links at layer %d slot %d", layer, j)
			}
			if !slices.Equal(a.Next(layer, j), c.Next(layer, j)) {
				differ++
			}
		}
	}
	if differ < 50 {
		t.Fatalf("another beacon changes only %d of 60 relays' links", differ)
	}
	if slices.Equal(links([32]byte{7}, 0, 0, 30, 30, 8), links([32]byte{7}, 1, 0, 30, 30, 8)) {
		t.Fatal("layers 0 and 1 draw the same links")
	}
}

// TestLinkStreamIsPinned pins the stream, the draw and the repair to values
// computed by an independent implementation of docs/pki.md (in Python), so
// an outside implementation can check itself.
func TestLinkStreamIsPinned(t *testing.T) {
	if got, want := links([32]byte{}, 0, 0, 4, 5, 2), []int32{0, 3, 2, 1, 4, 0, 3, 1}; !slices.Equal(got, want) {
		t.Fatalf("links(zero beacon, layer 0, n 4, m 5, k 2) = %v, want %v", got, want)
	}
	want := []int32{23, 5, 16, 4, 18, 26, 31, 30, 17, 11, 15, 27, 14, 29, 13, 7, 28, 24, 20, 6, 3, 8, 22, 21, 32, 1, 10, 9, 2, 12, 19, 0, 25, 16, 31, 29, 14, 15, 20, 18}
	if got := links([32]byte{7}, 1, 2, 34, 33, 8)[:40]; !slices.Equal(got, want) {
		t.Fatalf("links(beacon 07…, layer 1, attempt 2, n 34, m 33, k 8)[:40] = %v, want %v", got, want)
	}
}

// TestChosenAttemptIsPinned pins the attempt rule to the same independent
// implementation: with 30 relays a stratum and k = 8, beacon 03… needs 18
// attempts at layer 1's links before every L1 relay reaches 27 of L3.
func TestChosenAttemptIsPinned(t *testing.T) {
	for _, c := range []struct {
		beacon byte
		want   []int32
	}{
		{0, []int32{8, 5, 21, 29, 25, 3, 7, 27, 13, 18, 16, 6, 20, 0, 11, 12}},
		{3, []int32{20, 10, 4, 8, 12, 29, 3, 23, 17, 25, 2, 16, 22, 26, 19, 28}},
		{4, []int32{3, 22, 0, 7, 25, 5, 8, 10, 12, 6, 13, 9, 24, 17, 18, 15}},
	} {
		beacon := [32]byte{c.beacon}
		l0 := chooseLinks(beacon, 0, 30, 30, 8, nil, 0)
		if got := chooseLinks(beacon, 1, 30, 30, 8, l0, 8)[:16]; !slices.Equal(got, c.want) {
			t.Errorf("beacon %02x…: layer 1 links start %v, want %v", c.beacon, got, c.want)
		}
	}
}
