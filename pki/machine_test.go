package pki

import (
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	voied25519 "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519/extra/ecvrf"

	"github.com/strata-mix/strata/sphinx"
)

func TestAdmissionNeedsMoreThanTwoThirdsOfThePower(t *testing.T) {
	c := newChain(t, testParams(), 4)
	relay := detKey("relay", 0)
	id := idOf(relay)
	c.mustBlock()
	c.mustBlock(c.intention(relay, RoleRelay))
	if n := c.node(id); n == nil || n.Status != StatusPending {
		t.Fatalf("after intention: %+v, want pending", n)
	}
	att := c.attestAll(id)
	c.mustBlock(att[0], att[1])
	if n := c.node(id); n.Status != StatusPending {
		t.Fatalf("admitted with half the power")
	}
	c.mustBlock(att[2])
	n := c.node(id)
	if n.Status != StatusAdmitted || n.Admitted != 0 || n.LastSeen != 0 {
		t.Fatalf("after 3 of 4 attestations: %+v", n)
	}
	if errs := c.block(att[3]); errs[0] != nil {
		t.Fatalf("late attestation refused: %v", errs[0])
	}
	if errs := c.block(att[3]); CodeOf(errs[0]) != CodeReplayed {
		t.Fatalf("replayed attestation: %v", errs[0])
	}
}

func TestGenesisEpochAssignsStrataAtOnce(t *testing.T) {
	c := newChain(t, testParams(), 1)
	c.mustBlock()
	relays := keysOf("relay", 9)
	c.join(relays, keysOf("mailbox", 2))
	if c.epoch().Epoch != 0 {
		t.Fatalf("test assumes epoch 0, chain is in %d", c.epoch().Epoch)
	}
	top := c.topology(0)
	if len(top.Relays) != 9 || len(top.Mailboxes) != 2 {
		t.Fatalf("epoch 0 topology has %d relays, %d mailboxes; want 9, 2", len(top.Relays), len(top.Mailboxes))
	}
	if top.Beacon != blockHash(1) {
		t.Fatal("epoch 0 strata not drawn on the genesis beacon (hash of block 1)")
	}
	assertStrata(t, top, relays, 0)
}

// assertStrata checks that top has relays in equal strata, with the mix
// keys of epoch, and k-successor links.
func assertStrata(t *testing.T, top *Topology, relays []ed25519.PrivateKey, epoch uint64) {
	t.Helper()
	g := top.Graph()
	if g == nil || len(g.Layers) != 3 {
		t.Fatal("no 3-layer graph")
	}
	for i, l := range g.Layers {
		if len(l) != len(relays)/3 {
			t.Fatalf("layer %d has %d relays", i, len(l))
		}
	}
	for _, k := range relays {
		r, ok := top.Relay(idOf(k))
		if !ok {
			t.Fatalf("relay %v missing", idOf(k))
		}
		if r.MixKey != mixKeyOf(k, epoch) {
			t.Fatalf("relay %v has the wrong mix key", r.ID)
		}
		want := min(int(top.Params.Successors), len(relays)/3)
		if r.Layer < 2 && len(r.Next) != want {
			t.Fatalf("relay in layer %d has %d successors, want %d", r.Layer, len(r.Next), want)
		}
		for _, n := range r.Next {
			if nr, _ := top.Relay(n); nr.Layer != r.Layer+1 {
				t.Fatal("link skips a layer")
			}
		}
	}
}

