package pki

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// blockWith is chain.block with the block's hash given.
func blockWith(c *chain, hash [32]byte, txs ...[]byte) []error {
	c.t.Helper()
	c.height++
	if err := c.m.BeginBlock(c.height, hash); err != nil {
		c.t.Fatal(err)
	}
	errs := make([]error, len(txs))
	for i, tx := range txs {
		_, errs[i] = c.m.ApplyTx(tx)
	}
	if err := c.m.EndBlock(c.height); err != nil {
		c.t.Fatal(err)
	}
	c.kv.apply()
	return errs
}

// joinWithholding is chain.join for relays only, where the relays whose
// index withhold reports true never submit their VRF.
func joinWithholding(c *chain, relays []ed25519.PrivateKey, withhold func(int) bool) {
	c.t.Helper()
	var txs [][]byte
	for _, k := range relays {
		txs = append(txs, c.intention(k, RoleRelay))
	}
	c.mustBlock(txs...)
	txs = nil
	for _, k := range relays {
		txs = append(txs, c.attestAll(idOf(k))...)
		txs = append(txs, c.keys(k, 0, int(c.m.params.KeysAhead)))
	}
	c.mustBlock(txs...)
	txs = nil
	for i, k := range relays {
		if !withhold(i) {
			txs = append(txs, c.vrfTx(k))
		}
	}
	c.mustBlock(txs...)
}

func otherHash(h int64) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "another proposer's block %d", h))
}

// TestBeaconDoesNotDependOnTheOpeningBlock drives two state machines with
// the same transactions and different block hashes for every block after
// the first (a proposer grinding its block): both open epochs 1 and 2
// with the same beacon, the one their frozen topology carries.
func TestBeaconDoesNotDependOnTheOpeningBlock(t *testing.T) {
	p := testParams()
	relays := keysOf("beacon-relay", 9)
	var beacons [2][3][32]byte
	for run, hash := range []func(int64) [32]byte{blockHash, otherHash} {
		c := newChain(t, p, 1)
		c.mustBlock()
		joinWithholding(c, relays, func(int) bool { return false })
		next := func(txs ...[]byte) {
			for i, err := range blockWith(c, hash(c.height+1), txs...) {
				if err != nil {
					t.Fatalf("run %d block %d tx %d: %v", run, c.height, i, err)
				}
			}
		}
		beacons[run][0] = c.epoch().Beacon
		for e := uint64(1); e <= 2; e++ {
			for c.height+1 < c.epoch().NextStart(p) {
				next()
			}
			next()
			ei := c.epoch()
			top := c.topology(e)
			if ei.Epoch != e || ei.Beacon != top.Beacon || ei.Beacon == hash(ei.Start) {
				t.Fatalf("run %d: epoch %d opened with beacon %x, its topology's is %x, its block's hash %x", run, ei.Epoch, ei.Beacon[:4], top.Beacon[:4], hash(ei.Start))
			}
			if len(top.Relays) != 9 || slices.ContainsFunc(top.Relays, func(r Relay) bool { return r.Withheld }) {
				t.Fatalf("run %d: epoch %d has %d relays, some withheld", run, e, len(top.Relays))
			}
			beacons[run][e] = ei.Beacon
			// The relays do their part in epoch e: VRF on its beacon,
			// seen by the validators.
			var txs [][]byte
			for _, k := range relays {
				txs = append(txs, c.vrfTx(k))
				txs = append(txs, c.attestAll(idOf(k))...)
			}
			next(txs...)
		}
	}
	if beacons[0] != beacons[1] {
		t.Fatalf("beacons differ with the block hashes: %x / %x", beacons[0], beacons[1])
	}
	if beacons[0][0] != blockHash(1) {
		t.Fatal("epoch 0's beacon is not the first block's hash")
	}
}

// TestBeaconChangesWhenAnyVRFOutputIsMissing: epoch 1's beacon differs
// from the all-submitted one whichever single relay withholds, and the
// withholder is in the topology, flagged.
func TestBeaconChangesWhenAnyVRFOutputIsMissing(t *testing.T) {
	p := testParams()
	relays := keysOf("beacon-relay", 9)
	beaconOf := func(withheld int) [32]byte {
		c := newChain(t, p, 1)
		c.mustBlock()
		joinWithholding(c, relays, func(i int) bool { return i == withheld })
		c.until(c.epoch().NextStart(p))
		top := c.topology(1)
		for i, k := range relays {
			r, ok := top.Relay(idOf(k))
			if !ok || r.Withheld != (i == withheld) {
				t.Fatalf("withholder %d: relay %d listed %v, withheld %v", withheld, i, ok, ok && r.Withheld)
			}
		}
		return c.epoch().Beacon
	}
	all := beaconOf(-1)
	seen := map[[32]byte]int{all: -1}
	for w := range relays {
		b := beaconOf(w)
		if prev, dup := seen[b]; dup {
			t.Fatalf("relay %d withholding gives the same beacon as %d withholding", w, prev)
		}
		seen[b] = w
	}
}

func TestNextBeaconIsOrderFreeAndCoversEveryOutput(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	outs := rankedRelays(rnd, 20)
	prev := [32]byte{7}
	b := NextBeacon(prev, 5, outs)
	shuffled := slices.Clone(outs)
	rnd.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if NextBeacon(prev, 5, shuffled) != b {
		t.Fatal("the beacon depends on the order of the outputs")
	}
	if NextBeacon([32]byte{8}, 5, outs) == b || NextBeacon(prev, 6, outs) == b {
		t.Fatal("the beacon ignores the previous beacon or the epoch")
	}
	for i := range outs {
		if NextBeacon(prev, 5, slices.Delete(slices.Clone(outs), i, i+1)) == b {
			t.Fatalf("output %d missing gives the same beacon", i)
		}
		changed := slices.Clone(outs)
		changed[i].VRF[63] ^= 1
		if NextBeacon(prev, 5, changed) == b {
			t.Fatalf("output %d changed gives the same beacon", i)
		}
	}
}

// TestLateFreezeComputesTheBeaconAtTheOpening: when epoch e opens without
// its topology (a state in which the freeze never ran), BeginBlock builds
// it and takes the beacon it carries, the same beacon the freeze would
// have given.
func TestLateFreezeComputesTheBeaconAtTheOpening(t *testing.T) {
	p := testParams()
	relays := keysOf("late-freeze-relay", 9)
	var beacons [2][32]byte
	for run := range beacons {
		c := newChain(t, p, 1)
		c.mustBlock()
		joinWithholding(c, relays, func(i int) bool { return i == 3 })
		c.until(c.epoch().NextStart(p) - 1)
		if run == 1 {
			c.m.st.kv.del(u64key(prefixTopo, be64(1)))
			c.kv.apply()
			if _, ok := c.m.st.topology(1); ok {
				t.Fatal("topology 1 still stored")
			}
		}
		c.mustBlock()
		top := c.topology(1)
		if ei := c.epoch(); ei.Epoch != 1 || ei.Beacon != top.Beacon {
			t.Fatalf("run %d: epoch %d beacon %x, its topology's %x", run, ei.Epoch, ei.Beacon[:4], top.Beacon[:4])
		}
		if r, ok := top.Relay(idOf(relays[3])); !ok || !r.Withheld {
			t.Fatalf("run %d: the withholder is not placed at its withheld key", run)
		}
		beacons[run] = top.Beacon
	}
	if beacons[0] != beacons[1] {
		t.Fatal("the late freeze gives another beacon than the freeze")
	}
}
