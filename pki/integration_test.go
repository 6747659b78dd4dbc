package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// integrationParams are 30-block epochs (about 4 s at 100 ms blocks) whose
// next topology freezes 10 blocks before the end, with k = 2 so that the
// restricted routes differ from a full mesh of 3-relay layers.
func integrationParams() Params {
	p := DefaultParams()
	p.EpochBlocks = 30
	p.TopologyLead = 10
	p.Successors = 2
	p.PowBits = 8
	p.PublicAddrsOnly = false
	p.KeysAhead = 3
	return p
}

// testMixKey is a node's deterministic public mix key of an epoch.
func testMixKey(key ed25519.PrivateKey) func(uint64) (sphinx.PublicKey, error) {
	return func(e uint64) (sphinx.PublicKey, error) {
		return sha256.Sum256(binary.BigEndian.AppendUint64(key.Seed(), e)), nil
	}
}

// startNodes starts, for each key, a probe host and an agent that
// registers it through the validator's RPC endpoint.
func startNodes(ctx context.Context, t *testing.T, rpc string, keys []ed25519.PrivateKey, role Role) {
	t.Helper()
	chain, err := DialChain(ctx, rpc)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		h, err := StartProbeHost(k, chain.ChainID())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		a, err := NewAgent(AgentConfig{Chain: chain, Identity: k, Role: role, Addrs: HostAddrs(h), MixKey: testMixKey(k), Interval: 100 * time.Millisecond, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		go a.Run(ctx)
	}
}

func newVerifier(ctx context.Context, t *testing.T, primary string, witnesses ...string) *Verifier {
	t.Helper()
	chain, err := DialChain(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	h := int64(1)
	b, err := chain.set.eps[0].rpc.Block(ctx, &h)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(ctx, VerifierConfig{Primary: primary, Witnesses: witnesses, TrustHeight: 1, TrustHash: b.BlockID.Hash, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitTopology polls the verified topology of epoch until ok accepts it.
func waitTopology(ctx context.Context, t *testing.T, v *Verifier, epoch uint64, within time.Duration, ok func(*Topology) bool) *Topology {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		top, err := v.Topology(ctx, epoch)
		if err == nil && ok(top) {
			return top
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no acceptable topology for epoch %d within %v (last error: %v)", epoch, within, last)
	return nil
}

// waitCurrentTopology is waitTopology for whichever epoch is current at
// each poll: on a loaded machine admission may miss the epoch a test
// started in, and the next epoch's topology holds the admitted nodes.
func waitCurrentTopology(ctx context.Context, t *testing.T, v *Verifier, within time.Duration, ok func(*Topology) bool) *Topology {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	seen := ""
	for time.Now().Before(deadline) {
		info, err := v.Epoch(ctx)
		var top *Topology
		if err == nil && info.Open {
			top, err = v.Topology(ctx, info.Epoch)
		}
		// What was seen goes to the log when it changes, to tell a slow
		// admission from a lost one.
		now := fmt.Sprintf("epoch %d open %v: err %v", info.Epoch, info.Open, err)
		if top != nil {
			now = fmt.Sprintf("epoch %d: %d relays", info.Epoch, len(top.Relays))
		}
		if now != seen {
			t.Logf("%s", now)
			seen = now
		}
		if top != nil && ok(top) {
			return top
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no acceptable topology of the current epoch within %v (last error: %v)", within, last)
	return nil
}

func TestNineRelaysRegisterAndAreStratified(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := integrationParams()
	n, _ := startSingle(t, p)
	waitHeight(t, n, 2, 10*time.Second)
	relays, mailboxes := keysOf("it-relay", 9), keysOf("it-mailbox", 2)
	startNodes(ctx, t, n.RPC(), relays, RoleRelay)
	startNodes(ctx, t, n.RPC(), mailboxes, RoleMailbox)
	v := newVerifier(ctx, t, n.RPC())
	cache := NewTopologyCache(v)

	// Full: every relay placed by its VRF output (epoch 0's live topology
	// places a relay at its withheld key until its VRF is on chain).
	full := func(top *Topology) bool {
		return len(top.Relays) == 9 && len(top.Mailboxes) == 2 && !slices.ContainsFunc(top.Relays, func(r Relay) bool { return r.Withheld })
	}
	start := time.Now()
	top0 := waitTopology(ctx, t, v, 0, 20*time.Second, full)
	t.Logf("epoch 0 topology with 9 relays after %v", time.Since(start).Round(time.Millisecond))
	assertChainTopology(t, top0, relays, mailboxes)

	// Epoch 1's topology freezes during epoch 0, from VRFs on epoch 0's
	// beacon, and carries epoch 1's beacon; epoch 2's from VRFs the agents
	// resubmit on epoch 1's beacon.
	top1 := waitTopology(ctx, t, v, 1, 20*time.Second, func(*Topology) bool { return true })
	if !full(top1) || top1.VRFBeacon != top0.Beacon || top1.Beacon == top0.Beacon {
		t.Fatalf("epoch 1: %d relays, %d mailboxes, VRF beacon %x (epoch 0's beacon %x)", len(top1.Relays), len(top1.Mailboxes), top1.VRFBeacon[:4], top0.Beacon[:4])
	}
	assertChainTopology(t, top1, relays, mailboxes)
	if err := cache.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// Epoch 1 may have opened meanwhile; then its topology is current.
	switch e := cache.Epoch().Epoch; {
	case e == 0 && (cache.Next() == nil || cache.Next().Hash() != top1.Hash()):
		t.Fatal("in epoch 0 after epoch 1 froze, the cache lacks epoch 1's topology as next")
	case e == 1 && cache.Current().Hash() != top1.Hash():
		t.Fatal("in epoch 1, the cache's current topology is not epoch 1's")
	}
	top2 := waitTopology(ctx, t, v, 2, 30*time.Second, func(*Topology) bool { return true })
	if !full(top2) || top2.VRFBeacon != top1.Beacon {
		t.Fatalf("epoch 2: %d relays, VRF beacon %x, epoch 1's beacon %x", len(top2.Relays), top2.VRFBeacon[:4], top1.Beacon[:4])
	}
	assertChainTopology(t, top2, relays, mailboxes)
	if err := cache.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if cur := cache.Current(); cur.Epoch != cache.Epoch().Epoch || cur.Epoch == 1 && cur.Hash() != top1.Hash() {
		t.Fatalf("cache holds epoch %d's topology in epoch %d", cur.Epoch, cache.Epoch().Epoch)
	}
	ei, err := v.Epoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ei.Epoch < 1 || ei.Epoch == 1 && ei.Beacon != top1.Beacon || ei.Epoch == 2 && ei.Beacon != top2.Beacon {
		t.Fatalf("verified epoch %d beacon %x; epoch 1's document's is %x, epoch 2's %x", ei.Epoch, ei.Beacon[:4], top1.Beacon[:4], top2.Beacon[:4])
	}
}

// assertChainTopology checks a document against what the relays' own keys
// say: each relay's mix key for the epoch, its VRF output on the
// document's VRF beacon, strata of 3 cut in VRF order, and k-successor
// links drawn from the document's beacon.
func assertChainTopology(t *testing.T, top *Topology, relays, mailboxes []ed25519.PrivateKey) {
	t.Helper()
	var ranked []Ranked
	for _, k := range relays {
		r, ok := top.Relay(idOf(k))
		if !ok {
			t.Fatalf("epoch %d: relay %v missing", top.Epoch, idOf(k))
		}
		want, _ := testMixKey(k)(top.Epoch)
		if r.MixKey != want {
			t.Fatalf("epoch %d: relay %v has mix key %x, want %x", top.Epoch, r.ID, r.MixKey[:4], want[:4])
		}
		pi, _ := ProveVRF(k, top.VRFBeacon)
		out, _ := VerifyVRF(pubOf(k), top.VRFBeacon, pi.Proof)
		if r.VRF != out || r.Withheld {
			t.Fatalf("epoch %d: relay %v VRF is not its output on the beacon", top.Epoch, r.ID)
		}
		ranked = append(ranked, Ranked{ID: r.ID, VRF: out})
	}
	for _, k := range mailboxes {
		if _, ok := top.Mailbox(idOf(k)); !ok {
			t.Fatalf("epoch %d: mailbox missing", top.Epoch)
		}
	}
	g, err := NewGraph(ranked, 3, int(top.Params.Successors), top.Beacon)
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.Layers {
		if len(g.Layers[i]) != 3 || !slices.Equal(g.Layers[i], top.Graph().Layers[i]) {
			t.Fatalf("epoch %d layer %d: %v, want %v", top.Epoch, i, top.Graph().Layers[i], g.Layers[i])
		}
	}
	for _, r := range top.Relays {
		if r.Layer == 2 {
			continue
		}
		_, slot, _ := g.Position(r.ID)
		if len(r.Next) != 2 || !slices.Equal(r.Next, g.Next(r.Layer, slot)) {
			t.Fatalf("epoch %d: relay in layer %d links to %v, want the 2 successors %v", top.Epoch, r.Layer, r.Next, g.Next(r.Layer, slot))
		}
	}
}