// TestEpochChangeTakesTheFrozenBeacon: epoch 1's beacon is the one its
// topology froze with (from epoch 0's beacon and the VRF outputs on it),
// not the opening block's hash; relays without a VRF on the beacon are
// placed at their withheld keys.
func TestEpochChangeTakesTheFrozenBeacon(t *testing.T) {
	p := testParams()
	c := newChain(t, p, 1)
	c.mustBlock()
	relays := keysOf("relay", 9)
	c.join(relays, nil)
	ei := c.epoch()
	freeze := ei.FreezeHeight(p)
	c.until(freeze - 1)
	if _, ok := c.m.st.topology(1); ok {
		t.Fatal("epoch 1 topology exists before the freeze height")
	}
	c.until(freeze)
	next := c.topology(1)
	assertStrata(t, next, relays, 1)
	var outs []Ranked
	for _, r := range next.Relays {
		outs = append(outs, Ranked{ID: r.ID, VRF: r.VRF})
	}
	if next.VRFBeacon != ei.Beacon || next.Beacon != NextBeacon(ei.Beacon, 1, outs) {
		t.Fatal("epoch 1 strata not drawn on epoch 0's beacon, or its beacon not derived from it")
	}
	// On epoch 0's beacon, signed for epoch 0: a second hedged proof of
	// the output applied in epoch 0, so not a replay of its bytes.
	oldVRF := c.vrfTx(relays[0])

	c.until(ei.NextStart(p))
	ei1 := c.epoch()
	if ei1.Epoch != 1 || ei1.Start != ei.NextStart(p) || ei1.Beacon != next.Beacon || ei1.Beacon == blockHash(ei1.Start) {
		t.Fatalf("epoch 1 opened as %+v", ei1)
	}
	if errs := c.block(oldVRF); CodeOf(errs[0]) != CodeStaleEpoch {
		t.Fatalf("epoch 0's VRF again in epoch 1: %v, want stale epoch", errs[0])
	}
	onNew, _ := ProveVRF(relays[0], ei1.Beacon)
	if errs := c.block(c.sign(relays[0], 0, onNew)); CodeOf(errs[0]) != CodeStaleEpoch {
		t.Fatalf("VRF signed for epoch 0 in epoch 1: %v, want stale epoch", errs[0])
	}
	onOld, _ := ProveVRF(relays[0], ei.Beacon)
	if errs := c.block(c.sign(relays[0], 1, onOld)); CodeOf(errs[0]) != CodeWrongBeacon {
		t.Fatalf("VRF on the old beacon: %v, want wrong beacon", errs[0])
	}

	// Epoch 2's strata come from VRFs on epoch 1's beacon: relays that
	// did not resubmit are placed at their withheld keys, and flagged.
	var txs [][]byte
	for _, k := range relays[:6] {
		txs = append(txs, c.vrfTx(k), c.keys(k, 5, 1))
	}
	for _, k := range relays {
		txs = append(txs, c.attestAll(idOf(k))...)
	}
	c.mustBlock(txs...)
	c.until(ei1.FreezeHeight(p))
	top2 := c.topology(2)
	assertStrata(t, top2, relays, 2)
	for i, k := range relays {
		r, _ := top2.Relay(idOf(k))
		if r.Withheld != (i >= 6) || r.Withheld && r.VRF != WithheldKey(ei1.Beacon, r.ID) {
			t.Fatalf("relay %d: withheld %v, key %x", i, r.Withheld, r.VRF[:4])
		}
	}
	if top2.VRFBeacon != ei1.Beacon || top2.Beacon == ei1.Beacon {
		t.Fatal("epoch 2 strata not drawn on epoch 1's beacon")
	}
}

func TestStrataFollowTheVRFOrder(t *testing.T) {
	c := newChain(t, testParams(), 1)
	c.mustBlock()
	relays := keysOf("relay", 12)
	c.join(relays, nil)
	top := c.topology(0)
	beacon := c.epoch().Beacon
	var ranked []Ranked
	for _, k := range relays {
		v, _ := ProveVRF(k, beacon)
		out, ok := VerifyVRF(pubOf(k), beacon, v.Proof)
		if !ok {
			t.Fatal("own VRF does not verify")
		}
		ranked = append(ranked, Ranked{ID: idOf(k), VRF: out})
	}
	g, err := NewGraph(ranked, 3, DefaultSuccessors, beacon)
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.Layers {
		if !slices.Equal(g.Layers[i], top.Graph().Layers[i]) {
			t.Fatalf("layer %d differs from NewGraph on the relays' own VRF outputs", i)
		}
	}
}

