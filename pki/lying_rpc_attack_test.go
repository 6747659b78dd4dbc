package pki

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Attack tests of the verifier against lying and failing RPC endpoints
// (A5/A8 against P7): real validators, a real reverse proxy that lies.

func mustEpoch(ctx context.Context, t *testing.T, v *Verifier) EpochInfo {
	t.Helper()
	ei, err := v.Epoch(ctx)
	if err != nil {
		t.Fatalf("honest epoch answer refused: %v", err)
	}
	return ei
}

// (a) A proxy replays an old, validly committed /epoch answer after the
// epoch turned: refused as stale (by the height rule, and by MaxAge for a
// verifier that never saw a newer one); the cache keeps its topology.
func TestLyingRPCReplaysAStaleEpoch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, _ := startChainHome(t, "strata-honest", "")
	waitHeight(t, n, 2, 10*time.Second)
	startNodes(ctx, t, n.RPC(), keysOf("stale-relay", 3), RoleRelay)
	proxy := newLyingRPC(t, n.RPC())
	logs := &countingHandler{}
	v, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{proxy.URL}, TrustHeight: 1, TrustHash: rootAt(ctx, t, n.RPC(), 1),
		StoreDir: t.TempDir(), Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cache := NewTopologyCache(v)
	deadline := time.Now().Add(40 * time.Second)
	for cache.Current() == nil || len(cache.Current().Relays) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no topology with 3 relays")
		}
		_ = cache.Refresh(ctx)
		time.Sleep(100 * time.Millisecond)
	}
	recorded := cache.Epoch().Epoch
	// The last /epoch answer is recorded; the epoch turns meanwhile.
	proxy.freeze()
	for n.App().lastHeight() < int64(recorded+2)*int64(integrationParams().EpochBlocks) {
		time.Sleep(100 * time.Millisecond)
	}
	// A refresh across the epoch boundary may miss a pruned document:
	// retry.
	for try := 0; ; try++ {
		err := cache.Refresh(ctx)
		if err == nil {
			break
		}
		if try == 20 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	good, goodTop := cache.Epoch(), cache.Current()
	if good.Epoch <= recorded {
		t.Fatalf("epoch %d after waiting, recorded %d", good.Epoch, recorded)
	}
	proxy.setReplay(true)
	for range 3 {
		err := cache.Refresh(ctx)
		if !errors.Is(err, ErrStaleAnswer) {
			t.Fatalf("replayed epoch %d answer: %v, want ErrStaleAnswer", recorded, err)
		}
	}
	if cache.Epoch() != good || cache.Current() != goodTop {
		t.Fatalf("cache moved to epoch %d on a stale answer", cache.Epoch().Epoch)
	}
	stale := 0
	for _, r := range logs.count(slog.LevelWarn, "topology refresh failed") {
		if strings.Contains(attrOf(r, "err"), "stale") {
			stale++
		}
	}
	if stale != 1 {
		t.Fatalf("%d refresh warnings for 3 stale answers, want 1", stale)
	}
	// A verifier that never saw a newer answer refuses it by age.
	v2, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{proxy.URL}, TrustHeight: 1, TrustHash: rootAt(ctx, t, n.RPC(), 1),
		MaxAge: 2 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if _, err := v2.Epoch(ctx); !errors.Is(err, ErrStaleAnswer) {
		t.Fatalf("old answer to a fresh verifier with MaxAge 2s: %v, want ErrStaleAnswer", err)
	}
	// Honest answers still verify.
	proxy.setReplay(false)
	if err := cache.Refresh(ctx); err != nil {
		t.Fatalf("honest refresh after the replay: %v", err)
	}
	if ei := mustEpoch(ctx, t, v2); ei.Epoch < good.Epoch {
		t.Fatalf("honest epoch %d < %d", ei.Epoch, good.Epoch)
	}
}

// (b) The proxy forwards to a validator of another chain: refused with
// ErrWrongChain; a verifier with a second endpoint fails over to it.
func TestLyingRPCServesAnotherChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts validators")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	honest, other := startTwoChains(t)
	proxy := newLyingRPC(t, honest.RPC())
	root := rootAt(ctx, t, honest.RPC(), 1)
	alone, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{proxy.URL}, TrustHeight: 1, TrustHash: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	both, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{proxy.URL, honest.RPC()}, TrustHeight: 1, TrustHash: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer both.Close()
	mustEpoch(ctx, t, alone)
	mustEpoch(ctx, t, both)
	proxy.setTarget(other.RPC())
	if _, err := alone.Epoch(ctx); !errors.Is(err, ErrWrongChain) && !errors.Is(err, ErrUnverified) {
		t.Fatalf("answer from another chain: %v, want ErrWrongChain or ErrUnverified", err)
	} else {
		t.Logf("refused: %v", err)
	}
	if _, err := alone.Epoch(ctx); !errors.Is(err, ErrWrongChain) {
		t.Fatalf("with its only endpoint on another chain: %v, want ErrWrongChain", err)
	}
	mustEpoch(ctx, t, both)
	st := both.Status()
	if st.Endpoint != honest.RPC() || !strings.Contains(st.Down[proxy.URL], "another chain") {
		t.Fatalf("status %+v: want the honest endpoint in use and the proxy down on another chain", st)
	}
	// A verifier started behind the lying proxy skips it.
	late, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{honest.RPC(), proxy.URL}, TrustHeight: 1, TrustHash: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	mustEpoch(ctx, t, late)
	if _, down := late.Status().Down[proxy.URL]; !down {
		t.Fatal("the endpoint on another chain is not skipped")
	}
}

