package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/transport"
)

// chainParams are a fast chain for tests: 100 ms blocks, 30-block epochs
// (about 4 s), cheap work, relay loops at 20/s through 5 ms hops.
func chainParams() pki.Params {
	p := pki.DefaultParams()
	p.EpochBlocks, p.TopologyLead = 30, 10
	p.PowBits = 6
	p.PublicAddrsOnly = false
	p.KeysAhead = 3
	p.MeanDelay = 5 * time.Millisecond
	p.LambdaM = 20
	return p
}

func startTestChain(t *testing.T, p pki.Params) (*pki.ValidatorNode, ChainConfig) {
	t.Helper()
	n, cc, err := StartLocalChain(context.Background(), LocalChainConfig{
		Home: t.TempDir(), ChainID: "strata-node-test", Params: p, BlockInterval: 100 * time.Millisecond,
		Attester: pki.AttesterConfig{Interval: 100 * time.Millisecond, ProbeTimeout: 2 * time.Second},
		Logger:   testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	return n, cc
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// TestRelaysFollowTheChain runs three relays in chain mode against an
// embedded validator: they register, are admitted and stratified, their
// loops come back through the strata, and across epoch changes they switch
// mix keys (old key files are pruned) and their loops keep coming back.
func TestRelaysFollowTheChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	n, cc := startTestChain(t, chainParams())
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	var metrics, dataDirs []string
	for i := range 3 {
		rd := filepath.Join(dir, fmt.Sprintf("relay%d", i))
		key, err := transport.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		if err := transport.SaveIdentity(rd+".key", key); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		metrics = append(metrics, "http://"+ln.Addr().String()+"/metrics")
		dataDirs = append(dataDirs, rd)
		chain := cc
		cfg := &RelayConfig{Identity: rd + ".key", DataDir: rd, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			MetricsListener: ln, Chain: &chain, ChainInterval: "200ms", EpochLength: "10s", MaxRate: 1000}
		if err := cfg.check(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- RunRelay(ctx, cfg, testLog(t)) }()
	}
	defer func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()
	waitLoops := func(min float64, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for i, url := range metrics {
			for {
				got, err := scrape(url, "strata_relay_loops_returned_total")
				if err == nil && got >= min {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("relay %d: %v loops returned, want %v (%v); chain height %d", i, got, min, err, n.Height())
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	start := time.Now()
	waitLoops(3, 40*time.Second)
	t.Logf("loops return %v after start (height %d)", time.Since(start).Round(time.Millisecond), n.Height())

	// Two epoch changes later the relays run on new keys.
	target := chainEpoch(t, n) + 2
	deadline := time.Now().Add(40 * time.Second)
	for {
		if chainEpoch(t, n) >= target {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chain did not reach epoch %d", target)
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := make([]float64, len(metrics))
	for i, url := range metrics {
		before[i], _ = scrape(url, "strata_relay_loops_returned_total")
	}
	for i, url := range metrics {
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, _ := scrape(url, "strata_relay_loops_returned_total")
			if got >= before[i]+5 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("relay %d: loops stopped coming back after the epoch change (%v, was %v)", i, got, before[i])
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// A relay prunes when it switches to the new epoch's topology, which
	// it polls for: give it a moment on a loaded machine.
	for i, d := range dataDirs {
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, old := LoadMixKey(d, 0)
			_, cur := LoadMixKey(d, target)
			if old != nil && cur == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("relay %d in epoch %d: mix key of epoch 0 kept (load error %v), of epoch %d missing (%v)", i, target, old, target, cur)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// chainEpoch returns the validator's current epoch.
func chainEpoch(t *testing.T, n *pki.ValidatorNode) uint64 {
	t.Helper()
	b, _, err := n.Query(context.Background(), "/epoch")
	if err != nil {
		t.Fatal(err)
	}
	ei, err := pki.DecodeEpochInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	return ei.Epoch
}
