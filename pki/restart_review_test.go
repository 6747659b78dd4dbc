package pki

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// TestRelayRestartedAtEpochStartIsListedNext measures the real attester
// at its defaults (Interval 1 s, RetryAfter 5 s, ProbeTimeout 5 s) on an
// honest relay that restarts at the start of an epoch: its libp2p host is
// down for the first 15 s of epoch e (its chain client goes on) and comes
// back at the same address; two other relays run throughout. It must be seen in e — before the freeze,
// about 45 s in — and so listed in e + 1's topology. It logs how long
// after its return the quorum saw it.
func TestRelayRestartedAtEpochStartIsListedNext(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator; about two minutes")
	}
	const down = 15 * time.Second
	p := integrationParams()
	p.EpochBlocks = 600 // about 60 s at 100 ms blocks
	p.TopologyLead = 150
	n := startValidatorWith(t, p, AttesterConfig{})
	waitHeight(t, n, 2, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, k := range keysOf("restart-steady", 2) { // a topology needs Layers = 3 relays
		startRelay(ctx, t, n, k, nil)
	}
	key := detKey("restart-relay", 0)
	h, err := StartProbeHost(key, n.ChainID())
	if err != nil {
		t.Fatal(err)
	}
	addrs := HostAddrs(h)
	var tcp string
	for _, a := range h.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			tcp = a.String()
		}
	}
	a, err := NewAgent(AgentConfig{Chain: n, Identity: key, Role: RoleRelay, Addrs: addrs, MixKey: testMixKey(key), Interval: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx)
	id := idOf(key)
	seenIn := func(e uint64) bool {
		v, ok := nodeView(t, n, id)
		return ok && v.Status == StatusAdmitted.String() && v.LastSeen == e
	}
	waitFor(t, 40*time.Second, "the relay admitted", func() bool { return seenIn(chainEpochOf(ctx, t, n).Epoch) })
	e := chainEpochOf(ctx, t, n).Epoch + 1
	waitFor(t, 120*time.Second, fmt.Sprintf("epoch %d", e), func() bool { return chainEpochOf(ctx, t, n).Epoch >= e })
	h.Close()
	opened := time.Now()
	ei := chainEpochOf(ctx, t, n)
	if ei.Epoch != e {
		t.Fatalf("epoch %d opened while waiting", ei.Epoch)
	}
	time.Sleep(down)
	h2, err := StartProbeHost(key, n.ChainID(), tcp)
	if err != nil {
		t.Fatalf("restart at %s: %v", tcp, err)
	}
	defer h2.Close()
	back := time.Now()
	freeze := ei.FreezeHeight(p)
	topology := func() (*Topology, bool) {
		raw, _, err := n.Query(ctx, QueryTopology+"/"+strconv.FormatUint(e+1, 10))
		if err != nil {
			return nil, false
		}
		top, err := DecodeTopology(raw)
		if err != nil {
			t.Fatal(err)
		}
		return top, true
	}
	var seenAfter time.Duration
	for seenAfter == 0 {
		if seenIn(e) {
			seenAfter = time.Since(back)
			break
		}
		if _, frozen := topology(); frozen {
			t.Fatalf("relay back %v after epoch %d opened, not seen by the freeze (height %d), %v after it came back: it misses epoch %d",
				down, e, freeze, time.Since(back).Round(time.Millisecond), e+1)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("relay down for the first %v of epoch %d; seen %v after it came back (%v into the epoch); freeze at height %d, now %d",
		down, e, seenAfter.Round(100*time.Millisecond), time.Since(opened).Round(100*time.Millisecond), freeze, n.Height())
	var top *Topology
	waitFor(t, 90*time.Second, fmt.Sprintf("epoch %d's topology", e+1), func() bool {
		var ok bool
		top, ok = topology()
		return ok
	})
	if !inTopology(top, id) {
		t.Fatalf("the relay, seen in epoch %d, is not in epoch %d's topology", e, e+1)
	}
}