func TestMixKeysArePublishedAheadAndExpire(t *testing.T) {
	p := testParams()
	c := newChain(t, p, 1)
	c.mustBlock()
	relay := detKey("relay", 0)
	c.join([]ed25519.PrivateKey{relay}, nil)
	id := idOf(relay)
	for e := range uint64(4) {
		if _, ok := c.m.st.mixKey(id, e); !ok {
			t.Fatalf("no key for epoch %d", e)
		}
	}
	conflict := &MixKeys{First: 2, Keys: []sphinx.PublicKey{mixKeyOf(detKey("other", 0), 2)}}
	same := &MixKeys{First: 2, Keys: []sphinx.PublicKey{mixKeyOf(relay, 2)}}
	tooFar := &MixKeys{First: 5, Keys: []sphinx.PublicKey{mixKeyOf(relay, 5)}}
	zero := &MixKeys{First: 4, Keys: []sphinx.PublicKey{{}}}
	errs := c.block(c.sign(relay, 0, conflict), c.sign(relay, 0, same), c.sign(relay, 0, tooFar), c.sign(relay, 0, zero))
	for i, want := range []Code{CodeKeyConflict, CodeOK, CodeKeyEpoch, CodeBadKey} {
		if CodeOf(errs[i]) != want {
			t.Errorf("case %d: %v, want %v", i, errs[i], want)
		}
	}
	// Keep the relay seen, so that only the keys expire.
	for range 3 {
		c.until(c.epoch().NextStart(p))
		c.mustBlock(c.attestAll(id)...)
	}
	if c.epoch().Epoch != 3 {
		t.Fatalf("in epoch %d, want 3", c.epoch().Epoch)
	}
	for e, want := range []bool{false, false, true, true} {
		if _, ok := c.m.st.mixKey(id, uint64(e)); ok != want {
			t.Errorf("epoch 3: key of epoch %d present = %v, want %v", e, ok, want)
		}
	}
	if errs := c.block(c.sign(relay, 3, &MixKeys{First: 3, Keys: []sphinx.PublicKey{{7}}})); CodeOf(errs[0]) != CodeKeyEpoch {
		t.Fatalf("key for the current epoch after epoch 0: %v", errs[0])
	}
	if _, ok := c.m.st.topology(2); ok {
		t.Fatal("topology of epoch 2 kept in epoch 3")
	}
}

func TestSilentNodesAreDroppedAfterDropAfterEpochs(t *testing.T) {
	p := testParams()
	p.DropAfter = 2
	p.PendingEpochs = 1
	c := newChain(t, p, 1)
	c.mustBlock()
	live, silent := detKey("relay", 0), detKey("relay", 1)
	c.join([]ed25519.PrivateKey{live, silent}, nil)
	c.mustBlock(c.intention(detKey("never", 0), RoleRelay))
	for e := uint64(1); e <= 3; e++ {
		c.until(c.epoch().NextStart(p))
		if e == 1 && c.node(idOf(detKey("never", 0))) != nil {
			t.Fatal("intention unattested for PendingEpochs kept")
		}
		present := c.node(idOf(silent)) != nil
		if want := e <= 2; present != want {
			t.Fatalf("epoch %d: silent relay present = %v, want %v", e, present, want)
		}
		c.mustBlock(c.attestAll(idOf(live))...)
	}
	if n := c.node(idOf(live)); n == nil || n.LastSeen != 3 {
		t.Fatalf("live relay: %+v", n)
	}
	if _, ok := c.m.st.mixKey(idOf(silent), 3); ok {
		t.Fatal("dropped relay's keys kept")
	}
}

func TestLeaveRemovesTheNode(t *testing.T) {
	c := newChain(t, testParams(), 1)
	c.mustBlock()
	relays := keysOf("relay", 4)
	c.join(relays, nil)
	if n := len(c.topology(0).Relays); n != 4 {
		t.Fatalf("%d relays before leave", n)
	}
	c.mustBlock(c.sign(relays[0], 0, &Leave{}))
	if c.node(idOf(relays[0])) != nil {
		t.Fatal("node still registered")
	}
	if n := len(c.topology(0).Relays); n != 3 {
		t.Fatalf("epoch 0 live topology has %d relays after a leave, want 3", n)
	}
	if errs := c.block(c.sign(relays[0], 0, &Leave{})); CodeOf(errs[0]) != CodeReplayed {
		t.Fatalf("second leave: %v", errs[0])
	}
	// A third party cannot replay the old intention to bring it back.
	again := c.intention(relays[0], RoleRelay)
	if errs := c.block(again); CodeOf(errs[0]) != CodeReplayed {
		t.Fatalf("replayed intention after leave: %v", errs[0])
	}
}

