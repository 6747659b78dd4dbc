package pki

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/strata-mix/strata/sphinx"
)

// TestWithheldVRFIsPlacedAtTheFallbackKey: a relay that sees the others'
// VRF outputs on chain and keeps its own is still in the next topology, at
// WithheldKey and flagged, and every honest relay is where it would be
// had the withholder submitted, or one stratum over at a boundary.
func TestWithheldVRFIsPlacedAtTheFallbackKey(t *testing.T) {
	p := testParams()
	relays := keysOf("withheld-relay", 15)
	const sybil = 0
	tops := map[bool]*Topology{}
	for _, withhold := range []bool{false, true} {
		c := newChain(t, p, 1)
		c.mustBlock()
		joinWithholding(c, relays, func(i int) bool { return withhold && i == sybil })
		c.until(c.epoch().FreezeHeight(p))
		tops[withhold] = c.topology(1)
	}
	honest, withheld := tops[false], tops[true]
	r, ok := withheld.Relay(idOf(relays[sybil]))
	if !ok || !r.Withheld || r.VRF != WithheldKey(withheld.VRFBeacon, r.ID) {
		t.Fatalf("withholder listed %v, flagged %v", ok, ok && r.Withheld)
	}
	if len(withheld.Relays) != 15 || len(honest.Relays) != 15 {
		t.Fatalf("%d and %d relays listed, want 15", len(honest.Relays), len(withheld.Relays))
	}
	moved := 0
	for _, k := range relays[1:] {
		a, _ := honest.Relay(idOf(k))
		b, _ := withheld.Relay(idOf(k))
		if a.Withheld || b.Withheld || a.VRF != b.VRF {
			t.Fatal("an honest relay's key changed")
		}
		if d := a.Layer - b.Layer; d < -1 || d > 1 {
			t.Fatalf("honest relay moved from layer %d to %d", a.Layer, b.Layer)
		} else if d != 0 {
			moved++
		}
	}
	if moved > 2 {
		t.Fatalf("%d honest relays changed stratum, at most one per boundary (2) can", moved)
	}
	t.Logf("withholding moved %d of 14 honest relays", moved)
}

// simKey stands in for a relay's VRF output on beacon: a uniform 64-byte
// string nobody but the relay can compute before it is revealed, which is
// all an honest ECVRF output is to the others.
func simKey(beacon [32]byte, id sphinx.NodeID) [VRFOutputSize]byte {
	return sha512.Sum512(append(append([]byte("sim vrf\x00"), beacon[:]...), id[:]...))
}

