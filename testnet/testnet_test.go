package testnet

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// startTestnet starts a testnet of the default shape — one validator, 9
// relays in 3 strata, 2 mailbox nodes, 2 clients — with delays scaled
// down (5 ms per hop) and fast blocks.
func startTestnet(t *testing.T, dashboard string) *Testnet {
	t.Helper()
	return startTestnetWith(t, func(c *Config) { c.Dashboard = dashboard })
}

// startTestnetWith is startTestnet with changes to the configuration.
func startTestnetWith(t *testing.T, change func(*Config)) *Testnet {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a whole network")
	}
	cfg := Config{
		DataDir: t.TempDir(), MeanDelay: 5 * time.Millisecond, BlockInterval: 200 * time.Millisecond,
		EpochBlocks: 600, LambdaP: 20, LambdaL: 2, LambdaD: 2, LambdaM: 2,
		Logger: testLogger(t),
	}
	cfg.Progress = logWriter{t}
	change(&cfg)
	// Through loss, creating the mailboxes takes a few round trips; under
	// -race beside other packages' tests the whole bring-up once took over
	// 120 s at loss 0.2 (it usually takes 4–10 s): allow 240 s.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(60+900*cfg.Loss)*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// logWriter sends the testnet's progress lines to the test log, so a
// bring-up that times out shows how far it got.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// waitDelivered waits until want messages were delivered, or fails.
func waitDelivered(t *testing.T, n *Testnet, want uint64, within time.Duration) Counters {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c := n.Stats()
		if c.Delivered >= want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages delivered within %v (%+v)", c.Delivered, want, within, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHundredMessagesSurviveADeadRelay sends 100 messages between the two
// clients of a default-shape testnet; halfway a relay that is no client's
// home is killed. Every message must arrive: puts that die with the relay
// are repeated along other routes until the mailbox node acknowledges them.
func TestHundredMessagesSurviveADeadRelay(t *testing.T) {
	n := startTestnet(t, "")
	ctx := context.Background()
	send := func(from, to, k int) {
		t.Helper()
		if _, err := n.Send(ctx, from, to, fmt.Sprintf("message %d", k)); err != nil {
			t.Fatal(err)
		}
	}
	for k := range 50 {
		send(k%2, 1-k%2, k)
		time.Sleep(20 * time.Millisecond)
	}
	waitDelivered(t, n, 25, 30*time.Second)
	homes := map[string]bool{}
	for _, c := range n.clients {
		homes[n.nodeName(c.c.Home())] = true
	}
	killed := -1
	for i := range 9 {
		if !homes[fmt.Sprintf("relay-%d", i+1)] {
			killed = i
			break
		}
	}
	if err := n.KillRelay(killed); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed relay-%d", killed+1)
	for k := 50; k < 100; k++ {
		send(k%2, 1-k%2, k)
		time.Sleep(20 * time.Millisecond)
	}
	c := waitDelivered(t, n, 100, 90*time.Second)
	if c.Lost != 0 || c.Sent != 100 {
		t.Errorf("counters %+v", c)
	}
	t.Logf("100 messages: p50 %.3fs p99 %.3fs", c.P50, c.P99)
	// Each client received its 50.
	for _, cl := range n.clients {
		if got := len(cl.state().Inbox); got != 50 {
			t.Errorf("%s received %d messages, want 50", cl.name, got)
		}
	}
}

// TestDashboardWithTheRealTestnet drives the dashboard of a running testnet
// in headless Chromium: it shows 9 relays in 3 strata, and a message typed
// in the box appears at the other client.
func TestDashboardWithTheRealTestnet(t *testing.T) {
	ctx := browser(t)
	n := startTestnet(t, "127.0.0.1:0")
	checkDashboard(t, ctx, n.DashboardURL(), 9, 3)
}

// TestQueueDeliversThroughLoss runs a testnet whose relays drop 20 % of the
// packets they receive and sends 30 messages between the two clients:
// every one must arrive, carried by the clients' queues (RaptorQ chunks
// sized to the loss the loop stream measures, acks through SURBs, repair
// rounds).
func TestQueueDeliversThroughLoss(t *testing.T) {
	n := startTestnetWith(t, func(c *Config) { c.Loss = 0.2 })
	// Let the loop streams measure the loss first (2 loops/s, ~1 s each).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for _, c := range n.clients {
			ok = ok && c.c.Stats().LoopsLost >= 3
		}
		if ok {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // one SetLoss tick
	const N = 30
	start := time.Now()
	for k := range N {
		if _, err := n.Send(context.Background(), k%2, 1-k%2, fmt.Sprintf("message %d", k)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer func() {
		for _, cl := range n.clients {
			qs, cs := cl.mq.Queue().Stats(), cl.c.Stats()
			t.Logf("%s: loop loss %.2f, %d replies; queue: %d queued, %d acked, %d rounds (%d resends), %d packets, %d SURBs, %d ack packets, %d delivered, %d duplicates",
				cl.name, cs.RecentLoopLoss, cs.Replies, qs.Queued, qs.Acked, qs.Rounds, qs.Resends, qs.Packets, qs.SURBItems, qs.AckPackets, qs.Delivered, qs.Duplicates)
		}
	}()
	c := waitDelivered(t, n, N, 40*time.Second)
	n.stats.mu.Lock()
	lat := slices.Clone(n.stats.samples)
	n.stats.mu.Unlock()
	slices.Sort(lat)
	t.Logf("%d/%d messages delivered at 20%% loss per relay in %.1fs: p50 %.3fs p99 %.3fs; latencies %.2f", c.Delivered, N,
		time.Since(start).Seconds(), c.P50, c.P99, lat)
	if c.Lost != 0 {
		t.Errorf("counters %+v", c)
	}
}
