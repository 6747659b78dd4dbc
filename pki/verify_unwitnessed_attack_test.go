package pki

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// trustedNewest returns the height and hash of the newest header in v's
// trusted store.
func trustedNewest(t *testing.T, v *Verifier) (int64, []byte) {
	t.Helper()
	last, err := v.store.LastLightBlockHeight()
	if err != nil {
		t.Fatal(err)
	}
	lb, err := v.store.LightBlock(last)
	if err != nil {
		t.Fatal(err)
	}
	return last, lb.Hash()
}

// Every witness is down and the primary switches to a fork (one validator
// key signing two chains from one genesis, the fork ahead): the headers
// the primary alone vouches for are not written to the persisted trusted
// store. When the honest witness returns, the fork is detected from the
// stored (honest) header, the primary is dropped and the honest witness
// is kept and answers (the floor the unwitnessed answers raised is
// lowered again); a verifier restarted from the store resumes from the
// last witnessed header, and with a witness up the store advances.
func TestVerifierUnwitnessedHeadersAreNotPersisted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts validators")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fork, honest := startEquivocatingChains(t)
	primary := newLyingRPC(t, honest.RPC())
	witness := newLyingRPC(t, honest.RPC())
	dir := t.TempDir()
	logs := &countingHandler{}
	v, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{primary.URL, witness.URL}, TrustHeight: 1,
		TrustHash: rootAt(ctx, t, honest.RPC(), 1), StoreDir: dir, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	before := mustEpoch(ctx, t, v)
	h0, hash0 := trustedNewest(t, v)
	if h0 <= 1 {
		t.Fatalf("witnessed answer left the store at height %d", h0)
	}

	witness.stop()
	primary.setTarget(fork.RPC())
	var believed int
	for range 3 {
		if _, err := v.Epoch(ctx); err == nil {
			believed++
		} else {
			t.Logf("unwitnessed fork answer: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if h, hash := trustedNewest(t, v); h != h0 || !bytes.Equal(hash, hash0) {
		t.Fatalf("with no witness up, the trusted store moved from header %d to %d", h0, h)
	}
	t.Logf("%d of 3 answers of the primary alone (on the fork, ahead) used; trusted store still at header %d", believed, h0)

	witness.start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := v.Epoch(ctx)
		if errors.Is(err, ErrFork) {
			t.Logf("witness back: %v", err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("witness back, the forked primary still answers: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	st := v.Status()
	if _, down := st.Down[primary.URL]; !down {
		t.Fatalf("status %+v: the primary on the fork was not dropped", st)
	}
	if why, down := st.Down[witness.URL]; down {
		t.Fatalf("the honest witness was dropped: %s", why)
	}
	var after EpochInfo
	for try := 0; ; try++ {
		if after, err = v.Epoch(ctx); err == nil {
			break
		}
		if try == 20 {
			t.Fatalf("the honest endpoint after the fork: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if after.Epoch < before.Epoch || v.Status().Endpoint != witness.URL {
		t.Fatalf("epoch %d (was %d), status %+v", after.Epoch, before.Epoch, v.Status())
	}
	if h, _ := trustedNewest(t, v); h != h0 {
		t.Fatalf("the honest endpoint alone moved the trusted store from %d to %d", h0, h)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}

	// Restarted from the store, with a witness: resumes at h0, advances.
	r, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{honest.RPC(), witness.URL}, StoreDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if st := r.Status(); st.VerifiedHeight != h0 {
		t.Fatalf("restarted at header %d, want the last witnessed %d", st.VerifiedHeight, h0)
	}
	mustEpoch(ctx, t, r)
	if h, _ := trustedNewest(t, r); h <= h0 {
		t.Fatalf("a witnessed answer left the store at %d", h)
	}
}
