package node

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-mix/strata/transport"
)

// TestMailboxNodeLoopsThroughTheStrata runs a mailbox node as `strata
// mailbox` does, against three relays on an embedded validator: the node
// sends its own loop cover at the network's λM (20/s in chainParams)
// through the three strata, and the loops come back to it, as its metrics
// endpoint reports — so at the first stratum its replies are not the only
// packets it sends.
func TestMailboxNodeLoopsThroughTheStrata(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := chainParams()
	p.EpochBlocks, p.TopologyLead = 200, 50
	cc, _ := startChainRelays(t, ctx, p, 3)

	dir := t.TempDir()
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := transport.SaveIdentity(filepath.Join(dir, "id.key"), key); err != nil {
		t.Fatal(err)
	}
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ml.Addr().String() + "/metrics"
	cfg := &MailboxConfig{Identity: filepath.Join(dir, "id.key"), DataDir: dir, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		Chain: &cc, ChainInterval: "200ms", EpochLength: "10s", MaxRate: 1000, MetricsListener: ml}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- RunMailbox(ctx, cfg, testLog(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	// The node joins the topology, then its loops start.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if n, err := scrape(url, "strata_relay_loops_returned_total"); err == nil && n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			sent, _ := scrape(url, "strata_relay_loops_sent_total")
			lost, _ := scrape(url, "strata_relay_loops_lost_total")
			t.Fatalf("the mailbox node's loops did not come back: %v sent, %v lost", sent, lost)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The rate: 20/s over 3 s is about 60 loops (Poisson; the bounds
	// allow a loaded machine).
	before, err := scrape(url, "strata_relay_loops_sent_total")
	if err != nil {
		t.Fatal(err)
	}
	const window = 3 * time.Second
	time.Sleep(window)
	after, err := scrape(url, "strata_relay_loops_sent_total")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := after-before, p.LambdaM*window.Seconds(); got < 0.4*want || got > 1.7*want {
		t.Fatalf("%v loops sent in %v at λM %v/s, want about %v", got, window, p.LambdaM, want)
	}
}
