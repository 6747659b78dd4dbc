package pki

import (
	"crypto/ed25519"
	"os"
	"testing"
)

// Adversarial review of the beacon and the strata (issue 16, P1 topology
// part and P7, against A8 and a Sybil operator).

// keepSeen has every validator attest each relay in the current epoch and
// each relay submit its VRF on the epoch's beacon: what honest relays and
// validators do every epoch.
func keepSeen(c *chain, relays []ed25519.PrivateKey) {
	c.t.Helper()
	var txs [][]byte
	for _, k := range relays {
		txs = append(txs, c.attestAll(idOf(k))...)
		txs = append(txs, c.vrfTx(k))
	}
	c.mustBlock(txs...)
}

// TestBeaconReviewLateRegistrantsCannotChooseTheirStratum (finding, not
// fixed; runs with STRATA_REVIEW_FINDINGS=1): docs/pki.md bounds a Sybil
// relay's choice to the better of two uniform keys, its VRF output and its
// withheld key, because its id "was fixed when the relay registered,
// before beacon(e) existed". Nothing enforces that order: beacon(e) is in
// the topology of e, frozen a quarter epoch before e opens, and a relay
// that registers after it — in the last quarter of e−1 or in e itself —
// is admitted, seen and keyed in e, and placed in the topology of e+1 by
// its VRF output on beacon(e). So the operator grinds identity keys
// offline against the known beacon (one VRF evaluation, ≈ 80 µs, per
// candidate), registers those whose outputs fall where it wants (here the
// first tenth of the key space: the first of 3 strata), and every one of
// them lands there. The rule the docs' bound needs — a relay is placed by
// keys on beacon(e) only if it registered before beacon(e) could be
// known (in epoch e−2 or earlier), else it waits — is in the freeze
// (pki/epoch.go), outside this review's files.
func TestBeaconReviewLateRegistrantsCannotChooseTheirStratum(t *testing.T) {
	if os.Getenv("STRATA_REVIEW_FINDINGS") == "" {
		t.Skip("open finding (issue 16 review): set STRATA_REVIEW_FINDINGS=1 to run")
	}
	const w = 5
	p := testParams()
	c := newChain(t, p, 1)
	c.mustBlock()
	honest := keysOf("review-beacon-honest", 15)
	c.join(honest, nil)
	for e := uint64(1); e <= 2; e++ {
		c.until(int64(e*p.EpochBlocks) + 1) // block start(0) + e·EpochBlocks opens epoch e
		if c.epoch().Epoch != e {
			t.Fatalf("epoch %d at height %d", c.epoch().Epoch, c.height)
		}
		keepSeen(c, honest)
	}
	// Epoch 2 is open; beacon(2) has been public since the freeze in epoch 1.
	beacon := c.epoch().Beacon
	var sybils []ed25519.PrivateKey
	tried := 0
	for i := 0; len(sybils) < w; i++ {
		k := detKey("review-beacon-grind", i)
		tried++
		v, err := ProveVRF(k, beacon)
		if err != nil {
			t.Fatal(err)
		}
		out, ok := VerifyVRF(pubOf(k), beacon, v.Proof)
		if !ok {
			t.Fatal("own VRF does not verify")
		}
		if out[0] < 0x1a { // the first tenth of the key space
			sybils = append(sybils, k)
		}
	}
	c.join(sybils, nil)
	c.until(c.epoch().FreezeHeight(p))
	top := c.topology(3)
	inFirst := 0
	for _, k := range sybils {
		r, ok := top.Relay(idOf(k))
		if !ok {
			t.Fatalf("Sybil relay %v not listed", idOf(k))
		}
		if r.Layer == 0 {
			inFirst++
		}
	}
	for _, k := range honest {
		if _, ok := top.Relay(idOf(k)); !ok {
			t.Fatalf("honest relay %v not listed", idOf(k))
		}
	}
	t.Logf("%d of %d Sybils registered after their beacon was public land in the stratum chosen (%d candidate keys ground)", inFirst, w, tried)
	// The docs' model: each lands in a chosen stratum with probability at
	// most 5/9, 2.8 of 5 expected.
	if inFirst > 4 {
		t.Fatalf("%d of %d Sybil relays registered after beacon(2) was public are in the stratum they chose; the documented bound is 5/9 each", inFirst, w)
	}
}

// TestBeaconReviewDecodeRefusesRepeatedNodes: DecodeTopology promises "no
// node appears twice". A document whose beacon, flags and strata are all
// consistent but which lists one relay twice, or one node both as a
// relay and as a mailbox, must be refused; the honest document decodes.
func TestBeaconReviewDecodeRefusesRepeatedNodes(t *testing.T) {
	p := testParams()
	var vrfBeacon [32]byte
	vrfBeacon[0] = 9
	var relays []Relay
	for i, k := range keysOf("review-decode", 6) {
		r := Relay{NodeInfo: NodeInfo{ID: idOf(k), IdentityKey: pubOf(k), Addrs: []string{"/ip4/1.2.3.4/tcp/1"}, MixKey: mixKeyOf(k, 1)}}
		r.VRF = simKey(vrfBeacon, r.ID)
		r.Withheld = i == 5
		relays = append(relays, r)
	}
	good, err := NewTopology(testChainID, 1, vrfBeacon, p, relays, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeTopology(good.Encode()); err != nil {
		t.Fatalf("honest document refused: %v", err)
	}
	// forge re-derives everything a decoder checks — beacon, withheld
	// keys, strata order — for the relay list given.
	forge := func(rs []Relay, mbs []NodeInfo) []byte {
		doc := &Topology{ChainID: testChainID, Epoch: 1, VRFBeacon: vrfBeacon, Params: p, Mailboxes: mbs}
		for i := range rs {
			if rs[i].Withheld {
				rs[i].VRF = WithheldKey(vrfBeacon, rs[i].ID)
			}
		}
		doc.Beacon = epochBeacon(1, vrfBeacon, rs)
		ranked := make([]Ranked, len(rs))
		for i, r := range rs {
			ranked[i] = Ranked{ID: r.ID, VRF: r.VRF}
		}
		g, err := NewGraph(ranked, int(p.Layers), int(p.Successors), doc.Beacon)
		if err != nil {
			return nil
		}
		used := make([]bool, len(rs))
		for l, ids := range g.Layers {
			for _, id := range ids {
				for i := range rs {
					if !used[i] && rs[i].ID == id {
						used[i] = true
						r := rs[i]
						r.Layer = l
						doc.Relays = append(doc.Relays, r)
						break
					}
				}
			}
		}
		return doc.Encode()
	}
	twice := append(append([]Relay{}, relays...), relays[0])
	if b := forge(twice, nil); b != nil {
		if _, err := DecodeTopology(b); err == nil {
			t.Error("a document listing one relay twice decodes")
		}
	}
	if b := forge(append([]Relay{}, relays...), []NodeInfo{relays[1].NodeInfo}); b != nil {
		if _, err := DecodeTopology(b); err == nil {
			t.Error("a document listing one node as a relay and as a mailbox decodes")
		}
	}
}