// (c) One validator key signs two chains from one genesis (equivocation):
// the primary serves one, the witness the other. The fork is refused,
// logged naming both, and the endpoint on the other branch is dropped.
func TestLyingRPCForkedHeaderIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts validators")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The fork runs ahead, so its headers are not adjacent to the
	// trusted ones and it is the witness that catches them.
	fork, honest := startEquivocatingChains(t)
	// Block 1 (genesis time, no transactions) is the same on both;
	// they diverge from block 2, whose commit signatures differ.
	if h3, f3 := rootAt(ctx, t, honest.RPC(), 3), rootAt(ctx, t, fork.RPC(), 3); string(h3) == string(f3) {
		t.Fatal("the two branches share block 3")
	}
	proxy := newLyingRPC(t, honest.RPC())
	logs := &countingHandler{}
	v, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{proxy.URL, honest.RPC()}, TrustHeight: 1,
		TrustHash: rootAt(ctx, t, honest.RPC(), 1), Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	before := mustEpoch(ctx, t, v)
	if st := v.Status(); st.Endpoint != proxy.URL || len(st.Witnesses) != 1 {
		t.Fatalf("status %+v: want the proxy in use and the validator as witness", st)
	}
	time.Sleep(300 * time.Millisecond)
	proxy.setTarget(fork.RPC())
	if _, err := v.Epoch(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("answer on the forked branch: %v, want ErrFork", err)
	} else {
		t.Logf("refused: %v", err)
	}
	forks := logs.count(slog.LevelError, "FORK")
	if len(forks) != 1 || attrOf(forks[0], "primary") != proxy.URL || !strings.Contains(attrOf(forks[0], "witnesses"), honest.RPC()) {
		t.Fatalf("fork log %v: want one error naming primary %s and witness %s", forks, proxy.URL, honest.RPC())
	}
	if _, down := v.Status().Down[proxy.URL]; !down {
		t.Fatal("the endpoint on the forked branch was not dropped")
	}
	if after := mustEpoch(ctx, t, v); after.Epoch < before.Epoch {
		t.Fatalf("epoch went back from %d to %d", before.Epoch, after.Epoch)
	}
}

// (d) A verifier whose trusted header expired (trust period 2 s) fails
// with ErrTrustExpired and says what to do, at a query and at a restart;
// a fresh root works.
func TestLyingRPCExpiredTrustIsAnError(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, _ := startChainHome(t, "strata-honest", "")
	waitHeight(t, n, 3, 10*time.Second)
	dir := t.TempDir()
	h, hash := latestRoot(ctx, t, n.RPC())
	conf := VerifierConfig{Endpoints: []string{n.RPC()}, TrustHeight: h, TrustHash: hash, TrustPeriod: 2 * time.Second, StoreDir: dir, Logger: testLogger(t)}
	v, err := NewVerifier(ctx, conf)
	if err != nil {
		t.Fatal(err)
	}
	mustEpoch(ctx, t, v)
	time.Sleep(2500 * time.Millisecond)
	if _, err := v.Epoch(ctx); !errors.Is(err, ErrTrustExpired) {
		t.Fatalf("query after the trust period: %v, want ErrTrustExpired", err)
	}
	v.Close()
	for _, c := range []VerifierConfig{{TrustHeight: 0}, {TrustHeight: h, TrustHash: hash}} {
		c.Endpoints, c.TrustPeriod, c.StoreDir, c.Logger = conf.Endpoints, conf.TrustPeriod, dir, conf.Logger
		start := time.Now()
		_, err := NewVerifier(ctx, c)
		if !errors.Is(err, ErrTrustExpired) {
			t.Fatalf("restart after the trust period (root height %d): %v, want ErrTrustExpired", c.TrustHeight, err)
		}
		for _, want := range []string{"fresh trust root", "strata validator start", dir} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("took %v to fail", time.Since(start))
		}
	}
	conf.TrustHeight, conf.TrustHash = latestRoot(ctx, t, n.RPC())
	v, err = NewVerifier(ctx, conf)
	if err != nil {
		t.Fatalf("fresh root over an expired store: %v", err)
	}
	defer v.Close()
	mustEpoch(ctx, t, v)
}