// TestWithholdingShiftsEachBoundaryByAtMostOnePerWithholder plays a Sybil
// operator with w of n relays, which sees every honest VRF output before
// deciding, over many random beacons: each of its relays may withhold
// (and go to its withheld key) or not. Compared with all of them
// submitting, no honest relay's key changes, honest relays keep their
// order, and at most w honest relays cross each stratum boundary. The
// test reports the fraction of honest relays that change stratum, and how
// often the operator lands a relay in the stratum it wants when it picks,
// per relay, the better of its two keys.
func TestWithholdingShiftsEachBoundaryByAtMostOnePerWithholder(t *testing.T) {
	const n, trials, layers = 90, 2000, 3
	rnd := rand.New(rand.NewPCG(16, 3))
	ids := make([]sphinx.NodeID, n)
	for i := range ids {
		for j := range ids[i] {
			ids[i][j] = byte(rnd.Uint32())
		}
	}
	layerOf := func(g *Graph) map[sphinx.NodeID]int {
		m := map[sphinx.NodeID]int{}
		for l, ls := range g.Layers {
			for _, id := range ls {
				m[id] = l
			}
		}
		return m
	}
	for _, w := range []int{1, 5, 15} {
		moved, crossMax := 0, 0
		want, landed := 0, 0
		for range trials {
			var beacon [32]byte
			for j := range beacon {
				beacon[j] = byte(rnd.Uint32())
			}
			all := make([]Ranked, n)
			for i, id := range ids {
				all[i] = Ranked{ID: id, VRF: simKey(beacon, id)}
			}
			// The operator's relays are the first w; it withholds each with
			// probability 1/2 (any choice is within the bound).
			mixed := slices.Clone(all)
			for i := range w {
				if rnd.IntN(2) == 0 {
					mixed[i].VRF = WithheldKey(beacon, ids[i])
				}
			}
			ga, err := NewGraph(all, layers, DefaultSuccessors, beacon)
			if err != nil {
				t.Fatal(err)
			}
			gb, err := NewGraph(mixed, layers, DefaultSuccessors, beacon)
			if err != nil {
				t.Fatal(err)
			}
			la, lb := layerOf(ga), layerOf(gb)
			for b := range layers - 1 {
				cross := 0
				for _, id := range ids[w:] {
					if (la[id] <= b) != (lb[id] <= b) {
						cross++
					}
				}
				crossMax = max(crossMax, cross)
				if cross > w {
					t.Fatalf("w = %d: %d honest relays crossed boundary %d", w, cross, b)
				}
			}
			for _, id := range ids[w:] {
				if la[id] != lb[id] {
					moved++
				}
			}
			if !slices.Equal(honestOrder(ga, ids[w:]), honestOrder(gb, ids[w:])) {
				t.Fatalf("w = %d: the honest relays' order changed", w)
			}
			// Best of two, aiming at layer 0: the operator knows both keys
			// of each of its relays before choosing.
			best := slices.Clone(all)
			for i := range w {
				fb := WithheldKey(beacon, ids[i])
				if bytes.Compare(fb[:], best[i].VRF[:]) < 0 {
					best[i].VRF = fb
				}
			}
			gc, _ := NewGraph(best, layers, DefaultSuccessors, beacon)
			lc := layerOf(gc)
			for i := range w {
				want++
				if lc[ids[i]] == 0 {
					landed++
				}
			}
		}
		t.Logf("w = %2d of %d: %.4f of honest relays change stratum (at most %d cross a boundary; bound %d); best-of-two lands %.3f of the operator's relays in its chosen stratum (1/3 without a choice, 5/9 the bound for small w)",
			w, n, float64(moved)/float64(trials*(n-w)), crossMax, w, float64(landed)/float64(want))
	}
}

