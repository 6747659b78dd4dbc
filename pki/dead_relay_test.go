package pki

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// TestUnseenNodesMissOnlyTheNextTopology drives the state machine: a
// relay and a mailbox that no quorum sees in epoch 1 (the relay still
// submits its VRF, as a relay whose chain client lives while its libp2p
// address is dead would) are left out of epoch 2's topology, frozen in
// epoch 1, while their registrations stay; seen again in epoch 2 they are
// back in epoch 3's topology without a new intention. The others are in
// every topology.
func TestUnseenNodesMissOnlyTheNextTopology(t *testing.T) {
	p := testParams()
	c := newChain(t, p, 1)
	c.mustBlock()
	relays, mailboxes := keysOf("dr-relay", 4), keysOf("dr-mailbox", 2)
	c.join(relays, mailboxes)
	deadRelay, deadMailbox := relays[3], mailboxes[1]
	honest := append(append([]ed25519.PrivateKey{}, relays[:3]...), mailboxes[0])

	c.until(c.epoch().FreezeHeight(p))
	assertListed(t, c.topology(1), append(append([]ed25519.PrivateKey{}, relays...), mailboxes...), nil)

	c.until(c.epoch().NextStart(p)) // epoch 1
	var txs [][]byte
	for _, k := range honest {
		txs = append(txs, c.attestAll(idOf(k))...)
	}
	for _, k := range relays {
		txs = append(txs, c.vrfTx(k))
	}
	c.mustBlock(txs...)
	c.until(c.epoch().FreezeHeight(p))
	top2 := c.topology(2)
	assertListed(t, top2, honest, []ed25519.PrivateKey{deadRelay, deadMailbox})
	for _, k := range []ed25519.PrivateKey{deadRelay, deadMailbox} {
		if n := c.node(idOf(k)); n == nil || n.Status != StatusAdmitted || n.LastSeen != 0 {
			t.Fatalf("unseen node's registration in epoch 1: %+v, want admitted, last seen 0", n)
		}
	}

	c.until(c.epoch().NextStart(p)) // epoch 2: everyone answers again
	txs = nil
	for _, k := range append(append([]ed25519.PrivateKey{}, relays...), mailboxes...) {
		txs = append(txs, c.attestAll(idOf(k))...)
	}
	for _, k := range relays {
		txs = append(txs, c.vrfTx(k))
	}
	c.mustBlock(txs...)
	c.until(c.epoch().FreezeHeight(p))
	assertListed(t, c.topology(3), append(append([]ed25519.PrivateKey{}, relays...), mailboxes...), nil)
}

// assertListed checks that top lists every key of in (as a relay or a
// mailbox) and none of out.
func assertListed(t *testing.T, top *Topology, in, out []ed25519.PrivateKey) {
	t.Helper()
	for _, k := range in {
		if !inTopology(top, idOf(k)) {
			t.Fatalf("epoch %d topology lacks %v", top.Epoch, idOf(k))
		}
	}
	for _, k := range out {
		if inTopology(top, idOf(k)) {
			t.Fatalf("epoch %d topology lists %v, which no quorum saw in the epoch it froze in", top.Epoch, idOf(k))
		}
	}
}

func inTopology(top *Topology, id sphinx.NodeID) bool {
	if _, ok := top.Relay(id); ok {
		return true
	}
	for _, mb := range top.Mailboxes {
		if mb.ID == id {
			return true
		}
	}
	return false
}

