package pki

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// startNetwork starts n validators of one chain on loopback, each with a
// persistent connection to every other.
func startNetwork(t *testing.T, n int, p Params) []*ValidatorNode {
	t.Helper()
	homes := make([]string, n)
	keys := make([]HomeKeys, n)
	p2p := make([]string, n)
	g := Genesis{ChainID: "strata-net", Time: time.Now(), Params: p}
	for i := range n {
		homes[i] = t.TempDir()
		k, err := InitHome(homes[i])
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
		if p2p[i], err = freeLoopback(); err != nil {
			t.Fatal(err)
		}
		g.Validators = append(g.Validators, GenesisValidator{PubKey: k.ValidatorKey, Power: 10, Name: fmt.Sprintf("v%d", i)})
	}
	nodes := make([]*ValidatorNode, n)
	for i := range n {
		if err := WriteGenesis(homes[i], g); err != nil {
			t.Fatal(err)
		}
		var peers []string
		for j := range n {
			if j != i {
				peers = append(peers, keys[j].P2PID+"@"+strings.TrimPrefix(p2p[j], "tcp://"))
			}
		}
		node, err := StartValidator(context.Background(), ValidatorConfig{
			Home: homes[i], P2PListen: p2p[i], Peers: peers, BlockInterval: 100 * time.Millisecond,
			Logger:   testLogger(t).With("validator", i),
			Attester: AttesterConfig{Interval: 100 * time.Millisecond, ProbeTimeout: 2 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Stop() })
		nodes[i] = node
	}
	return nodes
}

func TestFourValidatorsKeepGoingWithOneStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four validators")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := integrationParams()
	nodes := startNetwork(t, 4, p)
	waitHeight(t, nodes[0], 3, 20*time.Second)
	if err := nodes[3].Stop(); err != nil {
		t.Fatal(err)
	}
	stoppedAt := nodes[0].Height()
	start := time.Now()
	for _, n := range nodes[:3] {
		waitHeight(t, n, stoppedAt+8, 20*time.Second)
	}
	t.Logf("8 blocks with one validator of four stopped in %v", time.Since(start).Round(time.Millisecond))

	// Admission still reaches its quorum: the three running validators
	// hold 30 of 40 votes. Clients verify through the light client with
	// the other running validators as witnesses.
	relays := keysOf("net-relay", 3)
	startNodes(ctx, t, nodes[0].RPC(), relays, RoleRelay)
	v := newVerifier(ctx, t, nodes[1].RPC(), nodes[0].RPC(), nodes[2].RPC())
	top := waitCurrentTopology(ctx, t, v, 30*time.Second, func(top *Topology) bool { return len(top.Relays) == 3 })
	// Each relay was attested by all three running validators in the
	// last epoch it was seen. Attestations of past epochs are pruned, so
	// on a slow machine the epoch may turn between the two reads: retry.
	for _, k := range relays {
		n := nodes[2].app
		st := state{kv: newKV(n.base)}
		var (
			reg *Registration
			att [][32]byte
			err error
		)
		for try := 0; try < 50; try++ {
			n.mu.Lock()
			reg, err = st.node(idOf(k))
			if err == nil && reg != nil {
				att = st.attesters(reg.LastSeen, idOf(k))
			}
			n.mu.Unlock()
			if err == nil && reg != nil && reg.Status == StatusAdmitted && len(att) == 3 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil || reg == nil || reg.Status != StatusAdmitted || len(att) != 3 {
			t.Fatalf("relay %v: %+v, %d attesters, err %v", idOf(k), reg, len(att), err)
		}
	}
	if top.Graph() == nil {
		t.Fatal("no graph")
	}
	// Every running validator computed the same state.
	h := nodes[0].Height()
	for _, n := range nodes[:3] {
		waitHeight(t, n, h, 10*time.Second)
	}
	var hashes []string
	for _, n := range nodes[:3] {
		res, err := n.client.Block(ctx, &h)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, fmt.Sprintf("%X", res.Block.AppHash))
	}
	if hashes[0] != hashes[1] || hashes[1] != hashes[2] {
		t.Fatalf("app hashes at height %d differ: %v", h, hashes)
	}
}