func TestEveryRejectionHasItsOwnCode(t *testing.T) {
	p := testParams()
	p.PowBits = 12
	c := newChain(t, p, 1)
	relay, mailbox, stranger := detKey("relay", 0), detKey("mailbox", 0), detKey("stranger", 0)
	// Before the first block there is no beacon.
	v0, _ := ProveVRF(relay, [32]byte{})
	if _, err := c.m.ApplyTx(c.sign(relay, 0, v0)); CodeOf(err) != CodeNoBeacon {
		t.Fatalf("VRF before genesis: %v, want no beacon", err)
	}
	c.mustBlock()
	c.join([]ed25519.PrivateKey{relay}, []ed25519.PrivateKey{mailbox})
	pending, noVRF := detKey("pending", 0), detKey("novrf", 0)
	c.mustBlock(c.intention(pending, RoleRelay), c.intention(noVRF, RoleRelay))
	c.mustBlock(c.attestAll(idOf(noVRF))...)
	replayed := c.keys(relay, 0, 1)
	c.mustBlock(replayed)
	ei := c.epoch()

	badSig := c.sign(stranger, 0, &Leave{})
	badSig[len(badSig)-1] ^= 1
	otherChain, _ := SignTx("other-chain", 0, stranger, &Leave{})
	weak := weakIntention(t, c, stranger)
	vrfPending, _ := ProveVRF(pending, ei.Beacon)
	vrfMailbox, _ := ProveVRF(mailbox, ei.Beacon)
	vrfStranger, _ := ProveVRF(stranger, ei.Beacon)
	vrfWrong, _ := ProveVRF(relay, [32]byte{9})
	badAddr := &Intention{Role: RoleRelay, Addrs: []string{"/ip4/127.0.0.1/tcp/1/p2p/" + peerIDOf(t, stranger)}}
	badRole := &Intention{Role: 9, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}
	cases := []struct {
		name string
		tx   []byte
		want Code
	}{
		{"garbage", []byte("not a transaction"), CodeMalformed},
		{"flipped signature", badSig, CodeBadSignature},
		{"signed for another chain", otherChain, CodeBadSignature},
		{"replay", replayed, CodeReplayed},
		{"future epoch", c.sign(relay, ei.Epoch+1, &Leave{}), CodeFutureEpoch},
		{"weak work", weak, CodeInsufficientWork},
		{"second intention", powSigned(t, c, relay, &Intention{Role: RoleRelay, Addrs: []string{"/ip4/127.0.0.1/tcp/2"}}), CodeAlreadyRegistered},
		{"leave of a stranger", c.sign(stranger, 0, &Leave{}), CodeUnknownNode},
		{"attestation by a relay", c.sign(relay, 0, &Attestation{Subject: idOf(relay)}), CodeNotValidator},
		{"vrf of a pending relay", c.sign(pending, 0, vrfPending), CodeNotAdmitted},
		{"vrf of a mailbox", c.sign(mailbox, 0, vrfMailbox), CodeWrongRole},
		{"vrf on another beacon", c.sign(relay, 0, vrfWrong), CodeWrongBeacon},
		{"vrf proof of another key", c.sign(noVRF, 0, vrfStranger), CodeBadVRF},
		{"second vrf", c.sign(relay, 0, randomizedVRF(t, relay, ei.Beacon)), CodeDuplicateVRF},
		{"key too far ahead", c.sign(relay, 0, &MixKeys{First: 9, Keys: []sphinx.PublicKey{mixKeyOf(relay, 9)}}), CodeKeyEpoch},
		{"other key for an epoch", c.sign(relay, 0, &MixKeys{First: 1, Keys: []sphinx.PublicKey{mixKeyOf(stranger, 1)}}), CodeKeyConflict},
		{"zero key", c.sign(relay, 0, &MixKeys{First: 4, Keys: []sphinx.PublicKey{{}}}), CodeBadKey},
		{"small-order key", c.sign(relay, 0, &MixKeys{First: 4, Keys: []sphinx.PublicKey{{1}}}), CodeBadKey},
		{"address naming a peer", powSigned(t, c, stranger, badAddr), CodeBadAddress},
		{"unknown role", powSigned(t, c, stranger, badRole), CodeWrongRole},
		{"same attestation again", c.sign(c.vals[0], 0, &Attestation{Subject: idOf(relay)}), CodeReplayed},
	}
	// CodePendingFull and CodeLateVRF need an epoch filled or frozen:
	// TestAdmissionPriceClimbsAndTheEpochFills and TestLateVRFIsRefused
	// produce them. CodeInternal is the application failing.
	seen := map[Code]bool{CodeNoBeacon: true, CodePendingFull: true, CodeLateVRF: true, CodeInternal: true}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.m.ApplyTx(tc.tx)
			if CodeOf(err) != tc.want {
				t.Fatalf("%v, want code %v", err, tc.want)
			}
			if !errors.Is(err, ErrTx) {
				t.Fatalf("%v does not wrap ErrTx", err)
			}
			seen[tc.want] = true
		})
	}
	// A stale epoch needs two epochs to pass.
	stale := c.sign(relay, 0, &Leave{})
	c.until(c.epoch().NextStart(p))
	c.until(c.epoch().NextStart(p))
	if _, err := c.m.ApplyTx(stale); CodeOf(err) != CodeStaleEpoch {
		t.Fatalf("stale: %v", err)
	}
	seen[CodeStaleEpoch] = true
	for code := CodeMalformed; code <= CodeLateVRF; code++ {
		if !seen[code] {
			t.Errorf("no test produces %v", code)
		}
	}
}

