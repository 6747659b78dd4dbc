package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/strata-mix/strata/sphinx"
)

// TestMailboxHook: a relay pipeline serving as a mailbox node's receive path
// hands DeliverMailbox payloads to Local.Mailbox (once: replays are
// dropped), forwards nothing when NoForward is set, and a plain relay
// without the hook drops DeliverMailbox packets.
func TestMailboxHook(t *testing.T) {
	f, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		t.Fatal(err)
	}
	key, pub, err := sphinx.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	self := sphinx.Hop{ID: sphinx.NodeID{1}, Key: pub}
	got := make(chan []byte, 8)
	sent := make(chan sphinx.NodeID, 8)
	newRelay := func(local Local, noForward bool) *Relay {
		db, err := OpenReplayDB(t.TempDir(), 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := NewKeyring(1, EpochKey{Epoch: 1, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(Config{Format: f, Keys: keys, Replay: db, Local: local, NoForward: noForward,
			Link: LinkFunc(func(_ context.Context, to sphinx.NodeID, _ []byte) error { sent <- to; return nil })})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); db.Close() })
		return r
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	mb := newRelay(Local{Mailbox: func(p []byte) { got <- bytes.Clone(p) }}, true)
	msg := []byte("a mailbox request")
	pkt, _, err := f.NewPacket(rand.Reader, []sphinx.Hop{self}, sphinx.DeliverToMailbox(), sphinx.DelayPolicy{}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := mb.Inject(bytes.Clone(pkt)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if !bytes.HasPrefix(p, msg) || len(p) != f.Geometry().PayloadCapacity() {
			t.Fatalf("hook got %d bytes %q…, want the packet's message", len(p), p[:min(len(p), 32)])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mailbox hook was not called")
	}
	if got := testutil.ToFloat64(mb.m.delivered.WithLabelValues("mailbox")); got != 1 {
		t.Errorf("mailbox deliveries counted %v, want 1", got)
	}

	// The same packet again is a replay: the hook is not called.
	if err := mb.Inject(bytes.Clone(pkt)); err != nil {
		t.Fatal(err)
	}
	waitFor("the replay drop", func() bool { return testutil.ToFloat64(mb.m.dropped.WithLabelValues(reasonReplay)) == 1 })

	// A Forward packet reaching a mailbox node is dropped and counted.
	next := sphinx.Hop{ID: sphinx.NodeID{2}, Key: pub}
	fwd, _, err := f.NewPacket(rand.Reader, []sphinx.Hop{self, next}, sphinx.DropCover(), sphinx.DelayPolicy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := mb.Inject(fwd); err != nil {
		t.Fatal(err)
	}
	waitFor("the not_relay drop", func() bool { return testutil.ToFloat64(mb.m.dropped.WithLabelValues(reasonNotRelay)) == 1 })

	// A relay without the hook drops DeliverMailbox packets and, without
	// NoForward, forwards.
	plain := newRelay(Local{}, false)
	pkt2, _, err := f.NewPacket(rand.Reader, []sphinx.Hop{self}, sphinx.DeliverToMailbox(), sphinx.DelayPolicy{}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Inject(pkt2); err != nil {
		t.Fatal(err)
	}
	waitFor("the not_mailbox drop", func() bool { return testutil.ToFloat64(plain.m.dropped.WithLabelValues(reasonNotMailbox)) == 1 })
	fwd2, _, err := f.NewPacket(rand.Reader, []sphinx.Hop{self, next}, sphinx.DropCover(), sphinx.DelayPolicy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Inject(fwd2); err != nil {
		t.Fatal(err)
	}
	select {
	case to := <-sent:
		if to != next.ID {
			t.Fatalf("forwarded to %v, want %v", to, next.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the plain relay did not forward")
	}
	select {
	case p := <-got:
		t.Fatalf("hook called for a packet it should not see: %q", p[:16])
	case to := <-sent:
		t.Fatalf("mailbox node forwarded to %v", to)
	default:
	}
}
