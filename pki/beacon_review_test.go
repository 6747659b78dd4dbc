package pki

import (
	"crypto/ed25519"
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

// TestBeaconReviewLateRegistrantsCannotChooseTheirStratum (from the
// review): beacon(e) is in the topology of e, frozen a quarter epoch
// before e opens, and a relay that registered after it could grind
// identity keys offline against the known beacon (one VRF evaluation,
// ≈ 80 µs, per candidate) and register only those whose outputs fall where
// it wants — it did: 5 of 5 landed in the chosen stratum. Now an intention
// after the freeze counts as registered in the next epoch, and the freeze
// places a relay by keys on beacon(t−1) only if Registered + 2 ≤ t: the
// ground relays are left out of the topology of 3 (placed on beacon(2),
// which they knew) and listed in that of 4, placed on beacon(3), computed
// after they registered.
func TestBeaconReviewLateRegistrantsCannotChooseTheirStratum(t *testing.T) {
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
	for _, k := range sybils {
		if _, ok := top.Relay(idOf(k)); ok {
			t.Fatalf("relay %v, registered in epoch 2 against the public beacon(2), is placed in the topology of 3", idOf(k))
		}
	}
	for _, k := range honest {
		if _, ok := top.Relay(idOf(k)); !ok {
			t.Fatalf("honest relay %v not listed", idOf(k))
		}
	}
	// In epoch 3 they are seen and submit VRFs on beacon(3), computed
	// after they registered: listed in the topology of 4, at places they
	// could not choose.
	c.until(int64(3*p.EpochBlocks) + 1)
	all := append(append([]ed25519.PrivateKey{}, honest...), sybils...)
	keepSeen(c, all)
	c.until(c.epoch().FreezeHeight(p))
	top = c.topology(4)
	inFirst := 0
	for _, k := range sybils {
		r, ok := top.Relay(idOf(k))
		if !ok {
			t.Fatalf("relay %v registered in epoch 2 missing from the topology of 4", idOf(k))
		}
		if r.Layer == 0 {
			inFirst++
		}
	}
	t.Logf("%d candidate keys ground against beacon(2); in the topology of 4 (beacon(3)) %d of %d are in the stratum they aimed at", tried, inFirst, w)
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
