package pki

import (
	"math/rand/v2"
	"testing"
)

// TestEachRelayLandsInEachLayerAThirdOfTheTime checks the strata rule with
// real ECVRF outputs: over many beacons, the contingency table of relay ×
// layer must be uniform. With a fixed seed the test is deterministic; the
// threshold is the 0.001 critical value of chi-square with
// (relays−1)(layers−1) = 22 degrees of freedom, since every beacon fills
// each layer with exactly 4 of the 12 relays.
func TestEachRelayLandsInEachLayerAThirdOfTheTime(t *testing.T) {
	const (
		relays  = 12
		beacons = 600
		crit    = 48.27
	)
	if testing.Short() {
		t.Skip("7,200 VRF proofs")
	}
	keys := keysOf("stat-relay", relays)
	rnd := rand.New(rand.NewPCG(2026, 5))
	counts := make(map[int]*[3]int)
	for r := range relays {
		counts[r] = &[3]int{}
	}
	index := make(map[[32]byte]int)
	for r, k := range keys {
		index[idOf(k)] = r
	}
	for range beacons {
		var beacon [32]byte
		for i := range beacon {
			beacon[i] = byte(rnd.Uint32())
		}
		ranked := make([]Ranked, relays)
		for r, k := range keys {
			pi, err := ProveVRF(k, beacon)
			if err != nil {
				t.Fatal(err)
			}
			out, ok := VerifyVRF(pubOf(k), beacon, pi.Proof)
			if !ok {
				t.Fatal("VRF does not verify")
			}
			ranked[r] = Ranked{ID: idOf(k), VRF: out}
		}
		g, err := NewGraph(ranked, 3, DefaultSuccessors, beacon)
		if err != nil {
			t.Fatal(err)
		}
		for layer, ids := range g.Layers {
			for _, id := range ids {
				counts[index[id]][layer]++
			}
		}
	}
	expected := float64(beacons) / 3
	var chi2 float64
	for r := range relays {
		for _, c := range counts[r] {
			chi2 += (float64(c) - expected) * (float64(c) - expected) / expected
		}
	}
	t.Logf("chi-square %.2f over %d beacons (df 22, 0.001 critical value %.2f)", chi2, beacons, crit)
	if chi2 > crit {
		t.Fatalf("layer assignment not uniform: chi-square %.2f > %.2f; counts %v", chi2, crit, counts)
	}
}

// TestChiSquareWouldCatchABias shows the test can fail: ranking by a
// biased key (the relay's index in the high byte) puts each relay in one
// layer always.
func TestChiSquareWouldCatchABias(t *testing.T) {
	const relays, beacons = 12, 60
	counts := make([][3]int, relays)
	for b := range beacons {
		ranked := make([]Ranked, relays)
		for r := range relays {
			ranked[r].ID[0] = byte(r)
			ranked[r].VRF[0] = byte(r)
			ranked[r].VRF[1] = byte(b)
		}
		g, err := NewGraph(ranked, 3, DefaultSuccessors, [32]byte{byte(b)})
		if err != nil {
			t.Fatal(err)
		}
		for layer, ids := range g.Layers {
			for _, id := range ids {
				counts[id[0]][layer]++
			}
		}
	}
	expected := float64(beacons) / 3
	var chi2 float64
	for _, c := range counts {
		for _, v := range c {
			chi2 += (float64(v) - expected) * (float64(v) - expected) / expected
		}
	}
	if chi2 < 48.27 {
		t.Fatalf("a fixed ranking passes the test (chi-square %.1f)", chi2)
	}
}