// randomizedVRF is a second, different proof of the same VRF output.
func randomizedVRF(t *testing.T, key ed25519.PrivateKey, beacon [32]byte) *VRFSubmission {
	pi, err := ecvrf.ProveWithAddedRandomness(nil, voied25519.PrivateKey(key), vrfAlpha(beacon))
	if err != nil {
		t.Fatal(err)
	}
	return &VRFSubmission{Beacon: beacon, Proof: [VRFProofSize]byte(pi)}
}

func peerIDOf(t *testing.T, key ed25519.PrivateKey) string {
	pk, err := crypto.UnmarshalEd25519PublicKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// stateDigest hashes the whole committed state.
func stateDigest(s *kv) [32]byte {
	all := newKV(map[string][]byte{})
	for k, v := range s.base {
		all.set(k, v)
	}
	return all.digest()
}

// weakIntention returns an intention whose nonce misses the proof of work.
func weakIntention(t *testing.T, c *chain, key ed25519.PrivateKey) []byte {
	for nonce := uint64(0); ; nonce++ {
		in := &Intention{Role: RoleRelay, Nonce: nonce, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}
		if !powOK(testChainID, encodeUnsigned(0, key.Public().(ed25519.PublicKey), in), c.m.params.PowBits) {
			return c.sign(key, 0, in)
		}
	}
}

// powSigned signs an intention body with enough work.
func powSigned(t *testing.T, c *chain, key ed25519.PrivateKey, in *Intention) []byte {
	for nonce := uint64(0); ; nonce++ {
		in.Nonce = nonce
		if powOK(testChainID, encodeUnsigned(0, key.Public().(ed25519.PublicKey), in), c.m.params.PowBits) {
			return c.sign(key, 0, in)
		}
	}
}

func TestTwoMachinesAgreeOnEveryWrite(t *testing.T) {
	run := func() [][32]byte {
		c := newChain(t, testParams(), 3)
		var digests [][32]byte
		record := func() { digests = append(digests, c.kv.digest()) }
		c.height++
		c.m.BeginBlock(c.height, blockHash(c.height))
		record()
		c.m.EndBlock(c.height)
		c.kv.apply()
		c.join(keysOf("relay", 6), keysOf("mailbox", 1))
		c.until(25)
		return append(digests, c.kv.digest(), stateDigest(c.kv))
	}
	a, b := run(), run()
	if !slices.Equal(a, b) {
		t.Fatal("two runs of the same blocks wrote different states")
	}
}