// TestDeadRelayLeavesTheNextTopology runs a validator with its attester
// and real probe hosts: four relays and two mailboxes register through
// their agents. Then one relay and one mailbox stop answering probes
// (their libp2p hosts close; their agents go on, so the relay keeps
// submitting VRFs). Killed in epoch k, each may still be in the topology
// of k+1 (frozen in k, perhaps after it was seen), but not in k+2's or
// later; the honest nodes are in every topology from the first full one
// on. Under the former rule (admitted = listed, dropped after DropAfter
// unseen epochs) both stayed listed through epoch k+1+DropAfter.
func TestDeadRelayLeavesTheNextTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := integrationParams()
	n, _ := startSingle(t, p)
	waitHeight(t, n, 2, 10*time.Second)
	relays, mailboxes := keysOf("dr-it-relay", 4), keysOf("dr-it-mailbox", 2)
	honest := append(append([]ed25519.PrivateKey{}, relays[:3]...), mailboxes[0])
	startNodes(ctx, t, n.RPC(), honest[:3], RoleRelay)
	startNodes(ctx, t, n.RPC(), honest[3:], RoleMailbox)
	chain, err := DialChain(ctx, n.RPC())
	if err != nil {
		t.Fatal(err)
	}
	var victims []interface{ Close() error }
	for _, v := range []struct {
		key  ed25519.PrivateKey
		role Role
	}{{relays[3], RoleRelay}, {mailboxes[1], RoleMailbox}} {
		h, err := StartProbeHost(v.key, chain.ChainID())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		victims = append(victims, h)
		a, err := NewAgent(AgentConfig{Chain: chain, Identity: v.key, Role: v.role, Addrs: HostAddrs(h),
			MixKey: testMixKey(v.key), Interval: 100 * time.Millisecond, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		go a.Run(ctx)
	}
	all := append(append([]ed25519.PrivateKey{}, relays...), mailboxes...)
	dead := []ed25519.PrivateKey{relays[3], mailboxes[1]}

	// tops collects every epoch's frozen topology (epoch 0's is live).
	tops := map[uint64]*Topology{}
	poll := func(until func() bool, within time.Duration, what string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !until() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v (height %d)", what, within, n.Height())
			}
			ei := chainEpochOf(ctx, t, n)
			for _, e := range []uint64{ei.Epoch, ei.Epoch + 1} {
				if _, ok := tops[e]; ok && e > 0 {
					continue
				}
				raw, _, err := n.Query(ctx, QueryTopology+"/"+strconv.FormatUint(e, 10))
				if err != nil {
					continue
				}
				top, err := DecodeTopology(raw)
				if err != nil {
					t.Fatal(err)
				}
				tops[e] = top
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	full := func(top *Topology) bool {
		for _, k := range all {
			if !inTopology(top, idOf(k)) {
				return false
			}
		}
		return true
	}
	first := uint64(0)
	poll(func() bool {
		for e, top := range tops {
			if full(top) && e > 0 && (first == 0 || e < first) {
				first = e
			}
		}
		return first > 0
	}, 40*time.Second, "a topology listing every node")

	// The victims die once seen in an epoch whose topology lists them.
	seenNow := func() bool {
		ei := chainEpochOf(ctx, t, n)
		if ei.Epoch < first {
			return false
		}
		for _, k := range dead {
			if v, err := registeredView(ctx, n, idOf(k)); err != nil || v.LastSeen != ei.Epoch {
				return false
			}
		}
		return true
	}
	poll(seenNow, 40*time.Second, "the victims seen in a listed epoch")
	killed := chainEpochOf(ctx, t, n).Epoch
	for _, h := range victims {
		h.Close()
	}
	killedAt := time.Now()
	t.Logf("first full topology: epoch %d; victims killed in epoch %d", first, killed)
	// Registrations stay: dropped nodes leave when epoch LastSeen +
	// DropAfter + 1 ≥ killed + 3 opens, and epoch killed + 2's topology
	// freezes in epoch killed + 1.
	poll(func() bool { _, ok := tops[killed+2]; return ok }, 60*time.Second, fmt.Sprintf("epoch %d's topology", killed+2))
	if now := chainEpochOf(ctx, t, n).Epoch; now <= killed+2 {
		for _, k := range dead {
			if v, err := registeredView(ctx, n, idOf(k)); err != nil || v.Status != StatusAdmitted.String() {
				t.Fatalf("epoch %d: dead node's registration %+v (%v), want kept, admitted", now, v, err)
			}
		}
	}
	last := killed + 3
	poll(func() bool { _, ok := tops[last]; return ok }, 60*time.Second, fmt.Sprintf("epoch %d's topology", last))

	for e := first; e <= last; e++ {
		top, ok := tops[e]
		if !ok {
			t.Fatalf("epoch %d's topology never seen", e)
		}
		var out []ed25519.PrivateKey
		if e >= killed+2 {
			out = dead
		}
		assertListed(t, top, honest, out)
	}
	t.Logf("dead nodes out of every topology from epoch %d on (%v after they died); honest nodes in epochs %d-%d",
		killed+2, time.Since(killedAt).Round(time.Millisecond), first, last)
}

// chainEpochOf returns the validator's current epoch, unverified.
func chainEpochOf(ctx context.Context, t *testing.T, n *ValidatorNode) EpochInfo {
	t.Helper()
	raw, _, err := n.Query(ctx, QueryEpoch)
	if err != nil {
		t.Fatal(err)
	}
	ei, err := DecodeEpochInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ei
}

// registeredView returns the validator's view of node id, unverified.
func registeredView(ctx context.Context, n *ValidatorNode, id sphinx.NodeID) (*NodeView, error) {
	raw, _, err := n.Query(ctx, QueryNode+"/"+hex.EncodeToString(id[:]))
	if err != nil {
		return nil, err
	}
	var v NodeView
	return &v, json.Unmarshal(raw, &v)
}
