package pki

import (
	"context"
	"crypto/ed25519"
	"sync/atomic"
	"testing"
	"time"
)

// withholdingChain is a relay's connection to the chain with the VRF
// left out: the relay's own software modified to never reveal its output.
type withholdingChain struct {
	Chain
	dropped atomic.Int64
}

func (c *withholdingChain) BroadcastTx(ctx context.Context, raw []byte) error {
	if tx, err := DecodeTx(raw); err == nil && tx.Body.Type() == TxVRF {
		c.dropped.Add(1)
		return nil
	}
	return c.Chain.BroadcastTx(ctx, raw)
}

// TestRelayThatNeverSubmitsAVRFIsStillPlaced: a real validator and
// attester, eight honest relays and one whose agent never sends its VRF.
// The withholder is admitted, keeps its keys published, and appears in
// the next topologies at its withheld key, flagged; the honest relays are
// placed by their VRF outputs, and the document verifies through the
// light client.
func TestRelayThatNeverSubmitsAVRFIsStillPlaced(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := integrationParams()
	n, _ := startSingle(t, p)
	waitHeight(t, n, 2, 10*time.Second)
	honest, sybil := keysOf("wh-relay", 8), detKey("wh-sybil", 0)
	startNodes(ctx, t, n.RPC(), honest, RoleRelay)
	chain, err := DialChain(ctx, n.RPC())
	if err != nil {
		t.Fatal(err)
	}
	wc := &withholdingChain{Chain: chain}
	h, err := StartProbeHost(sybil, chain.ChainID())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	a, err := NewAgent(AgentConfig{Chain: wc, Identity: sybil, Role: RoleRelay, Addrs: HostAddrs(h), MixKey: testMixKey(sybil), Interval: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx)
	v := newVerifier(ctx, t, n.RPC())

	// Two consecutive frozen epochs (≥ 1) listing all nine.
	placed := func(top *Topology) bool {
		if top.Epoch == 0 || len(top.Relays) != 9 {
			return false
		}
		for _, k := range honest {
			if r, ok := top.Relay(idOf(k)); !ok || r.Withheld {
				return false
			}
		}
		r, ok := top.Relay(idOf(sybil))
		return ok && r.Withheld
	}
	first := waitCurrentTopology(ctx, t, v, 40*time.Second, placed)
	next := waitTopology(ctx, t, v, first.Epoch+1, 20*time.Second, func(*Topology) bool { return true })
	for _, top := range []*Topology{first, next} {
		if !placed(top) {
			t.Fatalf("epoch %d: the withholder or an honest relay is not placed as it should be", top.Epoch)
		}
		r, _ := top.Relay(idOf(sybil))
		if r.VRF != WithheldKey(top.VRFBeacon, r.ID) {
			t.Fatalf("epoch %d: the withholder is not at its withheld key", top.Epoch)
		}
		for _, k := range honest {
			assertVRFOf(t, top, k)
		}
		if len(top.Graph().Layers[0]) != 3 || len(top.Graph().Layers[2]) != 3 {
			t.Fatalf("epoch %d: strata of %d, %d, %d", top.Epoch, len(top.Graph().Layers[0]), len(top.Graph().Layers[1]), len(top.Graph().Layers[2]))
		}
	}
	if next.VRFBeacon != first.Beacon {
		t.Fatal("the next epoch's VRF beacon is not this epoch's beacon")
	}
	if wc.dropped.Load() == 0 {
		t.Fatal("the withholder's agent never tried to send a VRF: the test did not withhold anything")
	}
	t.Logf("withholder placed in epochs %d and %d; %d VRF transactions withheld", first.Epoch, next.Epoch, wc.dropped.Load())
}

// assertVRFOf checks that relay k is placed by its own VRF output on the
// document's VRF beacon.
func assertVRFOf(t *testing.T, top *Topology, k ed25519.PrivateKey) {
	t.Helper()
	r, ok := top.Relay(idOf(k))
	if !ok {
		t.Fatalf("epoch %d: relay %v missing", top.Epoch, idOf(k))
	}
	pi, _ := ProveVRF(k, top.VRFBeacon)
	if out, _ := VerifyVRF(pubOf(k), top.VRFBeacon, pi.Proof); r.Withheld || r.VRF != out {
		t.Fatalf("epoch %d: relay %v is not at its VRF output", top.Epoch, r.ID)
	}
}