// (e) A verifier restarted within the trust period resumes from its store
// with no root given (and with its configured root expired); a root that
// conflicts with the store is refused.
func TestVerifierResumesFromItsStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, _ := startChainHome(t, "strata-honest", "")
	waitHeight(t, n, 3, 10*time.Second)
	dir := t.TempDir()
	h, hash := latestRoot(ctx, t, n.RPC())
	conf := VerifierConfig{Endpoints: []string{n.RPC()}, TrustHeight: h, TrustHash: hash, TrustPeriod: 3 * time.Second, StoreDir: dir, Logger: testLogger(t)}
	v, err := NewVerifier(ctx, conf)
	if err != nil {
		t.Fatal(err)
	}
	// Keep verifying past the root's trust period.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		mustEpoch(ctx, t, v)
		time.Sleep(300 * time.Millisecond)
	}
	last := v.Status().VerifiedHeight
	v.Close()
	for _, c := range []VerifierConfig{{}, {TrustHeight: h, TrustHash: hash}} {
		c.Endpoints, c.TrustPeriod, c.StoreDir, c.Logger = conf.Endpoints, conf.TrustPeriod, dir, conf.Logger
		v, err := NewVerifier(ctx, c)
		if err != nil {
			t.Fatalf("restart within the trust period (root height %d): %v", c.TrustHeight, err)
		}
		if st := v.Status(); st.VerifiedHeight < last {
			t.Fatalf("resumed at height %d, had verified %d", st.VerifiedHeight, last)
		}
		mustEpoch(ctx, t, v)
		v.Close()
	}
	bad := conf
	bad.TrustHash = rootAt(ctx, t, n.RPC(), h+1)
	if v, err := NewVerifier(ctx, bad); err == nil || !strings.Contains(err.Error(), "conflicts") {
		if v != nil {
			v.Close()
		}
		t.Fatalf("root conflicting with the store: %v, want a conflict error", err)
	}
}

// (f) The primary stops: answers come from the next endpoint within
// seconds, with one warning; a proxy endpoint that comes back is used
// again; a verifier whose witness is down starts and works.
func TestVerifierFailsOverWhenThePrimaryStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four validators")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes := startNetwork(t, 4, integrationParams())
	waitHeight(t, nodes[0], 3, 20*time.Second)
	root := rootAt(ctx, t, nodes[0].RPC(), 1)
	logs := &countingHandler{}
	v, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{nodes[0].RPC(), nodes[1].RPC()}, Witnesses: []string{nodes[2].RPC()},
		TrustHeight: 1, TrustHash: root, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	mustEpoch(ctx, t, v)
	if err := nodes[0].Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		_, err := v.Epoch(ctx)
		if err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no answer %v after the primary stopped: %v", time.Since(start), err)
		}
	}
	t.Logf("answer from the next endpoint %v after the primary stopped", time.Since(start).Round(time.Millisecond))
	if time.Since(start) > 5*time.Second {
		t.Fatalf("failover took %v", time.Since(start))
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		mustEpoch(ctx, t, v)
	}
	if st := v.Status(); st.Endpoint != nodes[1].RPC() {
		t.Fatalf("status %+v: want %s in use", st, nodes[1].RPC())
	}
	if w := logs.count(slog.LevelWarn, "down"); len(w) != 1 {
		t.Fatalf("%d warnings for one outage, want 1: %v", len(w), w)
	}

	// An endpoint that comes back is preferred again.
	proxy := newLyingRPC(t, nodes[1].RPC())
	v2, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{proxy.URL, nodes[2].RPC()}, TrustHeight: 1, TrustHash: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	mustEpoch(ctx, t, v2)
	proxy.stop()
	mustEpoch(ctx, t, v2)
	if v2.Status().Endpoint != nodes[2].RPC() {
		t.Fatalf("status %+v with the proxy stopped", v2.Status())
	}
	proxy.start()
	back := time.Now()
	for v2.Status().Endpoint != proxy.URL {
		if time.Since(back) > 10*time.Second {
			t.Fatalf("the endpoint that came back is not used again: %+v", v2.Status())
		}
		mustEpoch(ctx, t, v2)
		time.Sleep(200 * time.Millisecond)
	}

	// A witness that is down does not stop the verifier.
	wlogs := &countingHandler{}
	v3, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{nodes[1].RPC()}, Witnesses: []string{nodes[0].RPC()},
		TrustHeight: 1, TrustHash: root, Logger: slog.New(wlogs)})
	if err != nil {
		t.Fatalf("witness down at start: %v", err)
	}
	defer v3.Close()
	for range 5 {
		mustEpoch(ctx, t, v3)
	}
	if w := wlogs.count(slog.LevelWarn, "witness down"); len(w) != 1 {
		t.Fatalf("%d witness-down warnings, want 1", len(w))
	}
}
