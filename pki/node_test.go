package pki

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"
)

// testLogger logs to the test when STRATA_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startSingle initialises a one-validator chain in a temporary home and
// starts it with 100 ms blocks.
func startSingle(t *testing.T, p Params) (*ValidatorNode, string) {
	t.Helper()
	home := t.TempDir()
	keys, err := InitHome(home)
	if err != nil {
		t.Fatal(err)
	}
	g := Genesis{ChainID: "strata-single", Time: time.Now(), Params: p,
		Validators: []GenesisValidator{{PubKey: keys.ValidatorKey, Power: 10, Name: "v0"}}}
	if err := WriteGenesis(home, g); err != nil {
		t.Fatal(err)
	}
	n := startHome(t, home)
	return n, home
}

func startHome(t *testing.T, home string) *ValidatorNode {
	t.Helper()
	n, err := StartValidator(context.Background(), ValidatorConfig{
		Home: home, BlockInterval: 100 * time.Millisecond, Logger: testLogger(t),
		Attester: AttesterConfig{Interval: 100 * time.Millisecond, ProbeTimeout: 2 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	return n
}

// waitHeight waits until n has committed height h.
func waitHeight(t *testing.T, n *ValidatorNode, h int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for n.Height() < h {
		if time.Now().After(deadline) {
			t.Fatalf("height %d after %v, want %d", n.Height(), within, h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEmbeddedValidatorRestartsAtItsHeightWithItsAppHash(t *testing.T) {
	n, home := startSingle(t, testParams())
	waitHeight(t, n, 5, 10*time.Second)
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	info, _ := n.App().Info(context.Background(), nil)
	stopped, hash := info.LastBlockHeight, info.LastBlockAppHash

	app, err := OpenApp(home+"/data/"+appStateFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := app.Info(context.Background(), nil)
	app.Close()
	if again.LastBlockHeight != stopped || string(again.LastBlockAppHash) != string(hash) {
		t.Fatalf("reopened at height %d hash %X, stopped at %d hash %X", again.LastBlockHeight, again.LastBlockAppHash, stopped, hash)
	}
	n2 := startHome(t, home)
	waitHeight(t, n2, stopped+3, 10*time.Second)
}