// honestOrder lists the given relays in the order g places them.
func honestOrder(g *Graph, honest []sphinx.NodeID) []sphinx.NodeID {
	var out []sphinx.NodeID
	for _, l := range g.Layers {
		for _, id := range l {
			if slices.Contains(honest, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// TestDecodeTopologyRefusesForgedWithheldFlags: a document whose withheld
// relay carries another key than WithheldKey, whose flag sits on a relay
// with its VRF output, whose withheld relay lost its flag, or whose beacon
// does not follow from its VRF beacon and outputs is refused, though
// re-sorted to look consistent otherwise.
func TestDecodeTopologyRefusesForgedWithheldFlags(t *testing.T) {
	p := testParams()
	relays := keysOf("forge-relay", 9)
	c := newChain(t, p, 1)
	c.mustBlock()
	joinWithholding(c, relays, func(i int) bool { return i == 4 })
	c.until(c.epoch().FreezeHeight(p))
	top := c.topology(1)
	w := slices.IndexFunc(top.Relays, func(r Relay) bool { return r.Withheld })
	h := slices.IndexFunc(top.Relays, func(r Relay) bool { return !r.Withheld })
	if w < 0 || h < 0 {
		t.Fatal("test needs a withheld and an honest relay")
	}
	if _, err := DecodeTopology(top.Encode()); err != nil {
		t.Fatalf("the chain's own document: %v", err)
	}
	// forge rebuilds the document from edited relays, re-deriving strata,
	// links and beacon where the forger can.
	forge := func(edit func(rs []Relay), keepBeacon bool) []byte {
		rs := slices.Clone(top.Relays)
		edit(rs)
		f := &Topology{ChainID: top.ChainID, Epoch: top.Epoch, Beacon: top.Beacon, VRFBeacon: top.VRFBeacon, Params: top.Params, Mailboxes: top.Mailboxes}
		if !keepBeacon {
			f.Beacon = epochBeacon(f.Epoch, f.VRFBeacon, rs)
		}
		ranked := make([]Ranked, len(rs))
		for i, r := range rs {
			ranked[i] = Ranked{ID: r.ID, VRF: r.VRF}
		}
		g, err := NewGraph(ranked, int(p.Layers), int(p.Successors), f.Beacon)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[sphinx.NodeID]Relay{}
		for _, r := range rs {
			byID[r.ID] = r
		}
		for l, ids := range g.Layers {
			for _, id := range ids {
				r := byID[id]
				r.Layer = l
				f.Relays = append(f.Relays, r)
			}
		}
		return f.Encode()
	}
	other := top.VRFBeacon
	other[0] ^= 1
	for name, raw := range map[string][]byte{
		"withheld relay at another key": forge(func(rs []Relay) { rs[w].VRF = WithheldKey(other, rs[w].ID) }, false),
		"flag on a relay with its VRF":  forge(func(rs []Relay) { rs[h].Withheld = true }, false),
		"withheld relay without flag":   forge(func(rs []Relay) { rs[w].Withheld = false }, true),
		"beacon not derived":            forge(func(rs []Relay) { rs[h].VRF[0] ^= 1 }, true),
	} {
		if _, err := DecodeTopology(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// Epoch 0's beacon is its VRF beacon; a flag byte other than 0 or 1
	// is malformed.
	zero := c.topology(0)
	zero.Beacon[0] ^= 1
	if _, err := DecodeTopology(zero.Encode()); !errors.Is(err, ErrMalformed) {
		t.Errorf("epoch 0 with a beacon not its VRF beacon: %v", err)
	}
	raw := top.Encode()
	flag := len(raw) - 1
	for m := range top.Mailboxes {
		flag -= 32 + 32 + 1
		for _, a := range top.Mailboxes[m].Addrs {
			flag -= 2 + len(a)
		}
	}
	flag -= 4 // mailbox count: the byte before is the last relay's flag
	if raw[flag] > 1 {
		t.Fatalf("byte %d is %d, not a flag", flag, raw[flag])
	}
	raw[flag] = 2
	if _, err := DecodeTopology(raw); !errors.Is(err, ErrMalformed) {
		t.Errorf("flag byte 2: %v", err)
	}
}

// TestLateVRFIsRefused: once the next epoch's topology has frozen, a VRF
// could change nothing, so the chain refuses it (CodeLateVRF) and the
// frozen topology and the next beacon stay as they were; in the next epoch
// the relay submits on the new beacon as usual.
func TestLateVRFIsRefused(t *testing.T) {
	p := testParams()
	relays := keysOf("late-relay", 9)
	c := newChain(t, p, 1)
	c.mustBlock()
	joinWithholding(c, relays, func(i int) bool { return i == 0 })
	c.until(c.epoch().FreezeHeight(p))
	before, _ := c.m.st.topology(1)
	if errs := c.block(c.vrfTx(relays[0])); CodeOf(errs[0]) != CodeLateVRF {
		t.Fatalf("VRF after the freeze: %v, want %v", errs[0], CodeLateVRF)
	}
	if after, _ := c.m.st.topology(1); !bytes.Equal(before, after) {
		t.Fatal("the frozen topology changed")
	}
	top1 := c.topology(1)
	c.until(c.epoch().NextStart(p))
	if c.epoch().Beacon != top1.Beacon {
		t.Fatal("epoch 1's beacon is not the frozen one")
	}
	if r, _ := top1.Relay(idOf(relays[0])); !r.Withheld {
		t.Fatal("the late relay is not at its withheld key")
	}
	if errs := c.block(c.vrfTx(relays[0])); errs[0] != nil {
		t.Fatalf("VRF on epoch 1's beacon: %v", errs[0])
	}
}
